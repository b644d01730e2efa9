"""The proxy's HTTP/1.1 front end: one asyncio protocol per client connection, parsed by httptools.

Why not an ASGI server: a relayed chunk through uvicorn costs a message dict, an awaited ``send``
and a task switch, and each request a task and a scope. Here a request is handed over whole
(bodies are small and the proxy needs them whole anyway) and the response is written straight
to the transport, so a relayed upstream chunk is one callback and one write, as in nginx.

What it implements: keep-alive with an idle timeout, pipelined requests (answered in order),
chunked and sized request bodies with a size limit (413 before the body is read), ``Expect:
100-continue``, HEAD, HTTP/1.0 clients, backpressure (a slow client pauses its upstream), and
client disconnects (the handler is told at once, so it can cancel the upstream request).

What it refuses, so that nothing it forwards is other than what it checked and no client holds
it: a request line and headers over ``max_header_bytes`` or ``max_headers`` (414, 431, as nginx),
a target or header value holding CR, LF or NUL (400: RFC 9110 5.5 forbids them, and a bare LF
would start a header of its own upstream), a request line without its HTTP/1.x version (400:
an HTTP/0.9 line followed by headers is a target cut short by a line break), headers that take
longer than ``header_timeout`` or a body longer than ``body_timeout`` in total, however slowly
it trickles (408), and connections past ``max_connections`` (503, closed). Chunked trailer fields
are read and dropped, never made headers (RFC 9112 7.1.2).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Protocol, cast

import httptools

from .errors import ProxyError

__all__ = ["Admission", "Exchange", "FlowControl", "Handler", "Headers", "HttpServer", "Limits", "Request"]

log = logging.getLogger("toolmodel.proxy")

Headers = list[tuple[bytes, bytes]]


class _StopParsing(Exception):
    """Raised by a parser callback once the request is refused: httptools stops there, instead of
    calling back for each of the (say) 10,000 header lines still in the buffer."""


_HEAD_READ_SLACK = 1 << 20  # more than one socket read (uvloop reads up to 256 KiB)
_FORBIDDEN_IN_FIELDS = re.compile(rb"[\r\n\x00]")
_LINGER_SECONDS = 2.0
_KEEP_ALIVE_SECONDS = 75.0  # longer than the usual client pool's idle time, so the client closes first
_REASONS = {
    100: b"Continue",
    200: b"OK",
    201: b"Created",
    204: b"No Content",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    422: b"Unprocessable Content",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


class Request:
    """One parsed request; its body is complete when the handler sees it."""

    __slots__ = ("body", "headers", "http_version", "keep_alive", "method", "path", "query", "target")

    def __init__(self, method: str, target: bytes, headers: Headers, body: bytes, http_version: str) -> None:
        url = httptools.parse_url(target)
        self.method = method
        self.target = target.decode("latin-1")  # path and query, as the client sent them
        self.path = url.path.decode("latin-1")
        self.query = (url.query or b"").decode("latin-1")
        self.headers = headers  # lower-case names, in order
        self.body = body
        self.http_version = http_version
        self.keep_alive = True

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class FlowControl(Protocol):
    """What feeds a response (the upstream connection): paused while the client reads slowly."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Exchange:
    """Writes one response. ``respond`` for a whole answer; ``start``, ``write`` and ``end`` to stream."""

    __slots__ = (
        "_chunked",
        "_connection",
        "_flow",
        "_head_only",
        "closed",
        "ended",
        "kind",
        "on_disconnect",
        "request",
        "started",
        "started_at",
        "status",
    )

    def __init__(self, connection: _ClientConnection, request: Request) -> None:
        self._connection = connection
        self.request = request
        self._head_only = request.method == "HEAD"
        self._chunked = False
        self.started = False
        self.ended = False
        self.closed = False  # the client went away before the end
        self.status = 0
        self.kind = "passthrough"  # route label for metrics, set by the handler
        self.started_at = time.perf_counter()
        self.on_disconnect: Callable[[], object] | None = None
        self._flow: FlowControl | None = None

    @property
    def flow(self) -> FlowControl | None:
        return self._flow

    @flow.setter
    def flow(self, flow: FlowControl | None) -> None:
        """What feeds this response: paused now if the client is already behind, and whenever it falls behind."""
        self._flow = flow
        if flow is not None and self._connection.write_paused:
            flow.pause_reading()

    def start(self, status: int, headers: Headers, *, length: int | None = None) -> None:
        """Sends the status line and headers; without ``length`` the body is chunked."""
        self.started, self.status = True, status
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Status"))]
        lines.extend(b"%s: %s\r\n" % pair for pair in headers)
        if length is not None:
            lines.append(b"content-length: %d\r\n" % length)
        elif self.request.http_version == "1.1":
            self._chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        else:
            self.request.keep_alive = False  # an HTTP/1.0 body without a length ends with the connection
        if not self.request.keep_alive:
            lines.append(b"connection: close\r\n")
        elif self.request.http_version == "1.0":
            lines.append(b"connection: keep-alive\r\n")  # HTTP/1.0 keeps a connection only when told
        lines.append(b"\r\n")
        self._connection.write(b"".join(lines))

    def write(self, data: bytes) -> None:
        if not data or self._head_only or self.closed:
            return
        self._connection.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)

    def end(self, data: bytes = b"") -> None:
        if self.ended:
            return
        self.ended = True
        if not self.closed and not self._head_only:
            if self._chunked:
                self._connection.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(data), data) if data else b"0\r\n\r\n")
            elif data:
                self._connection.write(data)
        self._connection.exchange_done(self)

    def abort(self) -> None:
        """Ends a response that cannot be completed: the client sees the connection close."""
        if self.ended:
            return
        self.ended = True
        self.request.keep_alive = False
        self._connection.abort()
        self._connection.exchange_done(self)

    def respond(self, status: int, body: bytes, headers: Headers) -> None:
        """A whole response, generated here: with the ``date`` an origin server must send."""
        self.start(status, [*headers, (b"date", _http_date())], length=len(body))
        self.end(body)

    def client_gone(self) -> None:
        if self.ended:
            return
        self.closed = True
        if self.on_disconnect is not None:
            self.on_disconnect()


# (path, headers) -> why the request is refused before its body is read, or None
Admission = Callable[[bytes, "Headers"], ProxyError | None]


class Handler(Protocol):
    def handle(self, exchange: Exchange) -> None:
        """Answers through ``exchange``, now or later; must end it (``respond`` or ``end``)."""

    def completed(self, exchange: Exchange) -> None:
        """Called once per exchange when it ended or the client went away."""


class _ClientConnection(asyncio.Protocol):
    """One client connection: parses requests, runs them one at a time, in order."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = server.loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._size = 0
        self._head_size = 0  # bytes of the request line and headers read so far
        self._head_done = False
        self._open_head_bytes = 0  # bytes received while a request's head was unfinished
        self.reading_since: float | None = None  # a request is arriving: since when
        self._rejected = False  # answered before its body arrived; the connection closes
        self._queue: deque[Request] = deque()
        self._current: Exchange | None = None
        self.quiet_since = self._loop.time()  # when it last became idle or got part of a request
        self._continue_owed = False  # the request being read asked for "100 Continue" and has not had it
        self._paused_reading = False
        self.write_paused = False

    # -- transport callbacks -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        limit = self._server.limits.max_connections
        if len(self._server.connections) >= limit:
            self._reject(503, f"the proxy has {limit} connections open, its limit (--max-connections); retry", "busy")
            return
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._rejected = True  # protocol switches are not offered: answer what was asked, then close
            if self._current is None:
                self.close()
        except httptools.HttpParserCallbackError:
            if not self._rejected:
                raise  # a callback's own failure, not a refusal
            return
        except httptools.HttpParserError as error:
            self._reject(400, f"malformed HTTP request: {error}", "invalid_http")
            return
        if not self._head_done:
            # httptools hands a header over only once its line has ended, buffering it until then:
            # without this count a 64 MB header line would be read whole before on_header saw it.
            # A read may also hold the end of the previous request, hence the slack.
            self._open_head_bytes += len(data)
            limits = self._server.limits
            if self._open_head_bytes > limits.max_header_bytes + _HEAD_READ_SLACK:
                self._reject(431, f"the request's headers exceed {limits.max_header_bytes} bytes", "headers_too_large")

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        self._queue.clear()
        current, self._current = self._current, None
        if current is not None:
            current.client_gone()
            self._server.handler.completed(current)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._current is not None and self._current.flow is not None:
            self._current.flow.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._current is not None and self._current.flow is not None:
            self._current.flow.resume_reading()

    # -- parser callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size = b"", [], [], 0
        self._head_size, self._head_done = 0, False
        self.reading_since = self._loop.time()
        self._continue_owed = False

    def on_url(self, url: bytes) -> None:
        if self._rejected:
            raise _StopParsing
        self._url += url
        self._head_size += len(url)
        limit = self._server.limits.max_header_bytes
        if len(self._url) > limit:
            self._reject(414, f"the request target is longer than {limit} bytes", "uri_too_long")
            raise _StopParsing
        if _FORBIDDEN_IN_FIELDS.search(url):
            self._reject(400, "the request target holds a control character (CR, LF, NUL)", "invalid_http")
            raise _StopParsing

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._rejected:
            raise _StopParsing
        if self._head_done:
            return  # a chunked body's trailer fields: read and dropped, never headers
        limits = self._server.limits
        self._head_size += len(name) + len(value) + 4
        if self._head_size > limits.max_header_bytes or len(self._headers) >= limits.max_headers:
            self._reject(
                431,
                f"the request's headers exceed {limits.max_headers} fields or {limits.max_header_bytes} bytes",
                "headers_too_large",
            )
            raise _StopParsing
        if _FORBIDDEN_IN_FIELDS.search(value):
            self._reject(
                400, f"header {name.decode('latin-1')!r} holds a control character (CR, LF, NUL)", "invalid_http"
            )
            raise _StopParsing
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._head_done, self._open_head_bytes = True, 0
        if self._rejected:
            raise _StopParsing
        if self._parser.get_http_version() not in ("1.1", "1.0"):
            # llhttp reads a request line without its version (cut short by a bare LF or a CR LF
            # inside the target) as HTTP/0.9 and what follows as headers: an injected header.
            self._reject(400, "the request line must end with ' HTTP/1.1' (CR LF ends it)", "invalid_http")
            raise _StopParsing
        admit = self._server.admit
        refusal = admit(httptools.parse_url(self._url).path, self._headers) if admit is not None else None
        if refusal is not None:  # before its body is read: a refused client costs only its headers
            self._reject(refusal.status, refusal.message, refusal.code or "refused")
            raise _StopParsing
        limit = self._server.max_body_bytes
        expect_continue = False
        for name, value in self._headers:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                self._reject(413, _too_large(limit), "request_too_large")
                raise _StopParsing
            if name == b"expect" and value.lower() == b"100-continue":
                expect_continue = True
        if expect_continue:
            self._continue_owed = True
            self._send_continue()

    def _send_continue(self) -> None:
        """The interim answer, unless an earlier response is still being written: it would land inside."""
        if self._continue_owed and self._current is None and not self._queue and self._transport is not None:
            self._continue_owed = False
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._rejected:
            raise _StopParsing
        self._size += len(body)
        if self._size > self._server.max_body_bytes:
            self._reject(413, _too_large(self._server.max_body_bytes), "request_too_large")
            raise _StopParsing
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.reading_since = None
        self._continue_owed = False  # the body came without it
        if self._rejected:
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        parser = self._parser
        request = Request(parser.get_method().decode(), self._url, self._headers, body, parser.get_http_version())
        request.keep_alive = parser.should_keep_alive()
        self._queue.append(request)
        if self._current is None:
            self._next()
        elif len(self._queue) > 8 and not self._paused_reading and self._transport is not None:
            self._paused_reading = True  # a client pipelining far ahead waits for answers
            self._transport.pause_reading()

    # -- exchanges ---------------------------------------------------------------------
    def _next(self) -> None:
        if not self._queue or self._transport is None:
            return
        request = self._queue.popleft()
        if self._paused_reading and len(self._queue) <= 1:
            self._paused_reading = False
            self._transport.resume_reading()
        exchange = self._current = Exchange(self, request)
        try:
            self._server.handler.handle(exchange)
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            if not exchange.started:
                exchange.respond(500, ProxyError(500, "internal error in the proxy", type="server_error").body(), _JSON)
            elif not exchange.ended:
                self.close()

    def write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def exchange_done(self, exchange: Exchange) -> None:
        if exchange is not self._current:
            return
        self._current = None
        self._server.handler.completed(exchange)
        if self._transport is None:
            return
        if not exchange.request.keep_alive or self._rejected:
            self.close()
        elif self._queue:
            self._next()
        else:
            self.quiet_since = self._loop.time()
            self._send_continue()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def idle(self) -> bool:
        return self._current is None and not self._queue and self.reading_since is None

    def reading_too_long(self, now: float) -> bool:
        """Times a request out whose head or body has taken longer than allowed, in total."""
        since, limits = self.reading_since, self._server.limits
        if since is None or self._rejected:
            return False
        if not self._head_done and now - since > limits.header_timeout:
            self._reject(408, f"the request's headers took longer than {limits.header_timeout:g} s", "timeout")
            return True
        if self._head_done and now - since > limits.header_timeout + limits.body_timeout:
            self._reject(408, f"the request's body took longer than {limits.body_timeout:g} s", "timeout")
            return True
        return False

    # -- refusals and timers -----------------------------------------------------------
    def _reject(self, status: int, message: str, code: str) -> None:
        """Answers a request that cannot be read to its end, then closes the connection. The first
        refusal is the answer (a parser error in the body of a request already refused by its
        headers is not a second one)."""
        if self._rejected:
            return
        self._rejected = True
        self._body = []
        if self._current is not None or self._transport is None:
            self.close()  # the reply would interleave with an answer in progress
            return
        body = ProxyError(status, message, code=code).body()
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self._transport.write(head % (status, _REASONS[status], len(body)) + body)
        # A lingering close, as nginx does: the answer is followed by our end of the stream, and
        # what the client still sends is read and dropped for a moment, so that closing with its
        # bytes unread (a reset) does not destroy the answer before the client has read it.
        if self._transport.can_write_eof():
            self._transport.write_eof()
            self._loop.call_later(_LINGER_SECONDS, self.close)
        else:
            self.close()


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may take of the front end (the proxy's flags set them)."""

    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 4096


class HttpServer:
    """Listens on one address and hands each complete request to ``handler``."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_body_bytes: int,
        keep_alive: float = _KEEP_ALIVE_SECONDS,
        limits: Limits = Limits(),
        admit: Admission | None = None,
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.keep_alive = keep_alive
        self.limits = limits
        self.admit = admit
        self.connections: set[_ClientConnection] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop

    async def listen(self, host: str, port: int) -> None:
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(lambda: _ClientConnection(self), host, port, backlog=2048)
        self._sweeper = asyncio.create_task(self._close_idle_connections())

    async def _close_idle_connections(self) -> None:
        """One sweep for all connections, cheaper than a timer armed and cancelled per request."""
        interval = min(1.0, self.keep_alive / 4, self.limits.header_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            deadline = now - self.keep_alive
            for connection in list(self.connections):
                if connection.reading_too_long(now):
                    continue
                if connection.idle() and connection.quiet_since < deadline:
                    connection.close()

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def shutdown(self, grace: float) -> None:
        """Stops accepting; lets answers in progress finish for up to ``grace`` seconds."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = self.loop.time() + grace
        while True:
            for connection in list(self.connections):
                if connection.idle():
                    connection.close()
            if not self.connections or self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()


_JSON: Headers = [(b"content-type", b"application/json")]
_date_cache: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]


def _too_large(limit: int) -> str:
    return f"the request body is larger than the proxy's limit of {limit} bytes (raise --max-body-bytes)"
