"""Request fields on the tool path: each honoured as vLLM's own server honours it (what the engine
received shows it), or refused with a 400 that names it."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientSession

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
MESSAGES = [{"role": "user", "content": "hi"}]


async def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with ClientSession() as session, session.post(url + "/v1/chat/completions", json=body) as response:
        return response.status, await response.json()


async def test_chat_template_kwargs_reach_the_template(stack_with, engine):
    async with stack_with(dialect="glm45") as stack:
        body = {"messages": MESSAGES, "tools": [TOOL], "chat_template_kwargs": {"enable_thinking": False}}
        assert (await post(stack.url, body))[0] == 200
        without = engine.requests[-1][1]["prompt"]
        assert (await post(stack.url, {"messages": MESSAGES, "tools": [TOOL]}))[0] == 200
    assert without.endswith("<think></think>") and not engine.requests[-1][1]["prompt"].endswith("<think></think>")


async def test_reasoning_effort_reaches_the_template(stack_with, engine):
    async with stack_with(dialect="openai") as stack:
        assert (await post(stack.url, {"messages": MESSAGES, "tools": [TOOL], "reasoning_effort": "high"}))[0] == 200
    assert "Reasoning: high" in engine.requests[-1][1]["prompt"]


async def test_vllms_own_sampling_fields_are_relayed(stack, engine):
    extras = {"bad_words": ["darn"], "min_p": 0.1, "repetition_penalty": 1.1, "stop_token_ids": [7], "priority": 2}
    assert (await post(stack.url, {"messages": MESSAGES, "tools": [TOOL], **extras}))[0] == 200
    sent = engine.requests[-1][1]
    assert {key: sent[key] for key in extras} == extras


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logprobs", "yes"),
        ("top_logprobs", 2),  # without logprobs: true
        ("response_format", {"type": "xml"}),
        ("reasoning_effort", "extreme"),
        ("chat_template_kwargs", ["enable_thinking"]),
        ("modalities", ["text", "audio"]),
        ("n", 0.5),
    ],
)
async def test_what_the_tool_path_does_not_honour_is_refused_by_name(stack, engine, field, value):
    status, answer = await post(stack.url, {"messages": MESSAGES, "tools": [TOOL], field: value})
    assert status == 400 and answer["error"]["param"] == field
    assert engine.requests == []


async def test_usage_in_every_chunk_is_refused_by_name(stack, engine):
    body = {"messages": MESSAGES, "tools": [TOOL], "stream": True, "stream_options": {"continuous_usage_stats": True}}
    status, answer = await post(stack.url, body)
    assert status == 400 and answer["error"]["param"] == "stream_options.continuous_usage_stats"


async def test_a_clients_own_vllm_constraint_goes_to_the_engine_where_the_proxy_sends_none(stack, engine):
    body = {"messages": MESSAGES, "tools": [TOOL], "structured_outputs": {"regex": "[a-z]+"}}
    assert (await post(stack.url, body))[0] == 200
    assert engine.requests[-1][1]["structured_outputs"] == {"regex": "[a-z]+"}


async def test_a_clients_own_vllm_constraint_beside_the_proxys_is_refused_by_name(stack, engine):
    engine.version = "0.12.0"
    body = {"messages": MESSAGES, "tools": [TOOL], "tool_choice": "required", "guided_regex": "[a-z]+"}
    status, answer = await post(stack.url, body)
    assert status == 400 and answer["error"]["param"] == "guided_regex"


def test_a_response_format_schema_is_checked_off_the_event_loop():
    from toolcall_proxy.server.validation import tools_known

    answer_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    assert tools_known({"messages": MESSAGES})
    assert not tools_known({"messages": MESSAGES, "response_format": answer_format})
    assert tools_known({"messages": MESSAGES, "response_format": {"type": "json_object"}})
