# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""The ``deepseek_v31`` template checked against DeepSeek-V3.1's official chat template.

Sources of the expected prompts, rendered in the Hugging Face ``apply_chat_template`` environment
described at the top of ``test_prompts.py`` (``bos_token=""``):

* Calls, results and answers: /work/shared/oracle/templates/hf__deepseek-ai-DeepSeek-V3.1.jinja (the
  official HF deepseek-ai/DeepSeek-V3.1 template), rendered WITHOUT tools, with tool-call arguments
  left as the JSON strings it concatenates (given dicts, as vLLM passes them, it fails with "can only
  concatenate str"; FORMATS.md §10).
* The tools section, which the official template does not print: the DeepSeek-V3.1 model card's
  "ToolCall" system prompt, as vLLM's example template adds it after the system text
  (/work/shared/oracle/templates/vllm__tool_chat_template_deepseekv31.jinja, rendered with arguments as
  dicts and the whitespace-only text between its tags removed, since that layout whitespace reaches
  the prompt: "<｜Assistant｜>    </think>"). With it removed, vLLM's example renders the messages exactly
  as the official template does, which the first test checks.
"""

from __future__ import annotations

from _conversations import PARALLEL_CALL_CONVERSATION, PLAIN_CONVERSATION, TOOLS, render_with

from toolcall_proxy.dialects import get_dialect

DEEPSEEK_V31_TOOL_PROMPT = """\
You are a helpful assistant.

## Tools
You have access to the following tools:

### get_weather
Description: Current weather in a city (°C or °F)

Parameters: {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}

### get_time
Description: Local time in an IANA time zone

Parameters: {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}

IMPORTANT: ALWAYS adhere to this exact format for tool use:
<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments<｜tool▁call▁end｜>{{additional_tool_calls}}<｜tool▁calls▁end｜>

Where:

- `tool_call_name` must be an exact match to one of the available tools
- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema
- For multiple tool calls, chain them directly without separators or spaces
<｜User｜>What's the weather in Paris and in Zürich?<｜Assistant｜></think>Let me check both cities.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Zürich", "unit": "celsius"}<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁output▁begin｜>{"temp": 22, "sky": "sunny"}<｜tool▁output▁end｜><｜tool▁output▁begin｜>{"temp": 18, "sky": "cloudy"}<｜tool▁output▁end｜>Paris: 22 °C and sunny. Zürich: 18 °C and cloudy.<｜end▁of▁sentence｜><｜User｜>What time is it in Zürich?<｜Assistant｜></think>"""
DEEPSEEK_V31_PLAIN_PROMPT = """\
You are a concise assistant.<｜User｜>Hi! Où est la tour Eiffel?<｜Assistant｜></think>In Paris, on the Champ de Mars.<｜end▁of▁sentence｜><｜User｜>How tall is it?<｜Assistant｜></think>"""
# Official template, no tools, string arguments.
DEEPSEEK_V31_OFFICIAL_CALLS_PROMPT = """\
You are a helpful assistant.<｜User｜>What's the weather in Paris and in Zürich?<｜Assistant｜></think>Let me check both cities.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Zürich", "unit": "celsius"}<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁output▁begin｜>{"temp": 22, "sky": "sunny"}<｜tool▁output▁end｜><｜tool▁output▁begin｜>{"temp": 18, "sky": "cloudy"}<｜tool▁output▁end｜>Paris: 22 °C and sunny. Zürich: 18 °C and cloudy.<｜end▁of▁sentence｜><｜User｜>What time is it in Zürich?<｜Assistant｜></think>"""

SYSTEM_TEXT = "You are a helpful assistant."


def test_deepseek_v31_tool_prompt_is_the_official_layout_with_the_model_card_tools_section() -> None:
    tools_section = DEEPSEEK_V31_TOOL_PROMPT.removeprefix(SYSTEM_TEXT).split("<｜User｜>")[0]

    assert tools_section.startswith("\n\n## Tools\nYou have access to the following tools:\n")
    assert (
        SYSTEM_TEXT + tools_section + DEEPSEEK_V31_OFFICIAL_CALLS_PROMPT.removeprefix(SYSTEM_TEXT)
        == DEEPSEEK_V31_TOOL_PROMPT
    )


def test_deepseek_v31_parallel_calls_and_results_with_tools() -> None:
    prompt = get_dialect("deepseek_v31").render_prompt(PARALLEL_CALL_CONVERSATION, TOOLS)

    assert prompt == DEEPSEEK_V31_TOOL_PROMPT


def test_deepseek_v31_parallel_calls_and_results_without_tools_match_the_official_template() -> None:
    prompt = get_dialect("deepseek_v31").render_prompt(PARALLEL_CALL_CONVERSATION, None)

    assert prompt == DEEPSEEK_V31_OFFICIAL_CALLS_PROMPT


def test_deepseek_v31_plain_conversation_matches_the_official_template() -> None:
    prompt = get_dialect("deepseek_v31").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == DEEPSEEK_V31_PLAIN_PROMPT


def test_deepseek_v31_thinking_mode_opens_the_generated_turn_with_think() -> None:
    # Official template, thinking=True: "<｜Assistant｜><think>" for the turn to generate; earlier
    # turns keep "</think>".
    prompt = render_with("deepseek_v31", PLAIN_CONVERSATION, thinking=True)

    assert prompt == DEEPSEEK_V31_PLAIN_PROMPT.removesuffix("</think>") + "<think>"


def test_deepseek_v31_after_tool_results_the_model_goes_on_without_a_new_assistant_tag() -> None:
    prompt = get_dialect("deepseek_v31").render_prompt(PARALLEL_CALL_CONVERSATION[:5], TOOLS)

    assert prompt.endswith('{"temp": 18, "sky": "cloudy"}<｜tool▁output▁end｜>')


def test_deepseek_v31_drops_earlier_reasoning_as_the_official_template_does() -> None:
    messages = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "Simple sum.</think>4"},
        {"role": "user", "content": "Times 3?"},
    ]

    prompt = get_dialect("deepseek_v31").render_prompt(messages, None)

    assert (
        prompt == "<｜User｜>2+2?<｜Assistant｜></think>4<｜end▁of▁sentence｜><｜User｜>Times 3?<｜Assistant｜></think>"
    )


def test_deepseek_v31_template_prints_bos_token_for_the_vllm_chat_path() -> None:
    prompt = render_with("deepseek_v31", PLAIN_CONVERSATION, bos_token="<｜begin▁of▁sentence｜>")

    assert prompt == "<｜begin▁of▁sentence｜>" + DEEPSEEK_V31_PLAIN_PROMPT
