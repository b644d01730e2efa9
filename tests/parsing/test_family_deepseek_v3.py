"""DeepSeek-V3 (0324) / R1-0528 outputs through the ``deepseek_v3`` dialect: whole, at every 2-chunk
split, in random token chunkings and one character at a time, all folding into the same response.

REAL: taken from /work/shared/oracle/cases.jsonl (vLLM tests/tool_parsers/test_deepseekv3_tool_parser.py).
CONSTRUCTED: written for this test in the format of FORMATS.md §10 and of vLLM's example template
(calls separated by "\\n" as the template writes them).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _fold import assert_arguments_stream, assert_parses, assert_written_calls_parse_back

BEGIN, END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
EOS = "<｜end▁of▁sentence｜>"
TOOLS = {"get_weather", "search_hotels", "send_message", "search", "write_file"}


def call(name: str, body: str, *, fence: bool = True) -> str:
    closing = "\n```" if fence else ""
    return f"{CALL}function{SEP}{name}\n```json\n{body}{closing}{CALL_END}"


CASES = [
    pytest.param(
        BEGIN + call("get_weather", '{"city": "Tokyo", "unit": "celsius"}') + END,
        None,
        [("get_weather", {"city": "Tokyo", "unit": "celsius"})],
        id="REAL-single-call",
    ),
    pytest.param(
        BEGIN
        + call("get_weather", '{"city": "Tokyo", "unit": "celsius"}')
        + call("search_hotels", '{"location": "Tokyo", "check_in": "2025-01-15"}')
        + END,
        None,
        [
            ("get_weather", {"city": "Tokyo", "unit": "celsius"}),
            ("search_hotels", {"location": "Tokyo", "check_in": "2025-01-15"}),
        ],
        id="REAL-two-calls-in-one-block",
    ),
    pytest.param(
        "Let me check the weather for you." + BEGIN + call("get_weather", '{"city": "Paris"}') + END,
        "Let me check the weather for you.",
        [("get_weather", {"city": "Paris"})],
        id="REAL-text-before-the-block",
    ),
    pytest.param(
        "Checking both.\n"
        + BEGIN
        + call("get_weather", '{"city": "Paris"}')
        + "\n"
        + call("get_weather", '{"city": "Rome"}')
        + END
        + "\nI'll report back."
        + EOS,
        "Checking both.\nI'll report back.",
        [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})],
        id="CONSTRUCTED-newline-between-calls-text-after-block-and-eos-hidden",
    ),
    pytest.param(
        BEGIN
        + call(
            "search",
            '{\n  "query": "hotels",\n  "filters": {\n    "stars": [4, 5],\n    "area": {"lat": 48.85, "lon": 2.35}\n'
            '  },\n  "tags": [[], {}, [null, true]]\n}',
        )
        + END,
        None,
        [
            (
                "search",
                {
                    "query": "hotels",
                    "filters": {"stars": [4, 5], "area": {"lat": 48.85, "lon": 2.35}},
                    "tags": [[], {}, [None, True]],
                },
            )
        ],
        id="CONSTRUCTED-pretty-printed-nested-objects-and-arrays-vllm-regex-misses",
    ),
    pytest.param(
        BEGIN
        + call(
            "send_message",
            '{"text": "He said \\"hello\\"", "path": "C:\\\\Users\\\\file", "newline": "line1\\nline2"}',
        )
        + END,
        None,
        [("send_message", {"text": 'He said "hello"', "path": "C:\\Users\\file", "newline": "line1\nline2"})],
        id="REAL-escaped-quotes-backslashes-newlines",
    ),
    pytest.param(
        BEGIN + call("send_message", '{"text": "Grüße aus Zürich 😀 — \\u00e9\\t東京"}') + END,
        None,
        [("send_message", {"text": "Grüße aus Zürich 😀 — é\t東京"})],
        id="CONSTRUCTED-unicode",
    ),
    pytest.param(
        BEGIN + call("write_file", '{"text": "```\\n' + CALL_END + END + EOS + '\\n```"}') + END,
        None,
        [("write_file", {"text": "```\n" + CALL_END + END + EOS + "\n```"})],
        id="CONSTRUCTED-closing-markers-and-fence-inside-a-string-argument",
    ),
    pytest.param(
        BEGIN + call("get_weather", '{"city": "Paris"}', fence=False) + END,
        None,
        [("get_weather", {"city": "Paris"})],
        id="CONSTRUCTED-closing-fence-missing",
    ),
    pytest.param(
        "How can I help you today? I can check weather for you.",
        "How can I help you today? I can check weather for you.",
        [],
        id="REAL-plain-answer",
    ),
    pytest.param(
        BEGIN + f"function{SEP}get_weather\n```json\n" + '{"city": "Tokyo"}\n```' + END,
        BEGIN + f"function{SEP}get_weather\n```json\n" + '{"city": "Tokyo"}\n```' + END,
        [],
        id="REAL-block-without-call-markers-is-content",
    ),
    pytest.param(
        BEGIN + call("delete_everything", "{}") + END,
        BEGIN + call("delete_everything", "{}") + END,
        [],
        id="CONSTRUCTED-not-an-offered-tool-is-content",
    ),
    pytest.param(
        "Let me look." + BEGIN + CALL + "function" + SEP + "get_weather",
        "Let me look." + BEGIN + CALL + "function" + SEP + "get_weather",
        [],
        id="CONSTRUCTED-cut-off-in-the-name",
    ),
]


@pytest.mark.parametrize(("raw", "content", "calls"), CASES)
def test_output_parses_the_same_however_it_is_chunked(raw: str, content: str | None, calls: list[Any]) -> None:
    assert_parses("deepseek_v3", raw, content, calls, TOOLS)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(BEGIN + call("get_weather", '{"city": "Tokyo"', fence=False), id="CONSTRUCTED-cut-off-mid-args"),
        pytest.param(
            BEGIN + call("get_weather", '{"city": "Tokyo"') + CALL_END + END, id="REAL-malformed-missing-brace"
        ),
        pytest.param(BEGIN + call("get_weather", "{'city': Tokyo}") + END, id="CONSTRUCTED-malformed-bare-word"),
    ],
)
def test_a_broken_call_is_content_as_written_never_a_crash(raw: str) -> None:
    assert_parses("deepseek_v3", raw, raw, [], TOOLS, failed=1)


def test_a_broken_call_does_not_stop_the_next_one() -> None:
    # (A string left open would run on through the next call: only a closing quote ends it.)
    broken = call("get_weather", '{"city": "Tokyo",, "unit": "c"}')
    raw = BEGIN + broken + call("search_hotels", '{"location": "Tokyo"}') + END

    assert_parses("deepseek_v3", raw, BEGIN + broken, [("search_hotels", {"location": "Tokyo"})], TOOLS, failed=1)


def test_long_arguments_arrive_incrementally() -> None:
    text = "line with ```fences``` and " + CALL_END + " ünïcödé " * 30
    raw = BEGIN + call("write_file", json.dumps({"text": text}, ensure_ascii=False)) + END

    assert_arguments_stream("deepseek_v3", raw, {"text": text}, TOOLS)


def test_write_call_parses_back_and_prefills_start_it() -> None:
    arguments = {"city": "Zürich", "days": [1, 2]}

    raw = assert_written_calls_parse_back(
        "deepseek_v3", [("get_weather", arguments)], TOOLS, prefill_ends_at_arguments=True
    )

    assert raw == BEGIN + call("get_weather", json.dumps(arguments, ensure_ascii=False)) + END
