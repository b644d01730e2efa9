"""DeepSeek-V3.1 outputs through the ``deepseek_v31`` dialect: whole, at every 2-chunk split, in random
token chunkings and one character at a time, all folding into the same response.

REAL: taken from /work/shared/oracle/cases.jsonl (vLLM tests/tool_parsers/test_deepseekv31_tool_parser.py
and llama.cpp tests/test-chat.cpp, as named per case). CONSTRUCTED: written for this test in the format
of FORMATS.md §10 and of the V3.1 model card ("chain them directly without separators").
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _fold import assert_arguments_stream, assert_parses, assert_written_calls_parse_back

BEGIN, END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
EOS = "<｜end▁of▁sentence｜>"


def call(name: str, body: str) -> str:
    return f"{CALL}{name}{SEP}{body}{CALL_END}"


CASES = [
    pytest.param(
        "normal text" + BEGIN + call("foo", '{"x":1}') + END,
        None,
        "normal text",
        [("foo", {"x": 1})],
        id="REAL-vllm-text-then-call",
    ),
    pytest.param(
        "some prefix text" + BEGIN + call("foo", '{"x":1}') + call("bar", '{"y":2}') + END + " some suffix text",
        None,
        "some prefix text some suffix text",  # vLLM drops the suffix; policy: nothing is lost
        [("foo", {"x": 1}), ("bar", {"y": 2})],
        id="REAL-vllm-two-calls-text-before-and-after",
    ),
    pytest.param(
        "CONTENT" + BEGIN + call("get_time", '{"city": "Paris"}') + call("get_weather", '{"city": "Paris"}') + END,
        {"get_time", "get_weather"},
        "CONTENT",
        [("get_time", {"city": "Paris"}), ("get_weather", {"city": "Paris"})],
        id="REAL-llamacpp-parallel-calls",
    ),
    pytest.param(
        BEGIN
        + call("search", '{"q": "hotels", "filters": {"stars": [4, 5], "area": {"lat": 48.85}}, "tags": [[], {}]}')
        + END
        + EOS,
        {"search"},
        None,
        [("search", {"q": "hotels", "filters": {"stars": [4, 5], "area": {"lat": 48.85}}, "tags": [[], {}]})],
        id="CONSTRUCTED-nested-objects-and-arrays-eos-hidden",
    ),
    pytest.param(
        BEGIN + call("send", '{"text": "He said \\"hi\\" in Zürich 😀\\nC:\\\\dir \\u00e9"}') + END,
        {"send"},
        None,
        [("send", {"text": 'He said "hi" in Zürich 😀\nC:\\dir é'})],
        id="CONSTRUCTED-unicode-and-escapes",
    ),
    pytest.param(
        BEGIN + call("send", '{"text": "' + CALL_END + END + CALL + 'x"}') + END,
        {"send"},
        None,
        [("send", {"text": CALL_END + END + CALL + "x"})],
        id="CONSTRUCTED-closing-markers-inside-a-string-argument",
    ),
    pytest.param(
        BEGIN + call("get_time", '{\n  "city": "Tokyo"\n}') + END,
        None,
        None,
        [("get_time", {"city": "Tokyo"})],
        id="CONSTRUCTED-multi-line-json-vllm-regex-misses",
    ),
    pytest.param("CONTENT", None, "CONTENT", [], id="REAL-llamacpp-plain-answer"),
    pytest.param(
        "Let me look that up." + BEGIN + "get_weather",
        None,
        "Let me look that up." + BEGIN + "get_weather",
        [],
        id="REAL-vllm-cut-off-inside-the-block",
    ),
    pytest.param(
        BEGIN + "foo" + SEP + '{"x":1}' + END,
        None,
        BEGIN + "foo" + SEP + '{"x":1}' + END,
        [],
        id="REAL-vllm-block-without-call-markers",
    ),
    pytest.param(
        "Sure." + BEGIN + CALL + "get_wea",
        {"get_weather"},
        "Sure." + BEGIN + CALL + "get_wea",
        [],
        id="CONSTRUCTED-cut-off-in-the-name",
    ),
    pytest.param(
        BEGIN + call("rm", '{"path": "/"}') + END,
        {"get_weather"},
        BEGIN + call("rm", '{"path": "/"}') + END,
        [],
        id="CONSTRUCTED-not-an-offered-tool",
    ),
]


@pytest.mark.parametrize(("raw", "tools", "content", "calls"), CASES)
def test_output_parses_the_same_however_it_is_chunked(
    raw: str, tools: set[str] | None, content: str | None, calls: list[Any]
) -> None:
    assert_parses("deepseek_v31", raw, content, calls, tools)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(BEGIN + CALL + "get_weather" + SEP + '{"city": "Tok', id="CONSTRUCTED-cut-off-mid-string"),
        pytest.param(BEGIN + CALL + "get_weather" + SEP + '{"city": ["a", ', id="CONSTRUCTED-cut-off-mid-array"),
        pytest.param(BEGIN + call("get_weather", '{"city": "Tokyo",, }') + END, id="CONSTRUCTED-malformed-json"),
    ],
)
def test_a_broken_call_is_content_as_written_never_a_crash(raw: str) -> None:
    assert_parses("deepseek_v31", raw, raw, [], {"get_weather"}, failed=1)


def test_long_arguments_arrive_incrementally() -> None:
    text = "ünïcödé " + CALL_END + " and more " * 40
    raw = BEGIN + call("write", json.dumps({"text": text}, ensure_ascii=False)) + END

    assert_arguments_stream("deepseek_v31", raw, {"text": text}, {"write"})


def test_write_call_parses_back_and_prefills_start_it() -> None:
    arguments = {"city": "Zürich", "days": [1, 2]}

    raw = assert_written_calls_parse_back(
        "deepseek_v31", [("get_weather", arguments)], {"get_weather"}, prefill_ends_at_arguments=True
    )

    assert raw == BEGIN + call("get_weather", json.dumps(arguments, ensure_ascii=False)) + END
