"""Fixtures every part's tests share: the real files beside the repository (``../shared``)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from toolcall_proxy import hub

# shared/ beside the repository (its README says what is there). Tests that need it fail without
# it: a run that skipped them would not have checked what they check.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def chatglm3_tokenizer_dir() -> Path:
    """The real ChatGLM3-6B tokenizer (``tokenizer.model``, the 2024 ``tokenizer_config.json``)."""
    folder = SHARED / "tokenizers" / "chatglm3-6b"
    assert (folder / "tokenizer.model").is_file(), (
        f"{folder}/tokenizer.model is missing: clone shared/ beside the repository"
    )
    return folder


EngineDownload = Callable[[str, Path, Sequence[str]], Path]


@pytest.fixture
def engine_download() -> EngineDownload:
    """``engine_download(model_id, source, files)``: ``files`` of ``source`` put into the Hugging
    Face cache (``$HF_HOME/hub``) as a download lays them out, as vLLM's would."""

    def download(model_id: str, source: Path, files: Sequence[str]) -> Path:
        repo = hub.cache_dir() / ("models--" + model_id.replace("/", "--"))
        commit = "0" * 40
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copyfile(source / name, snapshot / name)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        return snapshot

    return download
