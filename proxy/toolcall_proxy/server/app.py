"""The proxy: routes each request to the pass-through relay or the tool path.

The pass-through route is a header filter, one pooled upstream request and a byte relay driven
by the upstream connection's callbacks: no task, no queue, nothing per chunk but one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import signal
import sys
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from prometheus_client.metrics import Counter, Histogram

from ..dialects import get_dialect
from ..parsing.constraint import marker_candidates
from ..parsing.parser import CallParser
from ..rendering import compile_template
from . import contract
from .constraints import OFF, GrammarBook, engine_fields, tokens_of, version_of
from .errors import ProxyError
from .http import Exchange, Headers, HttpServer, Limits
from .metrics import ProxyMetrics
from .settings import ProxySettings
from .tokenizer import TokenizerLoader
from .toolpath import OutputReader, StreamConverter, ToolPath, UpstreamCall, add_usage, chunk_head
from .upstream import Upstream, connection_headers
from .validation import ChatToolRequest, needs_tool_path, parse_tool_request, tools_known

__all__ = ["ProxyApp", "serve"]

log = logging.getLogger("toolmodel.proxy")

_JSON: Headers = [(b"content-type", b"application/json")]
_SSE: Headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_METRICS: Headers = [(b"content-type", b"text/plain; version=0.0.4")]
_SHUTDOWN_GRACE_SECONDS = 25.0  # under Kubernetes' default 30 s termination grace period
# The probes' paths: answered by the proxy itself, and not load (a scrape would count itself).
_PROBES = ("/health", "/metrics")


class ProxyApp:
    """The proxy's request handler, its upstream pool and metrics; ``serve`` runs it."""

    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.dialect = get_dialect(settings.dialect)
        self.metrics = ProxyMetrics()
        self._load = self.metrics.load
        # New tools are checked in one thread of their own: a flood of them then queues there. With
        # a pool, several checking threads would take turns at the GIL ahead of the event loop, each
        # holding it for its 5 ms switch interval, and every other request would wait that convoy
        # out at each step (measured: 280 ms for an ordinary request beside ten large new schemas).
        self._schema_checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="schema-check")
        self.upstream = Upstream(
            settings.upstream_base,
            timeout=settings.upstream_timeout,
            api_key=settings.upstream_api_key,
            metrics=self.metrics,
        )
        self.tool_path = ToolPath(self.dialect, settings, self.metrics)
        # Token-id dialects: every chat request is prompted here, none relayed as text (the
        # engine's tokenizer would spell the control tokens out), once the tokenizer is loaded.
        self.prompts_every_chat = self.dialect.prompt_form == "token_ids" and settings.mode == "proxy"
        self.tokenizer_loader: TokenizerLoader | None = None
        if self.prompts_every_chat:
            assert self.dialect.token_layout is not None
            self.tokenizer_loader = TokenizerLoader(
                self.dialect.token_layout,
                settings.tokenizer,
                revision=settings.tokenizer_revision,
                wait=settings.tokenizer_wait,
                on_failure=self._fail_start,
            )
        self.failure: asyncio.Future[str] | None = None
        # --guided-decoding auto: the engine's version, asked once it answers, picks the fields
        self._engine_asked = settings.guided_decoding in ("off",)
        self._engine_question: asyncio.Future[None] | None = None
        compile_template(self.dialect.template)  # now, rather than ~60 ms into the first request
        self._api_key = settings.api_key.encode() if settings.api_key else None
        self._counters: dict[tuple[str, int], Counter] = {}
        self._latencies: dict[str, Histogram] = {}
        self._server: HttpServer | None = None

    # -- life cycle -----------------------------------------------------------------------
    async def start(self, *, port: int | None = None) -> None:
        """Opens the upstream pool and listens (on ``port`` if given, else the settings' port)."""
        await self.upstream.start()
        self.failure = asyncio.get_running_loop().create_future()
        if self.tokenizer_loader is not None:
            self.tokenizer_loader.start()
        settings = self.settings
        limits = Limits(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            max_connections=settings.max_connections,
        )
        self._server = HttpServer(self, max_body_bytes=settings.max_body_bytes, limits=limits, admit=self.admit)
        await self._server.listen(self.settings.host, self.settings.port if port is None else port)

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not started"
        return self._server.port

    async def close(self, grace: float = _SHUTDOWN_GRACE_SECONDS) -> None:
        """Stops listening, lets answers in progress finish for up to ``grace`` seconds."""
        if self._server is not None:
            await self._server.shutdown(grace)
            self._server = None
        if self.tokenizer_loader is not None:
            await self.tokenizer_loader.close()
        await self.upstream.close()
        self._schema_checker.shutdown(wait=False, cancel_futures=True)

    def _fail_start(self, reason: str) -> None:
        """The proxy cannot serve (a wrong or missing tokenizer): ``serve`` ends with this."""
        if self.failure is not None and not self.failure.done():
            self.failure.set_result(reason)

    # -- routing --------------------------------------------------------------------------
    def handle(self, exchange: Exchange) -> None:
        request = exchange.request
        path = request.path
        if path in _PROBES:
            self._probe(exchange)
            return
        # In flight until ``completed``, which the front end calls once for every exchange it
        # handed over, however it ends (answered, failed, or its client gone).
        self._load.in_flight += 1
        try:
            if path == "/v1/chat/completions" and request.method == "POST":
                body = _json_body(request.body)
                if self.prompts_every_chat or (self.settings.mode == "proxy" and needs_tool_path(body)):
                    self._ensure_tokenizer()
                    exchange.kind = "tools"
                    if tools_known(body):
                        self._start_tools(exchange, parse_tool_request(body))
                    else:  # new schemas take milliseconds each to check: not on the event loop
                        self._spawn(exchange, self._check_then_start_tools(exchange, body))
                    return
                self._relay(exchange, _ChatRelay(exchange), self._relayed_chat(body, request.body))
                return
            self._relay(exchange, _Relay(exchange), request.body)
        except ProxyError as error:
            _fail(exchange, error)

    def completed(self, exchange: Exchange) -> None:
        if exchange.request.path not in _PROBES:
            self._load.in_flight -= 1
        status = exchange.status if exchange.ended else 499  # 499: the client went away first
        kind = exchange.kind
        counter = self._counters.get((kind, status))
        if counter is None:  # labels() costs more than the count: look each series up once
            counter = self._counters[(kind, status)] = self.metrics.requests.labels(kind, str(status))
        counter.inc()
        latency = self._latencies.get(kind)
        if latency is None:
            latency = self._latencies[kind] = self.metrics.latency.labels(kind)
        latency.observe(time.perf_counter() - exchange.started_at)
        if exchange.closed:
            log.info("client went away; upstream request cancelled (%s)", exchange.request.path)

    def _probe(self, exchange: Exchange) -> None:
        if exchange.request.path == "/health":
            exchange.kind = "health"
            self._spawn(exchange, self._health(exchange))
        else:
            exchange.kind = "metrics"
            exchange.respond(200, self.metrics.exposition(), _METRICS)

    def admit(self, path: bytes, headers: Headers) -> ProxyError | None:
        """Refuses a request without the API key as soon as its headers are in, before its body is
        read (the probes' /health and /metrics need none)."""
        if self._api_key is None or path in (b"/health", b"/metrics"):
            return None
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._api_key):
                    return None
        return ProxyError(
            401,
            "missing or wrong API key: send 'Authorization: Bearer <key>' with the key the proxy was given",
            code="invalid_api_key",
        )

    def _ensure_tokenizer(self) -> None:
        loader = self.tokenizer_loader
        if loader is None or self.tool_path.tokenizer is not None:
            return
        if loader.tokenizer is None:
            raise ProxyError(503, f"the proxy is not ready: {loader.state}", type="server_error")
        self.tool_path.tokenizer = loader.tokenizer

    def _spawn(self, exchange: Exchange, work: Coroutine[Any, Any, None]) -> None:
        """Runs an answer that awaits the upstream; a client that goes away cancels it."""
        task = asyncio.ensure_future(self._answer(exchange, work))
        exchange.on_disconnect = task.cancel

    async def _answer(self, exchange: Exchange, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except ProxyError as error:
            _fail(exchange, error)
        except Exception:
            log.exception("unhandled error in %s %s", exchange.request.method, exchange.request.path)
            _fail(exchange, ProxyError(500, "internal error in the proxy", type="server_error"))

    async def _health(self, exchange: Exchange) -> None:
        try:
            status, _ = await self.upstream.fetch("GET", "/health", [])
            upstream = "ok" if status == 200 else f"status {status}"
        except ProxyError as error:
            upstream = error.message
        status = 200 if upstream == "ok" else 503
        body: dict[str, Any] = {
            "status": "ok" if status == 200 else "degraded",
            "upstream": upstream,
            "dialect": self.dialect.name,
        }
        loader = self.tokenizer_loader
        if loader is not None:
            body["tokenizer"] = loader.state
            if loader.tokenizer is None:
                status, body["status"] = 503, "starting"
        exchange.respond(status, orjson.dumps(body), _JSON)

    # -- pass-through ---------------------------------------------------------------------
    def _relayed_chat(self, body: dict[str, Any], raw: bytes) -> bytes:
        """A chat request for the engine's own chat endpoint: as the client sent it, but for a
        ``developer`` message, which a family without that role takes as its system turn."""
        if self.dialect.takes_developer_role or not _has_developer(body):
            return raw
        messages = [
            {**message, "role": "system"}
            if isinstance(message, dict) and message.get("role") == "developer"
            else message
            for message in body["messages"]
        ]
        return orjson.dumps({**body, "messages": messages})

    def _relay(self, exchange: Exchange, sink: _Relay, body: bytes) -> None:
        request = exchange.request
        # A key given to the proxy is the proxy's; with a key for the engine, that one goes alone.
        strip_authorization = self._api_key is not None or self.settings.upstream_api_key is not None
        hop_by_hop = connection_headers(request.headers)
        headers = [
            (name, value)
            for name, value in request.headers
            if name not in hop_by_hop and not (strip_authorization and name == b"authorization")
        ]
        method = "GET" if request.method == "HEAD" else request.method  # HEAD: GET's head, body dropped
        call = self.upstream.request(method, request.target, headers, body, sink)
        exchange.flow = call
        exchange.on_disconnect = call.abort

    # -- tools ----------------------------------------------------------------------------
    def _start_tools(self, exchange: Exchange, request: ChatToolRequest, *, engine_asked: bool = False) -> None:
        if not (self._engine_asked or engine_asked):
            self._spawn(exchange, self._ask_engine_then_start(exchange, request))
        elif request.stream:
            self._tools_streaming(exchange, request)
        else:
            self._spawn(exchange, self._tools(exchange, request))

    async def _check_then_start_tools(self, exchange: Exchange, body: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        waiting = self._load.waiting("tools_check")

        def check() -> ChatToolRequest:
            # Its turn in the thread has come: it waits no more (said on the loop, which keeps the count).
            loop.call_soon_threadsafe(waiting.leave)
            return parse_tool_request(body)

        try:
            request = await loop.run_in_executor(self._schema_checker, check)
        finally:
            waiting.leave()  # checked, refused, or its client went away before its turn
        if not exchange.closed:
            self._start_tools(exchange, request)

    async def _ask_engine_then_start(self, exchange: Exchange, request: ChatToolRequest) -> None:
        if self._engine_question is None:
            self._engine_question = asyncio.ensure_future(self._ask_engine())
        waiting = self._load.waiting("engine_version")
        try:
            await asyncio.shield(self._engine_question)
        finally:
            waiting.leave()
        if not exchange.closed:
            self._start_tools(exchange, request, engine_asked=True)

    async def _ask_engine(self) -> None:
        """How the engine takes a constraint: the fields, from its ``GET /version`` (unless
        ``--guided-decoding`` says), and the markers it has as single tokens. An engine not
        answering yet is asked again by the next request; one without ``/version`` constrains
        nothing."""
        try:
            fields = self.settings.guided_decoding
            if fields == "auto":
                try:
                    status, body = await self.upstream.fetch("GET", "/version", [])
                except ProxyError as error:
                    log.info("the engine's version is not known yet (%s): asking again with the next request", error)
                    return
                version = version_of(body) if status == 200 else None
                fields = engine_fields(version) if version else OFF
                if fields == OFF:
                    log.warning(
                        "the engine (version %s) takes no grammar: tool calls are not constrained at decode time "
                        "(prefill and one retry instead); --guided-decoding overrides",
                        version or f"unknown, GET /version answered {status}",
                    )
                else:
                    log.info("the engine is vLLM %s: tool-call constraints go in %s", version, fields)
            if fields != OFF:
                await self._ask_single_tokens()
            self.tool_path.engine_fields = fields
            self._engine_asked = True
        finally:
            self._engine_question = None

    async def _ask_single_tokens(self) -> None:
        """Which of the family's markers the served model has as single tokens (``POST /tokenize``),
        so that a grammar names each the way the engine's constraint backend knows it."""
        single: dict[str, int] = {}
        for marker in sorted(marker_candidates(self.dialect.grammar, self.dialect.special_tokens)):
            body = orjson.dumps({"prompt": marker, "add_special_tokens": False})
            try:
                status, answer = await self.upstream.fetch("POST", "/tokenize", _JSON, body)
            except ProxyError:
                status, answer = 0, b""
            tokens = tokens_of(answer) if status == 200 else None
            if tokens is None:
                log.info("the engine does not tokenize (%s): grammars name the family's usual control tokens", status)
                return
            if len(tokens) == 1:
                single[marker] = tokens[0]
        self.tool_path.grammars = GrammarBook(self.dialect, single)
        log.info("single-token markers of the served model: %s", ", ".join(sorted(single)) or "none")

    async def _tools(self, exchange: Exchange, request: ChatToolRequest) -> None:
        tool_path = self.tool_path
        call, answer = await self._ask_model(request)
        usage = add_usage(None, answer.get("usage"))
        answers = [tool_path.parse_text(request, call, text) for text in _choice_texts(answer, call, request.n)]
        finishes = _finish_reasons(answer, request.n)
        missed = [i for i, parsed in enumerate(answers) if not parsed.calls]
        if missed and request.choice.mode in ("required", "named"):
            log.info("tool_choice %s but no valid call: asking once more", request.choice.mode)
            call, again = await self._ask_model(request, retry=True)
            usage = add_usage(usage, again.get("usage"))
            texts, reasons = _choice_texts(again, call, request.n), _finish_reasons(again, request.n)
            for i in missed:  # each choice that missed its call takes the new sample's
                answers[i], finishes[i] = tool_path.parse_text(request, call, texts[i]), reasons[i]
        logprobs = [choice.get("logprobs") for choice in _choices(answer, request.n)]
        response = tool_path.completion_response(
            request, answer, list(zip(answers, finishes, strict=True)), usage, logprobs
        )
        exchange.respond(200, orjson.dumps(response), _JSON)

    async def _ask_model(self, request: ChatToolRequest, *, retry: bool = False) -> tuple[UpstreamCall, dict[str, Any]]:
        """The engine's call and answer; if the engine refuses the call's constraint (a 400 that
        the same request without it does not get), the call without it and its answer."""
        call = self.tool_path.upstream_call(request, retry=retry)
        try:
            return call, await self.upstream.post_json(call.path, call.payload)
        except ProxyError as error:
            if call.constraint is None or error.status != 400:
                raise
            plain = self.tool_path.upstream_call(request, retry=retry, constrain=False)
            answer = await self.upstream.post_json(plain.path, plain.payload)
            self.tool_path.constraint_refused(call, error.message)
            return plain, answer

    def _tools_streaming(
        self, exchange: Exchange, request: ChatToolRequest, *, refused: tuple[UpstreamCall, str] | None = None
    ) -> None:
        """Streams the answer; ``refused``: the constrained call the engine refused, and why (this
        stream goes without the constraint, and if the engine takes it, the refusal is noted)."""
        call = self.tool_path.upstream_call(request, constrain=refused is None)
        sink = _ToolStream(self, exchange, request, call, refused)
        upstream_call = self.upstream.request("POST", call.path, _JSON, orjson.dumps(call.payload), sink)
        exchange.flow = upstream_call
        exchange.on_disconnect = upstream_call.abort


class _Relay:
    """Pass-through: the upstream's response goes to the client as it arrives."""

    __slots__ = ("_exchange", "_stream")

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self._stream = False

    def head(self, status: int, headers: Headers) -> None:
        length: int | None = None
        relayed: Headers = []
        hop_by_hop = connection_headers(headers)
        for name, value in headers:
            if name == b"content-length" and value.isdigit():
                length = int(value)
            elif name not in hop_by_hop:
                relayed.append((name, value))
                if name == b"content-type" and value.startswith(b"text/event-stream"):
                    self._stream = True
        self._exchange.start(status, relayed, length=length)

    def body(self, data: bytes) -> None:
        self._exchange.write(data)

    def end(self) -> None:
        self._exchange.end()

    def fail(self, error: ProxyError) -> None:
        if self._exchange.started and not self._stream:
            self._exchange.abort()  # a sized body cut short: only a closed connection says so
        else:
            _fail(self._exchange, error)


class _ChatRelay(_Relay):
    """A relayed chat answer: a whole one (or an error) in OpenAI's shapes (``contract``), a
    stream as it arrives."""

    __slots__ = ("_headers", "_kept", "_status")

    def __init__(self, exchange: Exchange) -> None:
        super().__init__(exchange)
        self._status = 0  # set while a whole answer is kept to be reshaped
        self._headers: Headers = []
        self._kept: list[bytes] = []

    def head(self, status: int, headers: Headers) -> None:
        streamed = any(name == b"content-type" and value.startswith(b"text/event-stream") for name, value in headers)
        if streamed and status == 200:
            super().head(status, headers)
            return
        self._status = status
        hop_by_hop = connection_headers(headers)
        self._headers = [
            (name, value)
            for name, value in headers
            if name not in hop_by_hop and name not in (b"content-length", b"content-type", b"date")
        ]

    def body(self, data: bytes) -> None:
        if self._status:
            self._kept.append(data)
        else:
            super().body(data)

    def end(self) -> None:
        if not self._status:
            super().end()
            return
        data = b"".join(self._kept)
        if self._status != 200:
            data = contract.error_body(self._status, data)
        else:
            with contextlib.suppress(orjson.JSONDecodeError):
                value = orjson.loads(data)
                if isinstance(value, dict):
                    data = orjson.dumps(contract.chat_completion(value))
        self._exchange.respond(self._status, data, [*self._headers, *_JSON])


class _StreamChoice:
    """One choice of a streamed answer: its parser, its reader of the engine's output, the frames
    it makes, how it ended."""

    __slots__ = ("converter", "finish_reason", "parser", "reader")

    def __init__(self, converter: StreamConverter, parser: CallParser, reader: OutputReader) -> None:
        self.converter = converter
        self.parser = parser
        self.reader = reader
        self.finish_reason: str | None = None


class _ToolStream:
    """A streamed answer with tools: upstream completion chunks in, OpenAI chat chunks out.

    Every upstream frame is a token or two, so this is the proxy's hottest Python: the texts of
    the frames that arrive together are fed to each choice's parser at once, and everything they
    make leaves in one write.
    """

    __slots__ = (
        "_app",
        "_call",
        "_choices",
        "_exchange",
        "_finished",
        "_kept",
        "_pending",
        "_refused",
        "_refused_constraint",
        "_request",
        "_usage",
    )

    def __init__(
        self,
        app: ProxyApp,
        exchange: Exchange,
        request: ChatToolRequest,
        call: UpstreamCall,
        refused: tuple[UpstreamCall, str] | None = None,
    ) -> None:
        self._app = app
        self._exchange = exchange
        self._request = request
        self._call = call
        self._refused_constraint = refused
        self._choices: list[_StreamChoice] = []  # made once the model's name is known
        self._refused = 0  # the upstream's error status; its body is kept for the message
        self._kept: list[bytes] = []
        self._pending = b""
        self._finished = False  # [DONE] seen
        self._usage: dict[str, Any] | None = None

    def head(self, status: int, headers: Headers) -> None:
        if status != 200:
            self._refused = status
            return
        if self._refused_constraint is not None:
            self._app.tool_path.constraint_refused(*self._refused_constraint)
        self._exchange.start(200, _SSE)
        model = self._request.body.get("model")
        if isinstance(model, str) and model:
            out: list[bytes] = []
            self._start(model, out)
            self._exchange.write(b"".join(out))

    def _start(self, model: str, out: list[bytes]) -> None:
        """Each choice's first frame, once the model's name is known: the request's, else the
        name the engine's first chunk carries."""
        tool_path, request, call = self._app.tool_path, self._request, self._call
        head = chunk_head()
        for index in range(request.n):
            choice = _StreamChoice(
                StreamConverter(tool_path, request, model, index, head), tool_path.parser(request, call), call.reader()
            )
            self._choices.append(choice)
            out.append(choice.converter.start())
            if call.prefill:
                choice.converter.events(choice.parser.feed(call.prefill), out)

    def body(self, data: bytes) -> None:
        if self._refused:
            self._kept.append(data)
            return
        lines = (self._pending + data if self._pending else data).split(b"\n")
        self._pending = lines.pop()
        out: list[bytes] = []
        self._convert(lines, out)
        if out:
            self._exchange.write(b"".join(out))

    def end(self) -> None:
        if self._refused:
            error = self._app.upstream.status_error(self._refused, b"".join(self._kept))
            if self._refused == 400 and self._call.constraint is not None and not self._exchange.closed:
                # the same request without the constraint, once this exchange with the engine is over
                again = functools.partial(
                    self._app._tools_streaming, self._exchange, self._request, refused=(self._call, error.message)
                )
                asyncio.get_running_loop().call_soon(again)
                return
            _fail(self._exchange, error)
            return
        out: list[bytes] = []
        self._convert([self._pending], out)
        if not self._choices:  # the engine sent no chunk at all
            self._start("", out)
        for choice in self._choices:
            choice.converter.events(choice.parser.finish(), out)
            choice.converter.finish(choice.finish_reason, out)
        self._choices[0].converter.close(self._usage, out)
        self._exchange.end(b"".join(out))

    def fail(self, error: ProxyError) -> None:
        _fail(self._exchange, error)

    def _convert(self, lines: list[bytes], out: list[bytes]) -> None:
        texts: dict[int, list[str]] = {}
        logprobs: dict[int, list[Any]] = {}  # each choice's, read by read
        for line in lines:
            if self._finished or not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                self._finished = True
                continue
            frame = _completion_chunk(data)
            if not self._choices:
                self._start(str(frame.get("model") or ""), out)
            usage = frame.get("usage")
            if usage:
                self._usage = usage
            for upstream in frame.get("choices") or ():
                index = upstream.get("index") or 0
                if not isinstance(index, int) or not 0 <= index < len(self._choices):
                    raise ProxyError(
                        502, f"the model server sent a choice {index!r} not asked for", type="upstream_error"
                    )
                choice = self._choices[index]
                text = choice.reader.text(upstream)
                if text:
                    texts.setdefault(index, []).append(text)
                if upstream.get("logprobs") and self._request.top_logprobs is not None:
                    logprobs.setdefault(index, []).append(upstream["logprobs"])
                reason = upstream.get("finish_reason")
                if reason:
                    choice.finish_reason = reason
        for index, pieces in texts.items():
            choice = self._choices[index]
            choice.converter.events(choice.parser.feed("".join(pieces)), out)
        for index, reads in logprobs.items():
            merged = {key: [item for read in reads for item in read.get(key) or ()] for key in _LOGPROB_LISTS}
            out.append(self._choices[index].converter.logprobs_frame(merged))


# -- helpers --------------------------------------------------------------------------------
def _fail(exchange: Exchange, error: ProxyError) -> None:
    """Answers with the error, or, once a stream has begun, ends it with an error frame. Logged in
    one line: at debug when the client caused it (its answer says what was wrong), else a warning."""
    request = exchange.request
    level = logging.DEBUG if error.status < 500 else logging.WARNING
    began = " (after the response began)" if exchange.started else ""
    log.log(level, "%s %s: %d %s%s", request.method, request.path, error.status, error.message, began)
    if exchange.ended:
        return
    if not exchange.started:
        exchange.respond(error.status, error.body(), _JSON)
        return
    exchange.end(b"data: " + error.body() + b"\n\ndata: [DONE]\n\n")


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ProxyError(400, f"the request body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(value, dict):
        raise ProxyError(400, "the request body must be a JSON object", code="invalid_json")
    return value


_LOGPROB_LISTS = ("tokens", "token_logprobs", "top_logprobs")


def _completion_chunk(data: bytes) -> dict[str, Any]:
    """An engine's stream frame, or a 502 saying what is wrong with it."""
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        message = f"the model server sent an invalid stream frame: {error}"
        raise ProxyError(502, message, type="upstream_error") from None
    if not isinstance(frame, dict) or not all(isinstance(c, dict) for c in frame.get("choices") or ()):
        raise ProxyError(
            502, "the model server sent a stream frame that is not a completion chunk", type="upstream_error"
        )
    if "error" in frame or frame.get("object") == "error":
        raise ProxyError(502, f"the model server failed mid-stream: {frame}", type="upstream_error")
    return frame


def _is_developer(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "developer"


def _has_developer(body: dict[str, Any]) -> bool:
    messages = body.get("messages")
    return isinstance(messages, list) and any(_is_developer(message) for message in messages)


def _choices(answer: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The engine's ``n`` choices, in index order."""
    choices = answer.get("choices") or []
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        raise ProxyError(502, "the model server's answer has no choices", type="upstream_error")
    if len(choices) < n:
        raise ProxyError(
            502, f"the model server's answer has {len(choices)} of the {n} choices asked for", type="upstream_error"
        )
    return sorted(choices, key=lambda choice: choice.get("index") or 0)[:n]


def _choice_texts(answer: dict[str, Any], call: UpstreamCall, n: int) -> list[str]:
    """Each choice's output text, each read on its own (a token-id reader keeps its place)."""
    return [call.reader().text(choice) for choice in _choices(answer, n)]


def _finish_reasons(answer: dict[str, Any], n: int) -> list[str | None]:
    return [choice.get("finish_reason") for choice in _choices(answer, n)]


async def serve(settings: ProxySettings) -> int:
    """Runs the proxy until SIGTERM or SIGINT, then drains answers in progress; the exit code is 1
    when it could not serve (its tokenizer is wrong or never came)."""
    # A thread checking new tools hands the GIL to the event loop after at most this long (5 ms by
    # default): each step of every other request waits for it (see ``ProxyApp._schema_checker``).
    sys.setswitchinterval(0.001)
    app = ProxyApp(settings)
    await app.start()
    log.info(
        "proxy listening on %s:%d, upstream %s, dialect %s",
        settings.host,
        app.port,
        app.upstream.address,
        app.dialect.name,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    assert app.failure is not None
    app.failure.add_done_callback(lambda _: stop.set())
    await stop.wait()
    if app.failure.done():
        log.error("cannot serve: %s", app.failure.result())
        await app.close(grace=0)
        return 1
    log.info("shutting down: finishing answers in progress")
    await app.close()
    return 0
