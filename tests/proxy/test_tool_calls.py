"""Requests with tools: rendered into the model's format, its output parsed into tool_calls."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import ClientSession
from openai import AsyncOpenAI

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
SEARCH = {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}}
QUESTION = [{"role": "user", "content": "What's the weather like in San Francisco, Tokyo, and Paris?"}]
THREE_CALLS = "\n".join(
    "<tool_call>\n"
    + orjson.dumps({"name": "get_current_weather", "arguments": {"location": city, "unit": "celsius"}}).decode()
    + "\n</tool_call>"
    for city in ("San Francisco", "Tokyo", "Paris")
)


@pytest.fixture
async def client():
    """``client(stack)``: an OpenAI SDK client pointed at the proxy, closed after the test."""
    made: list[AsyncOpenAI] = []

    def make(stack: Any, api_key: str = "unused") -> AsyncOpenAI:
        made.append(AsyncOpenAI(base_url=stack.url + "/v1", api_key=api_key, max_retries=0))
        return made[-1]

    yield make
    for sdk in made:
        await sdk.close()


async def test_three_parallel_calls_come_back_as_openai_tool_calls(stack, client):
    stack.engine.outputs = [THREE_CALLS]
    answer = await client(stack).chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert [orjson.loads(c.function.arguments)["location"] for c in calls] == ["San Francisco", "Tokyo", "Paris"]
    assert all(c.id.startswith("call_") and c.type == "function" for c in calls)
    assert len({c.id for c in calls}) == 3


async def test_the_engine_is_asked_for_a_rendered_prompt_with_special_tokens_kept(stack, client):
    stack.engine.outputs = [THREE_CALLS]
    await client(stack).chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER], stop=["END"])
    path, sent = stack.engine.requests[-1]
    assert path == "/v1/completions"  # works on engines that reject `tools` in chat requests
    assert '"name": "get_current_weather"' in sent["prompt"]
    assert sent["prompt"].endswith("<|im_start|>assistant\n")
    assert sent["skip_special_tokens"] is False
    assert sent["stop"] == ["END", "<|im_end|>", "<|endoftext|>"]
    assert "max_tokens" in sent and sent["max_tokens"] is None  # vLLM: what remains of the context


async def test_text_around_calls_is_content_and_plain_answers_stay_plain(stack, client):
    stack.engine.outputs = ["Let me check.\n" + THREE_CALLS, "It is sunny everywhere."]
    first = await client(stack).chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER])
    assert first.choices[0].message.content == "Let me check."
    second = await client(stack).chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER])
    assert second.choices[0].message.content == "It is sunny everywhere."
    assert second.choices[0].message.tool_calls is None
    assert second.choices[0].finish_reason == "stop"


async def test_streamed_calls_arrive_name_first_then_argument_fragments(stack, client):
    stack.engine.outputs = [THREE_CALLS]
    stream = await client(stack).chat.completions.create(
        model="m", messages=QUESTION, tools=[WEATHER], stream=True, stream_options={"include_usage": True}
    )
    fragments: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    finish = usage = None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                if call.function and call.function.name:
                    assert call.index not in names, "the name is sent once"
                    assert call.id.startswith("call_")
                    names[call.index] = call.function.name
                fragments.setdefault(call.index, []).append(call.function.arguments or "")
    assert names == {0: "get_current_weather", 1: "get_current_weather", 2: "get_current_weather"}
    assert all(len(pieces) > 3 for pieces in fragments.values()), "arguments stream as they are generated"
    assert [orjson.loads("".join(p))["location"] for p in fragments.values()] == ["San Francisco", "Tokyo", "Paris"]
    assert finish == "tool_calls"
    assert usage is not None and usage.total_tokens > 0


async def test_streamed_content_is_relayed_before_the_call_begins(stack, client):
    stack.engine.outputs = ["Checking the weather now. " + THREE_CALLS]
    stream = await client(stack).chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER], stream=True)
    order = []
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                order.append("content")
            if choice.delta.tool_calls:
                order.append("call")
    assert order[0] == "content" and order.count("content") > 3
    assert "content" not in order[order.index("call") :]


async def test_sse_frames_are_shaped_like_openai(stack, client):
    stack.engine.outputs = ['<tool_call>{"name": "search", "arguments": {}}</tool_call>']
    body = {"model": "m", "messages": QUESTION, "tools": [SEARCH], "stream": True}
    async with ClientSession() as session, session.post(stack.url + "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"] == "text/event-stream"
        raw = (await response.read()).decode()
    frames = [line[6:] for line in raw.split("\n\n") if line]
    assert frames[-1] == "[DONE]"
    chunks = [orjson.loads(frame) for frame in frames[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_choice_none_offers_no_tools_and_parses_nothing(stack, stream, client):
    stack.engine.outputs = [THREE_CALLS]
    response = await client(stack).chat.completions.create(
        model="m", messages=QUESTION, tools=[WEATHER], tool_choice="none", stream=stream
    )
    if stream:
        text = "".join([c.choices[0].delta.content or "" async for c in response if c.choices])
    else:
        text = response.choices[0].message.content
        assert response.choices[0].message.tool_calls is None
    assert "<tool_call>" in text
    assert "get_current_weather" not in stack.engine.requests[-1][1]["prompt"]


async def test_named_tool_choice_puts_the_call_in_the_models_mouth(stack, client):
    stack.engine.outputs = ['{"location": "Paris"}}\n</tool_call>']
    answer = await client(stack).chat.completions.create(
        model="m",
        messages=QUESTION,
        tools=[WEATHER, SEARCH],
        tool_choice={"type": "function", "function": {"name": "get_current_weather"}},
    )
    prompt = stack.engine.requests[-1][1]["prompt"]
    assert prompt.endswith('<tool_call>\n{"name": "get_current_weather", "arguments": ')
    (call,) = answer.choices[0].message.tool_calls
    assert call.function.name == "get_current_weather"
    assert orjson.loads(call.function.arguments) == {"location": "Paris"}


async def test_required_choice_retries_once_when_the_model_answers_without_a_call(stack, client):
    stack.engine.outputs = ["I would rather chat.", '{"name": "search", "arguments": {}}\n</tool_call>']
    answer = await client(stack).chat.completions.create(
        model="m", messages=QUESTION, tools=[WEATHER, SEARCH], tool_choice="required"
    )
    assert [c.function.name for c in answer.choices[0].message.tool_calls] == ["search"]
    first, second = stack.engine.requests[-2:]
    assert first[1]["prompt"].endswith("<|im_start|>assistant\n<tool_call>\n")
    assert second[1]["temperature"] >= 0.7 and second[1]["seed"] != first[1].get("seed")


async def test_required_choice_without_any_call_answers_with_the_text_minus_the_prefill(stack, client):
    stack.engine.outputs = ["I would rather chat.", "Still no."]
    answer = await client(stack).chat.completions.create(
        model="m", messages=QUESTION, tools=[WEATHER], tool_choice="required"
    )
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].message.content == "Still no."


async def test_a_call_to_a_tool_that_was_not_offered_is_never_returned(stack, client):
    stack.engine.outputs = ['<tool_call>{"name": "rm_rf", "arguments": {"path": "/"}}</tool_call>']
    answer = await client(stack).chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER])
    assert answer.choices[0].message.tool_calls is None
    assert "rm_rf" in answer.choices[0].message.content


async def test_parallel_tool_calls_false_yields_one_call(stack, client):
    stack.engine.outputs = [THREE_CALLS, THREE_CALLS]
    answer = await client(stack).chat.completions.create(
        model="m", messages=QUESTION, tools=[WEATHER], parallel_tool_calls=False
    )
    assert len(answer.choices[0].message.tool_calls) == 1
    stream = await client(stack).chat.completions.create(
        model="m", messages=QUESTION, tools=[WEATHER], parallel_tool_calls=False, stream=True
    )
    indices = {
        call.index async for chunk in stream if chunk.choices for call in chunk.choices[0].delta.tool_calls or []
    }
    assert indices == {0}


async def test_malformed_call_is_returned_as_content_and_counted(stack, client):
    broken = '<tool_call>{"name": "get_current_weather", "arguments": {"location": "Paris"]}</tool_call>'
    stack.engine.outputs = [broken]
    answer = await client(stack).chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER])
    assert answer.choices[0].message.tool_calls is None
    assert '"location": "Paris"' in answer.choices[0].message.content
    metrics = stack.proxy.metrics.exposition().decode()
    assert 'toolmodel_proxy_parse_failures_total{dialect="hermes",reason="syntax"} 1.0' in metrics


def strict(tool: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {**tool["function"], "strict": True}}


@pytest.mark.parametrize("stream", [False, True])
async def test_strict_tool_arguments_that_break_the_schema_become_content(stack, stream, client):
    stack.engine.outputs = ['<tool_call>{"name": "get_current_weather", "arguments": {"unit": "kelvin"}}</tool_call>']
    response = await client(stack).chat.completions.create(
        model="m", messages=QUESTION, tools=[strict(WEATHER)], stream=stream
    )
    if stream:
        chunks = [c async for c in response if c.choices]
        assert not any(c.choices[0].delta.tool_calls for c in chunks)
        content = "".join(c.choices[0].delta.content or "" for c in chunks)
    else:
        assert response.choices[0].message.tool_calls is None
        content = response.choices[0].message.content
    assert "kelvin" in content
    metrics = stack.proxy.metrics.exposition().decode()
    assert 'reason="schema"} 1.0' in metrics


async def test_strict_tool_calls_stream_whole_once_validated(stack, client):
    stack.engine.outputs = ['<tool_call>{"name": "get_current_weather", "arguments": {"location": "Oslo"}}</tool_call>']
    stream = await client(stack).chat.completions.create(
        model="m", messages=QUESTION, tools=[strict(WEATHER)], stream=True
    )
    deltas = [call async for c in stream if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert len(deltas) == 1
    assert orjson.loads(deltas[0].function.arguments) == {"location": "Oslo"}


async def test_non_strict_schema_mismatch_keeps_the_call_and_counts_it(stack, client):
    stack.engine.outputs = ['<tool_call>{"name": "get_current_weather", "arguments": {"unit": "kelvin"}}</tool_call>']
    answer = await client(stack).chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER])
    assert answer.choices[0].message.tool_calls[0].function.name == "get_current_weather"
    assert 'reason="schema"} 1.0' in stack.proxy.metrics.exposition().decode()


async def test_truncated_output_reports_length(stack, client):
    stack.engine.outputs = ['<tool_call>{"name": "get_current_weather", "arguments": {"location": "Par']
    stack.engine.finish_reason = "length"
    answer = await client(stack).chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER], max_tokens=20)
    assert answer.choices[0].finish_reason == "length"
    assert answer.choices[0].message.tool_calls is None
    assert stack.engine.requests[-1][1]["max_tokens"] == 20


async def test_multi_turn_history_is_rendered_in_the_models_own_turns(stack, client):
    history = [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_current_weather", "arguments": '{"location": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 22}'},
    ]
    stack.engine.outputs = ["It is 22 degrees in Paris."]
    answer = await client(stack).chat.completions.create(model="m", messages=history, tools=[WEATHER])
    prompt = stack.engine.requests[-1][1]["prompt"]
    assert '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Paris"}}\n</tool_call>' in prompt
    assert '<tool_response>\n{"temperature": 22}\n</tool_response>' in prompt
    assert answer.choices[0].message.content == "It is 22 degrees in Paris."


async def test_tool_turns_without_tools_still_use_the_tool_path(stack, client):
    history = [
        *QUESTION,
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "ok"},
    ]
    answer = await client(stack).chat.completions.create(model="m", messages=history)
    assert stack.engine.requests[-1][0] == "/v1/completions"
    assert answer.choices[0].message.content == "Plain answer."


async def test_generic_dialect_keeps_the_models_chat_template(stack_with, client):
    async with stack_with(dialect="generic") as stack:
        stack.engine.outputs = ['<tool_call>{"name": "search", "arguments": {}}</tool_call>'] * 2
        answer = await client(stack).chat.completions.create(model="m", messages=QUESTION, tools=[SEARCH])
        path, sent = stack.engine.requests[-1]
        assert path == "/v1/chat/completions" and "tools" not in sent
        assert "<tools>" in sent["messages"][0]["content"]
        assert answer.choices[0].message.tool_calls[0].function.name == "search"
        stream = await client(stack).chat.completions.create(model="m", messages=QUESTION, tools=[SEARCH], stream=True)
        deltas = [t async for c in stream if c.choices for t in c.choices[0].delta.tool_calls or []]
        assert [t.function.name for t in deltas if t.function.name] == ["search"]


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_comes_back_apart_from_content_and_calls_under_both_names(stack, client, stream):
    stack.engine.outputs = [
        "<think>\nThe user wants Paris; <tool_call> here is only a thought.\n</think>\n\n"
        'Checking.<tool_call>{"name": "get_current_weather", "arguments": {"location": "Paris"}}</tool_call>'
    ]
    response = await client(stack).chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER], stream=stream)
    if stream:
        reasoning, content, names = [], [], []
        async for chunk in response:
            for choice in chunk.choices:
                delta = choice.delta.model_dump()
                assert delta.get("reasoning") == delta.get("reasoning_content")
                reasoning.append(delta.get("reasoning_content") or "")
                content.append(delta.get("content") or "")
                names += [c["function"]["name"] for c in delta.get("tool_calls") or [] if c["function"].get("name")]
        thought, text = "".join(reasoning), "".join(content)
    else:
        message = response.choices[0].message.model_dump()
        assert message["reasoning"] == message["reasoning_content"]  # current vLLM's name, and the older one
        thought, text = message["reasoning_content"], message["content"]
        names = [c["function"]["name"] for c in message["tool_calls"]]
    assert thought == "The user wants Paris; <tool_call> here is only a thought."
    assert text == "Checking."
    assert names == ["get_current_weather"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_mistral_calls_get_mistral_shaped_ids_or_keep_the_models_own(stack_with, client, stream):
    # v11 writes its id before the arguments ([CALL_ID]): kept. Without one, the proxy makes a
    # 9-character id, which Mistral's template and tokenizer need when it comes back.
    output = (
        '[TOOL_CALLS]get_current_weather[CALL_ID]a1B2c3D4e[ARGS]{"location": "Paris"}'
        '[TOOL_CALLS]get_current_weather[ARGS]{"location": "Tokyo"}'
    )
    async with stack_with(dialect="mistral") as stack:
        stack.engine.outputs = [output]
        sdk = client(stack)
        if stream:
            chunks = await sdk.chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER], stream=True)
            ids = [
                c.id
                async for chunk in chunks
                for choice in chunk.choices
                for c in choice.delta.tool_calls or []
                if c.id
            ]
        else:
            answer = await sdk.chat.completions.create(model="m", messages=QUESTION, tools=[WEATHER])
            ids = [c.id for c in answer.choices[0].message.tool_calls]
        assert "[AVAILABLE_TOOLS]" in stack.engine.requests[-1][1]["prompt"]
    assert ids[0] == "a1B2c3D4e"
    assert len(ids) == 2 and len(ids[1]) == 9 and ids[1].isalnum()


async def test_usage_counts_every_engine_call_a_retry_included(stack, client):
    stack.engine.outputs = ["Not a call.", '{"location": "Paris"}}</tool_call>']
    answer = await client(stack).chat.completions.create(
        model="m", messages=QUESTION, tools=[WEATHER], tool_choice="required"
    )
    assert answer.choices[0].message.tool_calls
    first, second = (10 + len("Not a call.") // 3), (10 + len('{"location": "Paris"}}</tool_call>') // 3)
    assert answer.usage.prompt_tokens == 20 and answer.usage.total_tokens == first + second


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_several_choices_are_each_parsed_and_streamed_with_their_index(stack, client, stream):
    paris = '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Paris"}}\n</tool_call>'
    stack.engine.outputs = [paris, "It is sunny.", paris.replace("Paris", "Tokyo")]
    request = {"model": "m", "messages": QUESTION, "tools": [WEATHER], "n": 3}
    if not stream:
        answer = await client(stack).chat.completions.create(**request)
        choices = {
            c.index: (c.message.content, [t.function.arguments for t in c.message.tool_calls or []], c.finish_reason)
            for c in answer.choices
        }
    else:
        content: dict[int, str] = {}
        calls: dict[int, list[str]] = {}
        finish: dict[int, str] = {}
        async for chunk in await client(stack).chat.completions.create(**request, stream=True):
            for c in chunk.choices:
                content[c.index] = content.get(c.index, "") + (c.delta.content or "")
                for t in c.delta.tool_calls or []:
                    if t.function.name:
                        calls.setdefault(c.index, []).append("")
                    calls[c.index][-1] += t.function.arguments or ""
                if c.finish_reason:
                    finish[c.index] = c.finish_reason
        choices = {i: (content.get(i) or None, calls.get(i, []), finish[i]) for i in finish}
    assert stack.engine.requests[-1][1]["n"] == 3
    assert choices == {
        0: (None, ['{"location": "Paris"}'], "tool_calls"),
        1: ("It is sunny.", [], "stop"),
        2: (None, ['{"location": "Tokyo"}'], "tool_calls"),
    }
