"""The simulator, served in-process on a loopback port from a vLLM command line."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from toolcall_proxy.sim.server import SimConfig, parse_args, serve

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
STOCK_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_stock_price",
        "description": "Look up the latest price of a stock by its ticker symbol",
        "parameters": {
            "type": "object",
            "properties": {"symbol": {"type": "string"}, "currency": {"type": "string", "enum": ["USD", "EUR"]}},
            "required": ["symbol"],
        },
    },
}
SEED_QUESTION = "What's the weather like in San Francisco, Tokyo, and Paris?"


@contextlib.asynccontextmanager
async def start_sim(*argv: str) -> AsyncIterator[str]:
    """Runs ``toolmodel sim ARGV`` in this event loop; yields its base URL."""
    config = SimConfig.from_args(parse_args(list(argv)))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    task = asyncio.create_task(serve(config, sock=sock))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


@pytest.fixture
def sim() -> Callable[..., contextlib.AbstractAsyncContextManager[str]]:
    """``async with sim("MODEL", "--flag", ...) as url:``."""
    return start_sim


@pytest.fixture(autouse=True)
def hugging_face_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache of each test's own: a simulated ChatGLM3 writes its demo tokenizer
    there, as vLLM downloads a model into $HF_HOME, and never into the user's cache."""
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return tmp_path / "hf" / "hub"


@pytest.fixture(scope="session")
def chatglm3_2024(chatglm3_tokenizer_dir: Path) -> Path:
    """ChatGLM3-6B's tokenizer with the 2024 tokenizer_config.json (added tokens registered)."""
    return chatglm3_tokenizer_dir


@pytest.fixture(scope="session")
def chatglm3_2023(chatglm3_2024: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tokenizer.model with the 2023-12 tokenizer_config.json (no added tokens)."""
    config = chatglm3_2024.parent / "chatglm3-6b-2023-12" / "tokenizer_config.json"
    assert config.is_file(), f"{config} is missing: clone shared/ beside the repo"
    folder = tmp_path_factory.mktemp("chatglm3-6b-2023-12")
    shutil.copy(chatglm3_2024 / "tokenizer.model", folder)
    shutil.copy(config, folder)
    return folder
