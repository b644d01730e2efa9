# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""The ``openai`` (gpt-oss, harmony) template checked against gpt-oss's official chat template and
against OpenAI's harmony renderer.

Sources of the expected prompts:

* /work/shared/oracle/templates/hf__openai-gpt-oss-120b.jinja (the official HF openai/gpt-oss-120b
  template, via llama.cpp), rendered in the Hugging Face ``apply_chat_template`` environment
  described at the top of ``test_prompts.py`` with ``strftime_now`` pinned to 2024-07-26. It fails
  on ``"content": None`` (``"..." in None``), so the calls' messages were given without a
  ``content`` key for it.
* openai/harmony docs/format.md, "Function calling" (the complete input example, verbatim), and
  openai/harmony src/encoding.rs (``json_schema_to_typescript``, ``template_tools_section``): the
  renderer vLLM's gpt-oss path (vllm/entrypoints/openai/parser/harmony_utils.py) renders chat
  requests with. Where the official template and harmony differ, the template follows harmony.

Deliberate deviations from the official template (each pinned by a test below):

* Tool results are written as given, as harmony does (docs: ``{"sunny": true, "temperature": 20}``);
  the official template JSON-quotes them (``"{\\"temp\\": 22}"``).
* The developer message ends right after the instructions when there are no tools, as harmony
  renders it; the official template leaves a blank line before ``<|end|>``.
* Text sent with calls is a commentary preamble (what the user saw; vLLM's harmony path does the
  same), and reasoning (``reasoning_content``, ``reasoning`` or ``thinking``) is the analysis
  message; the official template writes the text as reasoning and fails when content is None.
* Every call of a message is its own call message and results are matched to calls by
  ``tool_call_id``; the official template renders only the first call and names every result
  after the last call.
* Every system and developer message becomes part of the instructions; the official template
  keeps only the first message's and silently drops the others.
* Nested objects, defaults of enums and multi-line descriptions are written as harmony writes them
  (the official template misplaces whitespace and commas in those).
"""

from __future__ import annotations

from typing import Any

import pytest
from _conversations import PLAIN_CONVERSATION, SEQUENTIAL_CALL_CONVERSATION, TOOLS, call, render_with, tool_round

from toolcall_proxy import rendering
from toolcall_proxy.dialects import get_dialect
from toolcall_proxy.sim import engine

# The system message prints the current date.
pytestmark = pytest.mark.usefixtures("today_is_26_jul_2024")


def render(messages: list[dict[str, Any]], tools: Any = None, **variables: Any) -> str:
    return render_with("openai", messages, tools, **variables)


SYSTEM_PREFIX = """\
<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.
Knowledge cutoff: 2024-06
Current date: 2024-07-26

Reasoning: medium

# Valid channels: analysis, commentary, final. Channel must be included for every message."""

# The official template, SEQUENTIAL_CALL_CONVERSATION (system + tools, user, call, result, answer,
# user, call, result), calls without a content key.
OFFICIAL_TOOL_PROMPT = """\
<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.
Knowledge cutoff: 2024-06
Current date: 2024-07-26

Reasoning: medium

# Valid channels: analysis, commentary, final. Channel must be included for every message.
Calls to these tools must go to the commentary channel: 'functions'.<|end|><|start|>developer<|message|># Instructions

You are a helpful assistant.

# Tools

## functions

namespace functions {

// Current weather in a city (°C or °F)
type get_weather = (_: {
city: string,
unit?: "celsius" | "fahrenheit",
}) => any;

// Local time in an IANA time zone
type get_time = (_: {
timezone: string,
}) => any;

} // namespace functions<|end|><|start|>user<|message|>What's the weather in Paris?<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|><|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"{\\"temp\\": 22, \\"sky\\": \\"sunny\\"}"<|end|><|start|>assistant<|channel|>final<|message|>It is 22 °C and sunny in Paris.<|end|><|start|>user<|message|>And what time is it in Zürich?<|end|><|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{"timezone": "Europe/Zurich"}<|call|><|start|>functions.get_time to=assistant<|channel|>commentary<|message|>"14:05"<|end|><|start|>assistant"""
# The official template, PLAIN_CONVERSATION.
OFFICIAL_PLAIN_PROMPT = """\
<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.
Knowledge cutoff: 2024-06
Current date: 2024-07-26

Reasoning: medium

# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|><|start|>developer<|message|># Instructions

You are a concise assistant.

<|end|><|start|>user<|message|>Hi! Où est la tour Eiffel?<|end|><|start|>assistant<|channel|>final<|message|>In Paris, on the Champ de Mars.<|end|><|start|>user<|message|>How tall is it?<|end|><|start|>assistant"""

# The official template with the deviations applied: results as given, no trailing blank line.
OPENAI_TOOL_PROMPT = OFFICIAL_TOOL_PROMPT.replace(
    '<|message|>"{\\"temp\\": 22, \\"sky\\": \\"sunny\\"}"<|end|>', '<|message|>{"temp": 22, "sky": "sunny"}<|end|>'
).replace('<|message|>"14:05"<|end|>', "<|message|>14:05<|end|>")
OPENAI_PLAIN_PROMPT = OFFICIAL_PLAIN_PROMPT.replace(
    "You are a concise assistant.\n\n<|end|>", "You are a concise assistant.<|end|>"
)

# openai/harmony docs/format.md, "Function calling": the complete input example, verbatim.
HARMONY_DOCS_PROMPT = """\
<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.
Knowledge cutoff: 2024-06
Current date: 2025-06-28

Reasoning: high

# Valid channels: analysis, commentary, final. Channel must be included for every message.
Calls to these tools must go to the commentary channel: 'functions'.<|end|><|start|>developer<|message|># Instructions

Use a friendly tone.

# Tools

## functions

namespace functions {

// Gets the location of the user.
type get_location = () => any;

// Gets the current weather in the provided location.
type get_current_weather = (_: {
// The city and state, e.g. San Francisco, CA
location: string,
format?: "celsius" | "fahrenheit", // default: celsius
}) => any;

// Gets the current weather in the provided list of locations.
type get_multiple_weathers = (_: {
// List of city and state, e.g. ["San Francisco, CA", "New York, NY"]
locations: string[],
format?: "celsius" | "fahrenheit", // default: celsius
}) => any;

} // namespace functions<|end|><|start|>user<|message|>What is the weather like in SF?<|end|><|start|>assistant"""
_FORMAT = {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"}
HARMONY_DOCS_TOOLS = [
    {"type": "function", "function": {"name": "get_location", "description": "Gets the location of the user."}},
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Gets the current weather in the provided location.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                    "format": _FORMAT,
                },
                "required": ["location"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_multiple_weathers",
            "description": "Gets the current weather in the provided list of locations.",
            "parameters": {
                "type": "object",
                "properties": {
                    "locations": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": 'List of city and state, e.g. ["San Francisco, CA", "New York, NY"]',
                    },
                    "format": _FORMAT,
                },
                "required": ["locations"],
            },
        },
    },
]


def test_two_round_tool_conversation_is_the_official_layout_with_results_as_given() -> None:
    prompt = get_dialect("openai").render_prompt(SEQUENTIAL_CALL_CONVERSATION, TOOLS)

    assert prompt == OPENAI_TOOL_PROMPT
    assert prompt.count("<|call|>") == 2
    # the two results are the only difference: both replacements above took place
    assert "\\" in OFFICIAL_TOOL_PROMPT and "\\" not in prompt and '"14:05"' not in prompt


def test_plain_conversation_is_the_official_layout_without_the_trailing_blank_line() -> None:
    assert get_dialect("openai").render_prompt(PLAIN_CONVERSATION, None) == OPENAI_PLAIN_PROMPT


def test_the_harmony_docs_example_renders_verbatim() -> None:
    messages = [
        {"role": "system", "content": "Use a friendly tone."},
        {"role": "user", "content": "What is the weather like in SF?"},
    ]

    prompt = render(messages, HARMONY_DOCS_TOOLS, reasoning_effort="high").replace("2024-07-26", "2025-06-28")

    assert prompt == HARMONY_DOCS_PROMPT


def test_without_instructions_or_tools_there_is_no_developer_message() -> None:
    prompt = render([{"role": "user", "content": "Hi"}])

    assert prompt == SYSTEM_PREFIX + "<|end|><|start|>user<|message|>Hi<|end|><|start|>assistant"


def test_identity_and_reasoning_effort_are_template_variables() -> None:
    prompt = render([{"role": "user", "content": "Hi"}], model_identity="You are Oss.", reasoning_effort="low")

    assert prompt.startswith("<|start|>system<|message|>You are Oss.\nKnowledge cutoff: 2024-06\n")
    assert "\n\nReasoning: low\n\n" in prompt


def test_schemas_are_written_as_harmonys_renderer_writes_them() -> None:
    # Expected from openai/harmony src/encoding.rs json_schema_to_typescript: nested objects indent
    # their properties and closing brace by four spaces, a string default is quoted unless the
    # property is an enum, other defaults are JSON, title and examples become comments, a list of
    # types and nullable become unions. anyOf (which harmony writes as "any") is a union here, and
    # an object without properties is "object" (harmony: an empty brace block).
    tool = {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the catalogue.\nReturns at most `limit` items.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "title": "Query", "examples": ["red shoes"]},
                    "limit": {"type": "integer", "default": 10},
                    "exact": {"type": "boolean", "default": False},
                    "sort": {"type": "string", "default": "relevance"},
                    "filters": {
                        "type": "object",
                        "description": "Narrow the results",
                        "properties": {
                            "price": {"type": "object", "properties": {"max": {"type": "number"}}, "required": ["max"]},
                            "tags": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "ids": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}}}},
                    "cursor": {"type": ["string", "null"]},
                    "note": {"type": "string", "nullable": True},
                    "page": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                    "extra": {"type": "object"},
                    "anything": {},
                    "rows": {"type": "array"},
                },
                "required": ["query"],
            },
        },
    }

    prompt = render([{"role": "user", "content": "Hi"}], [tool])

    assert (
        prompt.split("namespace functions {\n\n")[1].split("\n\n} // namespace functions")[0]
        == """\
// Search the catalogue.
// Returns at most `limit` items.
type search = (_: {
// Query
//
// Examples:
// - "red shoes"
query: string,
limit?: number, // default: 10
exact?: boolean, // default: false
sort?: string, // default: "relevance"
// Narrow the results
filters?: {
    price?: {
        max: number,
        },
    tags?: string[],
    },
ids?: {
    id?: number,
    }[],
cursor?: string | null,
note?: string | null,
page?: number | null,
extra?: object,
anything?: any,
rows?: Array<any>,
}) => any;"""
    )


def test_a_function_without_parameters_or_description() -> None:
    tools = [
        {"type": "function", "function": {"name": "ping", "parameters": {}}},
        {
            "type": "function",
            "function": {"name": "now", "description": None, "parameters": {"type": "object", "properties": {}}},
        },
    ]

    prompt = render([{"role": "user", "content": "Hi"}], tools)

    assert (
        "namespace functions {\n\ntype ping = () => any;\n\ntype now = () => any;\n\n} // namespace functions" in prompt
    )


def test_reasoning_of_a_call_is_kept_until_an_answer_follows() -> None:
    # Official template (with "thinking"): the analysis message is rendered before the call while
    # no final answer follows, and dropped once one does.
    calling: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "Need get_weather.",
            "tool_calls": [call("c1", "get_weather", '{"city": "Paris"}')],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "22"},
    ]
    history = "<|start|>user<|message|>Weather in Paris?<|end|>"
    the_call = (
        '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>'
    )
    result = "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>22<|end|>"

    assert render(calling) == (
        SYSTEM_PREFIX
        + "<|end|>"
        + history
        + "<|start|>assistant<|channel|>analysis<|message|>Need get_weather.<|end|>"
        + the_call
        + result
        + "<|start|>assistant"
    )
    answered = [*calling, {"role": "assistant", "content": "22 °C."}, {"role": "user", "content": "Thanks"}]
    assert render(answered) == (
        SYSTEM_PREFIX
        + "<|end|>"
        + history
        + the_call
        + result
        + "<|start|>assistant<|channel|>final<|message|>22 °C.<|end|><|start|>user<|message|>Thanks<|end|><|start|>assistant"
    )
    for key in ("reasoning", "thinking"):
        renamed = [dict(message) for message in calling]
        renamed[1][key] = renamed[1].pop("reasoning_content")
        assert render(renamed) == render(calling)


def test_text_sent_with_calls_is_a_commentary_preamble() -> None:
    messages = tool_round("Weather in Paris?", [call("c1", "get_weather", '{"city": "Paris"}')], text="Let me check.")

    assert render(messages, add_generation_prompt=False).endswith(
        "<|start|>assistant<|channel|>commentary<|message|>Let me check.<|end|>"
        '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>'
    )


def test_every_call_is_a_message_and_results_are_matched_by_id() -> None:
    messages = [
        {"role": "user", "content": "Paris, and the time in Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                call("c1", "get_weather", '{"city": "Paris"}'),
                call("c2", "get_time", '{"timezone": "Europe/Rome"}'),
            ],
        },
        {"role": "tool", "tool_call_id": "c2", "content": "14:05"},
        {"role": "tool", "tool_call_id": "c1", "content": "22"},
    ]

    prompt = render(messages)

    assert prompt.endswith(
        '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>'
        '<|start|>assistant to=functions.get_time<|channel|>commentary json<|message|>{"timezone": "Europe/Rome"}<|call|>'
        "<|start|>functions.get_time to=assistant<|channel|>commentary<|message|>14:05<|end|>"
        "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>22<|end|>"
        "<|start|>assistant"
    )


def test_results_without_ids_answer_the_calls_in_order() -> None:
    messages = [
        {"role": "user", "content": "Paris and Rome?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"type": "function", "function": {"name": "get_time", "arguments": {"timezone": "Europe/Rome"}}},
            ],
        },
        {"role": "tool", "content": "22"},
        {"role": "tool", "content": "14:05"},
    ]

    prompt = render(messages)

    assert "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>22<|end|>" in prompt
    assert "<|start|>functions.get_time to=assistant<|channel|>commentary<|message|>14:05<|end|>" in prompt


def test_every_system_and_developer_message_is_an_instruction() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "developer", "content": "Answer in French."},
    ]

    assert "<|start|>developer<|message|># Instructions\n\nBe brief.\n\nAnswer in French.<|end|>" in render(messages)


def test_the_last_answer_ends_with_return_without_a_generation_prompt() -> None:
    # Official template, add_generation_prompt false (training): the reasoning and <|return|>.
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!", "thinking": "Greet."}]

    assert render(messages, add_generation_prompt=False) == (
        SYSTEM_PREFIX
        + "<|end|><|start|>user<|message|>Hi<|end|>"
        + "<|start|>assistant<|channel|>analysis<|message|>Greet.<|end|>"
        + "<|start|>assistant<|channel|>final<|message|>Hello!<|return|>"
    )


def test_a_result_without_a_call_and_an_unknown_role_are_rejected() -> None:
    with pytest.raises(rendering.TemplateRenderError, match="answers no call"):
        render([{"role": "user", "content": "Hi"}, {"role": "tool", "tool_call_id": "x", "content": "1"}])
    with pytest.raises(rendering.TemplateRenderError, match="no role"):
        render([{"role": "function", "content": "1"}])


def test_the_simulator_reads_the_tools_back_from_the_namespace() -> None:
    tools, spans = engine.find_tools(render([{"role": "user", "content": "Hi"}], HARMONY_DOCS_TOOLS))

    assert [tool.name for tool in tools] == ["get_location", "get_current_weather", "get_multiple_weathers"]
    assert tools[1].description == "Gets the current weather in the provided location."
    assert tools[1].parameters == {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        },
        "required": ["location"],
    }
    assert tools[2].parameters["properties"]["locations"]["type"] == "array"
    assert tools[0].parameters == {"type": "object", "properties": {}}
    assert len(spans) == 2
