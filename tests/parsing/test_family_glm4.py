"""GLM-4-9B-chat outputs through the ``glm4`` dialect: whole, at every 2-chunk split, in random
token chunkings and one character at a time, all folding into the same response.

REAL: taken from /work/shared/oracle/cases.jsonl (the source named there). CONSTRUCTED: written
for this test in the format of FORMATS.md §3 (``NAME\\n{json}`` after ``<|assistant|>``, an empty
metadata line before a plain answer, ``<|observation|>`` after a call).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _fold import assert_arguments_stream, assert_parses, assert_written_calls_parse_back, parse_in_chunks

from toolcall_proxy.dialects import get_dialect

TOOLS = {"get_weather", "get_current_weather", "weather", "search", "write_file"}

CASES = [
    pytest.param(
        'get_current_weather\n{"location": "San Francisco, CA", "format": "celsius"}',
        None,
        [("get_current_weather", {"location": "San Francisco, CA", "format": "celsius"})],
        id="REAL-official-api-server-contract",
    ),
    pytest.param(
        'weather\n{"city": "深圳"}', None, [("weather", {"city": "深圳"})], id="REAL-glm4-issue-684-cjk-argument"
    ),
    pytest.param(
        "\nThe current weather in San Francisco is 22°C.",
        "The current weather in San Francisco is 22°C.",
        [],
        id="REAL-plain-answer-after-empty-metadata-line",
    ),
    pytest.param(
        '\nLet me look that up for you.<|assistant|>get_weather\n{"city": "Paris"}',
        "Let me look that up for you.",
        [("get_weather", {"city": "Paris"})],
        id="CONSTRUCTED-text-then-assistant-token-then-call",
    ),
    pytest.param(
        'get_weather\n{"city": "Paris"}\nI will wait for the result.<|observation|>',
        "I will wait for the result.",
        [("get_weather", {"city": "Paris"})],
        id="CONSTRUCTED-text-after-the-call-and-observation-token-hidden",
    ),
    pytest.param(
        'search\n{\n    "query": "hotels",\n    "filters": {"stars": [4, 5], "area": {"lat": 48.85, "lon": 2.35}},\n'
        '    "limit": 10,\n    "exact": false,\n    "cursor": null\n}',
        None,
        [
            (
                "search",
                {
                    "query": "hotels",
                    "filters": {"stars": [4, 5], "area": {"lat": 48.85, "lon": 2.35}},
                    "limit": 10,
                    "exact": False,
                    "cursor": None,
                },
            )
        ],
        id="CONSTRUCTED-pretty-printed-nested-objects-and-arrays",
    ),
    pytest.param(
        'write_file\n{"path": "C:\\\\temp\\\\a.txt", "text": "He said \\"hi\\"\\nÉté 😀 \\u00e9\\t."}',
        None,
        [("write_file", {"path": "C:\\temp\\a.txt", "text": 'He said "hi"\nÉté 😀 é\t.'})],
        id="CONSTRUCTED-unicode-and-escapes",
    ),
    pytest.param(
        'write_file\n{"path": "notes.md", "text": "ends with <|observation|> then <|assistant|>x\\n{}"}',
        None,
        [("write_file", {"path": "notes.md", "text": "ends with <|observation|> then <|assistant|>x\n{}"})],
        id="CONSTRUCTED-role-tokens-inside-a-string-argument",
    ),
    pytest.param(
        "Paris\nis the capital of France.", "Paris\nis the capital of France.", [], id="CONSTRUCTED-prose-first-line"
    ),
    pytest.param(
        'Answer\n42, as {"a": 1} shows.',
        'Answer\n42, as {"a": 1} shows.',
        [],
        id="CONSTRUCTED-second-line-not-an-object-is-text",
    ),
    pytest.param(
        'translate\n{"text": "hi"}',
        'translate\n{"text": "hi"}',
        [],
        id="CONSTRUCTED-not-an-offered-tool",
    ),
]


@pytest.mark.parametrize(("raw", "content", "calls"), CASES)
def test_output_parses_the_same_however_it_is_chunked(raw: str, content: str | None, calls: list[Any]) -> None:
    assert_parses("glm4", raw, content, calls, TOOLS)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('get_weather\n{"city": "Par', id="CONSTRUCTED-cut-off-mid-string"),
        pytest.param('get_weather\n{"city": "Paris", "days": [1, 2', id="CONSTRUCTED-cut-off-mid-array"),
        pytest.param('get_weather\n{"city": "Paris",, "unit": "c"}', id="CONSTRUCTED-malformed-double-comma"),
        pytest.param('get_weather\n{"city": Paris}', id="CONSTRUCTED-malformed-bare-word"),
    ],
)
def test_a_broken_call_is_content_as_written_never_a_crash(raw: str) -> None:
    assert_parses("glm4", raw, raw, [], TOOLS, failed=1)


def test_a_call_cut_off_in_its_name_is_content() -> None:
    assert_parses("glm4", "get_wea", "get_wea", [], TOOLS)


def test_long_arguments_arrive_incrementally() -> None:
    text = "ünïcödé and <|observation|> " * 40
    raw = "write_file\n" + json.dumps({"path": "a.txt", "text": text}, ensure_ascii=False)

    assert_arguments_stream("glm4", raw, {"path": "a.txt", "text": text}, TOOLS)


def test_write_call_parses_back_and_a_named_prefill_starts_it() -> None:
    arguments = {"city": "Zürich", "days": [1, 2], "options": {"unit": "celsius"}}

    assert_written_calls_parse_back("glm4", [("get_weather", arguments)], TOOLS, prefill_ends_at_arguments=True)
    assert get_dialect("glm4").prefill(None) == ""


def test_calls_of_one_message_written_together_parse_as_consecutive_turns() -> None:
    dialect = get_dialect("glm4")
    raw = dialect.write_calls([("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})])

    result = parse_in_chunks(dialect, raw, tool_names=TOOLS)

    assert [json.loads(call.arguments) for call in result.calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert result.content is None
