# ruff: noqa: E501 - raw outputs are verbatim literals, long lines included
"""gpt-oss (harmony) outputs through the ``openai`` dialect: whole, at every 2-chunk split, in
random token chunkings and one character at a time, all folding into the same response,
reasoning included.

REAL: from openai/harmony docs/format.md ("Reasoning", "Receiving tool calls", "Preambles") or
/work/shared/oracle/cases.jsonl (the source named there). CONSTRUCTED: written for this test in
the format of FORMATS.md §14: the output starts after the prompt's ``<|start|>assistant``; each
message is a header (``<|channel|>NAME``, an optional recipient ``to=functions.NAME`` and content
type) then ``<|message|>`` and a body; ``<|return|>`` and ``<|call|>`` are stop tokens, kept or
not depending on the engine.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _fold import assert_arguments_stream, assert_parses, assert_written_calls_parse_back, parse_in_chunks

from toolcall_proxy.dialects import get_dialect

TOOLS = {"get_weather", "get_current_weather", "generate_file", "special_function", "write_file", "search"}

CASES = [
    pytest.param(
        '<|channel|>analysis<|message|>Need to use function get_weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location":"San Francisco"}<|call|>',
        None,
        [("get_weather", {"location": "San Francisco"})],
        "Need to use function get_weather.",
        id="REAL-harmony-docs-receiving-tool-calls",
    ),
    pytest.param(
        '<|channel|>analysis<|message|>{long chain of thought}<|end|><|start|>assistant<|channel|>commentary<|message|>**Action plan**:\n1. Generate an HTML file\n---\nWill start executing the plan step by step<|end|><|start|>assistant<|channel|>commentary to=functions.generate_file<|constrain|>json<|message|>{"template": "basic_html", "path": "index.html"}<|call|>',
        "**Action plan**:\n1. Generate an HTML file\n---\nWill start executing the plan step by step",
        [("generate_file", {"template": "basic_html", "path": "index.html"})],
        "{long chain of thought}",
        id="REAL-harmony-docs-commentary-preamble-then-call",
    ),
    pytest.param(
        '<|channel|>analysis<|message|>User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.<|end|><|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>',
        "2 + 2 = 4.",
        [],
        'User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.',
        id="REAL-harmony-docs-final-answer-with-return",
    ),
    pytest.param(
        "<|channel|>analysis<|message|>The user wants the weather in Paris. I should call get_weather with",
        None,
        [],
        "The user wants the weather in Paris. I should call get_weather with",
        id="CONSTRUCTED-analysis-only-cut-off",
    ),
    pytest.param(
        '<|channel|>analysis<|message|>I\'m\nthinking<|end|><|start|>assistant<|channel|>analysis to=functions.special_function <|constrain|>json<|message|>{"arg1": 1}',
        None,
        [("special_function", {"arg1": 1})],
        "I'm\nthinking",
        id="REAL-llama-cpp-call-on-the-analysis-channel",
    ),
    pytest.param(
        '<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"location": "Lima"}<|call|>',
        None,
        [("get_weather", {"location": "Lima"})],
        None,
        id="REAL-llama-cpp-pr-15181-recipient-in-the-role",
    ),
    pytest.param(
        '<|channel|>analysis<|message|>Copy the history form.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"location": "Oslo"}',
        None,
        [("get_weather", {"location": "Oslo"})],
        "Copy the history form.",
        id="CONSTRUCTED-history-form-bare-json-content-type",
    ),
    pytest.param(
        '<|channel|>commentary to=functions.get_weather json<|message|>{"location": "Oslo"}<|call|>',
        None,
        [("get_weather", {"location": "Oslo"})],
        None,
        id="CONSTRUCTED-bare-json-content-type-after-the-name",
    ),
    pytest.param(
        '<|channel|>commentary to=functions.get_weather<|message|>{"location": "Oslo"}<|call|>',
        None,
        [("get_weather", {"location": "Oslo"})],
        None,
        id="CONSTRUCTED-no-content-type",
    ),
    pytest.param(
        '<|channel|>analysis<|message|>Écrire le fichier 😀.<|end|><|start|>assistant<|channel|>commentary to=functions.write_file <|constrain|>json<|message|>{"path":"C:\\\\temp\\\\été.txt","text":"He said \\"hi\\"\\nÉté 😀 \\u00e9\\t."}<|call|>',
        None,
        [("write_file", {"path": "C:\\temp\\été.txt", "text": 'He said "hi"\nÉté 😀 é\t.'})],
        "Écrire le fichier 😀.",
        id="CONSTRUCTED-unicode-and-escapes",
    ),
    pytest.param(
        '<|channel|>commentary to=functions.write_file <|constrain|>json<|message|>{"path": "notes.md", "text": "a <|call|> and <|end|><|start|>assistant<|channel|>final<|message|> inside"}<|call|>',
        None,
        [
            (
                "write_file",
                {
                    "path": "notes.md",
                    "text": "a <|call|> and <|end|><|start|>assistant<|channel|>final<|message|> inside",
                },
            )
        ],
        None,
        id="CONSTRUCTED-harmony-tokens-inside-a-string-argument",
    ),
    pytest.param(
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location": "Paris"}<|call|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location": "Rome"}<|call|>',
        None,
        [("get_weather", {"location": "Paris"}), ("get_weather", {"location": "Rome"})],
        None,
        id="CONSTRUCTED-two-calls-when-call-is-no-stop",
    ),
    pytest.param(
        "<|channel|>final<|message|>Send it to=functions.get_weather later, said nobody.<|return|>",
        "Send it to=functions.get_weather later, said nobody.",
        [],
        None,
        id="CONSTRUCTED-recipient-text-in-an-answer-is-text",
    ),
    pytest.param(
        '<|channel|>commentary to=functions.translate <|constrain|>json<|message|>{"text": "hi"}<|call|>',
        '<|channel|>commentary to=functions.translate <|constrain|>json<|message|>{"text": "hi"}',
        [],
        None,
        id="CONSTRUCTED-not-an-offered-tool-is-content-as-written",
    ),
]


@pytest.mark.parametrize(("raw", "content", "calls", "reasoning"), CASES)
def test_output_parses_the_same_however_it_is_chunked(
    raw: str, content: str | None, calls: list[Any], reasoning: str | None
) -> None:
    assert_parses("openai", raw, content, calls, TOOLS)  # reasoning too: chunkings compare whole results

    assert parse_in_chunks("openai", raw, [], TOOLS).reasoning == reasoning


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            '<|channel|>commentary to=functions.special_function<|message|>{"arg1', id="REAL-llama-cpp-truncated"
        ),
        pytest.param(
            '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location": "Paris", "days": [1, 2',
            id="CONSTRUCTED-cut-off-mid-array",
        ),
        pytest.param(
            '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location": Paris}<|call|>',
            id="CONSTRUCTED-malformed-bare-word",
        ),
        pytest.param(
            '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location": "Paris",, "unit": "c"}<|call|>',
            id="CONSTRUCTED-malformed-double-comma",
        ),
    ],
)
def test_a_broken_call_is_content_as_written_never_a_crash(raw: str) -> None:
    assert_parses("openai", raw, raw.removesuffix("<|call|>"), [], TOOLS, failed=1)


@pytest.mark.parametrize(
    "raw",
    [
        "<|channel|>commentary to=functions.get_wea",
        "<|channel|>commentary to=functions.get_weather <|constrain|>json<|mess",
        "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>",
    ],
)
def test_a_call_cut_off_before_its_arguments_is_content(raw: str) -> None:
    assert_parses("openai", raw, raw, [], TOOLS)


def test_truncated_output_keeps_its_reasoning() -> None:
    raw = '<|channel|>analysis<|message|>Call it.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location": "Par'

    result = parse_in_chunks("openai", raw, [], TOOLS)

    assert result.reasoning == "Call it."
    assert result.calls == []
    assert result.content == raw.split("<|start|>assistant", 1)[1]


def test_long_arguments_arrive_incrementally() -> None:
    text = "ünïcödé and <|call|> and <|end|> " * 40
    raw = (
        "<|channel|>analysis<|message|>Write it.<|end|><|start|>assistant"
        "<|channel|>commentary to=functions.write_file <|constrain|>json<|message|>"
        + json.dumps({"path": "a.txt", "text": text}, ensure_ascii=False)
        + "<|call|>"
    )

    assert_arguments_stream("openai", raw, {"path": "a.txt", "text": text}, TOOLS)


def test_write_call_parses_back_and_a_named_prefill_starts_it() -> None:
    dialect = get_dialect("openai")
    arguments = {"city": "Zürich", "days": [1, 2], "options": {"unit": "celsius"}}

    # guided decoding writes only the arguments after a named prefill, and the engine stops at <|call|>
    raw = assert_written_calls_parse_back(dialect, [("get_weather", arguments)], TOOLS, prefill_ends_at_arguments=True)

    assert raw == (
        "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
        '{"city":"Zürich","days":[1,2],"options":{"unit":"celsius"}}'
    )
    assert dialect.prefill("get_weather").startswith(dialect.prefill(None))
    # a prefill without a name: the model writes the name and the rest of the header
    unnamed = dialect.prefill(None) + 'search <|constrain|>json<|message|>{"query": "x"}'
    assert parse_in_chunks(dialect, unnamed, tool_names=TOOLS).calls[0].name == "search"


def test_calls_of_one_message_written_together_parse_as_consecutive_messages() -> None:
    dialect = get_dialect("openai")
    raw = dialect.write_calls([("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})])

    result = parse_in_chunks(dialect, raw, tool_names=TOOLS)

    assert not dialect.parallel_calls
    assert [json.loads(call.arguments) for call in result.calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert result.content is None
