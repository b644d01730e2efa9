"""A vLLM stand-in that misbehaves on request, run as its own process by the fault suite.

    python faulty_engine.py PORT

``POST /v1/completions`` and ``/v1/chat/completions`` answer by the request's ``model``:

* ``ok`` (or anything not below): one Hermes tool call, like a model that did its job;
* ``hang``: never answers; ``reset``: drops the connection; ``garbage``: bytes that are not HTTP;
* ``choices-not-objects``: ``{"choices": [1, 2]}``; ``not-json``: a 200 whose body is not JSON;
* ``error``: vLLM's 500 error object; ``trickle``: a stream of one tool call, one frame per 50 ms,
  for 10 s (a client that disconnects must end it; ``GET /stats`` counts open streams);
* ``pattern-bomb``: a call whose argument is 30 ``a``s and a ``!``, which a backtracking engine
  takes exponential time to refuse against ``^(a+)+$``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
from aiohttp import web

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
BOMB = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "' + "a" * 30 + '!"}}\n</tool_call>'
OPEN_STREAMS = 0


def completion(text: str) -> dict[str, Any]:
    choice = {"index": 0, "text": text, "finish_reason": "stop"}
    usage = {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32}
    return {"id": "cmpl-1", "object": "text_completion", "model": "m", "choices": [choice], "usage": usage}


async def generate(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model = body.get("model")
    if model == "hang":
        await asyncio.sleep(3600)
    if model == "reset":
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(3600)
    if model == "garbage":
        assert request.transport is not None
        request.transport.write(b"\x00\x01 this is not HTTP \xff\r\n\r\n")
        request.transport.close()
        await asyncio.sleep(3600)
    if model == "choices-not-objects":
        return web.json_response({"id": "x", "choices": [1, 2]})
    if model == "not-json":
        return web.Response(body=b"{this is not json", content_type="application/json")
    if model == "error":
        return web.json_response({"object": "error", "message": "engine exploded", "code": 500}, status=500)
    if model == "trickle":
        return await trickle(request)
    return web.json_response(completion(BOMB if model == "pattern-bomb" else CALL))


async def trickle(request: web.Request) -> web.StreamResponse:
    global OPEN_STREAMS
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    OPEN_STREAMS += 1
    try:
        for index in range(200):
            text = CALL[:12] if index == 0 else " "
            frame = {"id": "cmpl-1", "choices": [{"index": 0, "text": text, "finish_reason": None}]}
            await response.write(b"data: " + orjson.dumps(frame) + b"\n\n")
            await asyncio.sleep(0.05)
        await response.write(b"data: [DONE]\n\n")
    finally:
        OPEN_STREAMS -= 1
    return response


async def stats(request: web.Request) -> web.Response:
    return web.json_response({"open_streams": OPEN_STREAMS})


async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)


def main() -> None:
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/v1/completions", generate)
    app.router.add_post("/v1/chat/completions", generate)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, shutdown_timeout=0.5)


if __name__ == "__main__":
    main()
