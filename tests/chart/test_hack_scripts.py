"""hack/*.sh: syntax, ShellCheck, the tool installer's idempotence, and e2e-kind.sh's prerequisite checks.

e2e-kind.sh needs Docker and kind, which CI does not have; what can be checked without them is
checked here: it parses, ShellCheck finds nothing, and it stops at once, saying what is missing.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from _chart import ROOT, TOOLS_BIN, Tools, run

SCRIPTS = sorted((ROOT / "hack").glob("*.sh"))


def test_the_scripts_are_there_and_executable():
    assert {path.name for path in SCRIPTS} >= {"install-tools.sh", "e2e-kind.sh", "real-apiserver.sh"}
    for path in SCRIPTS:
        assert os.access(path, os.X_OK), f"{path} is not executable"
        lines = path.read_text().splitlines()
        assert lines[0] == "#!/usr/bin/env bash"
        assert "set -euo pipefail" in lines


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_bash_parses_the_script(script: Path):
    done = run(["bash", "-n", script])
    assert done.returncode == 0, done.stderr


def test_shellcheck_finds_nothing(tools: Tools):
    done = run([tools.shellcheck, "--severity=style", "--external-sources", *SCRIPTS])
    assert done.returncode == 0, done.stdout + done.stderr


def test_install_tools_is_idempotent_and_prints_the_versions(tools: Tools):
    done = run(["bash", ROOT / "hack" / "install-tools.sh"], env={**os.environ, "PYTHON": sys.executable}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "install-tools:" not in done.stderr  # nothing installed again
    for tool in ("helm:", "kubectl:", "shellcheck:", "hadolint:", "checkov:"):
        assert tool in done.stdout
    assert "v4." in done.stdout or "v3." in done.stdout  # helm's version
    assert (TOOLS_BIN.parent / ".gitignore").read_text() == "*\n"  # .tools is never committed


def _fake(directory: Path, name: str, script: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


@pytest.mark.parametrize(
    ("fakes", "message"),
    [
        ({}, "docker not found"),
        ({"docker": "exit 1"}, "docker cannot reach its engine"),
        ({"docker": "exit 0"}, "kind not found"),
    ],
    ids=["no-docker", "no-engine", "no-kind"],
)
def test_e2e_kind_says_what_is_missing_and_stops(tmp_path: Path, fakes: dict[str, str], message: str):
    # A PATH of its own: the fakes, and the one command the script runs before its checks.
    for name, script in fakes.items():
        _fake(tmp_path, name, script)
    dirname = shutil.which("dirname")
    assert dirname is not None
    (tmp_path / "dirname").symlink_to(dirname)
    bash = shutil.which("bash")
    assert bash is not None
    done = run([bash, ROOT / "hack" / "e2e-kind.sh"], env={**os.environ, "PATH": str(tmp_path)}, timeout=30)
    assert done.returncode == 1
    assert message in done.stderr, done.stderr


def test_real_apiserver_says_how_to_use_it_and_what_is_missing(tmp_path: Path):
    script = ROOT / "hack" / "real-apiserver.sh"
    done = run(["bash", script, "bogus"], timeout=30)
    assert done.returncode == 2 and "usage:" in done.stderr
    env = {**os.environ, "TOOLMODEL_REALK8S_CACHE": str(tmp_path / "cache")}
    for command, message in (("start", "not built"), ("start-cel", "not built"), ("env", "nothing started")):
        done = run(["bash", script, command], env=env, timeout=30)
        assert done.returncode == 1 and message in done.stderr, (command, done.stderr)
    done = run(["bash", script, "stop"], env=env, timeout=30)  # nothing to stop: fine
    assert done.returncode == 0, done.stderr
