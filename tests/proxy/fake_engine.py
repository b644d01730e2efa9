"""A scriptable fake engine and a running proxy, both on loopback ports (the fixtures are in conftest)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from toolcall_proxy.server import ProxyApp, ProxySettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVED_MODEL = "fake/served-model"  # what the engine calls its model when a request names none
_CONSTRAINT_FIELDS = {"structured_outputs", "guided_grammar", "guided_json"}


@dataclass
class FakeEngine:
    """Answers like vLLM with scripted model output, and records what it was asked."""

    outputs: list[str] = field(default_factory=list)  # one raw model output per generation, in order
    # or the generated ids, for an engine asked for return_token_ids (vLLM >= 0.10.2)
    output_ids: list[list[int]] = field(default_factory=list)
    chunk: Callable[[str], list[str]] = lambda text: [text[i : i + 3] for i in range(0, len(text), 3)]
    finish_reason: str = "stop"
    reject_tools: bool = True  # like vLLM 0.4.x: /v1/chat/completions with tools is a 400
    delay: float = 0.0
    status: int = 200
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    chat_body: bytes = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[]}'
    completions_body: dict[str, Any] | None = None  # answered as it is instead of a generation
    version: str | None = None  # GET /version's vLLM version; None: not found, as a non-vLLM engine
    refuse_constraints: bool = False  # a 400 to any constrained request, as a backend refusing grammars
    version_asked: int = 0
    # POST /tokenize: the texts that are one token, with their ids; None: answered as any other path
    single_tokens: dict[str, int] | None = None
    # When given, generations wait for it to be set: a whole answer before it is sent, a stream
    # after its first frame (held requests, with no timing to guess)
    gate: asyncio.Event | None = None
    version_gate: asyncio.Event | None = None  # the same for GET /version's answer
    break_stream: bool = False  # a completions stream breaks off after its first frame: the connection drops

    async def held(self) -> None:
        if self.gate is not None:
            await self.gate.wait()

    def next_output(self) -> str:
        return self.outputs.pop(0) if self.outputs else "Plain answer."

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(("/v1/completions", body))
        if self.refuse_constraints and _CONSTRAINT_FIELDS & body.keys():
            message = "Invalid grammar specification."
            error = {"message": message, "type": "BadRequestError", "param": None, "code": 400}
            return web.json_response({"error": error}, status=400)
        if self.status != 200:
            return web.json_response(
                {"object": "error", "message": "engine exploded", "code": self.status}, status=self.status
            )
        if self.completions_body is not None:
            return web.json_response(self.completions_body)
        if self.output_ids and body.get("return_token_ids"):
            return await self._token_ids(request, body, self.output_ids.pop(0))
        texts = [self.next_output() for _ in range(body.get("n") or 1)]  # one output per choice
        if not body.get("stream"):
            if self.delay:
                await asyncio.sleep(self.delay)
            await self.held()
        generated = sum(len(text) // 3 for text in texts)
        usage = {"prompt_tokens": 10, "completion_tokens": generated, "total_tokens": 10 + generated}
        model = body.get("model") or SERVED_MODEL
        if not body.get("stream"):
            choices = [{"index": i, "text": text, "finish_reason": self.finish_reason} for i, text in enumerate(texts)]
            return web.json_response({"id": "cmpl-1", "model": model, "choices": choices, "usage": usage})
        return await self._streamed(request, body, texts, usage, model)

    async def _streamed(
        self, request: web.Request, body: dict[str, Any], texts: list[str], usage: dict[str, int], model: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            # the choices' pieces interleaved, as an engine generates them side by side
            streams = [self.chunk(text) for text in texts]
            for step in range(max(len(pieces) for pieces in streams)):
                for number, pieces in enumerate(streams):
                    if step >= len(pieces):
                        continue
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    last = step == len(pieces) - 1
                    choice = {
                        "index": number,
                        "text": pieces[step],
                        "finish_reason": self.finish_reason if last else None,
                    }
                    frame = {"id": "cmpl-1", "model": model, "choices": [choice]}
                    await response.write(b"data: " + orjson.dumps(frame) + b"\n\n")
                    if step == 0 and number == 0:
                        await self.held()
                        if self.break_stream and request.transport is not None:
                            request.transport.abort()
                            return response
            if (body.get("stream_options") or {}).get("include_usage"):
                await response.write(
                    b"data: " + orjson.dumps({"id": "cmpl-1", "choices": [], "usage": usage}) + b"\n\n"
                )
            await response.write(b"data: [DONE]\n\n")
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled.set()
            raise
        return response

    async def _token_ids(self, request: web.Request, body: dict[str, Any], ids: list[int]) -> web.StreamResponse:
        """An answer whose text is beside the point (vLLM's decoding of control ids loses them):
        the proxy must read the ids. Two ids a chunk when streamed."""
        mangled = "<unk>"
        if not body.get("stream"):
            choice = {"index": 0, "text": mangled, "token_ids": ids, "finish_reason": "stop", "stop_reason": ids[-1]}
            return web.json_response({"id": "cmpl-1", "choices": [choice]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for start in range(0, len(ids), 2):
            last = start + 2 >= len(ids)
            choice = {
                "index": 0,
                "text": mangled,
                "token_ids": ids[start : start + 2],
                "finish_reason": "stop" if last else None,
                "stop_reason": ids[-1] if last else None,
            }
            await response.write(b"data: " + orjson.dumps({"id": "cmpl-1", "choices": [choice]}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(("/v1/chat/completions", body))
        if self.reject_tools and ("tools" in body or "tool_choice" in body):
            return web.json_response({"object": "error", "message": "tools are not supported", "code": 400}, status=400)
        if any(m.get("role") == "system" and "<tool_call>" in str(m.get("content")) for m in body["messages"]):
            text = self.next_output()  # the generic dialect's chat transport
            if body.get("stream"):
                response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await response.prepare(request)
                for piece in self.chunk(text):
                    frame = {"id": "c", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    await response.write(b"data: " + orjson.dumps(frame) + b"\n\n")
                end = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                await response.write(b"data: " + orjson.dumps(end) + b"\n\ndata: [DONE]\n\n")
                return response
            message = {"role": "assistant", "content": text}
            return web.json_response(
                {"id": "c", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
            )
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            try:
                for index in range(50):
                    await response.write(b'data: {"n": %d}\n\n' % index)
                    if index == 0:
                        await self.held()
                    await asyncio.sleep(self.delay)
                await response.write(b"data: [DONE]\n\n")
            except (asyncio.CancelledError, ConnectionResetError):
                self.cancelled.set()
                raise
            return response
        await self.held()
        return web.Response(body=self.chat_body, content_type="application/json")

    async def other(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            (
                request.path_qs,
                {
                    "raw": body.decode(),
                    "authorization": request.headers.getall("Authorization", []),
                    "headers": {
                        name.lower(): value
                        for name, value in request.headers.items()
                        if name.lower().startswith(("x-", "proxy-", "te", "connection"))
                    },
                },
            )
        )
        return web.json_response({"path": request.path_qs, "method": request.method, "echo": body.decode()})

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def version_answer(self, request: web.Request) -> web.Response:
        self.version_asked += 1
        if self.version_gate is not None:
            await self.version_gate.wait()
        if self.version is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        return web.json_response({"version": self.version})

    async def tokenize(self, request: web.Request) -> web.Response:
        if self.single_tokens is None:
            return await self.other(request)  # the pass-through tests' endpoint
        prompt = (await request.json())["prompt"]
        tokens = [self.single_tokens[prompt]] if prompt in self.single_tokens else [1, 2, 3]
        return web.json_response({"count": len(tokens), "max_model_len": 8192, "tokens": tokens, "token_strs": None})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/health", self.health)
        app.router.add_get("/version", self.version_answer)
        app.router.add_post("/tokenize", self.tokenize)
        app.router.add_route("*", "/{tail:.*}", self.other)
        return app


@contextlib.asynccontextmanager
async def serving(route: str, handler: Callable[[web.Request], Any]) -> AsyncIterator[str]:
    """A small loopback HTTP server answering GET ``route`` with ``handler``; yields its base URL."""
    app = web.Application()
    app.router.add_get(route, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Stack:
    engine: FakeEngine
    proxy: ProxyApp
    url: str  # the proxy's base URL


async def start_stack(engine: FakeEngine, **settings: Any) -> AsyncIterator[Stack]:
    runner = web.AppRunner(engine.app())
    await runner.setup()
    engine_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", engine_port).start()
    settings.setdefault("upstream", f"http://127.0.0.1:{engine_port}")
    settings.setdefault("dialect", "hermes")
    app = ProxyApp(ProxySettings(host="127.0.0.1", **settings))
    await app.start(port=0)
    try:
        yield Stack(engine, app, f"http://127.0.0.1:{app.port}")
    finally:
        await app.close(grace=1.0)
        await runner.cleanup()
