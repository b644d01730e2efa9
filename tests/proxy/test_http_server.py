"""The proxy's HTTP/1.1 front end, seen from raw client sockets: the bytes on the wire are what is asserted."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import orjson
import pytest

from toolcall_proxy.server.errors import ProxyError
from toolcall_proxy.server.http import Exchange, HttpServer, Limits

WAIT = 2.0  # seconds any single expected event may take before the test fails
JSON = [(b"content-type", b"application/json")]


# -- the handler -------------------------------------------------------------------------------
def echo(exchange: Exchange) -> None:
    """Answers at once with what was asked."""
    request = exchange.request
    seen = {"method": request.method, "path": request.path, "body": request.body.decode("latin-1")}
    exchange.respond(200, orjson.dumps(seen), JSON)


def hold(exchange: Exchange) -> None:
    """Leaves the answer to the test, which takes the exchange from ``Recorder.next``."""


def hold_only(path: str) -> Callable[[Exchange], None]:
    """Holds the requests for ``path``, echoes the others."""
    return lambda exchange: hold(exchange) if exchange.request.path == path else echo(exchange)


class Recorder:
    """A handler that answers with ``answer`` and records every exchange it saw begin and complete."""

    def __init__(self, answer: Callable[[Exchange], None] = echo) -> None:
        self.answer = answer
        self.handled: list[Exchange] = []
        self.completions: list[Exchange] = []
        self._arrivals: asyncio.Queue[Exchange] = asyncio.Queue()
        self._completed: asyncio.Queue[Exchange] = asyncio.Queue()

    def handle(self, exchange: Exchange) -> None:
        self.handled.append(exchange)
        self._arrivals.put_nowait(exchange)
        self.answer(exchange)

    def completed(self, exchange: Exchange) -> None:
        self.completions.append(exchange)
        self._completed.put_nowait(exchange)

    async def next(self) -> Exchange:
        return await asyncio.wait_for(self._arrivals.get(), WAIT)

    async def next_completed(self) -> Exchange:
        return await asyncio.wait_for(self._completed.get(), WAIT)


class Flow:
    """Stands in for the upstream call that feeds a response."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.paused = asyncio.Event()
        self.resumed = asyncio.Event()

    def pause_reading(self) -> None:
        self.calls.append("pause")
        self.paused.set()

    def resume_reading(self) -> None:
        self.calls.append("resume")
        self.resumed.set()


def fill_until_paused(exchange: Exchange, flow: Flow) -> int:
    """Writes to a client that reads nothing until the server pauses ``flow``; returns the bytes written."""
    piece, written = b"x" * 65536, 0
    while not flow.paused.is_set():
        assert written < 256 * 1024 * 1024, f"no pause after {written} bytes to a client that does not read"
        exchange.write(piece)
        written += len(piece)
    return written


# -- the client --------------------------------------------------------------------------------
@dataclass
class Response:
    status_line: bytes
    headers: dict[bytes, bytes]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def json(self) -> dict:
        return orjson.loads(self.body)


class Client:
    """A raw socket to the server; responses are parsed here, strictly."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_exactly(self, size: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(size), WAIT)

    async def head(self) -> tuple[bytes, dict[bytes, bytes]]:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        status_line, *lines = raw[:-4].split(b"\r\n")
        headers: dict[bytes, bytes] = {}
        for line in lines:
            name, _, value = line.partition(b":")
            assert name.lower() not in headers, f"header {name!r} sent twice"
            headers[name.lower()] = value.strip()
        return status_line, headers

    async def chunk(self) -> bytes:
        """One chunk of a chunked body; b"" for the last one (whose trailer must be empty)."""
        size_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), WAIT)
        size = int(size_line[:-2], 16)
        data = await self.read_exactly(size + 2)
        assert data.endswith(b"\r\n")
        return data[:-2]

    async def response(self) -> Response:
        """The next final response: interim (1xx) ones before it are skipped, as HTTP clients must."""
        status_line, headers = await self.head()
        while status_line.startswith(b"HTTP/1.1 1"):
            status_line, headers = await self.head()
        if headers.get(b"transfer-encoding") == b"chunked":
            pieces = []
            while piece := await self.chunk():
                pieces.append(piece)
            return Response(status_line, headers, b"".join(pieces))
        if b"content-length" in headers:
            return Response(status_line, headers, await self.read_exactly(int(headers[b"content-length"])))
        return Response(status_line, headers, await asyncio.wait_for(self.reader.read(), WAIT))

    async def closed_by_server(self, within: float = WAIT) -> bool:
        """True once the server closed the connection with nothing more sent."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), within)
        except ConnectionResetError:
            return True
        assert rest == b"", f"unexpected bytes before the close: {rest[:200]!r}"
        return True

    def close(self) -> None:
        self.writer.close()


def get(path: str = "/", *, version: bytes = b"1.1", extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/%s\r\nhost: test\r\n%s\r\n" % (path.encode(), version, extra)


def post(path: str, body: bytes, *, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nhost: test\r\ncontent-length: %d\r\n%s\r\n%s" % (path.encode(), len(body), extra, body)


# -- fixtures ----------------------------------------------------------------------------------
DEFAULT_LIMITS = Limits()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., object]]:
    servers: list[HttpServer] = []

    async def start(
        handler: Recorder, *, max_body_bytes: int = 1024, keep_alive: float = 5.0, limits: Limits = DEFAULT_LIMITS
    ) -> HttpServer:
        server = HttpServer(handler, max_body_bytes=max_body_bytes, keep_alive=keep_alive, limits=limits)
        await server.listen("127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown(0)


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., object]]:
    clients: list[Client] = []

    async def open_client(server: HttpServer) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        clients.append(Client(reader, writer))
        return clients[-1]

    yield open_client
    for client in clients:
        client.close()
        with contextlib.suppress(Exception):
            await client.writer.wait_closed()


# -- requests ----------------------------------------------------------------------------------
async def test_request_fields_are_parsed_for_the_handler(serve, connect):
    handler = Recorder()
    client = await connect(await serve(handler))
    client.send(b"PUT /v1/x?a=1&b=%20 HTTP/1.1\r\nHost: test\r\nX-Thing: Value\r\ncontent-length: 3\r\n\r\nabc")
    assert (await client.response()).status == 200
    request = handler.handled[0].request
    assert (request.method, request.target) == ("PUT", "/v1/x?a=1&b=%20")
    assert (request.path, request.query) == ("/v1/x", "a=1&b=%20")
    assert request.headers == [(b"host", b"test"), (b"x-thing", b"Value"), (b"content-length", b"3")]
    assert request.header(b"x-thing") == b"Value" and request.header(b"missing") is None
    assert (request.body, request.http_version, request.keep_alive) == (b"abc", "1.1", True)


async def test_keep_alive_answers_two_requests_on_one_connection(serve, connect):
    handler = Recorder()
    server = await serve(handler)
    client = await connect(server)
    client.send(get("/one"))
    first = await client.response()
    client.send(get("/two"))
    second = await client.response()
    assert (first.status, first.json()["path"]) == (200, "/one")
    assert (second.status, second.json()["path"]) == (200, "/two")
    assert b"connection" not in first.headers and b"date" in first.headers
    assert first.headers[b"content-length"] == str(len(first.body)).encode()
    assert len(server.connections) == 1
    assert handler.completions == handler.handled and len(handler.handled) == 2


async def test_pipelined_requests_are_answered_in_order_one_at_a_time(serve, connect):
    loop = asyncio.get_running_loop()

    def answer(exchange: Exchange) -> None:
        if exchange.request.path == "/slow":  # answered later: the fast one must still come second
            loop.call_later(0.05, echo, exchange)
        else:
            echo(exchange)

    handler = Recorder(answer)
    client = await connect(await serve(handler))
    client.send(get("/slow") + post("/fast", b"payload"))
    first, second = await client.response(), await client.response()
    assert first.json()["path"] == "/slow"
    assert second.json() == {"method": "POST", "path": "/fast", "body": "payload"}
    assert [e.request.path for e in handler.completions] == ["/slow", "/fast"]


async def test_many_pipelined_requests_are_all_answered_in_order(serve, connect):
    loop = asyncio.get_running_loop()
    handler = Recorder(lambda exchange: loop.call_soon(echo, exchange))
    client = await connect(await serve(handler))
    client.send(b"".join(get(f"/{n}") for n in range(30)))  # past the queue depth that pauses reading
    paths = [(await client.response()).json()["path"] for _ in range(30)]
    assert paths == [f"/{n}" for n in range(30)]
    client.send(get("/after"))  # reading, paused while the queue was long, has resumed
    assert (await client.response()).json()["path"] == "/after"


async def test_chunked_request_body_is_delivered_whole(serve, connect):
    handler = Recorder()
    client = await connect(await serve(handler))
    client.send(b"POST /c HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
    await asyncio.sleep(0.02)  # the body comes in pieces
    client.send(b"1\r\n \r\n")
    await asyncio.sleep(0.02)
    client.send(b"5\r\nworld\r\n0\r\n\r\n")
    response = await client.response()
    assert response.json()["body"] == "hello world"
    assert len(handler.handled) == 1


async def test_expect_100_continue_is_answered_before_the_body_is_sent(serve, connect):
    client = await connect(await serve(Recorder()))
    client.send(b"POST /e HTTP/1.1\r\nhost: test\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
    assert await client.read_exactly(len(b"HTTP/1.1 100 Continue\r\n\r\n")) == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.send(b"data")
    response = await client.response()
    assert (response.status, response.json()["body"]) == (200, "data")


async def test_expect_100_continue_behind_a_response_in_progress_does_not_interleave(serve, connect):
    handler = Recorder(hold_only("/stream"))
    client = await connect(await serve(handler))
    expecting = b"POST /e HTTP/1.1\r\nhost: test\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n"
    client.send(get("/stream") + expecting)  # the second head is read while the first is being answered
    exchange = await handler.next()
    exchange.start(200, [])
    exchange.write(b"one")
    exchange.write(b"two")
    exchange.end()
    status_line, _ = await client.head()
    assert status_line == b"HTTP/1.1 200 OK"
    assert [await client.chunk(), await client.chunk(), await client.chunk()] == [b"one", b"two", b""]
    assert await client.read_exactly(len(b"HTTP/1.1 100 Continue\r\n\r\n")) == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.send(b"data")
    assert (await client.response()).json()["body"] == "data"


async def test_expect_100_continue_whose_body_came_anyway_gets_no_late_continue(serve, connect):
    handler = Recorder(hold_only("/stream"))
    client = await connect(await serve(handler))
    expecting = b"POST /e HTTP/1.1\r\nhost: test\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\ndata"
    client.send(get("/stream") + expecting)  # the second request, body and all, waits behind the first
    exchange = await handler.next()
    exchange.respond(200, b"first", [])
    assert (await client.response()).body == b"first"
    assert (await client.response()).json()["body"] == "data"
    client.send(get("/third"))
    status_line, _ = await client.head()
    assert status_line == b"HTTP/1.1 200 OK"


async def test_content_length_over_the_limit_is_refused_with_413_before_the_body(serve, connect):
    handler = Recorder()
    client = await connect(await serve(handler, max_body_bytes=100))
    client.send(b"POST /big HTTP/1.1\r\nhost: test\r\ncontent-length: 101\r\n\r\n")  # no body sent
    response = await client.response()
    assert response.status == 413
    assert response.headers[b"content-type"] == b"application/json"
    assert response.headers[b"connection"] == b"close"
    error = response.json()["error"]
    assert "100 bytes" in error["message"] and "--max-body-bytes" in error["message"]
    assert error["code"] == "request_too_large"
    assert await client.closed_by_server()
    assert handler.handled == []


async def test_content_length_at_the_limit_is_accepted(serve, connect):
    client = await connect(await serve(Recorder(), max_body_bytes=100))
    client.send(post("/edge", b"x" * 100))
    assert (await client.response()).json()["body"] == "x" * 100


async def test_expect_100_continue_over_the_limit_gets_413_and_no_continue(serve, connect):
    handler = Recorder()
    client = await connect(await serve(handler, max_body_bytes=100))
    client.send(b"POST /big HTTP/1.1\r\nhost: test\r\ncontent-length: 5000\r\nexpect: 100-continue\r\n\r\n")
    response = await client.response()
    assert response.status == 413
    assert await client.closed_by_server()
    assert handler.handled == []


async def test_chunked_body_growing_over_the_limit_is_refused_with_413(serve, connect):
    handler = Recorder()
    client = await connect(await serve(handler, max_body_bytes=100))
    client.send(b"POST /big HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n")
    client.send(b"3c\r\n%s\r\n" % (b"a" * 60))
    client.send(b"3c\r\n%s\r\n" % (b"b" * 60))
    response = await client.response()
    assert response.status == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert await client.closed_by_server()
    assert handler.handled == []


async def test_malformed_request_gets_400_and_the_connection_closes(serve, connect):
    handler = Recorder()
    client = await connect(await serve(handler))
    client.send(b"GET / HTTP/1.1\r\nno colon in this header\r\n\r\n")
    response = await client.response()
    assert response.status == 400
    assert response.headers[b"connection"] == b"close"
    error = response.json()["error"]
    assert error["code"] == "invalid_http" and "malformed HTTP request" in error["message"]
    assert await client.closed_by_server()
    assert handler.handled == []


async def test_handler_error_answers_500_and_the_connection_stays_usable(serve, connect, caplog):
    def answer(exchange: Exchange) -> None:
        if exchange.request.path == "/boom":
            raise RuntimeError("handler bug")
        echo(exchange)

    client = await connect(await serve(Recorder(answer)))
    client.send(get("/boom"))
    response = await client.response()
    assert response.status == 500 and response.json()["error"]["message"] == "internal error in the proxy"
    client.send(get("/after"))
    assert (await client.response()).json()["path"] == "/after"
    assert "handler bug" in caplog.text


async def test_upgrade_request_is_answered_then_the_connection_closes(serve, connect):
    handler = Recorder()
    client = await connect(await serve(handler))
    client.send(get("/ws", extra=b"connection: upgrade\r\nupgrade: websocket\r\n") + b"\x81\x05hello")
    response = await client.response()
    assert (response.status, response.json()["path"]) == (200, "/ws")
    assert await client.closed_by_server()
    assert len(handler.handled) == 1


# -- responses ---------------------------------------------------------------------------------
async def test_connection_close_request_is_answered_then_the_connection_closes(serve, connect):
    client = await connect(await serve(Recorder()))
    client.send(get("/last", extra=b"connection: close\r\n"))
    response = await client.response()
    assert response.json()["path"] == "/last" and response.headers[b"connection"] == b"close"
    assert await client.closed_by_server()


async def test_head_gets_the_headers_with_content_length_and_no_body(serve, connect):
    client = await connect(await serve(Recorder()))
    client.send(b"HEAD /h HTTP/1.1\r\nhost: test\r\n\r\n" + get("/next"))  # pipelined: no stray body between
    status_line, headers = await client.head()
    assert status_line == b"HTTP/1.1 200 OK"
    assert int(headers[b"content-length"]) == len(orjson.dumps({"method": "HEAD", "path": "/h", "body": ""}))
    following = await client.response()  # would fail to parse if HEAD's body had been sent
    assert following.json()["path"] == "/next"


async def test_head_of_a_streamed_response_sends_no_chunks(serve, connect):
    def answer(exchange: Exchange) -> None:
        exchange.start(200, [(b"content-type", b"text/plain")])
        exchange.write(b"not for HEAD")
        exchange.end(b"nor this")

    client = await connect(await serve(Recorder(answer)))
    client.send(b"HEAD /h HTTP/1.1\r\nhost: test\r\n\r\n")
    status_line, headers = await client.head()
    assert status_line == b"HTTP/1.1 200 OK" and headers[b"transfer-encoding"] == b"chunked"
    client.send(b"HEAD /again HTTP/1.1\r\nhost: test\r\n\r\n")
    status_line, _ = await client.head()  # the next bytes are the next answer: no chunks in between
    assert status_line == b"HTTP/1.1 200 OK"


async def test_http_1_0_streamed_response_is_not_chunked_and_ends_with_the_close(serve, connect):
    def answer(exchange: Exchange) -> None:
        exchange.start(200, [(b"content-type", b"text/plain")])
        exchange.write(b"part one, ")
        exchange.end(b"part two")

    handler = Recorder(answer)
    client = await connect(await serve(handler))
    client.send(get("/old", version=b"1.0"))
    response = await client.response()  # no length and no chunks: the body runs to the close
    assert b"transfer-encoding" not in response.headers and b"content-length" not in response.headers
    assert response.headers[b"connection"] == b"close"
    assert response.body == b"part one, part two"
    assert handler.handled[0].request.http_version == "1.0"


async def test_http_1_0_keep_alive_client_gets_a_streamed_body_ended_by_the_close(serve, connect):
    def answer(exchange: Exchange) -> None:
        exchange.start(200, [])
        exchange.end(b"streamed")

    client = await connect(await serve(Recorder(answer)))
    client.send(get("/old", version=b"1.0", extra=b"connection: keep-alive\r\n"))
    response = await client.response()  # a body without a length can only end with the connection
    assert response.headers[b"connection"] == b"close" and response.body == b"streamed"


async def test_http_1_0_keep_alive_client_keeps_the_connection_for_sized_answers(serve, connect):
    client = await connect(await serve(Recorder()))
    client.send(get("/one", version=b"1.0", extra=b"connection: keep-alive\r\n"))
    first = await client.response()
    assert first.json()["path"] == "/one"
    assert first.headers[b"connection"] == b"keep-alive"  # an HTTP/1.0 client keeps it only when told
    client.send(get("/two", version=b"1.0", extra=b"connection: keep-alive\r\n"))
    assert (await client.response()).json()["path"] == "/two"


async def test_http_1_0_sized_response_closes_the_connection(serve, connect):
    client = await connect(await serve(Recorder()))
    client.send(get("/old", version=b"1.0"))
    response = await client.response()
    assert response.json()["path"] == "/old" and response.headers[b"connection"] == b"close"
    assert await client.closed_by_server()


async def test_streamed_response_is_chunked_and_chunks_arrive_before_the_end(serve, connect):
    handler = Recorder(hold_only("/stream"))
    client = await connect(await serve(handler))
    client.send(get("/stream"))
    exchange = await handler.next()
    exchange.start(200, [(b"content-type", b"text/event-stream")])
    exchange.write(b"data: 1\n\n")
    status_line, headers = await client.head()
    assert status_line == b"HTTP/1.1 200 OK"
    assert headers == {b"content-type": b"text/event-stream", b"transfer-encoding": b"chunked"}
    assert await client.read_exactly(len(b"9\r\ndata: 1\n\n\r\n")) == b"9\r\ndata: 1\n\n\r\n"
    assert not exchange.ended and handler.completions == []
    exchange.write(b"")  # nothing to send: must not write an empty chunk, which would end the body
    exchange.write(b"data: 2\n\n")
    exchange.end(b"end")
    assert await client.read_exactly(len(b"9\r\ndata: 2\n\n\r\n3\r\nend\r\n0\r\n\r\n")) == (
        b"9\r\ndata: 2\n\n\r\n3\r\nend\r\n0\r\n\r\n"
    )
    assert await handler.next_completed() is exchange
    client.send(get("/after"))  # the connection is still usable
    assert (await client.response()).status == 200


async def test_client_disconnect_mid_response_calls_on_disconnect_and_completed(serve, connect):
    handler = Recorder(hold)
    client = await connect(await serve(handler))
    client.send(get("/stream"))
    exchange = await handler.next()
    gone = asyncio.Event()
    exchange.on_disconnect = gone.set
    exchange.start(200, [])
    exchange.write(b"partial")
    await client.head()
    client.close()
    await asyncio.wait_for(gone.wait(), WAIT)
    assert await handler.next_completed() is exchange
    assert exchange.closed and not exchange.ended
    exchange.write(b"too late")  # the handler may still be writing: harmless, and no second completion
    exchange.end()
    await asyncio.sleep(0.01)
    assert handler.completions == [exchange]


async def test_abort_closes_the_connection_without_finishing_the_response(serve, connect):
    handler = Recorder(hold)
    client = await connect(await serve(handler))
    client.send(get("/stream"))
    exchange = await handler.next()
    exchange.start(200, [])
    exchange.write(b"partial")
    await client.head()
    exchange.abort()
    assert handler.completions == [exchange] and exchange.ended
    with contextlib.suppress(ConnectionResetError):
        rest = await asyncio.wait_for(client.reader.read(), WAIT)
        assert not rest.endswith(b"0\r\n\r\n")  # never the chunked terminator: the client sees a cut-off body


# -- timers and flow ---------------------------------------------------------------------------
async def test_idle_keep_alive_connection_is_closed_after_the_timeout(serve, connect):
    client = await connect(await serve(Recorder(), keep_alive=0.2))
    client.send(get("/"))
    await client.response()
    idle_from = time.monotonic()
    assert await client.closed_by_server(within=1.5)
    assert time.monotonic() - idle_from >= 0.15


async def test_connection_that_never_sends_a_request_is_closed_after_the_timeout(serve, connect):
    client = await connect(await serve(Recorder(), keep_alive=0.2))
    assert await client.closed_by_server(within=1.5)


async def test_response_slower_than_the_keep_alive_timeout_is_not_cut_off(serve, connect):
    loop = asyncio.get_running_loop()
    handler = Recorder(lambda exchange: loop.call_later(0.4, echo, exchange))
    client = await connect(await serve(handler, keep_alive=0.2))
    client.send(get("/slow"))
    assert (await client.response()).json()["path"] == "/slow"


async def test_slow_reader_pauses_the_flow_and_resumes_it_once_it_reads(serve, connect):
    handler = Recorder(hold)
    client = await connect(await serve(handler))
    client.send(get("/big"))
    exchange = await handler.next()
    flow = Flow()
    exchange.flow = flow
    exchange.start(200, [])
    written = fill_until_paused(exchange, flow)
    assert flow.calls == ["pause"]
    await client.head()
    body = 0
    while not flow.resumed.is_set():  # reading drains the server's buffer
        size_line = await asyncio.wait_for(client.reader.readuntil(b"\r\n"), WAIT)
        size = int(size_line[:-2], 16)
        body += len(await client.read_exactly(size + 2)) - 2
    assert flow.calls == ["pause", "resume"]
    exchange.end()
    while piece := await client.chunk():
        body += len(piece)
    assert body == written


async def test_response_started_while_the_client_is_still_not_reading_pauses_its_flow(serve, connect):
    handler = Recorder(hold)
    client = await connect(await serve(handler))
    client.send(get("/big") + get("/next"))  # pipelined; the client then reads nothing
    first = await handler.next()
    flow = Flow()
    first.flow = flow
    first.start(200, [])
    fill_until_paused(first, flow)
    first.end()
    second = await handler.next()
    second_flow = Flow()
    second.flow = second_flow  # as the proxy does, before the upstream answers
    assert second_flow.calls == ["pause"]
    second.start(200, [])
    second.write(b"y" * 65536)
    while not second_flow.resumed.is_set():  # the client catches up at last
        await asyncio.wait_for(client.reader.read(1 << 20), WAIT)
    assert second_flow.calls == ["pause", "resume"]


async def test_shutdown_finishes_answers_in_progress_and_closes_idle_connections(serve, connect):
    handler = Recorder(hold_only("/busy"))
    server = await serve(handler)
    idle, busy = await connect(server), await connect(server)
    idle.send(get("/quick"))
    await idle.response()
    busy.send(get("/busy"))
    exchange = await handler.next()
    while exchange.request.path != "/busy":
        exchange = await handler.next()
    port = server.port
    stopping = asyncio.create_task(server.shutdown(grace=5.0))
    assert await idle.closed_by_server()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)  # no longer listening
    assert not stopping.done()
    exchange.respond(200, b"finished", [])
    response = await busy.response()
    assert (response.status, response.body) == (200, b"finished")
    assert await busy.closed_by_server()
    await asyncio.wait_for(stopping, WAIT)  # long before the grace ran out


async def test_shutdown_closes_answers_still_in_progress_when_the_grace_runs_out(serve, connect):
    handler = Recorder(hold)
    server = await serve(handler)
    client = await connect(server)
    client.send(get("/never"))
    exchange = await handler.next()
    gone = asyncio.Event()
    exchange.on_disconnect = gone.set
    started = time.monotonic()
    await asyncio.wait_for(server.shutdown(grace=0.2), WAIT)
    assert time.monotonic() - started >= 0.15
    assert await client.closed_by_server()
    await asyncio.wait_for(gone.wait(), WAIT)
    assert exchange.closed and handler.completions == [exchange]


# -- what is refused: only what was checked goes on (RFC 9110, 9112) ------------------------------
@pytest.mark.parametrize(
    "request_head",
    [
        b"GET / HTTP/1.1\r\nhost: test\r\nx-a: one\r\n two\r\n\r\n",  # obs-fold: a line break in a value
        b"GET / HTTP/1.1\r\nhost: test\r\nx-a: one\x00two\r\n\r\n",  # NUL in a value
        b"GET /a\rb HTTP/1.1\r\nhost: test\r\n\r\n",  # CR in the target
        b"GET /a\x00b HTTP/1.1\r\nhost: test\r\n\r\n",  # NUL in the target
        # A line break inside the target cuts the request line short: llhttp reads HTTP/0.9 and
        # would take the rest of the target as a header.
        b"GET /v1/models\nx-injected: 1 HTTP/1.1\r\nhost: test\r\n\r\n",
        b"GET /v1/models\r\nx-injected: 1 HTTP/1.1\r\nhost: test\r\n\r\n",
    ],
    ids=["folded value", "NUL in a value", "CR in the target", "NUL in the target", "LF in the target", "CRLF in it"],
)
async def test_a_control_character_in_the_target_or_a_value_is_a_400_never_handled(serve, connect, request_head):
    handler = Recorder()
    client = await connect(await serve(handler))
    client.send(request_head)
    response = await client.response()
    assert response.status == 400
    assert await client.closed_by_server()
    assert handler.handled == []


async def test_too_many_or_too_large_headers_are_a_431_and_a_long_target_a_414(serve, connect):
    handler = Recorder()
    server = await serve(handler, limits=Limits(max_header_bytes=4096, max_headers=20))
    many = await connect(server)
    many.send(get("/", extra=b"".join(b"x-%d: v\r\n" % i for i in range(25))))
    assert (await many.response()).status == 431
    large = await connect(server)
    large.send(get("/", extra=b"x-big: " + b"v" * 5000 + b"\r\n"))
    assert (await large.response()).status == 431
    long_target = await connect(server)
    long_target.send(get("/" + "a" * 5000))
    assert (await long_target.response()).status == 414
    assert handler.handled == []


async def test_a_header_line_that_never_ends_is_cut_a_read_past_the_limit(serve, connect):
    # httptools gives a header over only when its line ends: the front end counts what arrives.
    handler = Recorder()
    client = await connect(await serve(handler, limits=Limits(max_header_bytes=4096)))
    client.send(b"GET / HTTP/1.1\r\nhost: test\r\nx-big: " + b"v" * (3 << 20))
    assert (await client.response()).status == 431
    assert await client.closed_by_server()
    assert handler.handled == []


async def test_a_body_malformed_after_the_headers_were_refused_gets_one_answer(serve, connect, caplog):
    handler = Recorder()
    server = await serve(handler)
    server.admit = lambda path, headers: ProxyError(401, "no key", code="invalid_api_key")
    client = await connect(server)
    client.send(b"POST /t HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n")
    assert (await client.response()).status == 401
    assert await client.closed_by_server()
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_trailer_fields_of_a_chunked_body_never_become_headers(serve, connect):
    handler = Recorder()
    client = await connect(await serve(handler))
    client.send(
        b"POST /t HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nx-injected: yes\r\nauthorization: Bearer stolen\r\n\r\n"
    )
    assert (await client.response()).status == 200
    request = handler.handled[0].request
    assert request.body == b"abc"
    assert [name for name, _ in request.headers] == [b"host", b"transfer-encoding"]


async def trickle(client: Client) -> Response:
    """Sends a byte every 0.1 s until the server answers."""
    answer = asyncio.ensure_future(client.response())
    for _ in range(30):
        await asyncio.sleep(0.1)
        if answer.done():
            break
        client.send(b"x")
    return await answer


async def test_headers_trickling_in_are_cut_off_at_the_total_deadline(serve, connect):
    client = await connect(await serve(Recorder(), limits=Limits(header_timeout=0.4)))
    started = time.monotonic()
    client.send(b"GET / HTTP/1.1\r\n")
    response = await trickle(client)  # a byte every 0.1 s: the keep-alive timer never ran out this way before
    assert response.status == 408 and "headers took longer than 0.4 s" in response.json()["error"]["message"]
    assert time.monotonic() - started < 1.5


async def test_a_body_trickling_in_is_cut_off_at_the_total_deadline(serve, connect):
    client = await connect(await serve(Recorder(), limits=Limits(header_timeout=0.2, body_timeout=0.3)))
    client.send(b"POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 100\r\n\r\n")
    response = await trickle(client)
    assert response.status == 408 and "body took longer than 0.3 s" in response.json()["error"]["message"]


async def test_connections_past_the_cap_are_told_so_and_closed(serve, connect):
    server = await serve(Recorder(), limits=Limits(max_connections=2))
    first, second = await connect(server), await connect(server)
    await asyncio.sleep(0.05)
    third = await connect(server)
    response = await third.response()
    assert response.status == 503 and "--max-connections" in response.json()["error"]["message"]
    for client in (first, second):  # those within the cap are served
        client.send(get("/"))
        assert (await client.response()).status == 200
