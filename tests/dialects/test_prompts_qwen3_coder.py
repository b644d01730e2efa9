# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""The ``qwen3_coder`` template checked against Qwen3-Coder's chat template.

Source of the expected prompts: /work/shared/oracle/templates/vllm__tool_chat_template_qwen3coder.jinja
(vLLM's examples/tool_chat_template_qwen3coder.jinja, Qwen3-Coder's Hugging Face template, revision
"functions"), rendered in the Hugging Face ``apply_chat_template`` environment described at the top
of ``test_prompts.py`` (``trim_blocks``/``lstrip_blocks``, ``tojson`` with ``ensure_ascii=False``,
arguments as objects, ``bos_token=""``). llama.cpp keeps another Hugging Face revision
(llamacpp__Qwen3-Coder.jinja) that differs only in the wording of the tool instructions ("tools" for
"functions", another example, another first reminder); we follow vLLM's.

Deliberate differences, which the official template cannot render (it fails, or writes the result
outside any turn): a tool result that opens the conversation still opens its user turn; missing
content renders as empty text; arguments that are not an object write no parameters.
"""

from __future__ import annotations

import json

from _conversations import (
    PARALLEL_CALL_ARGUMENTS,
    PARALLEL_CALL_CONVERSATION,
    PLAIN_CONVERSATION,
    TOOLS,
    WEATHER_TOOL,
    call,
    calls_of,
    read_back,
    tool_round,
)

from toolcall_proxy.dialects import get_dialect

QWEN3_CODER_TOOL_PROMPT = """\
<|im_start|>system
You are a helpful assistant.

# Tools

You have access to the following functions:

<tools>
<function>
<name>get_weather</name>
<description>Current weather in a city (°C or °F)</description>
<parameters>
<parameter>
<name>city</name>
<type>string</type>
</parameter>
<parameter>
<name>unit</name>
<type>string</type>
<enum>["celsius", "fahrenheit"]</enum>
</parameter>
<required>["city"]</required>
</parameters>
</function>
<function>
<name>get_time</name>
<description>Local time in an IANA time zone</description>
<parameters>
<parameter>
<name>timezone</name>
<type>string</type>
</parameter>
<required>["timezone"]</required>
</parameters>
</function>
</tools>

If you choose to call a function ONLY reply in the following format with NO suffix:

<tool_call>
<function=example_function_name>
<parameter=example_parameter_1>
value_1
</parameter>
<parameter=example_parameter_2>
This is the value for the second parameter
that can span
multiple lines
</parameter>
</function>
</tool_call>

<IMPORTANT>
Reminder:
- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags
- Required parameters MUST be specified
- You may provide optional reasoning for your function call in natural language BEFORE the function call, but NOT after
- If there is no function call available, answer the question like normal with your current knowledge and do not tell the user about function calls
</IMPORTANT><|im_end|>
<|im_start|>user
What's the weather in Paris and in Zürich?<|im_end|>
<|im_start|>assistant
Let me check both cities.

<tool_call>
<function=get_weather>
<parameter=city>
Paris
</parameter>
</function>
</tool_call>
<tool_call>
<function=get_weather>
<parameter=city>
Zürich
</parameter>
<parameter=unit>
celsius
</parameter>
</function>
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
{"temp": 22, "sky": "sunny"}
</tool_response>
<tool_response>
{"temp": 18, "sky": "cloudy"}
</tool_response>
<|im_end|>
<|im_start|>assistant
Paris: 22 °C and sunny. Zürich: 18 °C and cloudy.<|im_end|>
<|im_start|>user
What time is it in Zürich?<|im_end|>
<|im_start|>assistant
"""
QWEN3_CODER_PLAIN_PROMPT = """\
<|im_start|>system
You are a concise assistant.<|im_end|>
<|im_start|>user
Hi! Où est la tour Eiffel?<|im_end|>
<|im_start|>assistant
In Paris, on the Champ de Mars.<|im_end|>
<|im_start|>user
How tall is it?<|im_end|>
<|im_start|>assistant
"""
INSTRUCTIONS_START = "\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>"


def test_qwen3_coder_parallel_calls_and_results_match_the_official_template() -> None:
    prompt = get_dialect("qwen3_coder").render_prompt(PARALLEL_CALL_CONVERSATION, TOOLS)

    assert prompt == QWEN3_CODER_TOOL_PROMPT


def test_qwen3_coder_plain_conversation_matches_the_official_template() -> None:
    prompt = get_dialect("qwen3_coder").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == QWEN3_CODER_PLAIN_PROMPT


def test_qwen3_coder_without_a_system_message_tools_come_with_the_default_identity() -> None:
    # Official template, the same conversation without its system message.
    prompt = get_dialect("qwen3_coder").render_prompt(PARALLEL_CALL_CONVERSATION[1:], TOOLS)

    default = (
        "<|im_start|>system\nYou are Qwen, a helpful AI assistant that can interact with a computer to solve tasks."
    )
    assert prompt == default + QWEN3_CODER_TOOL_PROMPT.removeprefix("<|im_start|>system\nYou are a helpful assistant.")
    assert INSTRUCTIONS_START in prompt


def test_qwen3_coder_argument_values_are_raw_text_objects_as_json_others_as_python_prints_them() -> None:
    # Official template: strings as they are, objects and lists as JSON, anything else through
    # Jinja's string filter (True, None): what the model saw in training.
    arguments = {"n": 3, "ok": True, "x": None, "o": {"a": [1, "é"]}, "s": "two\nlines"}
    messages = tool_round("go", [call("c1", "f", json.dumps(arguments))], ["done"])

    prompt = get_dialect("qwen3_coder").render_prompt(messages, None)

    assert prompt == (
        "<|im_start|>user\ngo<|im_end|>\n<|im_start|>assistant\n<tool_call>\n<function=f>\n"
        "<parameter=n>\n3\n</parameter>\n<parameter=ok>\nTrue\n</parameter>\n<parameter=x>\nNone\n</parameter>\n"
        '<parameter=o>\n{"a": [1, "é"]}\n</parameter>\n<parameter=s>\ntwo\nlines\n</parameter>\n'
        "</function>\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\ndone\n</tool_response>\n<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_qwen3_coder_schema_keys_beyond_name_type_and_description_are_written_as_tags() -> None:
    # Official template: each other key of a parameter, of the parameters schema and of the
    # function becomes <KEY>VALUE</KEY>, objects and lists as JSON.
    tool = {
        "type": "function",
        "function": {
            "name": "search",
            "description": "  Search  ",
            "parameters": {
                "type": "object",
                "properties": {"tags": {"type": "array", "items": {"type": "string"}, "default": ["x"]}},
                "additionalProperties": False,
            },
            "strict": True,
        },
    }

    prompt = get_dialect("qwen3_coder").render_prompt([{"role": "user", "content": "hi"}], [tool])

    assert (
        "<function>\n<name>search</name>\n<description>Search</description>\n<parameters>\n<parameter>\n"
        '<name>tags</name>\n<type>array</type>\n<items>{"type": "string"}</items>\n<default>["x"]</default>\n'
        "</parameter>\n<additionalProperties>False</additionalProperties>\n</parameters>\n<strict>True</strict>\n"
        "</function>\n</tools>"
    ) in prompt


def test_qwen3_coder_a_result_opening_the_conversation_opens_its_user_turn() -> None:
    # Deliberate difference: the official template writes "<tool_response>" outside any turn here.
    prompt = get_dialect("qwen3_coder").render_prompt([{"role": "tool", "tool_call_id": "c", "content": "42"}], None)

    assert prompt == "<|im_start|>user\n<tool_response>\n42\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n"


def test_qwen3_coder_calls_the_template_writes_are_what_the_dialect_writes_and_parses() -> None:
    written = get_dialect("qwen3_coder").write_calls(PARALLEL_CALL_ARGUMENTS)

    assert written in QWEN3_CODER_TOOL_PROMPT
    schemas = {"get_weather": WEATHER_TOOL["function"]["parameters"]}
    assert calls_of(read_back("qwen3_coder", written, schemas)) == PARALLEL_CALL_ARGUMENTS
