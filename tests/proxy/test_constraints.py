"""Decode-time constraints as the engine is asked for them: the fields its version reads, the
grammar of the family's calls, what happens when the engine refuses one, and strict per tool.

What a grammar allows is tested in tests/parsing/test_constraint.py; that the simulated engine
then writes valid calls, in tests/e2e/test_constrained_calls.py.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from openai import AsyncOpenAI

from toolcall_proxy.server.constraints import engine_fields, version_tuple

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}
NAMED = {"type": "function", "function": {"name": "get_current_weather"}}
QUESTION = [{"role": "user", "content": "What's the weather like in Paris?"}]
PARIS_CALL = '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Paris"}}\n</tool_call>'


def client(stack: Any) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{stack.url}/v1", api_key="unused", max_retries=0)


async def ask(stack: Any, **request: Any) -> Any:
    request.setdefault("tools", [WEATHER])
    async with client(stack) as openai:
        answer = await openai.chat.completions.create(model="m", messages=QUESTION, **request)
        if request.get("stream"):
            return [chunk async for chunk in answer]
        return answer


def streamed_calls(chunks: list[Any]) -> list[Any]:
    return [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]


def generations(engine: Any) -> list[dict[str, Any]]:
    """What the engine was asked to generate (not its /version and /tokenize)."""
    return [body for path, body in engine.requests if path.endswith("/completions")]


def constraint_fields(sent: dict[str, Any]) -> dict[str, Any]:
    return {key: sent[key] for key in ("structured_outputs", "guided_grammar", "guided_json") if key in sent}


@pytest.mark.parametrize(
    ("version", "fields"),
    [("0.12.0", "structured_outputs"), ("0.11.1", "structured_outputs"), ("0.10.2", "guided"), ("0.4.3", "guided")],
)
def test_the_engines_version_picks_the_fields(version, fields):
    assert engine_fields(version) == fields


def test_versions_read_as_vllm_writes_them():
    assert version_tuple("0.11.0rc1") == (0, 11, 0)
    assert version_tuple("0.10.1.1+cu128") == (0, 10, 1, 1)
    assert engine_fields("0.3.3") == "off"


async def test_a_required_choice_sends_the_grammar_in_the_fields_the_engine_reads(stack, engine):
    engine.version = "0.12.0"
    engine.outputs = [PARIS_CALL]
    answer = await ask(stack, tool_choice="required")
    sent = engine.requests[-1][1]
    grammar = sent["structured_outputs"]["grammar"]
    assert '"get_current_weather"' in grammar and "%json" in grammar
    assert sent["prompt"].endswith("<|im_start|>assistant\n"), "the grammar starts the calls: no prefill"
    assert [c.function.name for c in answer.choices[0].message.tool_calls] == ["get_current_weather"]


async def test_markers_are_named_as_the_served_models_tokenizer_has_them(stack_with, engine):
    engine.version = "0.12.0"
    # <tool_call> one token (Qwen's added token), </tool_call> spelled in pieces; Mistral's
    # [TOOL_CALLS] one token with an id, as no grammar can name it by its text
    engine.single_tokens = {"<tool_call>": 151657, "<|im_end|>": 151645, "[TOOL_CALLS]": 5}
    engine.outputs = [PARIS_CALL, '[TOOL_CALLS][{"name": "get_current_weather", "arguments": {"location": "Paris"}}]']
    async with stack_with() as stack:
        await ask(stack, tools=[WEATHER, SEARCH], tool_choice="required")
    grammar = engine.requests[-1][1]["structured_outputs"]["grammar"]
    assert "<tool_call>" in grammar.replace('"<tool_call>"', ""), "a token reference, not a string"
    assert '"</tool_call>"' in grammar, "text, as the tokenizer has no such token"
    async with stack_with(dialect="mistral") as stack:
        await ask(stack, tools=[WEATHER, SEARCH], tool_choice="required")
    grammar = engine.requests[-1][1]["structured_outputs"]["grammar"]
    assert "<[5]>" in grammar and '"[TOOL_CALLS]"' not in grammar


async def test_an_engine_before_0_11_gets_guided_grammar(stack, engine):
    engine.version = "0.10.2"
    engine.outputs = [PARIS_CALL]
    await ask(stack, tool_choice=NAMED)
    assert set(constraint_fields(engine.requests[-1][1])) == {"guided_grammar"}


async def test_the_engine_is_asked_its_version_once(stack, engine):
    engine.version = "0.12.0"
    engine.outputs = [PARIS_CALL] * 3
    for _ in range(3):
        await ask(stack, tool_choice="required")
    assert engine.version_asked == 1
    assert ["structured_outputs" in sent for sent in generations(engine)] == [True] * 3


async def test_an_engine_without_a_version_is_not_sent_constraints(stack, engine, caplog):
    engine.outputs = [PARIS_CALL]
    with caplog.at_level(logging.WARNING, "toolmodel.proxy"):
        await ask(stack, tool_choice="required")
    assert constraint_fields(engine.requests[-1][1]) == {}
    assert "takes no grammar" in caplog.text
    assert engine.requests[-1][1]["prompt"].endswith('"arguments": '), "the prefill forces the call instead"


async def test_auto_constrains_only_when_a_tool_is_strict(stack, engine):
    engine.version = "0.12.0"
    engine.outputs = ["Plain answer.", "Plain answer."]
    await ask(stack)
    assert constraint_fields(engine.requests[-1][1]) == {}
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    async with client(stack) as openai:
        await openai.chat.completions.create(model="m", messages=QUESTION, tools=[strict, SEARCH])
    grammar = engine.requests[-1][1]["structured_outputs"]["grammar"]
    assert "TEXT" in grammar, "free text stays free under auto"
    assert '"search"' in grammar, "a tool that is not strict can still be called"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_refused_constraint_falls_back_to_the_prefill_and_is_not_sent_again(stack, engine, caplog, stream):
    engine.version = "0.12.0"
    engine.refuse_constraints = True
    engine.outputs = ['{"name": "get_current_weather", "arguments": {"location": "Paris"}}\n</tool_call>'] * 2
    with caplog.at_level(logging.WARNING, "toolmodel.proxy"):
        for _ in range(2):
            answer = await ask(stack, tools=[WEATHER, SEARCH], tool_choice="required", stream=stream)
            calls = streamed_calls(answer) if stream else answer.choices[0].message.tool_calls
            assert [c.function.name for c in calls] == ["get_current_weather"]
    sent = [constraint_fields(body) != {} for body in generations(engine)]
    assert sent == [True, False, False], "refused once, then the same tools go without"
    assert caplog.text.count("the engine refused a tool-call constraint") == 1
    async with ClientSession() as session, session.get(f"{stack.url}/metrics") as response:
        metrics = await response.text()
    assert 'toolmodel_proxy_unconstrained_total{dialect="hermes",reason="refused"} 2.0' in metrics


async def test_an_engine_error_that_is_not_the_constraints_is_not_retried_for_ever(stack, engine):
    engine.version = "0.12.0"
    engine.status = 400
    with pytest.raises(Exception, match="engine exploded"):
        await ask(stack, tool_choice="required")
    assert [constraint_fields(body) != {} for body in generations(engine)] == [True, False]


async def test_a_family_whose_markers_cannot_be_named_gets_its_named_arguments_constrained(stack_with, engine):
    engine.version = "0.12.0"
    engine.outputs = ['{"location": "Paris"}}]']
    async with stack_with(dialect="mistral") as stack:
        answer = await ask(stack, tool_choice=NAMED)
    sent = engine.requests[-1][1]
    assert sent["structured_outputs"] == {"json": WEATHER["function"]["parameters"]}
    assert sent["prompt"].endswith('"arguments": '), "the prefill ends where the arguments begin"
    (call,) = answer.choices[0].message.tool_calls
    assert orjson.loads(call.function.arguments) == {"location": "Paris"}


@pytest.mark.parametrize("mode", ["structured_outputs", "guided"])
async def test_the_flag_overrides_the_engines_version(stack_with, engine, mode):
    engine.outputs = [PARIS_CALL]
    async with stack_with(guided_decoding=mode) as stack:
        await ask(stack, tool_choice="required")
    assert set(constraint_fields(engine.requests[-1][1])) == {mode if mode != "guided" else "guided_grammar"}


async def test_off_sends_no_constraint(stack_with, engine):
    engine.version = "0.12.0"
    engine.outputs = [PARIS_CALL]
    async with stack_with(guided_decoding="off") as stack:
        await ask(stack, tool_choice="required")
    assert constraint_fields(engine.requests[-1][1]) == {}


@pytest.mark.parametrize("stream", [False, True])
async def test_strict_applies_per_tool(stack, engine, stream):
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    engine.outputs = [
        '<tool_call>\n{"name": "search", "arguments": {"query": 7}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": 7}}\n</tool_call>'
    ]
    request = {"model": "m", "messages": QUESTION, "tools": [strict, SEARCH]}
    async with client(stack) as openai:
        if stream:
            chunks = [chunk async for chunk in await openai.chat.completions.create(**request, stream=True)]
            names = [t.function.name for t in streamed_calls(chunks) if t.function.name]
            content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            message = (await openai.chat.completions.create(**request)).choices[0].message
            names, content = [c.function.name for c in message.tool_calls or []], message.content or ""
    assert names == ["search"], "the call of the tool that is not strict is kept as OpenAI keeps it"
    assert "get_current_weather" in content, "the strict tool's invalid call is not claimed as a call"


ANSWER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER, "strict": True}}


async def test_response_format_holds_an_answer_without_calls_to_its_schema(stack, engine):
    engine.version = "0.12.0"
    engine.outputs = ['{"city": "Paris"}']
    answer = await ask(stack, tool_choice="none", response_format=RESPONSE_FORMAT)
    grammar = engine.requests[-1][1]["structured_outputs"]["grammar"]
    assert grammar.startswith("start: ws %json") and '"required": ["city"]' in grammar
    assert orjson.loads(answer.choices[0].message.content) == {"city": "Paris"}


async def test_response_format_beside_tools_is_the_answer_when_no_call_is_made(stack, engine):
    engine.version = "0.12.0"
    engine.outputs = ['{"city": "Paris"}']
    await ask(stack, response_format=RESPONSE_FORMAT)
    grammar = engine.requests[-1][1]["structured_outputs"]["grammar"]
    assert "answer: ws %json" in grammar and '"get_current_weather"' in grammar


async def test_response_format_goes_to_an_engine_that_takes_no_grammar_as_its_own(stack, engine):
    engine.outputs = ['{"city": "Paris"}']
    await ask(stack, tool_choice="none", response_format=RESPONSE_FORMAT)
    assert engine.requests[-1][1]["response_format"] == RESPONSE_FORMAT


async def test_a_response_format_that_is_no_schema_is_refused_by_name(stack, engine):
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": "object"}}
    with pytest.raises(Exception, match=r"response_format\.json_schema\.schema"):
        await ask(stack, response_format=bad)
