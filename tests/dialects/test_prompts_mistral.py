# ruff: noqa: E501 - the expected prompts are verbatim literals, long lines included
"""The ``mistral`` template checked against mistral-common's template for tokenizer v3.

Source of the expected prompts: /work/shared/oracle/templates/mistral-common__v3.jinja
(mistralai/mistral-common tests/data/chat_templates/v3.jinja @bc022b91, the HF-compatible
template mistral-common generates for Mistral-7B-Instruct-v0.3 and Mistral-Nemo), rendered in the
Hugging Face ``apply_chat_template`` environment described at the top of ``test_prompts.py``
(tool-call arguments turned into dicts first, as vLLM does), with ``bos_token=""`` and
``eos_token="</s>"``, and with the ``safe`` filter made a no-op: in stock Jinja2 ``|safe`` returns
``Markup``, and the template's ``str + Markup`` then HTML-escapes the call JSON
(``[{&#34;name&#34;: ...``, FORMATS.md §15); Hugging Face's renderer does not escape it.

That template refuses what mistral-common cannot encode: call ids that are not 9 characters,
text and calls in one assistant message. The conversations checked against it therefore use
9-character ids and calls without text; the deliberate differences are tested below it.
"""

from __future__ import annotations

from _conversations import PLAIN_CONVERSATION, TOOLS, call, tool_round

from toolcall_proxy.dialects import get_dialect

# PARALLEL_CALL_CONVERSATION as mistral-common can encode it: 9-character ids, no text with the calls;
# and a second result that reads as a number.
PARALLEL_CALLS = [
    {"role": "system", "content": "You are a helpful assistant."},
    *tool_round(
        "What's the weather in Paris and in Zürich?",
        [
            call("a1B2c3D4e", "get_weather", '{"city": "Paris"}'),
            call("f5G6h7I8j", "get_weather", '{"city": "Zürich", "unit": "celsius"}'),
        ],
        ['{"temp": 22, "sky": "sunny"}', "18"],
    ),
    {"role": "assistant", "content": "Paris: 22 °C and sunny. Zürich: 18 °C."},
    {"role": "user", "content": "What time is it in Zürich?"},
]

# The tools and the system text go with the LAST user turn; a result that reads as a number is one.
MISTRAL_TOOL_PROMPT = """\
[INST]What's the weather in Paris and in Zürich?[/INST][TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1B2c3D4e"}, {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}, "id": "f5G6h7I8j"}]</s>[TOOL_RESULTS]{"content": "{\\"temp\\": 22, \\"sky\\": \\"sunny\\"}", "call_id": "a1B2c3D4e"}[/TOOL_RESULTS][TOOL_RESULTS]{"content": 18, "call_id": "f5G6h7I8j"}[/TOOL_RESULTS]Paris: 22 °C and sunny. Zürich: 18 °C.</s>[AVAILABLE_TOOLS][{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city (°C or °F)", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}, {"type": "function", "function": {"name": "get_time", "description": "Local time in an IANA time zone", "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}][/AVAILABLE_TOOLS][INST]You are a helpful assistant.

What time is it in Zürich?[/INST]"""
MISTRAL_PLAIN_PROMPT = """\
[INST]Hi! Où est la tour Eiffel?[/INST]In Paris, on the Champ de Mars.</s>[INST]You are a concise assistant.

How tall is it?[/INST]"""


def test_mistral_parallel_calls_and_results_match_mistral_common_v3_template() -> None:
    prompt = get_dialect("mistral").render_prompt(PARALLEL_CALLS, TOOLS)

    assert prompt == MISTRAL_TOOL_PROMPT


def test_mistral_plain_conversation_matches_mistral_common_v3_template() -> None:
    prompt = get_dialect("mistral").render_prompt(PLAIN_CONVERSATION, None)

    assert prompt == MISTRAL_PLAIN_PROMPT


def test_mistral_merges_consecutive_user_turns_and_every_system_message_as_mistral_common_does() -> None:
    # Oracle render (same template and environment): system messages anywhere are joined and go
    # to the last user turn; consecutive user messages share one [INST]; -3.5 is a number.
    messages = [
        {"role": "user", "content": "Hello."},
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call("x9Y8z7W6v", "get_weather", '{"city": "Oslo"}')]},
        {"role": "tool", "tool_call_id": "x9Y8z7W6v", "content": "-3.5"},
    ]

    prompt = get_dialect("mistral").render_prompt(messages, TOOLS[:1])

    assert prompt == (
        '[AVAILABLE_TOOLS][{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city (°C or °F)", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}][/AVAILABLE_TOOLS]'
        "[INST]Answer briefly.\n\nHello.\n\nWeather in Oslo?[/INST]"
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "x9Y8z7W6v"}]</s>'
        '[TOOL_RESULTS]{"content": -3.5, "call_id": "x9Y8z7W6v"}[/TOOL_RESULTS]'
    )


def test_mistral_text_with_calls_and_ids_of_other_shapes_are_rendered_not_refused() -> None:
    # Deliberate deviations (mistral-common's template raises on all three): the text comes before
    # [TOOL_CALLS], as the models write it ("Hello[TOOL_CALLS] [...]"); a longer id is cut to its
    # last 9 characters, as vLLM's Mistral templates and tokenizer do; a shorter one is kept, the
    # same in the call and its result. Arguments that are not JSON are written as sent.
    calls = [
        call("call_1", "get_weather", '{"city": "Paris"}'),
        call("call_0123456789abcdefXYZ", "get_time", "not json"),
    ]
    messages = tool_round("Paris?", calls, ["22", "noon"], text="Checking.")

    prompt = get_dialect("mistral").render_prompt(messages, None)

    assert prompt == (
        "[INST]Paris?[/INST]Checking."
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}, '
        '{"name": "get_time", "arguments": not json, "id": "abcdefXYZ"}]</s>'
        '[TOOL_RESULTS]{"content": 22, "call_id": "call_1"}[/TOOL_RESULTS]'
        '[TOOL_RESULTS]{"content": "noon", "call_id": "abcdefXYZ"}[/TOOL_RESULTS]'
    )


def test_mistral_the_calls_the_proxy_writes_are_what_the_template_renders() -> None:
    # What the model is shown for earlier calls is the form write_calls produces (apart from the
    # id the proxy adds), so a forced call's prefill and the history agree.
    dialect = get_dialect("mistral")
    messages = tool_round("Paris?", [call("a1B2c3D4e", "get_weather", '{"city": "Paris"}')])

    prompt = dialect.render_prompt(messages, None)

    written = dialect.write_calls([("get_weather", {"city": "Paris"})])
    assert prompt == "[INST]Paris?[/INST]" + written.replace("}}", '}, "id": "a1B2c3D4e"}') + "</s>"
    assert prompt.startswith("[INST]Paris?[/INST]" + dialect.prefill("get_weather"))
