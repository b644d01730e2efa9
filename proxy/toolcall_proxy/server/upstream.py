"""The keep-alive connection pool to the engine (vLLM or the simulated engine), on asyncio protocols.

A response is delivered to a ``ResponseSink`` as it is parsed (head, body pieces, end), from the
connection's own data callback: relaying a chunk costs no task switch and no queue. Failures
become ``ProxyError``s that say what happened (503 unreachable, 504 silent, 502 broken).

Why not aiohttp's client: per request it builds a ClientRequest, a ClientResponse, a timer and a
stream reader, and re-arms the read timeout on every chunk; that was half of the proxy's CPU per
relayed request. Here the read timeout is one sweep per second over the connections in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import ssl
from collections.abc import Mapping
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import httptools
import orjson

from .errors import ProxyError
from .metrics import ProxyMetrics

__all__ = ["HOP_BY_HOP", "ResponseSink", "Upstream", "UpstreamCall", "connection_headers"]

log = logging.getLogger("toolmodel.proxy")

Headers = list[tuple[bytes, bytes]]

# Headers that describe one connection, not the message: never relayed (RFC 9110 7.6.1); host and
# content-length are written anew for the next hop.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
        b"expect",
    }
)


def connection_headers(headers: Headers) -> frozenset[bytes]:
    """The names that describe this hop only: the fixed ones, ``Proxy-*``, and those that
    ``Connection`` nominates (RFC 9110 7.6.1), which a proxy must not forward either."""
    nominated = {
        token.strip().lower() for name, value in headers if name == b"connection" for token in value.split(b",")
    }
    nominated.update(name for name, _ in headers if name.startswith(b"proxy-"))
    return HOP_BY_HOP | nominated if nominated else HOP_BY_HOP


# vLLM's server (uvicorn) drops idle keep-alive connections after 5 s: retire ours sooner.
_POOL_IDLE_SECONDS = 4.0
_CONNECT_SECONDS = 10.0


class ResponseSink(Protocol):
    """Receives one upstream response as it arrives; exactly one of ``end`` or ``fail`` is called last."""

    def head(self, status: int, headers: Headers) -> None: ...

    def body(self, data: bytes) -> None: ...

    def end(self) -> None: ...

    def fail(self, error: ProxyError) -> None: ...


class UpstreamCall:
    """One request in flight: abort it, or pause reading its response while the client is slow."""

    __slots__ = ("connecting", "connection", "data", "done", "paused", "retried", "sink")

    def __init__(self, data: bytes, sink: ResponseSink) -> None:
        self.data = data
        self.sink = sink
        self.connection: _Connection | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.done = False
        self.paused = False
        self.retried = False

    def abort(self) -> None:
        """Drops the request; closing its connection is what makes vLLM stop generating."""
        if self.done:
            return
        self.done = True
        if self.connecting is not None:
            self.connecting.cancel()
        if self.connection is not None:
            self.connection.abandon()

    def fail(self, error: ProxyError) -> None:
        if not self.done:
            self.done = True
            self.sink.fail(error)

    def pause_reading(self) -> None:
        self.paused = True
        if self.connection is not None:
            self.connection.pause_reading()

    def resume_reading(self) -> None:
        self.paused = False
        if self.connection is not None:
            self.connection.resume_reading()


class _Connection(asyncio.Protocol):
    """One connection to the upstream, carrying one request at a time."""

    def __init__(self, pool: Upstream) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.call: UpstreamCall | None = None
        self.reused = False
        self.heard = False  # bytes arrived since the last timeout sweep
        self.silent = 0.0
        self.idle_since = 0.0
        self._answered = False
        self._headers: Headers = []
        self._headers_done = False
        self._framed = False  # the body has a length or chunks, so its end is known before EOF
        self.reading_paused = False
        self._completed: UpstreamCall | None = None
        self._keep_alive = False  # its response ended within the current feed
        self._trailing = False  # bytes followed the end of the response: the connection is spoiled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def assign(self, call: UpstreamCall) -> None:
        assert self.transport is not None
        self.call = call
        call.connection = self
        self.silent, self.heard, self._answered = 0.0, False, False
        self._headers, self._headers_done, self._framed = [], False, False
        self.transport.write(call.data)
        if call.paused:
            self.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.heard = self._answered = True
        if self.call is None:  # bytes nobody asked for: the connection cannot be trusted
            self.abandon()
            return
        error: ProxyError | None = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as failed:
            error = _as_proxy_error(failed.__context__)
        except httptools.HttpParserError as failed:
            error = self._pool.failure("protocol", 502, f"the model server sent invalid HTTP: {failed}")
        if self._completed is not None:
            self._trailing = self._trailing or error is not None  # junk after the end: not reusable
            self._complete()
        elif error is not None:
            self._give_up(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._pool.forget(self)
        call, self.call = self.call, None
        if call is None or call.done:
            return
        call.connection = None
        if not self._answered and self.reused and not call.retried and not self._pool.closed:
            # an idle connection the server had just closed: the request never reached it
            call.retried = True
            self._pool.dispatch(call, fresh=True)
        elif self._headers_done and not self._framed:
            call.done = True
            call.sink.end()  # a body delimited by the connection's close
        else:
            reason = f" ({exc})" if exc else ""
            call.fail(self._pool.failure("broken_response", 502, f"the model server's response broke off{reason}"))

    # -- parser callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.call is None:
            self._trailing = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._trailing:
            return
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.call is not None:
            self._headers_done = True
            self.call.sink.head(self._parser.get_status_code(), self._headers)

    def on_body(self, body: bytes) -> None:
        if self.call is not None:
            self.call.sink.body(body)

    def on_message_complete(self) -> None:
        if self.call is not None:
            self._completed, self.call = self.call, None
            self._keep_alive = self._parser.should_keep_alive()

    def _complete(self) -> None:
        """After the feed that ended the response: the connection goes back to the pool if clean."""
        call, self._completed = self._completed, None
        assert call is not None
        call.connection, call.done = None, True
        if self._keep_alive and not self._trailing:
            self._pool.release(self)
        else:
            self.abandon()
        try:
            call.sink.end()
        except Exception as failed:  # the sink's own processing of the end failed
            call.sink.fail(_as_proxy_error(failed))

    # -- control -----------------------------------------------------------------------
    def _give_up(self, error: ProxyError) -> None:
        call, self.call = self.call, None
        self.abandon()
        if call is not None:
            call.connection = None
            call.fail(error)

    def abandon(self) -> None:
        self.call = None
        if self.transport is not None:
            self.transport.abort()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()


def _as_proxy_error(error: BaseException | None) -> ProxyError:
    """A sink's failure as the answer to give: its own ``ProxyError``, or a logged internal error."""
    if isinstance(error, ProxyError):
        return error
    log.error("relaying the upstream response failed", exc_info=error)
    return ProxyError(500, "the proxy failed while relaying the response", type="server_error")


class Upstream:
    def __init__(self, base: str, *, timeout: float, api_key: str | None, metrics: ProxyMetrics) -> None:
        parts = urlsplit(base)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        # where it is, for the start-up log: never its credentials, never in a response
        self.address = f"{parts.scheme}://{self._host}:{self._port}"
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_line = b"host: %s\r\n" % (host if parts.port is None else f"{host}:{parts.port}").encode("idna")
        self._auth_line = b"authorization: Bearer %s\r\n" % api_key.encode() if api_key else b""
        self._timeout = timeout
        self._metrics = metrics
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    async def start(self) -> None:
        self.closed = False
        self._loop = asyncio.get_running_loop()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())

    async def close(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for connection in [*self._idle, *self._busy]:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()

    # -- requests ----------------------------------------------------------------------
    def request(self, method: str, target: str, headers: Headers, body: bytes, sink: ResponseSink) -> UpstreamCall:
        """Sends a request; its response (or failure) goes to ``sink``. ``headers`` exclude hop-by-hop ones.

        Not for HEAD: the response parser would wait for the body its headers announce.
        """
        head = [b"%s %s%s HTTP/1.1\r\n" % (method.encode(), self._prefix.encode(), target.encode("latin-1"))]
        head.append(self._host_line)
        head.extend([b"%s: %s\r\n" % pair for pair in headers])
        head.append(self._auth_line)
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(b"content-length: %d\r\n" % len(body))
        head.append(b"\r\n")
        head.append(body)
        call = UpstreamCall(b"".join(head), sink)
        self.dispatch(call)
        return call

    async def fetch(self, method: str, target: str, headers: Headers, body: bytes = b"") -> tuple[int, bytes]:
        """A whole response: its status and body; cancelling the caller aborts the request."""
        collected = _Collected(asyncio.get_running_loop().create_future())
        call = self.request(method, target, headers, body, collected)
        try:
            return await collected.future
        except asyncio.CancelledError:
            call.abort()
            raise

    async def post_json(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON request whose failure, including a non-200 answer, is a ``ProxyError``."""
        status, body = await self.fetch("POST", path, [(b"content-type", b"application/json")], orjson.dumps(payload))
        if status != 200:
            raise self.status_error(status, body)
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            self._metrics.upstream_errors.labels("bad_json").inc()
            raise ProxyError(502, f"the model server sent invalid JSON: {error}", type="upstream_error") from error
        if not isinstance(value, dict):
            raise ProxyError(502, "the model server sent JSON that is not an object", type="upstream_error")
        return value

    def status_error(self, status: int, body: bytes) -> ProxyError:
        """An upstream error answer, passed on with its message: 4xx stay the client's to fix."""
        message = _error_message(body)
        if 400 <= status < 500:
            return ProxyError(status, f"the model server rejected the request: {message}", type="invalid_request_error")
        self._metrics.upstream_errors.labels(f"status_{status}").inc()
        return ProxyError(502, f"the model server failed with {status}: {message}", type="upstream_error")

    def failure(self, reason: str, status: int, message: str) -> ProxyError:
        """A failed exchange with the upstream, counted by ``reason``."""
        self._metrics.upstream_errors.labels(reason).inc()
        kind, code = _FAILURES[reason]
        return ProxyError(status, message, type=kind, code=code)

    # -- the pool ----------------------------------------------------------------------
    def dispatch(self, call: UpstreamCall, *, fresh: bool = False) -> None:
        if self.closed:
            call.fail(self.failure("unreachable", 503, "the proxy is shutting down"))
            return
        while self._idle and not fresh:
            connection = self._idle.pop()  # the most recently used: least likely to have been closed
            if connection.transport is not None and not connection.transport.is_closing():
                self._busy.add(connection)
                connection.reused = True
                connection.assign(call)
                return
        call.connecting = asyncio.ensure_future(self._connect(call))

    async def _connect(self, call: UpstreamCall) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self._host, self._port, ssl=self._ssl),
                _CONNECT_SECONDS,
            )
        except TimeoutError:
            call.connecting = None
            call.fail(self.failure("timeout", 504, "the model server did not accept a connection"))
            return
        except OSError as error:
            call.connecting = None
            if error.errno in (errno.EMFILE, errno.ENFILE):  # the proxy's own limit, not the engine's state
                message = "the proxy has no file descriptors left for a connection to the model server; retry shortly"
                call.fail(self.failure("no_descriptors", 503, message))
            else:
                message = f"the model server is not reachable ({_reason(error)}); it may still be loading the model"
                call.fail(self.failure("unreachable", 503, message))
            return
        call.connecting = None
        if call.done:  # aborted while connecting: keep the connection for the next request
            self.release(connection)
            return
        self._busy.add(connection)
        connection.assign(call)

    def release(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        connection.resume_reading()
        assert self._loop is not None
        connection.idle_since = self._loop.time()
        self._idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        with contextlib.suppress(ValueError):
            self._idle.remove(connection)

    async def _sweep(self) -> None:
        """Fails requests whose upstream has been silent too long; retires idle connections."""
        interval = min(1.0, self._timeout / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            for connection in list(self._busy):
                if connection.heard or connection.reading_paused:  # paused: the client is slow, not us
                    connection.heard, connection.silent = False, 0.0
                    continue
                connection.silent += interval
                if connection.silent >= self._timeout and connection.call is not None:
                    connection._give_up(self.failure("timeout", 504, "the model server did not answer in time"))
            now = loop.time()
            while self._idle and now - self._idle[0].idle_since > _POOL_IDLE_SECONDS:
                stale = self._idle.pop(0)
                if stale.transport is not None:
                    stale.transport.close()


class _Collected:
    """A sink that keeps the whole response for ``fetch``."""

    __slots__ = ("_chunks", "_status", "future")

    def __init__(self, future: asyncio.Future[tuple[int, bytes]]) -> None:
        self.future = future
        self._status = 0
        self._chunks: list[bytes] = []

    def head(self, status: int, headers: Headers) -> None:
        self._status = status

    def body(self, data: bytes) -> None:
        self._chunks.append(data)

    def end(self) -> None:
        if not self.future.done():
            self.future.set_result((self._status, b"".join(self._chunks)))

    def fail(self, error: ProxyError) -> None:
        if not self.future.done():
            self.future.set_exception(error)


# reason -> (error type, error code) of the answer
_FAILURES = {
    "unreachable": ("service_unavailable", "upstream_unreachable"),
    "no_descriptors": ("service_unavailable", "proxy_out_of_file_descriptors"),
    "timeout": ("timeout", "upstream_timeout"),
    "broken_response": ("upstream_error", "upstream_broken"),
    "protocol": ("upstream_error", "upstream_error"),
}


def _error_message(body: bytes) -> str:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")[:500] or "(no body)"
    if isinstance(value, dict):
        error = value.get("error", value)
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if isinstance(value.get("message"), str):
            return str(value["message"])
    return str(value)[:500]


def _reason(error: OSError) -> str:
    """An OS error in words, without the address it names (the upstream's address stays private)."""
    return os.strerror(error.errno) if error.errno else type(error).__name__
