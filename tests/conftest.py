"""Fixtures every part's tests share: the real files beside the repository (``../shared``)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
