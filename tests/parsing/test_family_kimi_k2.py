"""Kimi-K2 outputs through the ``kimi_k2`` dialect: whole, at every 2-chunk split, in random token
chunkings and one character at a time, all folding into the same response.

REAL: taken from /work/shared/oracle/cases.jsonl (the source named there). CONSTRUCTED: written for
this test in the format of FORMATS.md §13 (``<|tool_calls_section_begin|>``, per call
``<|tool_call_begin|>functions.NAME:N<|tool_call_argument_begin|>{json}<|tool_call_end|>``,
``<|tool_calls_section_end|>``; every marker a special token).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _fold import assert_arguments_stream, assert_parses, assert_written_calls_parse_back, parse_in_chunks

TOOLS = {"get_weather", "get_time", "search", "write_file", "TodoWrite"}

BEGIN, END = "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>"
CALL, ARGUMENTS, CALL_END = "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>"


def _call(call_id: str, arguments: str) -> str:
    return f"{CALL}{call_id}{ARGUMENTS}{arguments}{CALL_END}"


CASES = [
    pytest.param(
        "Checking."
        + BEGIN
        + _call("functions.get_weather:3", '{"city": "Paris"}')
        + _call("functions.get_time:4", "{}")
        + END,
        "Checking.",
        [("get_weather", {"city": "Paris"}), ("get_time", {})],
        id="CONSTRUCTED-text-then-two-calls-numbered-on-from-earlier-turns",
    ),
    pytest.param(
        BEGIN + _call("functions.get_weather:0", '{"city": "Paris"}') + END + "Anything else?",
        "Anything else?",
        [("get_weather", {"city": "Paris"})],
        id="CONSTRUCTED-text-after-the-section",
    ),
    pytest.param(
        f"{BEGIN}{CALL} functions.search:0 {ARGUMENTS} "
        '{"query": "hotels", "filters": {"stars": [4, 5], "area": {"lat": 48.85}}, "limit": 10, "exact": false, '
        f'"cursor": null}} {CALL_END}{END}',
        None,
        [
            (
                "search",
                {
                    "query": "hotels",
                    "filters": {"stars": [4, 5], "area": {"lat": 48.85}},
                    "limit": 10,
                    "exact": False,
                    "cursor": None,
                },
            )
        ],
        id="CONSTRUCTED-nested-objects-and-arrays-spaces-around-the-id",
    ),
    pytest.param(
        BEGIN
        + _call("functions.write_file:0", '{"text": "He said \\"hi\\"\\n\\u00e9t\\u00e9 😀 深圳 C:\\\\temp"}')
        + END,
        None,
        [("write_file", {"text": 'He said "hi"\nété 😀 深圳 C:\\temp'})],
        id="CONSTRUCTED-unicode-and-escapes",
    ),
    pytest.param(
        BEGIN
        + _call(
            "functions.write_file:0", '{"text": "literal ' + CALL_END + END + CALL + " and " + ARGUMENTS + ' inside"}'
        )
        + END,
        None,
        [("write_file", {"text": f"literal {CALL_END}{END}{CALL} and {ARGUMENTS} inside"})],
        id="CONSTRUCTED-markers-inside-a-string-argument-vllm-pr-44137",
    ),
    pytest.param(
        BEGIN
        + _call("functions.TodoWrite:1", json.dumps(json.dumps({"todos": [{"id": "a", "status": "open"}]})))
        + END,
        None,
        [("TodoWrite", {"todos": [{"id": "a", "status": "open"}]})],
        id="CONSTRUCTED-arguments-as-a-json-string-as-in-kimi-k2-issue-26",
    ),
    pytest.param(
        "<|tool_call_section_begin|>"
        + _call("functions.get_weather:0", '{"city": "Oslo"}')
        + "<|tool_call_section_end|>",
        None,
        [("get_weather", {"city": "Oslo"})],
        id="CONSTRUCTED-singular-section-markers-vllm-accepts",
    ),
    pytest.param(
        "Paris is the capital of France.", "Paris is the capital of France.", [], id="CONSTRUCTED-plain-answer"
    ),
    pytest.param(
        BEGIN + _call("functions.translate:0", '{"text": "hi"}') + END,
        'functions.translate:0{"text": "hi"}',
        [],
        id="CONSTRUCTED-not-an-offered-tool-is-text-without-the-special-tokens",
    ),
    pytest.param(
        BEGIN + _call("functions.get time:0", "{}") + END,
        "functions.get time:0{}",
        [],
        id="CONSTRUCTED-malformed-id-is-text",
    ),
]


@pytest.mark.parametrize(("raw", "content", "calls"), CASES)
def test_output_parses_the_same_however_it_is_chunked(raw: str, content: str | None, calls: list[Any]) -> None:
    assert_parses("kimi_k2", raw, content, calls, TOOLS)


def test_the_models_ids_are_the_calls_ids() -> None:
    raw = BEGIN + _call("functions.get_weather:3", "{}") + _call("get_time:4", "{}") + END

    result = parse_in_chunks("kimi_k2", raw, tool_names=TOOLS)

    assert [(call.name, call.call_id) for call in result.calls] == [
        ("get_weather", "functions.get_weather:3"),
        ("get_time", "get_time:4"),
    ]


@pytest.mark.parametrize(
    ("raw", "content"),
    [
        pytest.param(
            f'{BEGIN}{CALL}functions.get_weather:0{ARGUMENTS}{{"city": "Par',
            f'{BEGIN}{CALL}functions.get_weather:0{ARGUMENTS}{{"city": "Par',
            id="cut-off-mid-string",
        ),
        pytest.param(
            BEGIN + _call("functions.get_weather:0", '{"city": Paris}') + END,
            f'{BEGIN}{CALL}functions.get_weather:0{ARGUMENTS}{{"city": Paris}}',
            id="malformed-bare-word",
        ),
        pytest.param(
            BEGIN + _call("functions.get_weather:0", '{"city": "Paris",, "unit": "c"}') + END,
            f'{BEGIN}{CALL}functions.get_weather:0{ARGUMENTS}{{"city": "Paris",, "unit": "c"}}',
            id="malformed-double-comma",
        ),
    ],
)
def test_a_broken_call_is_content_as_written_never_a_crash(raw: str, content: str) -> None:
    # The call's text as the model wrote it; the markers after the point it broke are special
    # tokens, never content.
    assert_parses("kimi_k2", raw, content, [], TOOLS, failed=1)


def test_a_call_cut_off_in_its_id_is_content() -> None:
    assert_parses("kimi_k2", f"{BEGIN}{CALL}functions.get_wea", "functions.get_wea", [], TOOLS)


def test_long_arguments_arrive_incrementally() -> None:
    text = f"ünïcödé and {CALL_END} " * 40
    raw = BEGIN + _call("functions.write_file:0", json.dumps({"path": "a.txt", "text": text}, ensure_ascii=False)) + END

    assert_arguments_stream("kimi_k2", raw, {"path": "a.txt", "text": text}, TOOLS)


def test_write_calls_numbers_the_calls_and_a_named_prefill_starts_them() -> None:
    calls = [("get_weather", {"city": "Zürich"}), ("get_weather", {"city": "Rome"})]

    raw = assert_written_calls_parse_back("kimi_k2", calls, TOOLS, prefill_ends_at_arguments=True)

    result = parse_in_chunks("kimi_k2", raw, tool_names=TOOLS)
    assert [call.call_id for call in result.calls] == ["functions.get_weather:0", "functions.get_weather:1"]
