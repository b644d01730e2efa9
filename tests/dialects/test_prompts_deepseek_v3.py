# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""The ``deepseek_v3`` template checked against vLLM's example template for DeepSeek-V3.

Source of the expected prompts: /work/shared/oracle/templates/vllm__tool_chat_template_deepseekv3.jinja
(vLLM examples/tool_chat_template_deepseekv3.jinja: DeepSeek-V3-0324's official template, which
prints no tools, reformatted over several lines, with a tools section added and ``arguments|tojson``),
rendered in the Hugging Face ``apply_chat_template`` environment described at the top of
``test_prompts.py`` (tool-call arguments turned into dicts first, as vLLM does; ``bos_token=""``).

Deliberate deviation: before rendering, the whitespace-only text between the template's tags was
removed (``re.sub(r"(?<=[%}#]\\})\\s+(?=\\{[%{#])", "", source).strip()``). That whitespace is the
layout vLLM's reformatting added, and it reaches the prompt: three newlines before the system text,
four spaces after it, and runs of spaces before every call, result and answer
(``<｜Assistant｜>                    <｜tool▁calls▁begin｜>``, see FORMATS.md §10). DeepSeek's own
template is a single line and renders none of it; the literals below are what it renders, plus
vLLM's tools section.
"""

from __future__ import annotations

from _conversations import PARALLEL_CALL_CONVERSATION, PLAIN_CONVERSATION, TOOLS, call, render_with, tool_round

from toolcall_proxy.dialects import get_dialect

DEEPSEEK_V3_TOOL_PROMPT = """\
You are a helpful assistant.

# Tools

You may call one or more functions to assist with the user query.
{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city (°C or °F)", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
{"type": "function", "function": {"name": "get_time", "description": "Local time in an IANA time zone", "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
</tools>

For function call returns, you should first print <｜tool▁calls▁begin｜>For each function call, you should return object like:
<｜tool▁call▁begin｜>function<｜tool▁sep｜><function_name>
```json
<function_arguments_in_json_format>
```<｜tool▁call▁end｜>At the end of function call returns, you should print <｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜User｜>What's the weather in Paris and in Zürich?<｜Assistant｜>Let me check both cities.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather
```json
{"city": "Paris"}
```<｜tool▁call▁end｜>
<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather
```json
{"city": "Zürich", "unit": "celsius"}
```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{"temp": 22, "sky": "sunny"}<｜tool▁output▁end｜>
<｜tool▁output▁begin｜>{"temp": 18, "sky": "cloudy"}<｜tool▁output▁end｜><｜tool▁outputs▁end｜>Paris: 22 °C and sunny. Zürich: 18 °C and cloudy.<｜end▁of▁sentence｜><｜User｜>What time is it in Zürich?<｜Assistant｜>"""
DEEPSEEK_V3_PLAIN_PROMPT = """\
You are a concise assistant.<｜User｜>Hi! Où est la tour Eiffel?<｜Assistant｜>In Paris, on the Champ de Mars.<｜end▁of▁sentence｜><｜User｜>How tall is it?<｜Assistant｜>"""


def test_deepseek_v3_parallel_calls_and_results_match_vllm_template_without_its_layout_whitespace() -> None:
    prompt = get_dialect("deepseek_v3").render_prompt(PARALLEL_CALL_CONVERSATION, TOOLS)

    assert prompt == DEEPSEEK_V3_TOOL_PROMPT


def test_deepseek_v3_plain_conversation_matches_vllm_template_without_its_layout_whitespace() -> None:
    prompt = get_dialect("deepseek_v3").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == DEEPSEEK_V3_PLAIN_PROMPT


def test_deepseek_v3_after_tool_results_the_model_goes_on_without_a_new_assistant_tag() -> None:
    prompt = get_dialect("deepseek_v3").render_prompt(PARALLEL_CALL_CONVERSATION[:5], TOOLS)

    assert prompt.endswith('{"temp": 18, "sky": "cloudy"}<｜tool▁output▁end｜><｜tool▁outputs▁end｜>')


def test_deepseek_v3_results_followed_by_a_user_message_are_closed() -> None:
    # Deliberate deviation: DeepSeek's and vLLM's templates print <｜tool▁outputs▁end｜> only before an
    # assistant message or at the end, so results a user message follows stay open.
    messages = [
        *tool_round("Weather?", [call("c1", "get_weather", '{"city": "Paris"}')], ["22"]),
        {"role": "user", "content": "Thanks. And Rome?"},
    ]

    prompt = get_dialect("deepseek_v3").render_prompt(messages, None)

    assert prompt.endswith(
        "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>22<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"
        "<｜User｜>Thanks. And Rome?<｜Assistant｜>"
    )


def test_deepseek_v3_drops_earlier_reasoning_as_the_r1_template_does() -> None:
    messages = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>Simple sum.</think>4"},
        {"role": "user", "content": "Times 3?"},
    ]

    prompt = get_dialect("deepseek_v3").render_prompt(messages, None)

    assert prompt == "<｜User｜>2+2?<｜Assistant｜>4<｜end▁of▁sentence｜><｜User｜>Times 3?<｜Assistant｜>"


def test_deepseek_v3_template_prints_bos_token_for_the_vllm_chat_path() -> None:
    prompt = render_with("deepseek_v3", PLAIN_CONVERSATION, bos_token="<｜begin▁of▁sentence｜>")

    assert prompt == "<｜begin▁of▁sentence｜>" + DEEPSEEK_V3_PLAIN_PROMPT
