"""The conversations and tools the prompt tests (``test_prompts*.py``) render through every dialect.

Each family's expected prompts are the official templates' renderings of these same messages, so
the messages are written once, here: plain data, and small builders for the short conversations
the tests vary.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from toolcall_proxy import rendering
from toolcall_proxy.dialects import get_dialect
from toolcall_proxy.parsing import ParseResult, fold

Message = dict[str, Any]


def function_tool(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """A tool as OpenAI clients offer it."""
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


WEATHER_TOOL = function_tool(
    "get_weather",
    "Current weather in a city (°C or °F)",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"],
    },
)
TIME_TOOL = function_tool(
    "get_time",
    "Local time in an IANA time zone",
    {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
)
TOOLS = [WEATHER_TOOL, TIME_TOOL]


def call(call_id: str, name: str, arguments: str | dict[str, Any]) -> dict[str, Any]:
    """A tool call as OpenAI clients send it back: ``arguments`` is a JSON string (or already an object)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# Hermes/Qwen: two parallel calls with text before them, two results, an answer, a follow-up.
PARALLEL_CALL_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What's the weather in Paris and in Zürich?"},
    {
        "role": "assistant",
        "content": "Let me check both cities.",
        "tool_calls": [
            call("call_1", "get_weather", '{"city": "Paris"}'),
            call("call_2", "get_weather", '{"city": "Zürich", "unit": "celsius"}'),
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 22, "sky": "sunny"}'},
    {"role": "tool", "tool_call_id": "call_2", "content": '{"temp": 18, "sky": "cloudy"}'},
    {"role": "assistant", "content": "Paris: 22 °C and sunny. Zürich: 18 °C and cloudy."},
    {"role": "user", "content": "What time is it in Zürich?"},
]
# The same without the text sent with the calls ("content": None), for the templates that print
# only the calls of such a message, or cannot render text beside them.
PARALLEL_CALLS_WITHOUT_TEXT = copy.deepcopy(PARALLEL_CALL_CONVERSATION)
PARALLEL_CALLS_WITHOUT_TEXT[2]["content"] = None
# The calls of PARALLEL_CALL_CONVERSATION as (name, arguments), as ``Dialect.write_calls`` takes them.
PARALLEL_CALL_ARGUMENTS = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Zürich", "unit": "celsius"})]

# ChatGLM3 and Llama 3 (one call per turn): two rounds of call + result.
SEQUENTIAL_CALL_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [call("call_1", "get_weather", '{"city": "Paris"}')]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 22, "sky": "sunny"}'},
    {"role": "assistant", "content": "It is 22 °C and sunny in Paris."},
    {"role": "user", "content": "And what time is it in Zürich?"},
    {"role": "assistant", "content": None, "tool_calls": [call("call_2", "get_time", '{"timezone": "Europe/Zurich"}')]},
    {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
]

PLAIN_CONVERSATION = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Hi! Où est la tour Eiffel?"},
    {"role": "assistant", "content": "In Paris, on the Champ de Mars."},
    {"role": "user", "content": "How tall is it?"},
]

# Two calls in one message, ids c1 and c2: get_weather for Paris, then for Rome.
PARIS_AND_ROME_CALLS = [
    call("c1", "get_weather", '{"city": "Paris"}'),
    call("c2", "get_weather", '{"city": "Rome"}'),
]


def tool_round(
    question: str, calls: Sequence[dict[str, Any]], results: Sequence[str] = (), *, text: str | None = None
) -> list[Message]:
    """The user asks ``question``; the assistant answers with ``text`` (None: no text) and ``calls``;
    then the first ``len(results)`` calls get their results, in order."""
    if len(results) > len(calls):
        raise ValueError(f"{len(results)} results for {len(calls)} calls")
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": text, "tool_calls": list(calls)},
        *(
            {"role": "tool", "tool_call_id": tool_call["id"], "content": result}
            for tool_call, result in zip(calls, results, strict=False)
        ),
    ]


def render_with(dialect_name: str, messages: list[Message], tools: Any = None, **variables: Any) -> str:
    """Render a dialect's template with extra template variables (``date_string``, ``bos_token``...)."""
    context = {"add_generation_prompt": True, "bos_token": "", "eos_token": "", **variables}
    return rendering.render(
        get_dialect(dialect_name).template,
        messages=rendering.normalize_messages(messages),
        tools=tools,
        **context,
    )


def read_back(dialect_name: str, text: str, tools: Any) -> ParseResult:
    """What the dialect's parser makes of ``text`` (calls as the template writes them), fed whole."""
    parser = get_dialect(dialect_name).parser(tools)
    return fold([*parser.feed(text), *parser.finish()])


def calls_of(result: ParseResult) -> list[tuple[str, Any]]:
    """The calls of a response as (name, decoded arguments)."""
    return [(parsed.name, json.loads(parsed.arguments)) for parsed in result.calls]
