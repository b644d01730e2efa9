"""The issue's acceptance test: an unmodified OpenAI SDK client, the proxy, and the simulated engine.

For every dialect, streaming and not: the seed question gets three get_current_weather calls
(all at once for families with parallel calls, one per round for ChatGLM3 and Llama 3), the
results go back as tool messages, and the model answers with text. ChatGLM3 runs on its real
tokenizer at both ends: the engine works on ids as vLLM does, so a prompt it was not trained on
leaves the model confused and a call not stopped on its id runs on.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import sim_stack
from openai import AsyncOpenAI, BadRequestError

from toolcall_proxy.demo import QUESTION, WEATHER_TOOL, get_current_weather
from toolcall_proxy.dialects import DIALECTS, get_dialect
from toolcall_proxy.server import app as proxy_app
from toolcall_proxy.sim import engine as sim_engine
from toolcall_proxy.sim.server import SimApp

CITIES = ["San Francisco", "Tokyo", "Paris"]


@pytest.fixture
def running_stack(chatglm3_tokenizer_dir: Path) -> Any:
    """``async for client, engine_url in running_stack(dialect):``, a token-id dialect on the real
    ChatGLM3 tokenizer at both ends."""
    return functools.partial(sim_stack.running_stack, tokenizer=chatglm3_tokenizer_dir)


async def _ask(client: AsyncOpenAI, messages: list[dict[str, Any]], stream: bool) -> tuple[str, list[dict[str, str]]]:
    """One round: the assistant's text and its calls, as the SDK delivers them."""
    if not stream:
        answer = await client.chat.completions.create(model="demo", messages=messages, tools=[WEATHER_TOOL])
        message = answer.choices[0].message
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in message.tool_calls or []
        ]
        assert answer.choices[0].finish_reason == ("tool_calls" if calls else "stop")
        return message.content or "", calls
    chunks = await client.chat.completions.create(model="demo", messages=messages, tools=[WEATHER_TOOL], stream=True)
    text: list[str] = []
    calls_by_index: dict[int, dict[str, str]] = {}
    async for chunk in chunks:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            for delta in choice.delta.tool_calls or []:
                call = calls_by_index.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
    return "".join(text), [calls_by_index[i] for i in sorted(calls_by_index)]


async def _conversation(client: AsyncOpenAI, stream: bool) -> tuple[list[list[dict[str, str]]], str]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    rounds: list[list[dict[str, str]]] = []
    for _ in range(5):
        text, calls = await _ask(client, messages, stream)
        if not calls:
            return rounds, text
        rounds.append(calls)
        messages.append(
            {
                "role": "assistant",
                "content": text or None,
                "tool_calls": [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for c in calls
                ],
            }
        )
        for call in calls:
            result = get_current_weather(**json.loads(call["arguments"]))
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)})
    raise AssertionError("no final answer after 5 rounds")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_the_seed_question_gets_three_weather_calls_then_an_answer(dialect, stream, running_stack):
    async for client, _ in running_stack(dialect):
        rounds, answer = await _conversation(client, stream)
    calls = [call for calls in rounds for call in calls]
    assert [json.loads(call["arguments"])["location"] for call in calls] == CITIES
    assert {call["name"] for call in calls} == {"get_current_weather"}
    if dialect == "mistral":  # Mistral's own shape, which its template and tokenizer expect
        assert all(len(call["id"]) == 9 and call["id"].isalnum() for call in calls)
    elif dialect == "kimi_k2":  # Kimi's own ids, returned as vLLM's kimi_k2 parser returns them
        assert [call["id"] for call in calls] == [f"functions.get_current_weather:{n}" for n in range(3)]
    else:
        assert all(call["id"].startswith("call_") for call in calls)
    expected_rounds = 1 if get_dialect(dialect).parallel_calls else 3
    assert len(rounds) == expected_rounds
    assert all(city in answer for city in CITIES)


async def test_an_engine_that_rejects_tools_like_vllm_0_4_still_gets_tool_calling(running_stack):
    async for client, engine_url in running_stack("chatglm3", reject_tools=True):
        async with AsyncOpenAI(base_url=engine_url + "/v1", api_key="unused", max_retries=0) as direct:
            with pytest.raises(BadRequestError):  # the engine itself refuses `tools` ...
                await direct.chat.completions.create(
                    model="demo", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL]
                )
        rounds, answer = await _conversation(client, stream=False)  # ... and the proxy still works
    assert len(rounds) == 3 and "Paris" in answer


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_a_named_tool_choice_is_obeyed_even_for_an_unrelated_question(dialect, running_stack):
    async for client, _ in running_stack(dialect):
        answer = await client.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "Tell me about Paris."}],
            tools=[WEATHER_TOOL, {"type": "function", "function": {"name": "tell_joke", "parameters": {}}}],
            tool_choice={"type": "function", "function": {"name": "get_current_weather"}},
        )
    calls = answer.choices[0].message.tool_calls
    assert calls and {call.function.name for call in calls} == {"get_current_weather"}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_required_with_a_single_tool_forces_that_tool(dialect, running_stack):
    async for client, _ in running_stack(dialect):
        answer = await client.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "Hello!"}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
        )
    assert answer.choices[0].message.tool_calls[0].function.name == "get_current_weather"


# -- ChatGLM3 on ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_chatglm3_stops_at_its_observation_id_after_each_call(stream, monkeypatch, running_stack):
    stops: list[Any] = []
    record = SimApp._record

    def recording(self: SimApp, prompt_tokens: int, decoded: sim_engine.Decoded) -> None:
        stops.append(decoded.stop_reason)
        record(self, prompt_tokens, decoded)

    monkeypatch.setattr(SimApp, "_record", recording)
    async for client, _ in running_stack("chatglm3"):
        rounds, answer = await _conversation(client, stream)
    assert [json.loads(calls[0]["arguments"])["location"] for calls in rounds] == CITIES
    assert all(city in answer for city in CITIES)
    observation, user = 64797, 64795  # after a call it waits for the result; after its answer, for the user
    assert stops == [observation, observation, observation, user]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_chatglm3_prompted_as_text_as_before_gets_no_call(stream, monkeypatch, caplog, running_stack):
    # The proxy as it was: ChatGLM3's template rendered as text for vLLM to tokenize.
    as_text = dataclasses.replace(get_dialect("chatglm3"), prompt_form="text", token_layout=None)
    monkeypatch.setattr(proxy_app, "get_dialect", lambda name: as_text)
    with caplog.at_level(logging.WARNING):
        async for client, _ in running_stack("chatglm3"):
            rounds, _answer = await _conversation(client, stream)
    assert rounds == []  # the seed question got no call at all
    confused = [r.getMessage() for r in caplog.records if "not trained on" in r.getMessage()]
    assert confused and "[gMASK] sop" in confused[0]
