"""Fixtures of the proxy tests: a fake engine and a proxy in front of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop
from fake_engine import FakeEngine, Stack, start_stack


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def stack(engine: FakeEngine) -> AsyncIterator[Stack]:
    async for running in start_stack(engine):
        yield running


@pytest.fixture
def stack_with(engine: FakeEngine) -> Callable[..., Any]:
    """``async with stack_with(api_key="k") as s:`` for a proxy with other settings."""
    return lambda **settings: contextlib.asynccontextmanager(start_stack)(engine, **settings)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """The proxy runs on uvloop in production (``toolmodel proxy``): test it there."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def chatglm3_stack(stack_with: Callable[..., Any], chatglm3_tokenizer_dir: Path) -> Callable[..., Any]:
    """``async with chatglm3_stack() as s:``: the proxy for ChatGLM3 with the real tokenizer loaded."""

    @contextlib.asynccontextmanager
    async def running(**settings: Any) -> AsyncIterator[Stack]:
        async with stack_with(dialect="chatglm3", tokenizer=str(chatglm3_tokenizer_dir), **settings) as stack:
            loader = stack.proxy.tokenizer_loader
            for _ in range(1000):
                if loader.tokenizer is not None:
                    break
                await asyncio.sleep(0.01)
            assert loader.tokenizer is not None, loader.state
            yield stack

    return running
