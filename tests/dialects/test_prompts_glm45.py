# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""The ``glm45`` template checked against GLM-4.5/4.6's chat template.

Source of the expected prompts: Z.ai's GLM-4.6 chat template (Hugging Face zai-org/GLM-4.6) as kept
by llama.cpp, ggml-org/llama.cpp:models/templates/GLM-4.6.jinja at afefa651 (read through the
project's code search; it is not in /work/shared/oracle/templates/), rendered in the Hugging Face
``apply_chat_template`` environment described at the top of ``test_prompts.py``
(``trim_blocks``/``lstrip_blocks``, ``tojson`` with ``ensure_ascii=False``, arguments as objects).
GLM-4.5's own template (zai-org/GLM-4.5), as public copies quote it, differs only in reading
``tc.arguments`` where GLM-4.6's reads ``tc.arguments or {}``: the same prompts for these
conversations. (llama.cpp's models/templates/glm_4_5.jinja is an edited copy with other
whitespace, not the official template.)

Deliberate difference: a message without content (an assistant turn that only calls tools, as
OpenAI clients send it: ``"content": null``) renders as empty text; the official template prints
"None" there ("<think></think>\\nNone\\n<tool_call>...").
"""

from __future__ import annotations

import json

from _conversations import (
    PARALLEL_CALL_ARGUMENTS,
    PARALLEL_CALL_CONVERSATION,
    PLAIN_CONVERSATION,
    SEQUENTIAL_CALL_CONVERSATION,
    TOOLS,
    WEATHER_TOOL,
    call,
    calls_of,
    read_back,
    render_with,
    tool_round,
)

from toolcall_proxy.dialects import get_dialect

GLM45_TOOL_PROMPT = """\
[gMASK]<sop><|system|>
# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city (°C or °F)", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
{"type": "function", "function": {"name": "get_time", "description": "Local time in an IANA time zone", "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
</tools>

For each function call, output the function name and arguments within the following XML format:
<tool_call>{function-name}
<arg_key>{arg-key-1}</arg_key>
<arg_value>{arg-value-1}</arg_value>
<arg_key>{arg-key-2}</arg_key>
<arg_value>{arg-value-2}</arg_value>
...
</tool_call><|system|>
You are a helpful assistant.<|user|>
What's the weather in Paris and in Zürich?<|assistant|>
<think></think>
Let me check both cities.
<tool_call>get_weather
<arg_key>city</arg_key>
<arg_value>Paris</arg_value>
</tool_call>
<tool_call>get_weather
<arg_key>city</arg_key>
<arg_value>Zürich</arg_value>
<arg_key>unit</arg_key>
<arg_value>celsius</arg_value>
</tool_call><|observation|>
<tool_response>
{"temp": 22, "sky": "sunny"}
</tool_response>
<tool_response>
{"temp": 18, "sky": "cloudy"}
</tool_response><|assistant|>
<think></think>
Paris: 22 °C and sunny. Zürich: 18 °C and cloudy.<|user|>
What time is it in Zürich?<|assistant|>"""
GLM45_PLAIN_PROMPT = """\
[gMASK]<sop><|system|>
You are a concise assistant.<|user|>
Hi! Où est la tour Eiffel?<|assistant|>
<think></think>
In Paris, on the Champ de Mars.<|user|>
How tall is it?<|assistant|>"""


def test_glm45_parallel_calls_and_results_match_the_official_template() -> None:
    prompt = get_dialect("glm45").render_prompt(PARALLEL_CALL_CONVERSATION, TOOLS)

    assert prompt == GLM45_TOOL_PROMPT


def test_glm45_plain_conversation_matches_the_official_template() -> None:
    prompt = get_dialect("glm45").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == GLM45_PLAIN_PROMPT


def test_glm45_with_thinking_off_users_say_nothink_and_the_answer_starts_with_an_empty_think_block() -> None:
    # Official template with enable_thinking=False (a chat_template_kwargs of vLLM's chat path).
    prompt = render_with("glm45", PLAIN_CONVERSATION, enable_thinking=False)

    assert prompt == (
        "[gMASK]<sop><|system|>\nYou are a concise assistant.<|user|>\nHi! Où est la tour Eiffel?/nothink"
        "<|assistant|>\n<think></think>\nIn Paris, on the Champ de Mars.<|user|>\nHow tall is it?/nothink"
        "<|assistant|>\n<think></think>"
    )


def test_glm45_reasoning_is_kept_only_after_the_last_user_turn() -> None:
    # Official template: reasoning from reasoning_content or from a leading <think> block of the
    # text, shown only for the answers after the last user message (the current tool loop).
    messages = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "<think>hmm</think>\n\nAnswer"},
        {"role": "user", "content": "y"},
        {"role": "assistant", "content": "", "reasoning_content": " r2 ", "tool_calls": [call("c", "f", "{}")]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"},
        {"role": "assistant", "content": "<think>\nr3\n</think>\n\n a3 "},
    ]

    prompt = get_dialect("glm45").render_prompt(messages, None, add_generation_prompt=False)

    assert prompt == (
        "[gMASK]<sop><|user|>\nx<|assistant|>\n<think></think>\nAnswer<|user|>\ny<|assistant|>\n<think>r2</think>"
        "\n<tool_call>f\n</tool_call><|observation|>\n<tool_response>\nok\n</tool_response>"
        "<|assistant|>\n<think>r3</think>\na3"
    )


def test_glm45_argument_values_are_raw_strings_and_json_for_anything_else() -> None:
    # Official template (with the content-less turn's "None" left out, see the module docstring).
    arguments = {"n": 3, "ok": True, "x": None, "o": {"a": [1, "é"]}, "s": "two\nlines"}
    messages = tool_round("go", [call("c1", "f", json.dumps(arguments))], ["done"])

    prompt = get_dialect("glm45").render_prompt(messages, None)

    assert prompt == (
        "[gMASK]<sop><|user|>\ngo<|assistant|>\n<think></think>\n<tool_call>f\n<arg_key>n</arg_key>\n<arg_value>3</arg_value>"
        "\n<arg_key>ok</arg_key>\n<arg_value>true</arg_value>\n<arg_key>x</arg_key>\n<arg_value>null</arg_value>"
        '\n<arg_key>o</arg_key>\n<arg_value>{"a": [1, "é"]}</arg_value>\n<arg_key>s</arg_key>\n<arg_value>two\nlines</arg_value>'
        "\n</tool_call><|observation|>\n<tool_response>\ndone\n</tool_response><|assistant|>"
    )


def test_glm45_calls_the_template_writes_are_what_the_dialect_writes_and_parses() -> None:
    written = get_dialect("glm45").write_calls(PARALLEL_CALL_ARGUMENTS)

    assert written in GLM45_TOOL_PROMPT
    schemas = {"get_weather": WEATHER_TOOL["function"]["parameters"]}
    assert calls_of(read_back("glm45", written, schemas)) == PARALLEL_CALL_ARGUMENTS


def test_glm45_sequential_rounds_keep_each_call_and_result_in_order() -> None:
    prompt = get_dialect("glm45").render_prompt(SEQUENTIAL_CALL_CONVERSATION, None)

    assert prompt.count("<|observation|>") == 2
    assert "<|assistant|>\n<think></think>\n<tool_call>get_time\n<arg_key>timezone</arg_key>" in prompt
