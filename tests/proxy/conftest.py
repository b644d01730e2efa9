"""Fixtures of the proxy tests: a fake engine and a proxy in front of it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
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
