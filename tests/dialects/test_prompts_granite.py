# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""The ``granite`` template checked against IBM's chat template for Granite 3.3.

Source of the expected prompts: /work/shared/oracle/templates/hf__ibm-granite-granite-3.3-2B-Instruct.jinja
(the chat_template of ibm-granite/granite-3.3-2b-instruct, as kept by llama.cpp), rendered in the
Hugging Face ``apply_chat_template`` environment described at the top of ``test_prompts.py``
(tool-call arguments turned into dicts first, as vLLM does; ``strftime_now`` on 26 Jul 2024).

IBM's template prints only ``message['content']`` for every message, so it cannot render a call
message whose content is ``None`` and drops the calls of one whose content is ``""`` (the oracle
was rendered with ``""``, giving ``<|start_of_role|>assistant<|end_of_role|><|end_of_text|>``). The
deliberate deviation applied by hand to the literal: the calls follow the text as
``<|tool_call|>[{"name": ..., "arguments": ...}, ...]``, the way Granite 3.x writes them (vLLM's
examples/tool_chat_template_granite.jinja renders them too, indented). Granite 4.0 is served by
the ``hermes`` dialect, not this one.
"""

from __future__ import annotations

import pytest
from _conversations import PARALLEL_CALLS_WITHOUT_TEXT, PLAIN_CONVERSATION, TOOLS, call, tool_round

from toolcall_proxy.dialects import get_dialect

GRANITE_TOOL_PROMPT = """\
<|start_of_role|>system<|end_of_role|>You are a helpful assistant.<|end_of_text|>
<|start_of_role|>available_tools<|end_of_role|>[
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
]<|end_of_text|>
<|start_of_role|>user<|end_of_role|>What's the weather in Paris and in Zürich?<|end_of_text|>
<|start_of_role|>assistant<|end_of_role|><|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}]<|end_of_text|>
<|start_of_role|>tool<|end_of_role|>{"temp": 22, "sky": "sunny"}<|end_of_text|>
<|start_of_role|>tool<|end_of_role|>{"temp": 18, "sky": "cloudy"}<|end_of_text|>
<|start_of_role|>assistant<|end_of_role|>Paris: 22 °C and sunny. Zürich: 18 °C and cloudy.<|end_of_text|>
<|start_of_role|>user<|end_of_role|>What time is it in Zürich?<|end_of_text|>
<|start_of_role|>assistant<|end_of_role|>"""
GRANITE_PLAIN_PROMPT = """\
<|start_of_role|>system<|end_of_role|>You are a concise assistant.<|end_of_text|>
<|start_of_role|>user<|end_of_role|>Hi! Où est la tour Eiffel?<|end_of_text|>
<|start_of_role|>assistant<|end_of_role|>In Paris, on the Champ de Mars.<|end_of_text|>
<|start_of_role|>user<|end_of_role|>How tall is it?<|end_of_text|>
<|start_of_role|>assistant<|end_of_role|>"""
DEFAULT_SYSTEM = "Knowledge Cutoff Date: April 2024. Today's Date: July 26, 2024. You are Granite, developed by IBM."
TOOLS_INSTRUCTION = (
    " You are a helpful assistant with access to the following tools. When a tool is required to answer the "
    "user's query, respond only with <|tool_call|> followed by a JSON list of tools used. If a tool does not exist "
    "in the provided list of tools, notify the user that you do not have the ability to fulfill the request."
)

pytestmark = pytest.mark.usefixtures("today_is_26_jul_2024")


def test_granite_parallel_calls_and_results_match_ibm_template_plus_the_calls() -> None:
    prompt = get_dialect("granite").render_prompt(PARALLEL_CALLS_WITHOUT_TEXT, TOOLS)

    assert prompt == GRANITE_TOOL_PROMPT


def test_granite_plain_conversation_matches_ibm_template() -> None:
    prompt = get_dialect("granite").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == GRANITE_PLAIN_PROMPT


def test_granite_without_a_system_message_uses_ibms_default_one() -> None:
    # Oracle renders: without tools "... You are a helpful AI assistant."; with tools the
    # instruction to answer with <|tool_call|>, then the available_tools turn.
    plain = get_dialect("granite").render_prompt(PLAIN_CONVERSATION[1:], None)
    with_tools = get_dialect("granite").render_prompt(PARALLEL_CALLS_WITHOUT_TEXT[1:], TOOLS)

    assert plain == GRANITE_PLAIN_PROMPT.replace(
        "You are a concise assistant.", DEFAULT_SYSTEM + " You are a helpful AI assistant."
    )
    assert with_tools == GRANITE_TOOL_PROMPT.replace("You are a helpful assistant.", DEFAULT_SYSTEM + TOOLS_INSTRUCTION)


def test_granite_text_sent_with_calls_comes_before_them() -> None:
    messages = tool_round("Paris?", [call("c1", "get_weather", '{"city": "Paris"}')], ["22"], text="Checking.")

    prompt = get_dialect("granite").render_prompt(messages, None, add_generation_prompt=False)

    assert prompt.endswith(
        '<|start_of_role|>assistant<|end_of_role|>Checking.<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]<|end_of_text|>\n'
        "<|start_of_role|>tool<|end_of_role|>22<|end_of_text|>\n"
    )
