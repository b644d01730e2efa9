"""Tool calls the model cannot get wrong: a simulated engine scripted to misbehave (a wrong name,
arguments of the wrong types, prose instead of a call, two calls for one) behind the proxy.

With the proxy's decode-time constraint the engine (llguidance over bytes and the family's control
tokens, as vLLM's guidance backend runs a grammar) can only write what the family's parser reads
as valid calls of the offered tools; the answer then holds valid calls, exactly one for a named
choice, at most one with ``parallel_tool_calls: false``, streamed and not. The same requests with
the constraint off show each fault getting through (or the call getting lost).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sim_stack

from toolcall_proxy.demo import WEATHER_TOOL
from toolcall_proxy.dialects import DIALECTS

QUESTION = [{"role": "user", "content": "What's the weather like in Paris?"}]
WEATHER = WEATHER_TOOL
STRICT_WEATHER = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
BOOKING = {
    "type": "function",
    "function": {
        "name": "book_room",
        "description": "Book a hotel room for a guest",
        "parameters": {
            "type": "object",
            "properties": {
                "guest": {"$ref": "#/$defs/Guest"},
                "nights": {"type": "integer", "minimum": 1},
                "notes": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["guest", "nights"],
            "$defs": {"Guest": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
        },
    },
}


def _filler(index: int) -> dict[str, Any]:
    kinds: list[dict[str, Any]] = [
        {"type": "string", "enum": ["low", "high"]},
        {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
        {"type": "integer", "minimum": 0},
        {"anyOf": [{"type": "number"}, {"type": "string"}]},
    ]
    return {
        "type": "function",
        "function": {
            "name": f"inventory_task_{index}",
            "description": f"Inventory task number {index}",
            "parameters": {"type": "object", "properties": {"value": kinds[index % 4]}, "required": ["value"]},
        },
    }


TEN = [WEATHER, BOOKING, *(_filler(i) for i in range(8))]
NAMED = {"type": "function", "function": {"name": "get_current_weather"}}
CASES: dict[str, dict[str, Any]] = {
    "required-1-tool": {"tools": [WEATHER], "tool_choice": "required"},
    "required-2-tools": {"tools": [WEATHER, BOOKING], "tool_choice": "required"},
    "required-10-tools": {"tools": TEN, "tool_choice": "required"},
    "named": {"tools": [WEATHER, BOOKING], "tool_choice": NAMED},
    "auto-strict": {"tools": [STRICT_WEATHER, BOOKING]},
    "one-call": {"tools": [WEATHER, BOOKING], "tool_choice": "required", "parallel_tool_calls": False},
}
MISBEHAVIOURS = ["wrong-name", "bad-arguments", "prose", "extra-call"]
# Where the fault, unconstrained, breaks the request's promise (prose is a right answer under
# "auto"; an extra call under "required" with parallel calls on is a valid answer; under
# "one-call" the proxy drops the second call itself).
BROKEN_UNCONSTRAINED = {
    "wrong-name": ["required-2-tools", "auto-strict"],
    "bad-arguments": ["required-2-tools", "named", "auto-strict"],
    "prose": ["required-2-tools", "named"],
}
# Mistral's [TOOL_CALLS] is a control token not written <...>: a grammar names it by its id.


@pytest.fixture
def stack(chatglm3_tokenizer_dir: Path) -> Any:
    return functools.partial(sim_stack.running_stack, tokenizer=chatglm3_tokenizer_dir)


async def _calls(client: Any, request: dict[str, Any], stream: bool) -> list[tuple[str, str]]:
    """The (name, arguments) of the calls the client gets."""
    if not stream:
        answer = await client.chat.completions.create(model="demo", messages=QUESTION, **request)
        return [(c.function.name, c.function.arguments) for c in answer.choices[0].message.tool_calls or []]
    calls: dict[int, list[str]] = {}
    async for chunk in await client.chat.completions.create(model="demo", messages=QUESTION, stream=True, **request):
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            call = calls.setdefault(delta.index, ["", ""])
            call[0] += delta.function.name or ""
            call[1] += delta.function.arguments or ""
    return [(name, arguments) for name, arguments in (calls[i] for i in sorted(calls))]


def _problems(case: str, calls: list[tuple[str, str]]) -> list[str]:
    """What in the answer breaks the request's promise; empty when it holds."""
    request = CASES[case]
    schemas = {tool["function"]["name"]: tool["function"]["parameters"] for tool in request["tools"]}
    problems = []
    for name, arguments in calls:
        if name not in schemas:
            problems.append(f"{name!r} was not offered")
            continue
        try:
            jsonschema.validate(json.loads(arguments), schemas[name])
        except (ValueError, jsonschema.ValidationError) as error:
            problems.append(f"{name} arguments {arguments}: {str(error).splitlines()[0]}")
    if request.get("tool_choice") == NAMED and [name for name, _ in calls] != ["get_current_weather"]:
        problems.append(f"named get_current_weather, got {[name for name, _ in calls]}")
    if not calls:
        problems.append("no call, where the model had to call (or meant to)")
    if request.get("parallel_tool_calls") is False and len(calls) > 1:
        problems.append(f"{len(calls)} calls with parallel_tool_calls false")
    return problems


async def _broken_promises(stack: Any, dialect: str, fault: str, cases: list[str], **proxy: Any) -> dict[str, Any]:
    """Each case's problems, whole and streamed, on one stack: {"case streamed": [problem, ...]}."""
    found: dict[str, Any] = {}
    async for client, _ in stack(dialect, misbehave=(fault,), proxy=proxy):
        for case in cases:
            for stream in (False, True):
                problems = _problems(case, await _calls(client, CASES[case], stream))
                found[f"{case} {'streamed' if stream else 'whole'}"] = problems
    return found


@pytest.mark.parametrize("fault", MISBEHAVIOURS)
@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_a_misbehaving_model_under_the_constraint_writes_valid_calls(dialect, fault, stack):
    # prose is a right answer under "auto"
    cases = [case for case in CASES if (case, fault) != ("auto-strict", "prose")]
    found = await _broken_promises(stack, dialect, fault, cases)
    assert {case: problems for case, problems in found.items() if problems} == {}


@pytest.mark.parametrize("fault", sorted(BROKEN_UNCONSTRAINED))
@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_without_the_constraint_the_same_faults_get_through(dialect, fault, stack):
    found = await _broken_promises(stack, dialect, fault, BROKEN_UNCONSTRAINED[fault], guided_decoding="off")
    assert [case for case, problems in found.items() if not problems] == []


ANSWER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_a_response_format_holds_a_model_that_answers_in_prose_to_its_schema(dialect, stack):
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}}
    async for client, _ in stack(dialect):
        answer = await client.chat.completions.create(
            model="demo", messages=QUESTION, tools=[WEATHER], tool_choice="none", response_format=response_format
        )
    message = answer.choices[0].message
    assert not message.tool_calls
    jsonschema.validate(json.loads(message.content or ""), ANSWER_SCHEMA)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("dialect", ["hermes", "chatglm3"])
async def test_logprobs_come_back_for_every_token_with_the_likeliest_beside_them(dialect, stream, stack):
    request = {"model": "demo", "messages": QUESTION, "tools": [WEATHER], "logprobs": True, "top_logprobs": 2}
    async for client, _ in stack(dialect):
        if stream:
            content = []
            async for chunk in await client.chat.completions.create(**request, stream=True):
                for choice in chunk.choices:
                    content += choice.logprobs.content if choice.logprobs and choice.logprobs.content else []
        else:
            answer = await client.chat.completions.create(**request)
            content = answer.choices[0].logprobs.content
    assert content and all(item.logprob < 0 and len(item.top_logprobs) == 2 for item in content)
    assert all(bytes(item.bytes).decode() == item.token for item in content)
