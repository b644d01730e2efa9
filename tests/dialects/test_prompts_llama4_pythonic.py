# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""The ``llama4_pythonic`` template checked against vLLM's example template for Llama 4.

Source of the expected prompts: /work/shared/oracle/templates/vllm__tool_chat_template_llama4_pythonic.jinja
(vLLM examples/tool_chat_template_llama4_pythonic.jinja @b188bab44, the template vLLM's docs give
for Llama 4 with ``--tool-call-parser llama4_pythonic``), rendered in the Hugging Face
``apply_chat_template`` environment described at the top of ``test_prompts.py`` (tool-call
arguments turned into dicts first, as vLLM does; ``bos_token=""``). That template iterates over the
content of a message with calls, so ``None`` breaks it: the oracle was rendered with ``""`` there,
which ours renders the same as ``None``.

Its string values come out as ours do (``city="Paris"``); the deliberate deviation for other
values (it prints every value in quotes) is tested on its own below.
"""

from __future__ import annotations

import json

from _conversations import PARALLEL_CALLS_WITHOUT_TEXT, PLAIN_CONVERSATION, TOOLS, call, calls_of, read_back, tool_round

from toolcall_proxy.dialects import get_dialect

LLAMA4_TOOL_PROMPT = """\
<|header_start|>system<|header_end|>

You are a helpful assistant.
Here is a list of functions in JSON format that you can invoke. Use exact format: [func_name1(param1=value1, param2=value2), func_name2(...)]
[
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
    },
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
]<|eot|><|header_start|>user<|header_end|>

What's the weather in Paris and in Zürich?<|eot|><|header_start|>assistant<|header_end|>

[get_weather(city="Paris"), get_weather(city="Zürich", unit="celsius")]<|eot|><|header_start|>ipython<|header_end|>

"{\\"temp\\": 22, \\"sky\\": \\"sunny\\"}"<|eot|><|header_start|>ipython<|header_end|>

"{\\"temp\\": 18, \\"sky\\": \\"cloudy\\"}"<|eot|><|header_start|>assistant<|header_end|>

Paris: 22 °C and sunny. Zürich: 18 °C and cloudy.<|eot|><|header_start|>user<|header_end|>

What time is it in Zürich?<|eot|><|header_start|>assistant<|header_end|>

"""
LLAMA4_PLAIN_PROMPT = """\
<|header_start|>system<|header_end|>

You are a concise assistant.<|eot|><|header_start|>user<|header_end|>

Hi! Où est la tour Eiffel?<|eot|><|header_start|>assistant<|header_end|>

In Paris, on the Champ de Mars.<|eot|><|header_start|>user<|header_end|>

How tall is it?<|eot|><|header_start|>assistant<|header_end|>

"""


def test_llama4_parallel_calls_and_results_match_vllm_template() -> None:
    prompt = get_dialect("llama4_pythonic").render_prompt(PARALLEL_CALLS_WITHOUT_TEXT, TOOLS)

    assert prompt == LLAMA4_TOOL_PROMPT


def test_llama4_plain_conversation_matches_vllm_template() -> None:
    prompt = get_dialect("llama4_pythonic").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == LLAMA4_PLAIN_PROMPT


def test_llama4_without_a_system_message_tools_come_with_metas_function_calling_prompt() -> None:
    # Oracle render of the conversation without its system message: Meta's system prompt, then
    # the tools, then the same turns.
    prompt = get_dialect("llama4_pythonic").render_prompt(PARALLEL_CALLS_WITHOUT_TEXT[1:], TOOLS)

    system, rest = prompt.split("<|eot|>", 1)
    assert system.startswith(
        "<|header_start|>system<|header_end|>\n\nYou are a helpful assistant and an expert in function composition."
    )
    assert "NEVER combine text and function calls in the same response\n" in system
    assert system.endswith(
        "Here is a list of functions in JSON format that you can invoke:\n"
        + json.dumps(TOOLS, ensure_ascii=False, indent=4)
    )
    assert rest == LLAMA4_TOOL_PROMPT.split("<|eot|>", 1)[1]


def test_llama4_no_system_turn_without_system_message_or_tools() -> None:
    prompt = get_dialect("llama4_pythonic").render_prompt(PLAIN_CONVERSATION[1:], None)

    assert prompt.startswith("<|header_start|>user<|header_end|>\n\nHi! Où est la tour Eiffel?<|eot|>")


def test_llama4_earlier_calls_are_python_literals_the_parser_reads_back() -> None:
    # Deliberate deviation: vLLM's template prints days="3", flag="True", opts="{'a': None}".
    arguments = {"city": "Zürich", "days": 3, "flag": True, "opts": {"a": None, "b": ["x"]}}
    messages = tool_round("Go", [call("c1", "get_weather", json.dumps(arguments))], ["cold"], text="")

    prompt = get_dialect("llama4_pythonic").render_prompt(messages, None, add_generation_prompt=False)

    assert prompt == (
        "<|header_start|>user<|header_end|>\n\nGo<|eot|>"
        '<|header_start|>assistant<|header_end|>\n\n[get_weather(city="Zürich", days=3, flag=True, opts={"a": None, "b": ["x"]})]<|eot|>'
        '<|header_start|>ipython<|header_end|>\n\n"cold"<|eot|>'
    )
    history_call = prompt.split("<|header_end|>\n\n")[2].removesuffix("<|eot|><|header_start|>ipython")
    assert calls_of(read_back("llama4_pythonic", history_call, ["get_weather"])) == [("get_weather", arguments)]
