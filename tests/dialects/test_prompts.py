# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""Prompts rendered by each dialect's chat template, checked against the models' official layouts.

Expected prompts are literals. Unless noted they were produced by rendering the OFFICIAL template
named next to them (from /work/shared/oracle/templates/) with the same conversation, in the
Hugging Face ``apply_chat_template`` environment: ``ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True)``, ``tojson`` = ``json.dumps(ensure_ascii=False)``, tool-call arguments turned
into dicts first (as vLLM does), ``bos_token=""``. Deliberate deviations are applied by hand and
explained where the literal is defined. The conversations every family's prompt tests share are in
``_conversations.py``.
"""

from __future__ import annotations

import ast
import copy
import json
from datetime import datetime
from typing import Any

import pytest
from _conversations import (
    PARALLEL_CALL_CONVERSATION,
    PARIS_AND_ROME_CALLS,
    PLAIN_CONVERSATION,
    SEQUENTIAL_CALL_CONVERSATION,
    TOOLS,
    WEATHER_TOOL,
    call,
    function_tool,
    render_with,
    tool_round,
)
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from toolcall_proxy import rendering
from toolcall_proxy.dialects import DIALECTS, get_dialect

# ---------------------------------------------------------------------------------------------
# ChatGLM3
#
# The HF template of THUDM/chatglm3-6b ignores tools, so these literals were written from
# FORMATS.md §2 (tokenization_chatglm.py `build_chat_input` + THUDM/ChatGLM3
# openai_api_demo/utils.py `process_chatglm_messages`): "<|ROLE|>" + metadata + "\n" + content,
# the tools system turn with json.dumps(functions, indent=4, ensure_ascii=False), a call as the
# metadata line NAME + "```python\ntool_call(k=v)\n```", results under <|observation|>, and a bare
# "<|assistant|>" to generate. Deliberate deviation: the demo DROPS the caller's system message
# when tools are given; we keep it as a second <|system|> turn after the tools turn.

# The FORMATS.md §2 "standard conversation" prompt, verbatim (there the caller's system message is
# dropped, as the demo does; the conversation below therefore has no system message).
FORMATS_STANDARD_CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [call("call12345", "get_weather", '{"city":"Paris"}')]},
    {"role": "tool", "tool_call_id": "call12345", "content": '{"temp": 22}'},
]
FORMATS_STANDARD_TOOLS = [
    function_tool(
        "get_weather",
        "Get weather",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
]
FORMATS_STANDARD_PROMPT = """\
[gMASK]sop<|system|>
Answer the following questions as best as you can. You have access to the following tools:
[
    {
        "name": "get_weather",
        "description": "Get weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {
                    "type": "string"
                }
            },
            "required": [
                "city"
            ]
        }
    }
]<|user|>
Weather in Paris?<|assistant|>get_weather
```python
tool_call(city='Paris')
```<|observation|>
{"temp": 22}<|assistant|>"""

CHATGLM3_TOOL_PROMPT = """\
[gMASK]sop<|system|>
Answer the following questions as best as you can. You have access to the following tools:
[
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
    },
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
]<|system|>
You are a helpful assistant.<|user|>
What's the weather in Paris?<|assistant|>get_weather
```python
tool_call(city='Paris')
```<|observation|>
{"temp": 22, "sky": "sunny"}<|assistant|>
It is 22 °C and sunny in Paris.<|user|>
And what time is it in Zürich?<|assistant|>get_time
```python
tool_call(timezone='Europe/Zurich')
```<|observation|>
14:05<|assistant|>"""
# The official HF template renders "<|ROLE|>\n " + content, with a space after the newline
# ("<|user|>\n Hi! Où est la tour Eiffel?"), probably standing in for the SentencePiece prefix
# that build_chat_input gets by encoding each message separately. We follow the text layout of
# FORMATS.md §2 / build_chat_input, which has no space.
CHATGLM3_PLAIN_PROMPT = """\
[gMASK]sop<|system|>
You are a concise assistant.<|user|>
Hi! Où est la tour Eiffel?<|assistant|>
In Paris, on the Champ de Mars.<|user|>
How tall is it?<|assistant|>"""


def test_chatglm3_renders_the_formats_md_standard_conversation_verbatim() -> None:
    prompt = get_dialect("chatglm3").render_prompt(FORMATS_STANDARD_CONVERSATION, FORMATS_STANDARD_TOOLS)

    assert prompt == FORMATS_STANDARD_PROMPT


def test_chatglm3_two_round_tool_conversation_keeps_caller_system_turn_after_tools_turn() -> None:
    prompt = get_dialect("chatglm3").render_prompt(SEQUENTIAL_CALL_CONVERSATION, TOOLS)

    assert prompt == CHATGLM3_TOOL_PROMPT


def test_chatglm3_plain_conversation_has_role_lines_without_tools_turn() -> None:
    prompt = get_dialect("chatglm3").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == CHATGLM3_PLAIN_PROMPT


def test_chatglm3_call_arguments_are_python_literals_that_evaluate_back_to_the_arguments() -> None:
    arguments = {
        "query": "it's a \\ test\non two lines",
        "limit": 3,
        "score": 0.5,
        "exact": True,
        "fuzzy": False,
        "cursor": None,
        "tags": ["météo", 1, None],
        "options": {"lang": "de", "strict": False},
    }
    messages = tool_round("search", [call("c1", "search", json.dumps(arguments))])

    prompt = get_dialect("chatglm3").render_prompt(messages, None, add_generation_prompt=False)

    snippet = prompt.split("```python\n", 1)[1].removesuffix("\n```")
    assert snippet == (
        "tool_call(query='it\\'s a \\\\ test\\non two lines', limit=3, score=0.5, exact=True, fuzzy=False,"
        " cursor=None, tags=['météo', 1, None], options={'lang': 'de', 'strict': False})"
    )
    parsed = ast.parse(snippet, mode="eval").body
    assert isinstance(parsed, ast.Call)
    assert {keyword.arg: ast.literal_eval(keyword.value) for keyword in parsed.keywords} == arguments


def test_chatglm3_gives_each_parallel_call_and_the_text_before_them_their_own_assistant_turn() -> None:
    messages = tool_round("Paris and Rome?", PARIS_AND_ROME_CALLS, ["22", "25"], text="Checking both.")

    prompt = get_dialect("chatglm3").render_prompt(messages, None)

    assert prompt == (
        "[gMASK]sop<|user|>\nParis and Rome?"
        "<|assistant|>\nChecking both."
        "<|assistant|>get_weather\n```python\ntool_call(city='Paris')\n```"
        "<|assistant|>get_weather\n```python\ntool_call(city='Rome')\n```"
        "<|observation|>\n22<|observation|>\n25<|assistant|>"
    )


@pytest.mark.parametrize("name", sorted(name for name, dialect in DIALECTS.items() if not dialect.takes_developer_role))
def test_a_developer_message_is_the_system_turn_of_a_family_without_one(name: str) -> None:
    dialect = get_dialect(name)
    question = {"role": "user", "content": "Hi"}
    as_developer = dialect.render_prompt([{"role": "developer", "content": "Be brief."}, question], None)
    assert as_developer == dialect.render_prompt([{"role": "system", "content": "Be brief."}, question], None)


def test_only_gpt_oss_has_a_developer_turn_and_other_templates_refuse_the_role() -> None:
    assert [name for name, dialect in DIALECTS.items() if dialect.takes_developer_role] == ["openai"]
    chatglm3 = get_dialect("chatglm3")
    with pytest.raises(rendering.TemplateRenderError, match="developer"):  # the template has no such turn
        rendering.render(
            chatglm3.template, messages=[{"role": "developer", "content": "x"}], add_generation_prompt=True
        )


# ---------------------------------------------------------------------------------------------
# Hermes (Qwen2.5 layout)
#
# Source: hf__Qwen-Qwen2.5-7B-Instruct.jinja (llama.cpp copy of the HF Qwen/Qwen2.5-7B-Instruct
# chat_template), rendered as described at the top of this file. No deviation.

QWEN25_TOOL_PROMPT = """\
<|im_start|>system
You are a helpful assistant.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city (°C or °F)", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
{"type": "function", "function": {"name": "get_time", "description": "Local time in an IANA time zone", "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
What's the weather in Paris and in Zürich?<|im_end|>
<|im_start|>assistant
Let me check both cities.
<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris"}}
</tool_call>
<tool_call>
{"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
{"temp": 22, "sky": "sunny"}
</tool_response>
<tool_response>
{"temp": 18, "sky": "cloudy"}
</tool_response><|im_end|>
<|im_start|>assistant
Paris: 22 °C and sunny. Zürich: 18 °C and cloudy.<|im_end|>
<|im_start|>user
What time is it in Zürich?<|im_end|>
<|im_start|>assistant
"""
# No system message, tools given: Qwen2.5 puts its default identity line before "# Tools".
QWEN25_NO_SYSTEM_TOOL_PROMPT = """\
<|im_start|>system
You are Qwen, created by Alibaba Cloud. You are a helpful assistant.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city (°C or °F)", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
{"type": "function", "function": {"name": "get_time", "description": "Local time in an IANA time zone", "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
What's the weather in Paris and in Zürich?<|im_end|>
<|im_start|>assistant
"""
QWEN25_PLAIN_PROMPT = """\
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
QWEN25_PLAIN_NO_SYSTEM_PROMPT = """\
<|im_start|>system
You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>
<|im_start|>user
Hi! Où est la tour Eiffel?<|im_end|>
<|im_start|>assistant
In Paris, on the Champ de Mars.<|im_end|>
<|im_start|>user
How tall is it?<|im_end|>
<|im_start|>assistant
"""


def test_hermes_parallel_calls_and_merged_tool_results_match_qwen25_template() -> None:
    prompt = get_dialect("hermes").render_prompt(PARALLEL_CALL_CONVERSATION, TOOLS)

    assert prompt == QWEN25_TOOL_PROMPT


def test_hermes_without_system_message_uses_qwen25_default_identity_before_tools() -> None:
    prompt = get_dialect("hermes").render_prompt(PARALLEL_CALL_CONVERSATION[1:2], TOOLS)

    assert prompt == QWEN25_NO_SYSTEM_TOOL_PROMPT


def test_hermes_plain_conversation_matches_qwen25_template() -> None:
    prompt = get_dialect("hermes").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == QWEN25_PLAIN_PROMPT


def test_hermes_plain_conversation_without_system_message_gets_qwen25_default_system_turn() -> None:
    prompt = get_dialect("hermes").render_prompt(PLAIN_CONVERSATION[1:], None)

    assert prompt == QWEN25_PLAIN_NO_SYSTEM_PROMPT


def test_hermes_tool_results_separated_by_a_user_message_are_not_merged() -> None:
    messages = [
        {"role": "system", "content": "S"},
        {"role": "tool", "content": "one"},
        {"role": "user", "content": "more?"},
        {"role": "tool", "content": "two"},
    ]

    prompt = get_dialect("hermes").render_prompt(messages, None, add_generation_prompt=False)

    assert prompt == (
        "<|im_start|>system\nS<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\none\n</tool_response><|im_end|>\n"
        "<|im_start|>user\nmore?<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\ntwo\n</tool_response><|im_end|>\n"
    )


# ---------------------------------------------------------------------------------------------
# Llama 3.1 / 3.2 / 3.3 JSON
#
# Source: hf__meta-llama-Llama-3.1-8B-Instruct.jinja (llama.cpp copy of the HF
# meta-llama/Llama-3.1-8B-Instruct chat_template; 3.2/3.3 render the same for these inputs),
# rendered as described at the top of this file, with the date pinned to "26 Jul 2024" (the 3.1
# template's built-in default; ours calls strftime_now, frozen by the `today_is_26_jul_2024`
# fixture).
#
# Deliberate deviation: the official template JSON-quotes string tool results, rendering the two
# results below as "{\"temp\": 22, \"sky\": \"sunny\"}" and "14:05" in double quotes (FORMATS.md
# §15 lists it as a template defect). Meta's llama-models prompt_format.md, the format the models
# were trained on, shows ipython results as plain text, so the literal below has them verbatim.
LLAMA31_TOOL_PROMPT = """\
<|start_header_id|>system<|end_header_id|>

Environment: ipython
Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>

Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.

Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.

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

What's the weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>

{"temp": 22, "sky": "sunny"}<|eot_id|><|start_header_id|>assistant<|end_header_id|>

It is 22 °C and sunny in Paris.<|eot_id|><|start_header_id|>user<|end_header_id|>

And what time is it in Zürich?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

{"name": "get_time", "parameters": {"timezone": "Europe/Zurich"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>

14:05<|eot_id|><|start_header_id|>assistant<|end_header_id|>

"""
LLAMA31_PLAIN_PROMPT = """\
<|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

You are a concise assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>

Hi! Où est la tour Eiffel?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

In Paris, on the Champ de Mars.<|eot_id|><|start_header_id|>user<|end_header_id|>

How tall is it?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

"""
# Same source, rendered with `tools_in_user_message=false` (a chat_template_kwargs variable that
# Meta's template reads and ours honours too) for SEQUENTIAL_CALL_CONVERSATION[:2].
LLAMA31_TOOLS_IN_SYSTEM_PROMPT = """\
<|start_header_id|>system<|end_header_id|>

Environment: ipython
Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

You have access to the following functions. To call a function, please respond with JSON for a function call.Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.

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

What's the weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

"""


@pytest.mark.usefixtures("today_is_26_jul_2024")
def test_llama3_two_round_tool_conversation_matches_meta_template_with_plain_text_results() -> None:
    prompt = get_dialect("llama3_json").render_prompt(SEQUENTIAL_CALL_CONVERSATION, TOOLS)

    assert prompt == LLAMA31_TOOL_PROMPT


@pytest.mark.usefixtures("today_is_26_jul_2024")
def test_llama3_plain_conversation_matches_meta_template() -> None:
    prompt = get_dialect("llama3_json").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == LLAMA31_PLAIN_PROMPT


@pytest.mark.usefixtures("today_is_26_jul_2024")
def test_llama3_puts_tools_in_system_header_when_tools_in_user_message_is_false() -> None:
    prompt = render_with("llama3_json", SEQUENTIAL_CALL_CONVERSATION[:2], TOOLS, tools_in_user_message=False)

    assert prompt == LLAMA31_TOOLS_IN_SYSTEM_PROMPT


@pytest.mark.usefixtures("today_is_26_jul_2024")
def test_llama3_today_date_comes_from_strftime_now_and_date_string_overrides_it() -> None:
    assert "\nToday Date: 26 Jul 2024\n" in render_with("llama3_json", PLAIN_CONVERSATION)

    prompt = render_with("llama3_json", PLAIN_CONVERSATION, date_string="03 Feb 2025")

    assert "\nToday Date: 03 Feb 2025\n" in prompt
    assert "26 Jul 2024" not in prompt


def test_llama3_tool_result_text_is_written_verbatim_not_json_quoted() -> None:
    messages = tool_round("weather?", [call("c1", "get_weather", '{"city": "Paris"}')], ['It says "sunny"'])

    prompt = get_dialect("llama3_json").render_prompt(messages, None)

    assert '<|start_header_id|>ipython<|end_header_id|>\n\nIt says "sunny"<|eot_id|>' in prompt


def test_llama3_parallel_calls_in_history_are_joined_with_semicolons_instead_of_refused() -> None:
    # Meta's template raises "This model only supports single tool-calls at once!"; the models do
    # write `{...}; {...}` for parallel calls (the separator vLLM's llama3_json parser splits on),
    # so a history holding two calls renders the way the model would have written them.
    messages = tool_round("Paris and Rome?", PARIS_AND_ROME_CALLS)

    prompt = get_dialect("llama3_json").render_prompt(messages, None, add_generation_prompt=False)

    assert prompt.endswith(
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "get_weather", "parameters": {"city": "Paris"}}; '
        '{"name": "get_weather", "parameters": {"city": "Rome"}}<|eot_id|>'
    )


def test_llama3_template_starts_with_bos_token_for_vllm_chat_path_and_proxy_renders_it_empty() -> None:
    assert render_with("llama3_json", PLAIN_CONVERSATION, bos_token="<|begin_of_text|>").startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>"
    )
    assert (
        get_dialect("llama3_json")
        .render_prompt(PLAIN_CONVERSATION, None)
        .startswith("<|start_header_id|>system<|end_header_id|>")
    )


# ---------------------------------------------------------------------------------------------
# generic (ChatML for models without their own template)


def test_generic_template_renders_chatml_turns_and_generation_prompt() -> None:
    prompt = get_dialect("generic").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == (
        "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n"
        "<|im_start|>user\nHi! Où est la tour Eiffel?<|im_end|>\n"
        "<|im_start|>assistant\nIn Paris, on the Champ de Mars.<|im_end|>\n"
        "<|im_start|>user\nHow tall is it?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_generic_template_renders_rewritten_tool_conversation_as_plain_chatml() -> None:
    dialect = get_dialect("generic")
    assert dialect.rewrite_messages is not None
    messages = dialect.rewrite_messages(PARALLEL_CALL_CONVERSATION[1:5], [WEATHER_TOOL])

    prompt = dialect.render_prompt(messages, None, add_generation_prompt=False)

    assert prompt.startswith("<|im_start|>system\nYou can call tools (functions).")
    assert prompt.endswith(
        "<|im_start|>assistant\nLet me check both cities.\n"
        '<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>\n'
        '<tool_call>{"name":"get_weather","arguments":{"city":"Zürich","unit":"celsius"}}</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n"
        '{"temp": 22, "sky": "sunny"}\n</tool_response>\n<tool_response>\n'
        '{"temp": 18, "sky": "cloudy"}\n</tool_response><|im_end|>\n'
    )


# ---------------------------------------------------------------------------------------------
# All dialects


@pytest.mark.usefixtures("today_is_26_jul_2024")
@pytest.mark.parametrize("dialect_name", ["chatglm3", "hermes", "llama3_json"])
def test_json_string_arguments_render_the_same_as_dict_arguments(dialect_name: str) -> None:
    as_dicts = copy.deepcopy(SEQUENTIAL_CALL_CONVERSATION)
    for message in as_dicts:
        for tool_call in message.get("tool_calls") or []:
            tool_call["function"]["arguments"] = json.loads(tool_call["function"]["arguments"])
    dialect = get_dialect(dialect_name)

    assert dialect.render_prompt(as_dicts, TOOLS) == dialect.render_prompt(SEQUENTIAL_CALL_CONVERSATION, TOOLS)


@pytest.mark.usefixtures("today_is_26_jul_2024")
@pytest.mark.parametrize("dialect_name", ["chatglm3", "hermes", "llama3_json"])
def test_non_ascii_in_tools_arguments_and_messages_is_not_escaped(dialect_name: str) -> None:
    prompt = get_dialect(dialect_name).render_prompt(PARALLEL_CALL_CONVERSATION, TOOLS)

    assert "(°C or °F)" in prompt  # tool description
    assert "Zürich" in prompt  # call arguments and messages
    assert "\\u00" not in prompt


def _hf_environment() -> ImmutableSandboxedEnvironment:
    """What HF ``apply_chat_template`` (and so vLLM) gives a chat template, and nothing more."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda value, indent=None, separators=None, sort_keys=False: json.dumps(
        value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys
    )

    def raise_exception(message: str) -> None:
        raise AssertionError(message)

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime(2024, 7, 26).strftime(fmt)
    return env


@pytest.mark.usefixtures("today_is_26_jul_2024")
@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
@pytest.mark.parametrize("tools", [TOOLS, None], ids=["tools", "no-tools"])
def test_template_renders_in_plain_hf_environment_as_the_proxy_renders_it(dialect_name: str, tools: Any) -> None:
    dialect = get_dialect(dialect_name)
    messages = SEQUENTIAL_CALL_CONVERSATION if dialect.rewrite_messages is None else PLAIN_CONVERSATION

    template = _hf_environment().from_string(dialect.template)
    rendered = template.render(
        messages=rendering.normalize_messages(messages),
        tools=tools,
        add_generation_prompt=True,
        bos_token="",
        eos_token="",
    )

    assert rendered == dialect.render_prompt(messages, tools)
    assert rendered.strip()
    assert "{#" not in rendered  # the header comment renders to nothing
