# ruff: noqa: E501 - raw model outputs are verbatim literals, long lines included
"""Granite 3.x outputs through the ``granite`` dialect: whole, at every 2-chunk split, in random token
chunkings and one character at a time, all folding into the same response.

REAL: taken from /work/shared/oracle/cases.jsonl (the source named there). CONSTRUCTED: written for
this test in the format of FORMATS.md §11 (``<|tool_call|>`` then a JSON array of call objects;
Granite 3.1's literal ``<tool_call>``; Granite 4's Hermes-style blocks).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _fold import assert_arguments_stream, assert_parses, assert_written_calls_parse_back

TOOLS = {"get_weather", "get_time", "special_function", "write_file", "search"}

CASES = [
    pytest.param(
        '<|tool_call|>[{"name": "special_function", "arguments": {"arg1": 1}}]',
        None,
        [("special_function", {"arg1": 1})],
        id="REAL-llama-cpp-one-call",
    ),
    pytest.param(
        '<|tool_call|> [\n  {"name": "get_weather", "arguments": {"city": "Tokyo"}},\n'
        '  {"name": "get_time", "arguments": {"timezone": "Asia/Tokyo"}}\n]',
        None,
        [("get_weather", {"city": "Tokyo"}), ("get_time", {"timezone": "Asia/Tokyo"})],
        id="REAL-vllm-two-calls-over-lines",
    ),
    pytest.param(
        '<|tool_call|> [{"arguments": {"city": "Tokyo"}, "name": "get_weather"}, '
        '{"arguments": {"timezone": "Asia/Tokyo"}, "name": "get_time"}]',
        None,
        [("get_weather", {"city": "Tokyo"}), ("get_time", {"timezone": "Asia/Tokyo"})],
        id="REAL-vllm-arguments-before-name",
    ),
    pytest.param(
        '<tool_call> [{"name": "get_weather", "arguments": {"city": "Tokyo"}}]',
        None,
        [("get_weather", {"city": "Tokyo"})],
        id="REAL-vllm-granite-3.1-literal-tag",
    ),
    pytest.param(
        'Let me check the weather for you.\n<|tool_call|> [{"name": "get_weather", "arguments": {"city": "Tokyo"}}]'
        "\nI'll get that information.<|end_of_text|>",
        "Let me check the weather for you.\nI'll get that information.",
        [("get_weather", {"city": "Tokyo"})],
        id="REAL-vllm-text-around-the-calls",
    ),
    pytest.param(
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {"timezone": "Europe/Paris"}}\n</tool_call>',
        None,
        [("get_weather", {"city": "Paris"}), ("get_time", {"timezone": "Europe/Paris"})],
        id="CONSTRUCTED-granite-4-hermes-style-blocks",
    ),
    pytest.param(
        '<|tool_call|>[{"name": "search", "arguments": {"filters": {"stars": [4, 5], "area": {"lat": 48.85}}, '
        '"limit": 10, "exact": false, "cursor": null}}]',
        None,
        [
            (
                "search",
                {"filters": {"stars": [4, 5], "area": {"lat": 48.85}}, "limit": 10, "exact": False, "cursor": None},
            )
        ],
        id="CONSTRUCTED-nested-objects-and-arrays",
    ),
    pytest.param(
        '<|tool_call|>[{"name": "write_file", "arguments": "{\\"path\\": \\"C:\\\\\\\\temp\\", \\"text\\": \\"Été 😀\\"}"}]',
        None,
        [("write_file", {"path": "C:\\temp", "text": "Été 😀"})],
        id="CONSTRUCTED-arguments-as-a-json-string-with-escapes-and-unicode",
    ),
    pytest.param(
        '<|tool_call|>[{"name": "write_file", "arguments": {"path": "x", "text": "}] <|tool_call|>[ <|end_of_text|>"}}]',
        None,
        [("write_file", {"path": "x", "text": "}] <|tool_call|>[ <|end_of_text|>"})],
        id="CONSTRUCTED-markers-and-closing-brackets-inside-a-string-argument",
    ),
    pytest.param(
        "This is a regular response without any tool calls.",
        "This is a regular response without any tool calls.",
        [],
        id="REAL-vllm-plain-answer",
    ),
    pytest.param(
        '<|tool_call|>[{"name": "translate", "arguments": {"text": "hi"}}]',
        '[{"name": "translate", "arguments": {"text": "hi"}}]',
        [],
        id="CONSTRUCTED-not-an-offered-tool-is-text-without-the-control-token",
    ),
]


@pytest.mark.parametrize(("raw", "content", "calls"), CASES)
def test_output_parses_the_same_however_it_is_chunked(raw: str, content: str | None, calls: list[Any]) -> None:
    assert_parses("granite", raw, content, calls, TOOLS)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('<|tool_call|>[{"name": "special_function", "arguments": {"arg', id="REAL-llama-cpp-cut-off"),
        pytest.param(
            '<|tool_call|>[{"name": "get_weather", "arguments": {"days": [1, 2', id="CONSTRUCTED-cut-off-mid-array"
        ),
        pytest.param(
            '<|tool_call|>[{"name": "get_weather", "arguments": {"city": Paris}}]', id="CONSTRUCTED-malformed-bare-word"
        ),
    ],
)
def test_a_broken_call_is_content_as_written_never_a_crash(raw: str) -> None:
    assert_parses("granite", raw, raw, [], TOOLS, failed=1)


def test_a_call_cut_off_before_its_arguments_is_content_without_the_control_token() -> None:
    assert_parses("granite", '<|tool_call|>[{"name": "get_wea', '[{"name": "get_wea', [], TOOLS)


def test_long_arguments_arrive_incrementally() -> None:
    text = "ünïcödé and <|tool_call|> }] " * 40
    raw = '<|tool_call|>[{"name": "write_file", "arguments": ' + json.dumps({"path": "a", "text": text}) + "}]"

    assert_arguments_stream("granite", raw, {"path": "a", "text": text}, TOOLS)


def test_write_calls_parse_back_and_a_named_prefill_starts_them() -> None:
    arguments = {"city": "Zürich", "days": [1, 2], "options": {"unit": "celsius"}}

    assert_written_calls_parse_back(
        "granite", [("get_weather", arguments), ("get_time", {})], TOOLS, prefill_ends_at_arguments=True
    )
