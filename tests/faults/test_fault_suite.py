"""The proxy under fault and abuse: every case answers with the right status, never stalls a
concurrent ordinary request, and gives back the memory and files it took.

The cases are those of the abuse probe that led to the hardening: malformed HTTP, slow and
too many clients, malformed and abusive JSON, schemas that point outside themselves or recurse,
a schema-sized cache flood, unauthenticated bodies, an engine that hangs, resets or talks
nonsense, and clients that hang up mid-stream. Run it alone with ``pytest tests/faults``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import random
import string
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from conftest import (
    API_KEY,
    MEMORY_SLACK_BYTES,
    PARSED_JSON_SLACK_BYTES,
    WEATHER,
    Baseline,
    Canary,
    Proxy,
    free_port,
    settle,
    tool_request,
)

CHAT = b"/v1/chat/completions"
AUTHORIZATION = b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"


def post_bytes(body: bytes, *, key: str | None = API_KEY, extra: bytes = b"") -> bytes:
    auth = b"Authorization: Bearer " + key.encode() + b"\r\n" if key else b""
    return (
        b"POST " + CHAT + b" HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        + auth + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body
    )  # fmt: skip


async def first_status(proxy: Proxy, data: bytes, *, pieces: int = 1, pause: float = 0.0) -> int:
    """Sends ``data`` (in ``pieces`` with ``pause`` between) while reading, as a client that sees an
    early answer does, and returns the status of the first answer; 0 if the proxy closed without one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)

    async def send() -> None:
        step = max(1, len(data) // pieces)
        with contextlib.suppress(ConnectionError):
            for start in range(0, len(data), step):
                writer.write(data[start : start + step])
                await writer.drain()
                if pause:
                    await asyncio.sleep(pause)

    sending = asyncio.ensure_future(send())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        return int(head.split(b" ", 2)[1])
    except (ConnectionError, asyncio.IncompleteReadError):
        return 0
    finally:
        sending.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def under_attack(
    proxy: Proxy, attack: Callable[[], Awaitable[Any]], *, memory_slack: int = PARSED_JSON_SLACK_BYTES
) -> Any:
    """Runs ``attack`` beside the canary, then holds the proxy to the suite's bounds."""
    start = Baseline(proxy.rss(), proxy.fds())
    with Canary(proxy) as canary:
        result = await attack()
    canary.assert_unstalled()
    await asyncio.to_thread(settle, proxy, start, memory_slack=memory_slack)
    return result


async def many(count: int, make: Callable[[], Awaitable[Any]]) -> list[Any]:
    return await asyncio.gather(*(make() for _ in range(count)))


# -- HTTP ------------------------------------------------------------------------------------

# fmt: off
MALFORMED = {
    "bare LF inside the target": (b"GET /v1/models\nX-Injected: 1 HTTP/1.1\r\nHost: p\r\n\r\n", 400),
    "CR LF inside a header value": (b"GET /health HTTP/1.1\r\nHost: p\r\nX-A: 1\r\rX-Injected: 1\r\n\r\n", 400),
    "NUL in a header value": (b"GET /health HTTP/1.1\r\nHost: p\r\nX-A: a\x00b\r\n\r\n", 400),
    "Content-Length and Transfer-Encoding": (
        b"POST /v1/completions HTTP/1.1\r\nHost: p\r\n" + AUTHORIZATION
        + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "a chunk size that is not hex": (
        b"POST /v1/completions HTTP/1.1\r\nHost: p\r\n" + AUTHORIZATION
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
        400,
    ),
    "a declared body over the limit": (post_bytes(b"")[:-21] + b"Content-Length: 9000000\r\n\r\n", 413),
    "a request target of 100 KB": (b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: p\r\n\r\n", 414),
    "one header line of 1 MB": (b"GET /health HTTP/1.1\r\nHost: p\r\nX-Big: " + b"b" * (1 << 20) + b"\r\n\r\n", 431),
    "10,000 headers": (b"GET /health HTTP/1.1\r\nHost: p\r\n" + b"X-A: 1\r\n" * 10_000 + b"\r\n", 431),
}
# fmt: on


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
async def test_malformed_http_is_refused_by_its_rule(proxy, case):
    data, status = MALFORMED[case]
    statuses = await under_attack(proxy, lambda: many(50, lambda: first_status(proxy, data)))
    assert set(statuses) == {status}


async def test_a_64_mb_header_is_cut_at_the_limit_not_read_whole(proxy):
    async def flood() -> int:
        huge = b"GET /health HTTP/1.1\r\nHost: p\r\nX-Big: " + b"b" * (64 << 20) + b"\r\n\r\n"
        return await first_status(proxy, huge, pieces=64)

    assert await under_attack(proxy, flood) == 431


async def test_slow_headers_and_slow_bodies_are_cut_at_their_deadlines(proxy):
    # The suite's proxy gives headers 1 s and bodies 2 s in total, however slowly they trickle.
    slow_head = b"GET /health HTTP/1.1\r\nHost: p\r\nX-Slow: " + b"s" * 100 + b"\r\n\r\n"
    slow_body = post_bytes(orjson.dumps(tool_request()))

    async def trickle() -> list[int]:
        heads = many(150, lambda: first_status(proxy, slow_head, pieces=60, pause=0.05))
        bodies = many(50, lambda: first_status(proxy, slow_body, pieces=100, pause=0.05))
        return [*(await heads), *(await bodies)]

    statuses = await under_attack(proxy, trickle)
    assert set(statuses) == {408}


async def test_connections_past_the_cap_are_told_so_and_the_rest_still_served(proxy):
    async def crowd() -> list[int]:
        held = [await asyncio.open_connection("127.0.0.1", proxy.port) for _ in range(520)]

        async def status(reader: asyncio.StreamReader) -> int:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.5)
                return int(head.split(b" ", 2)[1])
            except TimeoutError:
                return 0  # accepted, waiting for a request

        try:
            return await asyncio.gather(*(status(reader) for reader, _ in held))
        finally:
            for _, writer in held:
                writer.close()

    statuses = await under_attack(proxy, crowd)
    # 512 allowed, the canary holds one: the last ones are told the limit.
    assert statuses.count(503) >= 8 and set(statuses) <= {0, 503}


# -- JSON and the OpenAI request -------------------------------------------------------------


def deep(depth: int) -> bytes:
    """A JSON list nested ``depth`` deep (past what orjson writes)."""
    return b"[" * depth + b"]" * depth


WEATHER_JSON = orjson.dumps([WEATHER])
# Each body, and the status and field of its answer. The probe got a 500 for each of them.
BAD_BODIES: dict[str, tuple[bytes, int, str | None]] = {
    "not JSON": (b'{"model": "ok", "tools": ' + WEATHER_JSON + b', "messages": [', 400, None),
    "JSON nested 300 deep": (
        b'{"model": "ok", "tools": '
        + WEATHER_JSON
        + b', "messages": [{"role": "user", "content": '
        + deep(300)
        + b"}]}",
        400,
        "messages[0].content[0]",
    ),
    "a role that is a list": (
        orjson.dumps(tool_request(messages=[{"role": ["user"], "content": "x"}])),
        400,
        "messages[0].role",
    ),
    "a text part that is a list": (
        orjson.dumps(tool_request(messages=[{"role": "user", "content": [{"type": "text", "text": ["x"]}]}])),
        400,
        "messages[0].content[0].text",
    ),
    # Earlier calls' arguments are the model's own text: kept as they are when they are not JSON.
    "history arguments nested 100,000 deep": (
        orjson.dumps(
            tool_request(
                messages=[
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": deep(100_000).decode()},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "c", "content": "sunny"},
                ]
            )
        ),
        200,
        None,
    ),
    "a string temperature with a required call": (
        orjson.dumps(tool_request(temperature="hot", tool_choice="required")),
        400,
        "temperature",
    ),
    "10,000 tools": (
        orjson.dumps(tool_request(tools=[{**WEATHER, "function": {"name": f"t{i}"}} for i in range(10_000)])),
        400,
        "tools",
    ),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
async def test_malformed_requests_are_answered_by_their_rule(proxy, case):
    body, expected, field = BAD_BODIES[case]

    async def send() -> list[tuple[int, Any]]:
        return await many(10, lambda: asyncio.to_thread(proxy.post_raw, body))

    for status, answer in await under_attack(proxy, send):
        assert status == expected, answer
        if expected == 400:
            error = answer["error"]
            assert error["type"] == "invalid_request_error" and error["message"]
            assert error["param"] == field, error


def with_parameters(parameters: dict[str, Any] | bytes) -> bytes:
    schema = parameters if isinstance(parameters, bytes) else orjson.dumps(parameters)
    tools = b'[{"type": "function", "function": {"name": "f", "parameters": ' + schema + b"}}]"
    return b'{"model": "ok", "messages": [{"role": "user", "content": "hi"}], "tools": ' + tools + b"}"


async def test_a_ref_to_a_hanging_internal_url_is_refused_at_once_and_never_opened(proxy):
    hits: list[str] = []

    async def hang(request: web.Request) -> web.Response:
        hits.append(request.path)
        await asyncio.sleep(30)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/{tail:.*}", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    schemas = [
        {"type": "object", "properties": {"x": {"$ref": f"http://127.0.0.1:{port}/secret.json"}}},
        {"type": "object", "properties": {"x": {"$ref": "file:///etc/passwd"}}},
    ]
    try:
        answers = await under_attack(
            proxy,
            lambda: asyncio.gather(
                *(asyncio.to_thread(proxy.post_raw, with_parameters(schema)) for schema in schemas * 10)
            ),
        )
    finally:
        await runner.cleanup()
    assert {status for status, _ in answers} == {400}
    assert all("$ref" in answer["error"]["param"] for _, answer in answers)
    assert hits == []


ABUSIVE_SCHEMAS: dict[str, dict[str, Any] | bytes] = {
    "a $ref cycle": {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}},
    "nested 200 deep": b'{"type": "object", "properties": {"x": ' * 200 + b'{"type": "string"}' + b"}}" * 200,
    "5,000 properties of 20,000 nodes": {
        "type": "object",
        "properties": {f"p{i}": {"type": "object", "properties": {"a": {}, "b": {}, "c": {}}} for i in range(5_000)},
    },
    "patternProperties": {"type": "object", "patternProperties": {"^(a+)+$": {"type": "string"}}},
}


@pytest.mark.parametrize("case", ABUSIVE_SCHEMAS, ids=list(ABUSIVE_SCHEMAS))
async def test_abusive_schemas_get_a_400_before_any_walk(proxy, case):
    body = with_parameters(ABUSIVE_SCHEMAS[case])
    answers = await under_attack(proxy, lambda: many(10, lambda: asyncio.to_thread(proxy.post_raw, body)))
    for status, answer in answers:
        assert status == 400, answer
        assert answer["error"]["param"].startswith("tools[0].function.parameters"), answer


async def test_a_backtracking_pattern_is_matched_in_linear_time(proxy):
    parameters = {"type": "object", "properties": {"city": {"type": "string", "pattern": "^(a+)+$"}}}
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": parameters, "strict": True}}]
    body = orjson.dumps(tool_request("pattern-bomb", tools=tools))
    answers = await under_attack(proxy, lambda: many(10, lambda: asyncio.to_thread(proxy.post_raw, body)))
    for status, answer in answers:
        # The strict call fails its schema (quickly): it is not claimed as a call.
        assert status == 200, answer
        assert not answer["choices"][0]["message"].get("tool_calls")


def distinct_schema(size: int) -> dict[str, Any]:
    """About ``size`` bytes of tool schema no other request has sent."""
    salt = "".join(random.choices(string.ascii_lowercase, k=8))
    count = size // 60
    properties = {f"{salt}_{i}": {"type": "string", "description": "d" * 20} for i in range(count)}
    return {"type": "object", "properties": properties}


async def test_a_flood_of_distinct_schemas_leaves_memory_where_it_was(proxy):
    bodies = [
        orjson.dumps(tool_request(tools=[{"type": "function", "function": {"name": "get_weather", "parameters": s}}]))
        for s in (distinct_schema(256 << 10) for _ in range(120))
    ]

    async def flood() -> list[int]:
        statuses = []
        for batch in range(0, len(bodies), 4):
            answers = await asyncio.gather(*(asyncio.to_thread(proxy.post_raw, b) for b in bodies[batch : batch + 4]))
            statuses += [status for status, _ in answers]
        return statuses

    assert set(await under_attack(proxy, flood, memory_slack=MEMORY_SLACK_BYTES)) == {200}


async def test_unauthenticated_bodies_cost_only_their_headers(proxy):
    body = b'{"model": "ok", "messages": [], "padding": "' + b"x" * (8 << 20) + b'"}'
    unauthenticated = post_bytes(body, key=None)

    statuses = await under_attack(
        proxy,
        lambda: many(50, lambda: first_status(proxy, unauthenticated, pieces=32)),
        memory_slack=MEMORY_SLACK_BYTES,
    )
    assert set(statuses) == {401}


# -- the engine ------------------------------------------------------------------------------

ENGINE_FAULTS = {"hang": 504, "reset": 502, "garbage": 502, "choices-not-objects": 502, "not-json": 502, "error": 502}


@pytest.mark.parametrize("fault", ENGINE_FAULTS)
async def test_an_engine_fault_is_a_clean_5xx_and_nobody_else_waits(proxy, fault):
    body = orjson.dumps(tool_request(fault))
    answers = await under_attack(proxy, lambda: many(20, lambda: asyncio.to_thread(proxy.post_raw, body)))
    for status, answer in answers:
        assert status == ENGINE_FAULTS[fault], answer
        error = answer["error"]
        assert error["message"] and "127.0.0.1" not in error["message"]


async def test_clients_that_hang_up_mid_stream_end_the_engine_streams(proxy):
    body = orjson.dumps(tool_request("trickle", stream=True))

    async def hang_up() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(post_bytes(body))
        await reader.readuntil(b"\r\n\r\n")
        await reader.read(1)
        writer.transport.abort()

    await under_attack(proxy, lambda: many(50, hang_up))
    for _ in range(100):
        if engine_open_streams(proxy) == 0:
            break
        await asyncio.sleep(0.05)
    assert engine_open_streams(proxy) == 0


def engine_open_streams(proxy: Proxy) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.engine_port, timeout=5)
    connection.request("GET", "/stats")
    return int(orjson.loads(connection.getresponse().read())["open_streams"])


# -- what the proxy wrote --------------------------------------------------------------------


def test_no_case_made_a_500_or_a_traceback_in_the_log(proxy):
    log = proxy.log_text()
    assert "Traceback" not in log
    assert " 500 " not in log and "internal error" not in log
