"""Requests without tools pass through untouched; bad input gets OpenAI-shaped errors naming the field."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from fake_engine import SERVED_MODEL, free_port

from toolcall_proxy.server import app as app_module

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
MESSAGES = [{"role": "user", "content": "hi"}]


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with ClientSession() as session, session.post(url, data=data, headers=headers or {}) as response:
        return response.status, orjson.loads(await response.read())


async def test_chat_without_tools_is_relayed_in_openais_shape(stack):
    # vLLM writes null where OpenAI's document wants an array or an object: left out
    stack.engine.chat_body = orjson.dumps(
        {
            "id": "x",
            "choices": [{"message": {"content": "unchanged é", "annotations": None, "function_call": None}}],
            "usage": {"prompt_tokens": 3, "prompt_tokens_details": None},
            "kv_transfer_params": None,
        }
    )
    request = b'{"model": "m",   "messages": [{"role": "user", "content": "hi"}]}'
    async with ClientSession() as session:
        async with session.post(stack.url + "/v1/chat/completions", data=request) as response:
            answer = orjson.loads(await response.read())
    assert answer == {
        "id": "x",
        "choices": [{"message": {"content": "unchanged é", "refusal": None}}],
        "usage": {"prompt_tokens": 3},
        "kv_transfer_params": None,
    }
    assert stack.engine.requests[-1] == ("/v1/chat/completions", orjson.loads(request))


async def test_an_engines_error_to_a_relayed_chat_is_worded_as_openai_words_one(stack):
    stack.engine.reject_tools = True  # its 400 is vLLM's old flat shape, code a number
    status, answer = await post(stack.url + "/v1/chat/completions", {"messages": MESSAGES, "tool_choice": "none"})
    assert status == 400
    assert answer == {
        "error": {"message": "tools are not supported", "type": "invalid_request_error", "param": None, "code": None}
    }


async def test_a_developer_message_relayed_to_a_family_without_the_role_is_its_system_message(stack_with, engine):
    body = {"model": "m", "messages": [{"role": "developer", "content": "Be brief."}, *MESSAGES]}
    async with stack_with(dialect="mistral") as stack:
        assert (await post(stack.url + "/v1/chat/completions", body))[0] == 200
    assert engine.requests[-1][1]["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_streaming_chat_without_tools_is_relayed_as_it_arrives(stack):
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    async with ClientSession() as session, session.post(stack.url + "/v1/chat/completions", json=body) as response:
        first = await response.content.readuntil(b"\n\n")
        rest = await response.read()
    assert first == b'data: {"n": 0}\n\n'
    assert rest.endswith(b"data: [DONE]\n\n") and rest.count(b"data:") == 50


@pytest.mark.parametrize("path", ["/v1/models", "/v1/embeddings", "/tokenize", "/v1/models?x=1", "/v1/score"])
async def test_other_endpoints_pass_through(stack, path):
    async with ClientSession() as session, session.request("POST", stack.url + path, data=b"payload") as response:
        echoed = await response.json()
    assert echoed == {"path": path, "method": "POST", "echo": "payload"}


async def test_completions_pass_through_untouched(stack):
    stack.engine.outputs = ["<tool_call> stays raw here"]
    status, answer = await post(stack.url + "/v1/completions", {"model": "m", "prompt": "p"})
    assert status == 200 and answer["choices"][0]["text"] == "<tool_call> stays raw here"


async def test_health_reports_the_proxy_and_the_engine(stack):
    async with ClientSession() as session, session.get(stack.url + "/health") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok", "upstream": "ok", "dialect": "hermes"}


async def test_health_is_degraded_when_the_engine_is_down_and_keeps_its_address_private(stack_with):
    port = free_port()
    async with stack_with(upstream=f"http://engine-user:engine-pass@127.0.0.1:{port}") as stack:
        async with ClientSession() as session, session.get(stack.url + "/health") as response:
            assert response.status == 503
            body = await response.json()
    assert body["status"] == "degraded" and "not reachable" in body["upstream"]
    assert "engine-pass" not in str(body) and str(port) not in str(body)  # /health needs no key


async def test_metrics_count_requests_and_tool_calls(stack):
    stack.engine.outputs = ['<tool_call>{"name": "f", "arguments": {}}</tool_call>']
    await post(stack.url + "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "tools": [TOOL]})
    async with ClientSession() as session, session.get(stack.url + "/metrics") as response:
        text = await response.text()
    assert 'toolmodel_proxy_requests_total{kind="tools",status="200"} 1.0' in text
    assert 'toolmodel_proxy_tool_calls_total{dialect="hermes"} 1.0' in text
    assert "toolmodel_proxy_request_duration_seconds_bucket" in text


ANSWERED_CALL = {
    "role": "assistant",
    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
}
BAD_REQUESTS = [
    pytest.param(
        {
            "model": "m",
            "messages": MESSAGES,
            "tools": [TOOL],
            "tool_choice": {"type": "function", "function": {"name": "nope"}},
        },
        "tool_choice.function.name",
        id="unknown-named-function",
    ),
    pytest.param(
        {"model": "m", "messages": MESSAGES, "tools": [{"type": "function", "function": {"description": "x"}}]},
        "tools[0].function.name",
        id="tool-without-name",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": MESSAGES,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}],
        },
        "tools[0].function.parameters",
        id="non-object-parameters",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": MESSAGES,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}],
        },
        "tools[0].function.parameters.type",
        id="invalid-json-schema",
    ),
    pytest.param(
        {"model": "m", "messages": MESSAGES, "tools": [TOOL, TOOL]}, "tools[1].function.name", id="duplicate-tool"
    ),
    pytest.param(
        {"model": "m", "messages": MESSAGES, "tools": [{"type": "retrieval"}]}, "tools[0].type", id="non-function-tool"
    ),
    pytest.param(
        {"model": "m", "messages": MESSAGES, "tools": [TOOL], "tool_choice": "sometimes"},
        "tool_choice",
        id="unknown-tool-choice",
    ),
    pytest.param(
        {"model": "m", "messages": MESSAGES, "functions": [{"name": "f"}]}, "functions", id="legacy-functions"
    ),
    pytest.param({"model": "m", "messages": [], "tools": [TOOL]}, "messages", id="no-messages"),
    pytest.param(
        {"model": "m", "messages": [{"role": "wizard", "content": "x"}], "tools": [TOOL]},
        "messages[0].role",
        id="unknown-role",
    ),
    pytest.param(
        {"model": "m", "messages": [*MESSAGES, {"role": "tool"}], "tools": [TOOL]},
        "messages[1].content",
        id="tool-message-without-content",
    ),
    pytest.param(
        {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}], "tools": [TOOL]},
        "messages[0].tool_calls[0].function.name",
        id="history-call-without-name",
    ),
    pytest.param({"model": "m", "messages": MESSAGES, "tools": [TOOL], "n": 99}, "n", id="too-many-choices"),
    pytest.param(
        {"model": "m", "messages": MESSAGES, "tools": [TOOL], "parallel_tool_calls": "yes"},
        "parallel_tool_calls",
        id="parallel-not-bool",
    ),
    pytest.param({"model": "m", "messages": MESSAGES, "tools": "f"}, "tools", id="tools-not-a-list"),
    # shapes that once reached code that assumed the right type (500s)
    pytest.param(
        {"model": "m", "messages": [{"role": ["user"], "content": "x"}], "tools": [TOOL]},
        "messages[0].role",
        id="role-a-list",
    ),
    pytest.param(
        {"model": "m", "messages": [{"role": {"a": 1}, "content": "x"}], "tools": [TOOL]},
        "messages[0].role",
        id="role-an-object",
    ),
    pytest.param(
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": ["x"]}]}], "tools": [TOOL]},
        "messages[0].content[0].text",
        id="text-part-a-list",
    ),
    pytest.param(
        {"model": "m", "messages": [{"role": "user", "content": ["x"]}], "tools": [TOOL]},
        "messages[0].content[0]",
        id="part-not-an-object",
    ),
    pytest.param(
        {"model": "m", "messages": MESSAGES, "tools": [TOOL], "tool_choice": "required", "temperature": "hot"},
        "temperature",
        id="temperature-a-string",
    ),
    pytest.param({"model": "m", "messages": MESSAGES, "tools": [TOOL], "seed": 1.5}, "seed", id="seed-not-integer"),
    pytest.param(
        {"model": "m", "messages": MESSAGES, "tools": [TOOL], "max_tokens": "lots"},
        "max_tokens",
        id="max-tokens-a-string",
    ),
    pytest.param({"model": "m", "messages": MESSAGES, "tools": [TOOL], "stop": {"a": 1}}, "stop", id="stop-an-object"),
    pytest.param({"model": "m", "messages": MESSAGES, "tools": [TOOL], "stop": 123}, "stop", id="stop-a-number"),
    pytest.param(
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 7}]}], "tools": [TOOL]},
        "messages[0].content[0].text",
        id="text-part-a-number",
    ),
    pytest.param(
        {"model": "m", "messages": [*MESSAGES, ANSWERED_CALL, {"role": "tool", "content": "22"}], "tools": [TOOL]},
        "messages[2].tool_call_id",
        id="tool-message-without-its-call-id",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [*MESSAGES, {"role": "tool", "tool_call_id": "call_9", "content": "22"}],
            "tools": [TOOL],
        },
        "messages[1].tool_call_id",
        id="tool-message-answering-no-call",
    ),
    pytest.param({"model": "m", "messages": MESSAGES, "tools": [TOOL], "max_tokens": 0}, "max_tokens", id="no-tokens"),
    pytest.param(
        {"model": "m", "messages": MESSAGES, "tools": [TOOL], "stream_options": {"include_usage": True}},
        "stream_options",
        id="stream-options-without-stream",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}],
            "tools": [TOOL],
        },
        "messages[0].content[0].type",
        id="image-part-for-a-text-model",
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_REQUESTS)
async def test_bad_tool_requests_get_a_400_naming_the_field(stack, body, field):
    status, answer = await post(stack.url + "/v1/chat/completions", body)
    assert status == 400
    error = answer["error"]
    assert error["param"] == field and error["message"].startswith(field)
    assert error["type"] == "invalid_request_error"
    assert stack.engine.requests == []  # nothing reached the engine


async def test_a_body_that_is_not_json_is_a_400(stack):
    status, answer = await post(stack.url + "/v1/chat/completions", b"{not json")
    assert status == 400 and "not valid JSON" in answer["error"]["message"]


async def test_an_oversized_body_is_a_413(stack_with):
    async with stack_with(max_body_bytes=2048) as stack:
        status, answer = await post(
            stack.url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 5000}]}
        )
    assert status == 413 and "--max-body-bytes" in answer["error"]["message"]


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic secret"])
async def test_a_missing_or_wrong_api_key_is_a_401(stack_with, header):
    async with stack_with(api_key="secret") as stack:
        headers = {"Authorization": header} if header else {}
        status, answer = await post(stack.url + "/v1/chat/completions", {"model": "m", "messages": MESSAGES}, headers)
    assert status == 401 and answer["error"]["code"] == "invalid_api_key"


async def test_without_the_key_a_client_costs_only_its_headers(stack_with):
    async with stack_with(api_key="secret", max_body_bytes=16 * 1024 * 1024) as stack:
        port = int(stack.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # a body announced and never sent: the answer comes from the headers alone
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 8388608\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
    assert head.startswith(b"HTTP/1.1 401")
    assert stack.engine.requests == []


async def test_the_right_api_key_passes_and_is_not_forwarded(stack_with):
    async with stack_with(api_key="secret") as stack, ClientSession() as session:
        headers = {"Authorization": "Bearer secret"}
        async with session.post(stack.url + "/tokenize", data=b"x", headers=headers) as response:
            assert response.status == 200
        async with session.get(stack.url + "/health") as response:
            assert response.status == 200  # probes need no key


async def test_headers_that_describe_the_hop_are_not_relayed(stack):
    headers = {
        "Connection": "keep-alive, X-Hop-Secret",
        "X-Hop-Secret": "for the proxy only",
        "Proxy-Anything": "x",
        "TE": "trailers",
        "X-End-To-End": "kept",
    }
    async with (
        ClientSession() as session,
        session.post(stack.url + "/tokenize", data=b"x", headers=headers) as response,
    ):
        assert response.status == 200
    _, seen = stack.engine.requests[-1]
    assert seen["headers"] == {"x-end-to-end": "kept"}


async def test_exactly_one_authorization_reaches_the_engine_the_proxys_own(stack_with):
    async with stack_with(upstream_api_key="engine-key") as stack, ClientSession() as session:
        headers = {"Authorization": "Bearer the-clients"}
        async with session.post(stack.url + "/tokenize", data=b"x", headers=headers) as response:
            assert response.status == 200
    assert stack.engine.requests[-1][1]["authorization"] == ["Bearer engine-key"]


async def test_an_unreachable_engine_is_a_503_that_says_so(stack_with):
    async with stack_with(upstream=f"http://127.0.0.1:{free_port()}") as stack:
        status, answer = await post(
            stack.url + "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "tools": [TOOL]}
        )
    assert status == 503 and "not reachable" in answer["error"]["message"]


async def test_an_engine_answer_whose_choices_are_not_objects_is_a_502(stack, engine):
    engine.completions_body = {"id": "x", "choices": ["not", "objects"]}
    status, answer = await post(
        stack.url + "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "tools": [TOOL]}
    )
    assert status == 502 and "no choices" in answer["error"]["message"]


async def test_a_history_call_whose_arguments_nest_deeper_than_json_allows_is_kept_as_text(stack):
    history = [
        *MESSAGES,
        {
            "role": "assistant",
            "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "[" * 100_000}}],
        },
        {"role": "tool", "tool_call_id": "a", "content": "x"},
    ]
    status, _ = await post(stack.url + "/v1/chat/completions", {"model": "m", "messages": history, "tools": [TOOL]})
    assert status == 200
    assert "[" * 100_000 in stack.engine.requests[-1][1]["prompt"]  # nothing lost: the model sees what was sent


async def test_an_engine_failure_is_a_502_with_the_cause(stack):
    stack.engine.status = 500
    status, answer = await post(
        stack.url + "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "tools": [TOOL]}
    )
    assert status == 502 and "engine exploded" in answer["error"]["message"]


async def test_an_engine_rejection_keeps_its_4xx_and_message(stack):
    stack.engine.status = 400
    status, answer = await post(
        stack.url + "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "tools": [TOOL]}
    )
    assert status == 400 and "engine exploded" in answer["error"]["message"]


async def test_a_slow_engine_is_a_504(stack_with, engine):
    engine.delay = 2
    async with stack_with(upstream_timeout=0.3) as stack:
        status, answer = await post(
            stack.url + "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "tools": [TOOL]}
        )
    assert status == 504 and answer["error"]["code"] == "upstream_timeout"


async def test_an_engine_that_stalls_mid_stream_ends_the_stream_with_an_error_frame(stack_with, engine):
    engine.delay = 2
    async with stack_with(upstream_timeout=0.3) as stack:
        body = {"model": "m", "messages": MESSAGES, "tools": [TOOL], "stream": True}
        async with ClientSession() as session, session.post(stack.url + "/v1/chat/completions", json=body) as response:
            assert response.status == 200  # the stream had begun
            frames = (await response.read()).decode().strip().split("\n\n")
    assert frames[-1] == "data: [DONE]"
    assert orjson.loads(frames[-2][6:])["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize("tools", [False, True])
async def test_a_client_that_disconnects_mid_stream_cancels_the_engine_request(stack, tools):
    stack.engine.delay = 0.05
    stack.engine.outputs = ["word " * 200]
    body: dict[str, Any] = {"model": "m", "messages": MESSAGES, "stream": True}
    if tools:
        body["tools"] = [TOOL]
    async with ClientSession() as session, session.post(stack.url + "/v1/chat/completions", json=body) as response:
        await response.content.readuntil(b"\n\n")
    await asyncio.wait_for(stack.engine.cancelled.wait(), timeout=5)


async def test_a_client_error_is_one_debug_line_and_a_proxy_fault_one_traceback(stack, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG, logger="toolmodel.proxy")
    bad = {"model": "m", "messages": [{"role": ["user"], "content": "x"}], "tools": [TOOL]}
    status, _ = await post(stack.url + "/v1/chat/completions", bad)
    assert status == 400
    client_records = [r for r in caplog.records if r.name == "toolmodel.proxy"]
    assert [r.levelno for r in client_records] == [logging.DEBUG]
    assert client_records[0].exc_info is None and "messages[0].role" in client_records[0].getMessage()

    caplog.clear()

    def broken(body: Any) -> Any:
        raise RuntimeError("a bug in the proxy")

    known = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [TOOL]}
    for _ in range(2):  # kept the second time: known tools are read on the event loop
        assert (await post(stack.url + "/v1/chat/completions", known))[0] == 200
    caplog.clear()
    monkeypatch.setattr(app_module, "parse_tool_request", broken)
    fresh = {**known, "tools": [{"type": "function", "function": {"name": "fresh"}}]}  # read in a worker thread
    for body in (known, fresh):
        status, answer = await post(stack.url + "/v1/chat/completions", body)
        assert status == 500 and answer["error"]["type"] == "server_error"
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 2 and all(r.levelno == logging.ERROR for r in tracebacks)
    assert "Traceback" not in "".join(r.getMessage() for r in caplog.records)


async def test_a_streamed_answer_names_the_engines_model_when_the_request_names_none(stack):
    body = {"messages": MESSAGES, "tools": [TOOL], "stream": True}
    async with ClientSession() as session, session.post(stack.url + "/v1/chat/completions", json=body) as response:
        raw = (await response.read()).decode()
    chunks = [orjson.loads(line[6:]) for line in raw.split("\n\n") if line.startswith("data: {")]
    assert chunks and {chunk["model"] for chunk in chunks} == {SERVED_MODEL}


async def test_a_developer_message_reaches_a_family_without_the_role_as_its_system_turn(stack_with, engine):
    messages = [{"role": "developer", "content": "Answer in French."}, *MESSAGES]
    async with stack_with(dialect="glm4") as stack:
        status, _ = await post(stack.url + "/v1/chat/completions", {"messages": messages, "tools": [TOOL]})
    assert status == 200
    assert "<|system|>\nAnswer in French." in engine.requests[-1][1]["prompt"]


async def test_an_answer_says_it_refused_nothing(stack):
    status, answer = await post(stack.url + "/v1/chat/completions", {"messages": MESSAGES, "tools": [TOOL]})
    assert status == 200 and answer["choices"][0]["message"]["refusal"] is None
