# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""The ``pythonic`` template checked against vLLM's example template for Llama 3.2 pythonic calls.

Source of the expected prompts: /work/shared/oracle/templates/vllm__tool_chat_template_llama3.2_pythonic.jinja
(vLLM examples/tool_chat_template_llama3.2_pythonic.jinja @b188bab44, the template vLLM's docs give
for Llama 3.2 1B/3B with ``--tool-call-parser pythonic``), rendered in the Hugging Face
``apply_chat_template`` environment described at the top of ``test_prompts.py`` (tool-call
arguments turned into dicts first, as vLLM does; ``bos_token=""``; ``strftime_now`` on 26 Jul 2024).

One deliberate deviation is applied by hand to the literals: vLLM's template prints argument
values with ``"%s"|format``, so the call renders as ``[get_weather(city=Paris), get_weather(city=Zürich,
unit=celsius)]`` (not Python); ours writes Python literals, ``city="Paris"``, double-quoted as in
Meta's end-to-end example (llama-models models/llama3_2/text_prompt_format.md). That template
also drops the text of a message with calls, so the checked conversation sends none.
"""

from __future__ import annotations

import json

import pytest
from _conversations import (
    PARALLEL_CALLS_WITHOUT_TEXT,
    PLAIN_CONVERSATION,
    TOOLS,
    WEATHER_TOOL,
    call,
    calls_of,
    read_back,
    render_with,
    tool_round,
)

from toolcall_proxy.dialects import get_dialect

PYTHONIC_TOOL_PROMPT = """\
<|start_header_id|>system<|end_header_id|>

Environment: ipython
Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

You have access to the following functions. To call functions, please respond with a python list of the calls. Respond in the format [func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)] Do not use variables.

{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city (°C or °F)",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {
                    "type": "string"
                },
                "unit": {
                    "type": "string",
                    "enum": [
                        "celsius",
                        "fahrenheit"
                    ]
                }
            },
            "required": [
                "city"
            ]
        }
    }
}

{
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time in an IANA time zone",
        "parameters": {
            "type": "object",
            "properties": {
                "timezone": {
                    "type": "string"
                }
            },
            "required": [
                "timezone"
            ]
        }
    }
}

You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>

What's the weather in Paris and in Zürich?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

[get_weather(city="Paris"), get_weather(city="Zürich", unit="celsius")]<|eot_id|><|start_header_id|>ipython<|end_header_id|>

{"output": "{\\"temp\\": 22, \\"sky\\": \\"sunny\\"}"}<|eot_id|><|start_header_id|>ipython<|end_header_id|>

{"output": "{\\"temp\\": 18, \\"sky\\": \\"cloudy\\"}"}<|eot_id|><|start_header_id|>assistant<|end_header_id|>

Paris: 22 °C and sunny. Zürich: 18 °C and cloudy.<|eot_id|><|start_header_id|>user<|end_header_id|>

What time is it in Zürich?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

"""
PYTHONIC_PLAIN_PROMPT = """\
<|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

You are a concise assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>

Hi! Où est la tour Eiffel?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

In Paris, on the Champ de Mars.<|eot_id|><|start_header_id|>user<|end_header_id|>

How tall is it?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

"""
DEFAULT_SYSTEM = (
    "You are a helpful assistant with tool calling capabilities. Only reply with a tool call if the function "
    "exists in the library provided by the user. If it doesn't exist, just reply directly in natural language. "
    "When you receive a tool call response, use the output to format an answer to the original user question."
)

pytestmark = pytest.mark.usefixtures("today_is_26_jul_2024")


def test_pythonic_parallel_calls_and_results_match_vllm_template_with_python_literal_values() -> None:
    prompt = get_dialect("pythonic").render_prompt(PARALLEL_CALLS_WITHOUT_TEXT, TOOLS)

    assert prompt == PYTHONIC_TOOL_PROMPT


def test_pythonic_plain_conversation_matches_vllm_template() -> None:
    prompt = get_dialect("pythonic").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == PYTHONIC_PLAIN_PROMPT


def test_pythonic_without_a_system_message_uses_the_default_one() -> None:
    # Oracle render of [user] alone, no tools.
    prompt = get_dialect("pythonic").render_prompt([{"role": "user", "content": "Weather in Paris?"}], None)

    assert prompt == (
        "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        f"Today Date: 26 Jul 2024\n\n{DEFAULT_SYSTEM}<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWeather in Paris?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_pythonic_tools_in_the_first_user_message_when_asked() -> None:
    # Oracle render with tools_in_user_message=True.
    prompt = render_with(
        "pythonic", [{"role": "user", "content": "Weather in Paris?"}], [WEATHER_TOOL], tools_in_user_message=True
    )

    assert prompt == (
        "<|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\n"
        f"Today Date: 26 Jul 2024\n\n{DEFAULT_SYSTEM}<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
        "Given the following functions, please respond with a python list for function calls with their proper "
        "arguments to best answer the given prompt.\n\n"
        "Respond in the format [func_name1(params_name1=params_value1, params_name2=params_value2...), "
        "func_name2(params)] Do not use variables.\n\n"
        + json.dumps(WEATHER_TOOL, ensure_ascii=False, indent=4)
        + "\n\nWeather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_pythonic_earlier_calls_are_python_literals_the_parser_reads_back() -> None:
    # Deliberate deviation: vLLM's "%s" would print hi "there", True, None and {'a': [1, 2.5]};
    # and the text sent with the calls is kept (vLLM's template drops it).
    arguments = {"text": 'hi "there" it\'s', "flag": True, "none": None, "nested": {"a": [1, 2.5]}, "n": -3}
    messages = tool_round("Go", [call("c1", "note", json.dumps(arguments)), call("c2", "get_time", "{}")], text="Sure.")

    prompt = get_dialect("pythonic").render_prompt(messages, None, add_generation_prompt=False)

    history_call = prompt.split("<|start_header_id|>assistant<|end_header_id|>\n\n")[1].removesuffix("<|eot_id|>")
    assert history_call == (
        'Sure.[note(text="hi \\"there\\" it\'s", flag=True, none=None, nested={"a": [1, 2.5]}, n=-3), get_time()]'
    )
    result = read_back("pythonic", history_call, ["note", "get_time"])
    assert calls_of(result) == [("note", arguments), ("get_time", {})]
    assert result.content == "Sure."


def test_pythonic_a_result_object_is_written_as_it_is() -> None:
    messages = [{"role": "tool", "tool_call_id": "c1", "content": {"temp": 22}}]

    prompt = get_dialect("pythonic").render_prompt(messages, None, add_generation_prompt=False)

    assert prompt.endswith('<|start_header_id|>ipython<|end_header_id|>\n\n{"temp": 22}<|eot_id|>')
