# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""The ``kimi_k2`` template checked against Kimi-K2-Instruct's chat template.

Source of the expected prompts: /work/shared/oracle/templates/llamacpp__Kimi-K2-Instruct.jinja (the later
Hugging Face revision of moonshotai/Kimi-K2-Instruct's template, as llama.cpp keeps it), rendered in
the Hugging Face ``apply_chat_template`` environment described at the top of ``test_prompts.py``
(``trim_blocks``/``lstrip_blocks``, ``tojson`` with ``ensure_ascii=False``, arguments as objects),
except that its sandbox lets values change (``SandboxedEnvironment``): that template keeps its call
ids in a list with ``append`` and ``pop``, which the immutable sandbox refuses. Ours prints the same
without them.

That revision, not the first one (hf__moonshotai-Kimi-K2.jinja, FORMATS.md §13), is followed: the
first numbers calls per message (``functions.NAME:0`` in every turn), names each result by the
client's ``tool_call_id`` (so results and calls line up only if the client kept Kimi's ids) and
writes a literal backslash-n after "## Return of ID"; the later one numbers the calls of the whole
conversation, names each result by the call it answers in order, and writes a line break.
"""

from __future__ import annotations

from _conversations import (
    PARALLEL_CALL_ARGUMENTS,
    PARALLEL_CALL_CONVERSATION,
    PLAIN_CONVERSATION,
    SEQUENTIAL_CALL_CONVERSATION,
    TOOLS,
    call,
    calls_of,
    read_back,
)

from toolcall_proxy.dialects import get_dialect

KIMI_K2_TOOL_PROMPT = """\
<|im_system|>tool_declare<|im_middle|>[{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city (°C or °F)", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}, {"type": "function", "function": {"name": "get_time", "description": "Local time in an IANA time zone", "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}]<|im_end|><|im_system|>system<|im_middle|>You are a helpful assistant.<|im_end|><|im_user|>user<|im_middle|>What's the weather in Paris and in Zürich?<|im_end|><|im_assistant|>assistant<|im_middle|>Let me check both cities.<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|><|tool_call_begin|>functions.get_weather:1<|tool_call_argument_begin|>{"city": "Zürich", "unit": "celsius"}<|tool_call_end|><|tool_calls_section_end|><|im_end|><|im_system|>tool<|im_middle|>## Return of functions.get_weather:0
{"temp": 22, "sky": "sunny"}<|im_end|><|im_system|>tool<|im_middle|>## Return of functions.get_weather:1
{"temp": 18, "sky": "cloudy"}<|im_end|><|im_assistant|>assistant<|im_middle|>Paris: 22 °C and sunny. Zürich: 18 °C and cloudy.<|im_end|><|im_user|>user<|im_middle|>What time is it in Zürich?<|im_end|><|im_assistant|>assistant<|im_middle|>"""
KIMI_K2_PLAIN_PROMPT = """\
<|im_system|>system<|im_middle|>You are a concise assistant.<|im_end|><|im_user|>user<|im_middle|>Hi! Où est la tour Eiffel?<|im_end|><|im_assistant|>assistant<|im_middle|>In Paris, on the Champ de Mars.<|im_end|><|im_user|>user<|im_middle|>How tall is it?<|im_end|><|im_assistant|>assistant<|im_middle|>"""
KIMI_K2_SEQUENTIAL_PROMPT = """\
<|im_system|>system<|im_middle|>You are a helpful assistant.<|im_end|><|im_user|>user<|im_middle|>What's the weather in Paris?<|im_end|><|im_assistant|>assistant<|im_middle|><|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|><|im_end|><|im_system|>tool<|im_middle|>## Return of functions.get_weather:0
{"temp": 22, "sky": "sunny"}<|im_end|><|im_assistant|>assistant<|im_middle|>It is 22 °C and sunny in Paris.<|im_end|><|im_user|>user<|im_middle|>And what time is it in Zürich?<|im_end|><|im_assistant|>assistant<|im_middle|><|tool_calls_section_begin|><|tool_call_begin|>functions.get_time:1<|tool_call_argument_begin|>{"timezone": "Europe/Zurich"}<|tool_call_end|><|tool_calls_section_end|><|im_end|><|im_system|>tool<|im_middle|>## Return of functions.get_time:1
14:05<|im_end|><|im_assistant|>assistant<|im_middle|>"""


def test_kimi_k2_parallel_calls_and_results_match_the_official_template() -> None:
    prompt = get_dialect("kimi_k2").render_prompt(PARALLEL_CALL_CONVERSATION, TOOLS)

    assert prompt == KIMI_K2_TOOL_PROMPT


def test_kimi_k2_plain_conversation_matches_the_official_template() -> None:
    prompt = get_dialect("kimi_k2").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == KIMI_K2_PLAIN_PROMPT


def test_kimi_k2_numbers_the_calls_of_the_whole_conversation() -> None:
    # The second round's call is functions.get_time:1, whatever id the client sent back (call_2).
    prompt = get_dialect("kimi_k2").render_prompt(SEQUENTIAL_CALL_CONVERSATION, None)

    assert prompt == KIMI_K2_SEQUENTIAL_PROMPT
    assert "## Return of functions.get_time:1\n14:05" in prompt


def test_kimi_k2_without_a_system_message_a_default_one_comes_first() -> None:
    # Official template: the default system turn, and the line break its layout leaves after it.
    prompt = get_dialect("kimi_k2").render_prompt(PARALLEL_CALL_CONVERSATION[1:], TOOLS)

    tools_turn, rest = KIMI_K2_TOOL_PROMPT.split(
        "<|im_system|>system<|im_middle|>You are a helpful assistant.<|im_end|>"
    )
    default = "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>\n"
    assert prompt == tools_turn + default + rest


def test_kimi_k2_names_turns_by_the_message_name_and_numbers_results_beyond_the_calls() -> None:
    # Official template: a message's `name` stands for its role in the header; a result with no
    # call left to answer gets functions.NAME:N from its own name ("unknown" without one).
    messages = [
        {"role": "user", "content": "x", "name": "alice"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call("a", "get_time", "{}"), call("b", "f", "not json")],
        },
        {"role": "tool", "tool_call_id": "a", "content": "r1"},
        {"role": "tool", "tool_call_id": "b", "content": "r2"},
        {"role": "tool", "tool_call_id": "d", "content": "r3", "name": "h"},
        {"role": "tool", "tool_call_id": "e", "content": "r4"},
    ]

    prompt = get_dialect("kimi_k2").render_prompt(messages, None)

    assert prompt == (
        "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>\n"
        "<|im_user|>alice<|im_middle|>x<|im_end|><|im_assistant|>assistant<|im_middle|><|tool_calls_section_begin|>"
        "<|tool_call_begin|>functions.get_time:0<|tool_call_argument_begin|>{}<|tool_call_end|>"
        "<|tool_call_begin|>functions.f:1<|tool_call_argument_begin|>not json<|tool_call_end|>"
        "<|tool_calls_section_end|><|im_end|>"
        "<|im_system|>tool<|im_middle|>## Return of functions.get_time:0\nr1<|im_end|>"
        "<|im_system|>tool<|im_middle|>## Return of functions.f:1\nr2<|im_end|>"
        "<|im_system|>h<|im_middle|>## Return of functions.h:2\nr3<|im_end|>"
        "<|im_system|>tool<|im_middle|>## Return of functions.unknown:2\nr4<|im_end|>"
        "<|im_assistant|>assistant<|im_middle|>"
    )


def test_kimi_k2_calls_the_template_writes_are_what_the_dialect_writes_and_parses() -> None:
    written = get_dialect("kimi_k2").write_calls(PARALLEL_CALL_ARGUMENTS)

    assert written in KIMI_K2_TOOL_PROMPT
    result = read_back("kimi_k2", written, ["get_weather"])
    assert calls_of(result) == PARALLEL_CALL_ARGUMENTS
    assert [c.call_id for c in result.calls] == ["functions.get_weather:0", "functions.get_weather:1"]
