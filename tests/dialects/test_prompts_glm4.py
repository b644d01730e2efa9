# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""The ``glm4`` template checked against GLM-4-9B-chat's official chat template.

Source of the expected prompts: /work/shared/oracle/templates/hf__THUDM-glm-4-9b-chat.jinja (the
THUDM/glm-4-9b-chat tokenizer_config.json chat_template), rendered in the Hugging Face
``apply_chat_template`` environment described at the top of ``test_prompts.py``
(``trim_blocks``/``lstrip_blocks``, ``tojson`` with ``ensure_ascii=False``, ``bos_token=""``).

That template reads GLM-4's *native* messages, not OpenAI's, so the conversation was first written
the way GLM-4 represents it (THUDM's basic_demo/openai_api_server.py ``process_messages``): the tools
attached to the system message (``{"role": "system", "content": ..., "tools": TOOLS}``), each call as
``{"role": "assistant", "metadata": NAME, "content": json.dumps(arguments, ensure_ascii=False)}``,
each result as ``{"role": "observation", "content": ...}``. Two deliberate differences from THUDM's API
server, which the template renders as shown: the caller's system message is kept (the server drops
it when tools are given), and text sent with calls is kept as its own assistant turn (the server
drops it). The official template's "# 可用工具\\n## NAME" (one newline, from trim_blocks) is kept; THUDM's
Python demo writes two.
"""

from __future__ import annotations

from _conversations import (
    PARIS_AND_ROME_CALLS,
    PLAIN_CONVERSATION,
    SEQUENTIAL_CALL_CONVERSATION,
    TOOLS,
    call,
    tool_round,
)

from toolcall_proxy.dialects import get_dialect

GLM4_TOOL_PROMPT = """\
[gMASK]<sop><|system|>
你是一个名为 ChatGLM 的人工智能助手。你是基于智谱AI训练的语言模型 GLM-4 模型开发的，你的任务是针对用户的问题和要求提供适当的答复和支持。

# 可用工具
## get_weather

{
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
在调用上述函数时，请使用 Json 格式表示调用的参数。
## get_time

{
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
在调用上述函数时，请使用 Json 格式表示调用的参数。<|system|>
You are a helpful assistant.<|user|>
What's the weather in Paris?<|assistant|>get_weather
{"city": "Paris"}<|observation|>
{"temp": 22, "sky": "sunny"}<|assistant|>
It is 22 °C and sunny in Paris.<|user|>
And what time is it in Zürich?<|assistant|>get_time
{"timezone": "Europe/Zurich"}<|observation|>
14:05<|assistant|>"""
GLM4_PLAIN_PROMPT = """\
[gMASK]<sop><|system|>
You are a concise assistant.<|user|>
Hi! Où est la tour Eiffel?<|assistant|>
In Paris, on the Champ de Mars.<|user|>
How tall is it?<|assistant|>"""


def test_glm4_two_round_tool_conversation_matches_the_official_template() -> None:
    prompt = get_dialect("glm4").render_prompt(SEQUENTIAL_CALL_CONVERSATION, TOOLS)

    assert prompt == GLM4_TOOL_PROMPT


def test_glm4_plain_conversation_matches_the_official_template() -> None:
    prompt = get_dialect("glm4").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == GLM4_PLAIN_PROMPT


def test_glm4_without_a_system_message_the_tools_turn_comes_first() -> None:
    # Official template, native messages [{"role": "system", "content": None, "tools": TOOLS}, user]:
    # the system message carrying only tools renders the tools turn and no text turn.
    prompt = get_dialect("glm4").render_prompt(SEQUENTIAL_CALL_CONVERSATION[1:2], TOOLS)

    tools_turn = GLM4_TOOL_PROMPT.split("<|system|>\nYou are a helpful assistant.")[0]
    assert prompt == tools_turn + "<|user|>\nWhat's the weather in Paris?<|assistant|>"


def test_glm4_parallel_calls_and_their_text_become_consecutive_assistant_turns() -> None:
    # Official template, native messages: the text as {"role": "assistant", "content": ...}, then
    # one {"role": "assistant", "metadata": NAME, "content": ARGS} per call, one observation per result.
    messages = tool_round("Paris and Rome?", PARIS_AND_ROME_CALLS, ["22", "25"], text="Checking both.")

    prompt = get_dialect("glm4").render_prompt(messages, None)

    assert prompt == (
        "[gMASK]<sop><|user|>\nParis and Rome?"
        "<|assistant|>\nChecking both."
        '<|assistant|>get_weather\n{"city": "Paris"}'
        '<|assistant|>get_weather\n{"city": "Rome"}'
        "<|observation|>\n22<|observation|>\n25<|assistant|>"
    )


def test_glm4_an_empty_tool_result_still_gets_its_observation_turn() -> None:
    # Deliberate difference: the official template skips every message with empty content, which
    # would leave the call without a result turn.
    messages = tool_round("Ping", [call("c1", "ping", "{}")], [""])

    prompt = get_dialect("glm4").render_prompt(messages, None)

    assert prompt == "[gMASK]<sop><|user|>\nPing<|assistant|>ping\n{}<|observation|>\n<|assistant|>"
