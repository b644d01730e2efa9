# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""The ``internlm`` template checked against vLLM's example template for InternLM2.

Source of the expected prompts: /work/shared/oracle/templates/vllm__tool_chat_template_internlm2_tool.jinja
(vLLM examples/tool_chat_template_internlm2_tool.jinja; InternLM publishes the layout in
chat/chat_format.md rather than as a tools-aware chat template), rendered in the Hugging Face
``apply_chat_template`` environment described at the top of ``test_prompts.py`` (tool-call arguments
turned into dicts first, as vLLM does; ``bos_token=""``). InternLM calls one tool per turn, so the
conversation is two rounds of call and result.

Deliberate deviation: vLLM's template writes an earlier call as ``{"name": ..., "arguments": {...}}``;
the literal has ``"parameters"`` in its place (``.replace('"arguments": ', '"parameters": ')`` on the
render), the key the model writes and InternLM's chat_format.md shows (FORMATS.md §12), so the history
shows the model its own format.
"""

from __future__ import annotations

from _conversations import (
    PARALLEL_CALL_CONVERSATION,
    PLAIN_CONVERSATION,
    SEQUENTIAL_CALL_CONVERSATION,
    TOOLS,
    render_with,
)

from toolcall_proxy.dialects import get_dialect

INTERNLM_TOOL_PROMPT = """\
<|im_start|>system
You are a helpful assistant.<|im_end|>
<|im_start|>system name=<|plugin|>
[{"name": "get_weather", "description": "Current weather in a city (°C or °F)", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}, {"name": "get_time", "description": "Local time in an IANA time zone", "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}]<|im_end|>
<|im_start|>user
What's the weather in Paris?<|im_end|>
<|im_start|>assistant
<|action_start|><|plugin|>
{"name": "get_weather", "parameters": {"city": "Paris"}}<|action_end|><|im_end|>
<|im_start|>environment name=<|plugin|>
{"temp": 22, "sky": "sunny"}<|im_end|>
<|im_start|>assistant
It is 22 °C and sunny in Paris.<|im_end|>
<|im_start|>user
And what time is it in Zürich?<|im_end|>
<|im_start|>assistant
<|action_start|><|plugin|>
{"name": "get_time", "parameters": {"timezone": "Europe/Zurich"}}<|action_end|><|im_end|>
<|im_start|>environment name=<|plugin|>
14:05<|im_end|>
<|im_start|>assistant
"""
INTERNLM_PLAIN_PROMPT = """\
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


def test_internlm_two_round_tool_conversation_matches_vllm_template_with_parameters_key() -> None:
    prompt = get_dialect("internlm").render_prompt(SEQUENTIAL_CALL_CONVERSATION, TOOLS)

    assert prompt == INTERNLM_TOOL_PROMPT


def test_internlm_plain_conversation_matches_vllm_template() -> None:
    prompt = get_dialect("internlm").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == INTERNLM_PLAIN_PROMPT


def test_internlm_several_calls_in_one_message_are_consecutive_actions() -> None:
    # vLLM's template writes them the same way (one <|action_start|> block per call, then <|im_end|>).
    prompt = get_dialect("internlm").render_prompt(PARALLEL_CALL_CONVERSATION[1:4], None, add_generation_prompt=False)

    assert prompt == (
        "<|im_start|>user\nWhat's the weather in Paris and in Zürich?<|im_end|>\n"
        "<|im_start|>assistant\nLet me check both cities."
        '<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": {"city": "Paris"}}<|action_end|>'
        '<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": {"city": "Zürich", "unit": "celsius"}}<|action_end|>'
        "<|im_end|>\n"
        '<|im_start|>environment name=<|plugin|>\n{"temp": 22, "sky": "sunny"}<|im_end|>\n'
    )


def test_internlm_template_prints_bos_token_for_the_vllm_chat_path() -> None:
    prompt = render_with("internlm", PLAIN_CONVERSATION, bos_token="<s>")

    assert prompt == "<s>" + INTERNLM_PLAIN_PROMPT
