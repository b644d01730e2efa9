"""The load an autoscaler reads from the proxy: requests in flight, and requests it holds back.

The engine holds its answers until the test lets them go (``FakeEngine.gate``), so what is
counted is known exactly; nothing here depends on how long anything takes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp import ClientSession
from fake_engine import FakeEngine, Stack, free_port
from prometheus_client.parser import text_string_to_metric_families

MESSAGES = [{"role": "user", "content": "hi"}]
CALL = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'


def tool(name: str = "f") -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}


async def load(stack: Stack) -> dict[str, float]:
    """The proxy's load gauges: ``in_flight``, and ``queued:<what it waits for>``."""
    async with ClientSession() as session, session.get(stack.url + "/metrics") as response:
        text = (await response.read()).decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "toolmodel_proxy_requests_in_flight":
                values["in_flight"] = sample.value
            elif sample.name == "toolmodel_proxy_requests_queued":
                values["queued:" + sample.labels["waiting_for"]] = sample.value
    return values


async def eventually(condition: Callable[[], Any]) -> None:
    """Waits until ``condition()`` holds (for what happens after a client leaves: the proxy hears
    of it a moment later); bounded, so a count that never gets there fails the test."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    assert condition()


async def settled(stack: Stack, expected: dict[str, float]) -> None:
    """Waits until the gauges named in ``expected`` read so, then checks them once more."""
    latest: dict[str, float] = {}

    async def read() -> dict[str, float]:
        latest.update(await load(stack))
        return latest

    for _ in range(500):
        values = await read()
        if all(values.get(name) == value for name, value in expected.items()):
            break
        await asyncio.sleep(0.01)
    assert {name: latest.get(name) for name in expected} == expected


async def ask(stack: Stack, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    async with ClientSession() as session, session.post(stack.url + path, json=body) as response:
        return response.status, await response.read()


async def sent_and_left(stack: Stack, body: dict[str, Any], arrived: Callable[[], Awaitable[None]]) -> None:
    """A client that sends a chat request, waits until its request has ``arrived()`` where the
    test wants it, and goes away unanswered."""
    data = orjson.dumps(body)
    address = urlsplit(stack.url)
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\n"
    writer.write(head + b"content-length: %d\r\n\r\n" % len(data) + data)
    await arrived()
    writer.close()
    await writer.wait_closed()


ALL_ZERO = {"in_flight": 0, "queued:tools_check": 0, "queued:engine_version": 0}


async def test_nothing_is_in_flight_at_rest_and_a_scrape_does_not_count_itself(stack):
    assert await load(stack) == ALL_ZERO
    assert (await ask(stack, "/v1/completions", {"prompt": "x"}))[0] == 200
    assert await load(stack) == ALL_ZERO


async def test_requests_held_by_the_engine_are_in_flight_until_their_answers_end(stack):
    engine: FakeEngine = stack.engine
    engine.gate = asyncio.Event()
    engine.outputs = ["Plain answer, said slowly."] * 10
    requests = [
        ("/v1/chat/completions", {"messages": MESSAGES, "tools": [tool("a")], "stream": True}),  # tool path, streamed
        ("/v1/chat/completions", {"messages": MESSAGES, "tools": [tool("b")], "stream": True}),
        ("/v1/chat/completions", {"messages": MESSAGES, "tools": [tool("c")]}),  # tool path, whole
        ("/v1/chat/completions", {"messages": MESSAGES, "tools": [tool("d")]}),
        ("/v1/chat/completions", {"messages": MESSAGES, "stream": True}),  # relayed chat, streamed
        ("/v1/chat/completions", {"messages": MESSAGES}),  # relayed chat, whole
        ("/v1/completions", {"prompt": "x", "stream": True}),  # passed through, streamed
    ]
    answers = [asyncio.ensure_future(ask(stack, path, body)) for path, body in requests]
    await eventually(lambda: len(engine.requests) == len(requests))
    assert await load(stack) == {**ALL_ZERO, "in_flight": len(requests)}
    engine.gate.set()
    assert [status for status, _ in await asyncio.gather(*answers)] == [200] * len(requests)
    # a response's last bytes leave after it is counted out: no wait needed
    assert await load(stack) == ALL_ZERO


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("tools", [True, False])
async def test_a_client_that_goes_away_is_no_longer_in_flight(stack, tools, stream):
    engine: FakeEngine = stack.engine
    engine.gate = asyncio.Event()
    body: dict[str, Any] = {"messages": MESSAGES, "stream": stream}
    if tools:
        body["tools"] = [tool()]
    await sent_and_left(stack, body, lambda: eventually(lambda: len(engine.requests) == 1))
    await settled(stack, ALL_ZERO)
    engine.gate.set()
    if stream:  # the engine's work was cancelled too: its next frame found no one to take it
        await asyncio.wait_for(engine.cancelled.wait(), timeout=5)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/chat/completions", {"messages": MESSAGES, "tools": [tool()]}, 502),
        ("/v1/chat/completions", {"messages": MESSAGES, "tools": [tool()], "stream": True}, 502),
        ("/v1/completions", {"prompt": "x"}, 500),  # relayed as the engine answered
        ("/v1/completions", {"prompt": "x", "stream": True}, 500),
    ],
)
async def test_an_engine_that_fails_leaves_nothing_in_flight(stack, path, body, status):
    stack.engine.status = 500
    assert (await ask(stack, path, body))[0] == status
    assert await load(stack) == ALL_ZERO


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": MESSAGES, "tools": [tool()], "stream": True}),
        ("/v1/completions", {"prompt": "x", "stream": True}),
    ],
)
async def test_a_stream_the_engine_breaks_off_leaves_nothing_in_flight(stack, path, body):
    stack.engine.break_stream = True
    stack.engine.outputs = [CALL]
    status, answer = await ask(stack, path, body)
    assert status == 200  # the stream had begun
    assert b"upstream_broken" in answer
    assert await load(stack) == ALL_ZERO


async def test_an_unreachable_engine_leaves_nothing_in_flight(stack_with):
    async with stack_with(upstream=f"http://127.0.0.1:{free_port()}") as stack:
        for body in ({"messages": MESSAGES, "tools": [tool()]}, {"messages": MESSAGES, "stream": True}):
            assert (await ask(stack, "/v1/chat/completions", body))[0] == 503
        assert (await ask(stack, "/v1/chat/completions", {"messages": "not a list", "tools": [tool()]}))[0] == 400
        assert await load(stack) == ALL_ZERO


async def test_requests_waiting_for_the_tools_check_are_queued(stack):
    engine: FakeEngine = stack.engine
    busy = threading.Event()  # the checking thread is taken until the test lets it go
    stack.proxy._schema_checker.submit(busy.wait)
    try:
        answers = [
            asyncio.ensure_future(ask(stack, "/v1/chat/completions", {"messages": MESSAGES, "tools": [tool(name)]}))
            for name in ("a", "b")
        ]
        await settled(stack, {"in_flight": 2, "queued:tools_check": 2})
        # a client that goes away while its request waits takes it out of the queue
        third = {"messages": MESSAGES, "tools": [tool("c")]}
        await sent_and_left(stack, third, lambda: settled(stack, {"in_flight": 3, "queued:tools_check": 3}))
        await settled(stack, {"in_flight": 2, "queued:tools_check": 2})
        assert engine.requests == []  # nothing went on while they waited
    finally:
        busy.set()
    assert [status for status, _ in await asyncio.gather(*answers)] == [200, 200]
    assert await load(stack) == ALL_ZERO


async def test_requests_waiting_for_the_engines_version_are_queued(stack):
    engine: FakeEngine = stack.engine
    engine.version = "0.12.0"
    engine.version_gate = asyncio.Event()
    body = {"messages": MESSAGES, "tools": [tool()]}
    answers = [asyncio.ensure_future(ask(stack, "/v1/chat/completions", body)) for _ in range(3)]
    await settled(stack, {"in_flight": 3, "queued:engine_version": 3})
    engine.version_gate.set()
    assert [status for status, _ in await asyncio.gather(*answers)] == [200] * 3
    assert engine.version_asked == 1  # asked once for all of them
    assert await load(stack) == ALL_ZERO
