"""The keep-alive pool to the engine, against raw asyncio servers that send exactly the bytes a test scripts."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from fake_engine import free_port

from toolcall_proxy.server import upstream as upstream_module
from toolcall_proxy.server.errors import ProxyError
from toolcall_proxy.server.metrics import ProxyMetrics
from toolcall_proxy.server.upstream import Upstream

WAIT = 2.0  # seconds any single expected event may take before the test fails
OK = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s"


def ok(body: bytes) -> bytes:
    return OK % (len(body), body)


# -- the upstream ------------------------------------------------------------------------------
@dataclass
class Seen:
    """One request as the upstream read it off the wire."""

    line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    connection: int

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


class Conn:
    """The upstream's side of one accepted connection."""

    def __init__(self, server: RawServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.index = server.accepted

    async def request(self) -> Seen | None:
        """The next request, or None when the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            assert error.partial == b""
            return None
        line, *lines = head[:-4].split(b"\r\n")
        headers = [(name.lower(), value.strip()) for name, _, value in (h.partition(b":") for h in lines)]
        length = int(dict(headers).get(b"content-length", b"0"))
        body = await self.reader.readexactly(length)
        seen = Seen(line, headers, body, self.index)
        self.server.requests.append(seen)
        self.server.changed()
        return seen

    async def sees_close(self) -> bool:
        """True once the client closed its side (a FIN or a reset), with nothing more sent."""
        try:
            rest = await self.reader.read()
        except ConnectionResetError:
            return True
        assert rest == b""
        return True

    def send(self, data: bytes) -> None:
        self.writer.write(data)


Script = Callable[[Conn], Awaitable[None]]


class RawServer:
    """Runs ``script`` for every accepted connection, and counts them."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.accepted = 0
        self.requests: list[Seen] = []
        self.closed_by_client: list[int] = []  # connections whose script saw the client go away
        self._change = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def changed(self) -> None:
        self._change.set()

    def note_closed(self, index: int) -> None:
        self.closed_by_client.append(index)
        self.changed()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Waits until ``condition()`` holds: it is checked again whenever a request or a close is seen."""
        async with asyncio.timeout(WAIT):
            while not condition():
                self._change.clear()
                await self._change.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = Conn(self, reader, writer)
        self.accepted += 1
        try:
            await self.script(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


async def answer_each(conn: Conn, body: bytes = b"hello") -> None:
    """A well-behaved keep-alive upstream: answers every request on the connection."""
    while await conn.request() is not None:
        conn.send(ok(body))


# -- the client side ---------------------------------------------------------------------------
class Sink:
    """Records what the pool delivers; ``finished`` resolves to "end" or the ProxyError."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.pieces: list[bytes] = []
        self.events: list[str] = []
        self.finished: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.piece = asyncio.Event()
        self.on_head: Callable[[], None] | None = None

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.events.append("head")
        self.status, self.headers = status, headers
        if self.on_head is not None:
            self.on_head()

    def body(self, data: bytes) -> None:
        self.events.append("body")
        self.pieces.append(data)
        self.piece.set()

    def end(self) -> None:
        self.events.append("end")
        self.finished.set_result("end")

    def fail(self, error: ProxyError) -> None:
        self.events.append("fail")
        self.finished.set_result(error)

    @property
    def body_bytes(self) -> bytes:
        return b"".join(self.pieces)

    async def outcome(self, within: float = WAIT) -> object:
        return await asyncio.wait_for(asyncio.shield(self.finished), within)


class Pools:
    """``await upstream_for(script_or_url, read_timeout=..., api_key=...)``: a started pool (on a new RawServer
    running ``script``, or on a URL); ``upstream_for.server`` is the last RawServer made."""

    def __init__(self) -> None:
        self.pools: list[Upstream] = []
        self.servers: list[RawServer] = []

    async def __call__(
        self, target: Script | str, *, read_timeout: float = 5.0, api_key: str | None = None
    ) -> Upstream:
        if isinstance(target, str):
            base = target
        else:
            self.servers.append(await RawServer(target).start())
            base = self.servers[-1].url
        pool = Upstream(base, timeout=read_timeout, api_key=api_key, metrics=ProxyMetrics())
        await pool.start()
        self.pools.append(pool)
        return pool

    @property
    def server(self) -> RawServer:
        return self.servers[-1]

    async def close(self) -> None:
        for pool in self.pools:
            await pool.close()
        for server in self.servers:
            await server.stop()


@pytest.fixture
async def upstream_for() -> AsyncIterator[Pools]:
    pools = Pools()
    yield pools
    await pools.close()


def errors_counted(pool: Upstream, reason: str) -> float:
    value = pool._metrics.registry.get_sample_value("toolmodel_proxy_upstream_errors_total", {"reason": reason})
    return value or 0.0


# -- connections -------------------------------------------------------------------------------
async def test_second_request_reuses_the_kept_alive_connection(upstream_for):
    pool = await upstream_for(answer_each)
    server = upstream_for.server
    assert await pool.fetch("GET", "/one", []) == (200, b"hello")
    assert await pool.fetch("GET", "/two", []) == (200, b"hello")
    assert server.accepted == 1
    assert [seen.line for seen in server.requests] == [b"GET /one HTTP/1.1", b"GET /two HTTP/1.1"]


async def test_request_on_an_idle_connection_the_server_just_closed_is_retried_on_a_fresh_one(upstream_for):
    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.request()
            conn.send(ok(b"first"))
            await conn.request()  # the server had already decided to retire this connection
            return  # closed without an answer
        await answer_each(conn, b"retried")

    pool = await upstream_for(script)
    server = upstream_for.server
    assert await pool.fetch("GET", "/one", []) == (200, b"first")
    assert await pool.fetch("POST", "/two", [], b"payload") == (200, b"retried")
    assert server.accepted == 2
    assert [(seen.line, seen.body, seen.connection) for seen in server.requests[1:]] == [
        (b"POST /two HTTP/1.1", b"payload", 0),
        (b"POST /two HTTP/1.1", b"payload", 1),
    ]
    assert errors_counted(pool, "broken_response") == 0


async def test_retry_happens_once_then_the_request_fails_with_502(upstream_for):
    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.request()
            conn.send(ok(b"first"))
        await conn.request()  # then closes without answering, on the reused and on the fresh connection

    pool = await upstream_for(script)
    server = upstream_for.server
    assert await pool.fetch("GET", "/one", []) == (200, b"first")
    with pytest.raises(ProxyError) as caught:
        await asyncio.wait_for(pool.fetch("GET", "/two", []), WAIT)
    assert (caught.value.status, caught.value.code) == (502, "upstream_broken")
    assert server.accepted == 2


async def test_fresh_connection_closed_without_an_answer_is_not_retried(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()

    pool = await upstream_for(script)
    with pytest.raises(ProxyError) as caught:
        await asyncio.wait_for(pool.fetch("GET", "/x", []), WAIT)
    assert (caught.value.status, caught.value.code) == (502, "upstream_broken")
    assert upstream_for.server.accepted == 1


async def test_connection_close_in_a_response_is_honoured_and_not_reused(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi")
        if await conn.sees_close():  # the server leaves it open: the client must be the one closing
            conn.server.note_closed(conn.index)

    pool = await upstream_for(script)
    server = upstream_for.server
    assert await pool.fetch("GET", "/one", []) == (200, b"hi")
    assert await pool.fetch("GET", "/two", []) == (200, b"hi")
    assert server.accepted == 2
    await server.until(lambda: len(server.closed_by_client) == 2)
    assert server.closed_by_client == [0, 1]


async def test_http_1_0_response_without_keep_alive_is_not_reused(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nhi")
        await conn.sees_close()

    pool = await upstream_for(script)
    assert await pool.fetch("GET", "/one", []) == (200, b"hi")
    assert await pool.fetch("GET", "/two", []) == (200, b"hi")
    assert upstream_for.server.accepted == 2


async def test_idle_connection_is_retired_after_the_pool_idle_time(upstream_for, monkeypatch):
    monkeypatch.setattr(upstream_module, "_POOL_IDLE_SECONDS", 0.1)
    retired = asyncio.Event()

    async def script(conn: Conn) -> None:
        await answer_each(conn)
        retired.set()

    pool = await upstream_for(script, read_timeout=0.3)  # the sweep runs every timeout / 4
    assert await pool.fetch("GET", "/one", []) == (200, b"hello")
    await asyncio.wait_for(retired.wait(), WAIT)
    assert await pool.fetch("GET", "/two", []) == (200, b"hello")
    assert upstream_for.server.accepted == 2


# -- what is sent ------------------------------------------------------------------------------
async def test_request_bytes_carry_host_headers_length_and_body(upstream_for):
    pool = await upstream_for(answer_each)
    server = upstream_for.server
    await pool.fetch("POST", "/v1/x?y=1", [(b"content-type", b"application/json")], b'{"a":1}')
    await pool.fetch("POST", "/v1/empty", [])
    await pool.fetch("GET", "/health", [])
    first, empty, get = server.requests
    port = server.url.rsplit(":", 1)[1].encode()
    assert first.line == b"POST /v1/x?y=1 HTTP/1.1"
    assert first.headers == [
        (b"host", b"127.0.0.1:" + port),
        (b"content-type", b"application/json"),
        (b"content-length", b"7"),
    ]
    assert first.body == b'{"a":1}'
    assert empty.header(b"content-length") == b"0"  # a POST always says how long its body is
    assert get.header(b"content-length") is None and get.header(b"authorization") is None


async def test_api_key_is_sent_as_a_bearer_authorization(upstream_for):
    pool = await upstream_for(answer_each, api_key="sk-test-123")
    await pool.fetch("GET", "/v1/models", [])
    assert upstream_for.server.requests[0].header(b"authorization") == b"Bearer sk-test-123"


async def test_base_url_path_prefix_is_put_before_every_target(upstream_for):
    server = await RawServer(answer_each).start()
    try:
        pool = await upstream_for(server.url + "/prefix/")
        await pool.fetch("GET", "/v1/models", [])
        await pool.fetch("POST", "/v1/completions?x=1", [], b"{}")
        assert [seen.line for seen in server.requests] == [
            b"GET /prefix/v1/models HTTP/1.1",
            b"POST /prefix/v1/completions?x=1 HTTP/1.1",
        ]
    finally:
        await server.stop()


async def test_post_json_sends_json_and_parses_the_answer(upstream_for):
    async def script(conn: Conn) -> None:
        seen = await conn.request()
        assert seen is not None
        conn.send(ok(b'{"echo": %s}' % seen.body))

    pool = await upstream_for(script)
    assert await pool.post_json("/v1/completions", {"prompt": "hi"}) == {"echo": {"prompt": "hi"}}
    seen = upstream_for.server.requests[0]
    assert seen.header(b"content-type") == b"application/json"


async def test_post_json_passes_on_an_upstream_error_answer(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        body = b'{"object":"error","message":"prompt too long","code":400}'
        conn.send(b"HTTP/1.1 400 Bad Request\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))

    pool = await upstream_for(script)
    with pytest.raises(ProxyError) as caught:
        await pool.post_json("/v1/completions", {})
    assert caught.value.status == 400 and "prompt too long" in caught.value.message


# -- failures ----------------------------------------------------------------------------------
async def test_server_that_is_not_listening_fails_with_503_that_keeps_its_address_private(upstream_for):
    base = f"http://127.0.0.1:{free_port()}"
    pool = await upstream_for(base)
    with pytest.raises(ProxyError) as caught:
        await asyncio.wait_for(pool.fetch("GET", "/health", []), WAIT)
    error = caught.value
    assert error.status == 503
    assert (error.type, error.code) == ("service_unavailable", "upstream_unreachable")
    assert "not reachable (Connection refused)" in error.message
    assert base.split("//")[1].split(":")[1] not in error.message  # not even its port
    assert errors_counted(pool, "unreachable") == 1


async def test_silent_server_fails_with_504_after_the_timeout(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.sees_close()  # never answers

    pool = await upstream_for(script, read_timeout=0.3)
    sink = Sink()
    started = time.monotonic()
    pool.request("GET", "/slow", [], b"", sink)
    error = await sink.outcome()
    elapsed = time.monotonic() - started
    assert isinstance(error, ProxyError)
    assert (error.status, error.code) == (504, "upstream_timeout")
    assert error.message == "the model server did not answer in time"
    assert 0.2 <= elapsed < 1.5  # the silence is measured in sweeps, a quarter of the timeout apart
    assert sink.events == ["fail"]
    assert errors_counted(pool, "timeout") == 1


async def test_server_falling_silent_mid_body_fails_with_504(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await conn.sees_close()

    pool = await upstream_for(script, read_timeout=0.3)
    sink = Sink()
    pool.request("GET", "/stream", [], b"", sink)
    error = await sink.outcome()
    assert isinstance(error, ProxyError) and error.status == 504
    assert sink.events == ["head", "body", "fail"] and sink.body_bytes == b"hello"


async def test_slow_but_steady_stream_outlasting_the_timeout_is_not_cut(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(6):  # 0.6 s in all, twice the timeout, but never silent for long
            await asyncio.sleep(0.1)
            conn.send(b"1\r\n.\r\n")
        conn.send(b"0\r\n\r\n")
        await answer_each(conn)

    pool = await upstream_for(script, read_timeout=0.3)
    assert await asyncio.wait_for(pool.fetch("GET", "/stream", []), WAIT) == (200, b"......")


async def test_response_cut_short_mid_body_fails_with_502(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")

    pool = await upstream_for(script)
    sink = Sink()
    pool.request("GET", "/x", [], b"", sink)
    error = await sink.outcome()
    assert isinstance(error, ProxyError)
    assert (error.status, error.type, error.code) == (502, "upstream_error", "upstream_broken")
    assert "broke off" in error.message
    assert sink.status == 200 and sink.body_bytes == b"only ten b"
    assert sink.events[-1] == "fail" and sink.events.count("fail") == 1
    assert errors_counted(pool, "broken_response") == 1


async def test_chunked_response_cut_short_fails_with_502(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")

    pool = await upstream_for(script)
    with pytest.raises(ProxyError) as caught:
        await asyncio.wait_for(pool.fetch("GET", "/x", []), WAIT)
    assert (caught.value.status, caught.value.code) == (502, "upstream_broken")


async def test_invalid_http_from_the_server_fails_with_502(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(b"this is not HTTP at all\r\n\r\n")
        await conn.sees_close()

    pool = await upstream_for(script)
    sink = Sink()
    pool.request("GET", "/x", [], b"", sink)
    error = await sink.outcome()
    assert isinstance(error, ProxyError)
    assert (error.status, error.code) == (502, "upstream_error")
    assert "invalid HTTP" in error.message
    assert sink.events == ["fail"]
    assert errors_counted(pool, "protocol") == 1


async def test_bytes_arriving_on_an_idle_connection_get_it_dropped(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(ok(b"one"))
        await asyncio.sleep(0.05)
        conn.send(b"HTTP/1.1 200 OK\r\n")  # an answer nobody asked for, on the idle connection
        if await conn.sees_close():
            conn.server.note_closed(conn.index)

    pool = await upstream_for(script)
    server = upstream_for.server
    assert await pool.fetch("GET", "/one", []) == (200, b"one")
    await server.until(lambda: bool(server.closed_by_client))
    assert server.closed_by_client == [0]
    assert await pool.fetch("GET", "/two", []) == (200, b"one")
    assert server.accepted == 2


async def test_invalid_bytes_after_the_end_of_a_response_get_the_connection_dropped(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\none, and more than the length said")
        await answer_each(conn)

    pool = await upstream_for(script)
    assert await pool.fetch("GET", "/one", []) == (200, b"one")
    assert await pool.fetch("GET", "/two", []) == (200, b"one")  # the answer's first part, again
    assert upstream_for.server.accepted == 2


async def test_partial_response_after_the_end_of_a_response_does_not_poison_the_next_request(upstream_for):
    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.request()
            conn.send(ok(b"one") + b"HTTP/1.1 200 OK\r\n")  # in the same write: a response nobody asked for
        await answer_each(conn)

    pool = await upstream_for(script)
    assert await pool.fetch("GET", "/one", []) == (200, b"one")
    assert await pool.fetch("GET", "/two", []) == (200, b"hello")


async def test_sink_error_fails_the_call_with_that_error_and_drops_the_connection(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(ok(b"body"))
        await conn.sees_close()
        conn.server.note_closed(conn.index)

    class Refusing(Sink):
        def body(self, data: bytes) -> None:
            raise ProxyError(400, "the relay refused the body")

    pool = await upstream_for(script)
    sink = Refusing()
    pool.request("GET", "/x", [], b"", sink)
    error = await sink.outcome()
    assert isinstance(error, ProxyError) and error.message == "the relay refused the body"
    assert sink.events == ["head", "fail"]
    server = upstream_for.server
    await server.until(lambda: bool(server.closed_by_client))
    assert server.closed_by_client == [0]


# -- streaming and control ---------------------------------------------------------------------
async def test_close_delimited_body_ends_with_the_whole_body(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nfirst part, ")
        await asyncio.sleep(0.02)
        conn.send(b"second part")
        # returning closes the connection: that is where the body ends

    pool = await upstream_for(script)
    sink = Sink()
    pool.request("GET", "/x", [], b"", sink)
    assert await sink.outcome() == "end"
    assert sink.body_bytes == b"first part, second part"
    assert sink.headers == [(b"content-type", b"text/plain")]
    assert sink.events[0] == "head" and sink.events[-1] == "end" and sink.events.count("end") == 1


async def test_response_without_a_body_by_status_ends_at_once_and_keeps_the_connection(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")  # no length, yet no body to wait for
        await answer_each(conn)

    pool = await upstream_for(script)
    assert await pool.fetch("DELETE", "/thing", []) == (204, b"")
    assert await pool.fetch("GET", "/again", []) == (200, b"hello")
    assert upstream_for.server.accepted == 1


async def test_chunked_response_arrives_in_pieces_before_its_end(upstream_for):
    go_on = asyncio.Event()

    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nalpha\r\n")
        await go_on.wait()
        conn.send(b"4\r\nbeta\r\n0\r\n\r\n")
        await answer_each(conn)

    pool = await upstream_for(script)
    sink = Sink()
    pool.request("GET", "/stream", [], b"", sink)
    await asyncio.wait_for(sink.piece.wait(), WAIT)
    assert sink.pieces == [b"alpha"] and not sink.finished.done()
    go_on.set()
    assert await sink.outcome() == "end"
    assert sink.pieces == [b"alpha", b"beta"]
    assert sink.status == 200 and (b"transfer-encoding", b"chunked") in sink.headers
    assert await pool.fetch("GET", "/again", []) == (200, b"hello")  # a framed body leaves it reusable
    assert upstream_for.server.accepted == 1


async def test_aborting_a_call_closes_the_upstream_connection(upstream_for):
    closed = asyncio.Event()

    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        if await conn.sees_close():
            closed.set()

    pool = await upstream_for(script)
    sink = Sink()
    call = pool.request("GET", "/stream", [], b"", sink)
    await asyncio.wait_for(sink.piece.wait(), WAIT)
    call.abort()
    await asyncio.wait_for(closed.wait(), WAIT)  # how vLLM learns to stop generating
    await asyncio.sleep(0.01)
    assert sink.events == ["head", "body"]  # the caller gave up: no end, no fail
    call.abort()  # twice is harmless


async def test_aborting_from_inside_the_sink_stops_delivery_at_once(upstream_for):
    closed = asyncio.Event()

    async def script(conn: Conn) -> None:
        await conn.request()
        chunks = b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n"
        conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunks)  # all in one read
        if await conn.sees_close():
            closed.set()

    class Stopping(Sink):
        def body(self, data: bytes) -> None:
            super().body(data)
            call.abort()  # e.g. the relay learnt that its client went away

    pool = await upstream_for(script)
    sink = Stopping()
    call = pool.request("GET", "/stream", [], b"", sink)
    await asyncio.wait_for(closed.wait(), WAIT)
    assert sink.events == ["head", "body"] and sink.pieces == [b"first"]


async def test_aborting_before_the_connection_is_made_sends_nothing(upstream_for):
    pool = await upstream_for(answer_each)
    server = upstream_for.server
    sink = Sink()
    pool.request("GET", "/never", [], b"", sink).abort()
    assert await pool.fetch("GET", "/after", []) == (200, b"hello")
    assert [seen.line for seen in server.requests] == [b"GET /after HTTP/1.1"]
    assert sink.events == []


async def test_cancelling_fetch_closes_the_upstream_connection(upstream_for):
    closed = asyncio.Event()

    async def script(conn: Conn) -> None:
        await conn.request()
        if await conn.sees_close():
            closed.set()

    pool = await upstream_for(script)
    fetching = asyncio.create_task(pool.fetch("GET", "/slow", []))
    await upstream_for.server.until(lambda: len(upstream_for.server.requests) == 1)
    fetching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetching
    await asyncio.wait_for(closed.wait(), WAIT)


async def test_pause_reading_stops_reading_and_resume_reading_continues(upstream_for):
    total = 16 * 1024 * 1024
    blocked = asyncio.Event()
    written = []

    async def script(conn: Conn) -> None:
        await conn.request()
        conn.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
        piece, sent = b"z" * 65536, 0
        while sent < total:
            conn.send(piece)
            sent += len(piece)
            written.append(sent)
            try:
                await asyncio.wait_for(asyncio.shield(conn.writer.drain()), 0.2)
            except TimeoutError:
                blocked.set()  # the client stopped reading: the server's writes block
                await conn.writer.drain()
        await answer_each(conn)

    pool = await upstream_for(script)
    sink = Sink()
    call = pool.request("GET", "/big", [], b"", sink)
    sink.on_head = call.pause_reading  # as the proxy does when its own client is slow
    await asyncio.wait_for(blocked.wait(), 3 * WAIT)
    received, sent = len(sink.body_bytes), written[-1]
    assert received < total and sent < total
    await asyncio.sleep(0.05)
    assert len(sink.body_bytes) == received  # nothing more is read while paused
    call.resume_reading()
    assert await sink.outcome(within=3 * WAIT) == "end"
    assert len(sink.body_bytes) == total
    assert await pool.fetch("GET", "/again", []) == (200, b"hello")  # released unpaused to the pool
    assert upstream_for.server.accepted == 1


async def test_call_paused_longer_than_the_timeout_is_not_failed_as_a_silent_upstream(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        conn.send(ok(b"0123456789"))
        await answer_each(conn)

    pool = await upstream_for(script, read_timeout=0.2)
    sink = Sink()
    call = pool.request("GET", "/x", [], b"", sink)
    call.pause_reading()  # the proxy's own client is slow, for longer than the timeout
    with contextlib.suppress(TimeoutError):
        await sink.outcome(within=0.5)
    call.resume_reading()
    assert await sink.outcome() == "end"
    assert sink.body_bytes == b"0123456789"


async def test_request_after_close_fails_with_503_and_opens_no_connection(upstream_for):
    pool = await upstream_for(answer_each)
    await pool.close()
    with pytest.raises(ProxyError) as caught:
        await asyncio.wait_for(pool.fetch("GET", "/late", []), WAIT)
    assert caught.value.status == 503
    assert upstream_for.server.accepted == 0


async def test_sink_failing_at_the_end_is_told_through_fail(upstream_for):
    class Refusing(Sink):
        def end(self) -> None:
            self.events.append("end")
            raise ProxyError(422, "the relay could not finish")

    pool = await upstream_for(answer_each)
    sink = Refusing()
    pool.request("GET", "/x", [], b"", sink)
    error = await sink.outcome()
    assert isinstance(error, ProxyError) and error.status == 422
    assert sink.events == ["head", "body", "end", "fail"]
    assert await pool.fetch("GET", "/again", []) == (200, b"hello")  # the response itself was whole
    assert upstream_for.server.accepted == 1


async def test_close_fails_calls_in_flight_on_fresh_connections(upstream_for):
    async def script(conn: Conn) -> None:
        await conn.request()
        await conn.sees_close()

    pool = await upstream_for(script)
    sink = Sink()
    pool.request("GET", "/x", [], b"", sink)
    await upstream_for.server.until(lambda: len(upstream_for.server.requests) == 1)
    await pool.close()
    error = await sink.outcome()
    assert isinstance(error, ProxyError) and error.status == 502
    assert upstream_for.server.accepted == 1


async def test_close_does_not_retry_calls_in_flight_on_reused_connections(upstream_for):
    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.request()
            conn.send(ok(b"first"))
        await conn.request()
        await conn.sees_close()  # never answers a second request

    pool = await upstream_for(script)
    assert await pool.fetch("GET", "/one", []) == (200, b"first")
    sink = Sink()
    pool.request("GET", "/two", [], b"", sink)
    await upstream_for.server.until(lambda: len(upstream_for.server.requests) == 2)
    await pool.close()
    with contextlib.suppress(TimeoutError):
        await sink.outcome(within=0.5)
    assert upstream_for.server.accepted == 1, "the closed pool sent the request again on a new connection"
    assert sink.finished.done(), "the call never finished"
    error = sink.finished.result()
    assert isinstance(error, ProxyError) and error.status == 502


async def test_out_of_file_descriptors_is_said_as_the_proxys_limit_not_the_engines(upstream_for, monkeypatch):
    import errno as errnos

    pool = await upstream_for(f"http://127.0.0.1:{free_port()}")
    loop = asyncio.get_running_loop()

    async def no_descriptors(*args: object, **kwargs: object) -> None:
        raise OSError(errnos.EMFILE, "Too many open files")

    monkeypatch.setattr(loop, "create_connection", no_descriptors)
    with pytest.raises(ProxyError) as caught:
        await asyncio.wait_for(pool.fetch("GET", "/health", []), WAIT)
    assert caught.value.status == 503 and caught.value.code == "proxy_out_of_file_descriptors"
    assert "no file descriptors left" in caught.value.message and "not reachable" not in caught.value.message
