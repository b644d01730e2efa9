"""Helpers for the simulator's batch over HTTP: its /metrics, and requests the test holds open.

A request is held by a long time to first token (``--ttft-ms 600000``) and ended by its client
going away, which the simulator, like vLLM, takes as an abort: no test waits for the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

HOLD = ("--ttft-ms", "600000")  # ten minutes to the first token: a request runs until its client leaves


async def engine_metrics(url: str) -> dict[str, Any]:
    """The simulator's series: ``running``, ``waiting``, ``kv``, ``preemptions``, ``aborted``,
    and ``lora`` (the labels of vllm:lora_requests_info, when it is there)."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = (await response.read()).decode()
    names = {
        "vllm:num_requests_running": "running",
        "vllm:num_requests_waiting": "waiting",
        "vllm:kv_cache_usage_perc": "kv",
        "vllm:num_preemptions_total": "preemptions",
    }
    values: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                values[names[sample.name]] = sample.value
            elif sample.name == "vllm:request_success_total" and sample.labels["finished_reason"] == "abort":
                values["aborted"] = sample.value
            elif sample.name == "vllm:lora_requests_info":
                values["lora"] = {key: value for key, value in sample.labels.items()}
    return values


async def settled(url: str, **expected: Any) -> dict[str, Any]:
    """Waits until the series named read as ``expected`` (a request the test sent or ended takes
    a moment to reach the simulator), then returns them all; bounded, so a count that never gets
    there fails."""
    values: dict[str, Any] = {}
    for _ in range(500):
        values = await engine_metrics(url)
        if all(values.get(name) == value for name, value in expected.items()):
            return values
        await asyncio.sleep(0.01)
    assert {name: values.get(name) for name in expected} == expected
    return values


async def eventually(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    assert condition()


class Held:
    """Requests the test keeps open, each on its own connection, and the order their streams
    began (a chat stream's first frame comes once its sequence runs)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.began: list[str] = []
        self._connections: dict[str, asyncio.StreamWriter] = {}
        self._readers: list[asyncio.Task[None]] = []

    async def send(self, name: str, path: str, body: dict[str, Any]) -> None:
        address = urlsplit(self.url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        data = orjson.dumps(body)
        head = f"POST {path} HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\n"
        writer.write(head.encode() + b"content-length: %d\r\n\r\n" % len(data) + data)
        self._connections[name] = writer
        if body.get("stream"):
            self._readers.append(asyncio.ensure_future(self._first_frame(name, reader)))

    async def _first_frame(self, name: str, reader: asyncio.StreamReader) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the head, sent at once
        while line := await reader.readline():  # empty at the end: it never began
            if b"data: " in line:
                self.began.append(name)
                return

    async def leave(self, *names: str) -> None:
        """These clients go away unanswered."""
        for name in names:
            writer = self._connections.pop(name)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        await self.leave(*list(self._connections))
        for reader in self._readers:
            reader.cancel()


@contextlib.asynccontextmanager
async def held(url: str) -> AsyncIterator[Held]:
    requests = Held(url)
    try:
        yield requests
    finally:
        await requests.close()


def chat(name: str, model: str | None = None, *, stream: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": f"Hello from {name}"}], "stream": stream}
    if model is not None:
        body["model"] = model
    return body
