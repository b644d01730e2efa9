"""The simulated engine and the proxy in front of it, both in this process on loopback ports."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from openai import AsyncOpenAI

from toolcall_proxy.dialects import get_dialect
from toolcall_proxy.server import ProxyApp, ProxySettings
from toolcall_proxy.sim.server import SimApp, SimConfig


def _socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


async def _serve(app: Any, sock: socket.socket) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    return server, task


async def running_stack(
    dialect: str, *, tokenizer: Path | None, proxy: dict[str, Any] | None = None, **sim: Any
) -> AsyncIterator[tuple[AsyncOpenAI, str]]:
    """An SDK client pointed at the proxy, and the engine's own URL. ``sim`` are more
    ``SimConfig`` fields, ``proxy`` more ``ProxySettings``; the tokenizer serves a token-id
    dialect at both ends."""
    engine_socket = _socket()
    if get_dialect(dialect).token_layout is None:
        tokenizer = None
    config = SimConfig(
        model="demo/model",
        chat_template=get_dialect(dialect).template,
        dialect=dialect,
        served_model_names=("demo",),
        tokenizer=tokenizer,
        **sim,
    )
    engine_url = f"http://127.0.0.1:{engine_socket.getsockname()[1]}"
    engine, engine_task = await _serve(SimApp(config), engine_socket)
    settings = ProxySettings(
        host="127.0.0.1",
        upstream=engine_url,
        dialect=dialect,
        tokenizer=str(tokenizer) if tokenizer else None,
        **(proxy or {}),
    )
    proxy_app = ProxyApp(settings)
    await proxy_app.start(port=0)
    while proxy_app.tokenizer_loader is not None and proxy_app.tokenizer_loader.tokenizer is None:
        assert not proxy_app.failure or not proxy_app.failure.done(), proxy_app.failure.result()
        await asyncio.sleep(0.01)
    client = AsyncOpenAI(base_url=f"http://127.0.0.1:{proxy_app.port}/v1", api_key="unused", max_retries=0)
    try:
        yield client, engine_url
    finally:
        await client.close()
        await proxy_app.close()
        engine.should_exit = True
        await engine_task
