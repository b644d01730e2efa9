"""Llama 4 pythonic outputs through the ``llama4_pythonic`` dialect: whole, at every 2-chunk split,
in random token chunkings and one character at a time, all folding into the same response.

REAL: taken from /work/shared/oracle/cases.jsonl (the source named there). CONSTRUCTED: written for
this test in the format of FORMATS.md §8 (Llama 4: a Python list of calls, double-quoted strings in
Meta's examples, sometimes inside ``<|python_start|>...<|python_end|>``, turns ending in ``<|eot|>``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _fold import assert_arguments_stream, assert_parses, assert_written_calls_parse_back

TOOLS = {"get_weather", "get_user_info", "register_user", "write_file", "search"}

CASES = [
    pytest.param(
        '[get_weather(city="San Francisco"), get_weather(city="Seattle")]<|eot|>',
        None,
        [("get_weather", {"city": "San Francisco"}), ("get_weather", {"city": "Seattle"})],
        id="REAL-llama-models-two-calls",
    ),
    pytest.param(
        "<|python_start|>[get_weather(city='LA', metric='C')]<|python_end|>",
        None,
        [("get_weather", {"city": "LA", "metric": "C"})],
        id="REAL-vllm-python-start-and-end",
    ),
    pytest.param(
        "<|python_start|>[get_weather(city='LA', metric='C'),register_user(name='Doe', age=9)]",
        None,
        [("get_weather", {"city": "LA", "metric": "C"}), ("register_user", {"name": "Doe", "age": 9})],
        id="REAL-vllm-python-start-without-end",
    ),
    pytest.param(
        "[get_user_info(user_id=7890, special='black')]<|eot|>",
        None,
        [("get_user_info", {"user_id": 7890, "special": "black"})],
        id="REAL-llama-models-integer-argument",
    ),
    pytest.param(
        'Checking now.<|python_start|>[get_weather(city="Paris")]<|python_end|> Back soon.<|eot|>',
        "Checking now. Back soon.",
        [("get_weather", {"city": "Paris"})],
        id="CONSTRUCTED-text-around-a-wrapped-list",
    ),
    pytest.param(
        '[search(query="hotels", filters={"stars": [4, 5], "area": {"lat": 48.85}}, exact=false, cursor=null)]',
        None,
        [
            (
                "search",
                {
                    "query": "hotels",
                    "filters": {"stars": [4, 5], "area": {"lat": 48.85}},
                    "exact": False,
                    "cursor": None,
                },
            )
        ],
        id="CONSTRUCTED-nested-and-json-spelled-literals",
    ),
    pytest.param(
        '[write_file(path="a.txt", text="Été 😀 \\u00e9 \\"q\\"\\n<|python_end|>)]")]',
        None,
        [("write_file", {"path": "a.txt", "text": 'Été 😀 é "q"\n<|python_end|>)]'})],
        id="CONSTRUCTED-unicode-escapes-and-markers-inside-a-string",
    ),
    pytest.param(
        '"What is a helpful assistant?"<|eot|>',
        '"What is a helpful assistant?"',
        [],
        id="REAL-llama-models-plain-answer",
    ),
    pytest.param(
        "I don't have access to [Unavailable service] information",
        "I don't have access to [Unavailable service] information",
        [],
        id="CONSTRUCTED-brackets-from-metas-system-prompt-in-prose",
    ),
]


@pytest.mark.parametrize(("raw", "content", "calls"), CASES)
def test_output_parses_the_same_however_it_is_chunked(raw: str, content: str | None, calls: list[Any]) -> None:
    assert_parses("llama4_pythonic", raw, content, calls, TOOLS)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('<|python_start|>[get_weather(city="Par', id="CONSTRUCTED-cut-off-mid-string"),
        pytest.param('[get_weather(city="Paris", days=[1, 2', id="CONSTRUCTED-cut-off-mid-list"),
        pytest.param('[get_weather(city="Paris" days=3)]', id="CONSTRUCTED-malformed-missing-comma"),
    ],
)
def test_a_broken_call_is_content_as_written_never_a_crash(raw: str) -> None:
    assert_parses("llama4_pythonic", raw, raw, [], TOOLS, failed=1)


def test_long_arguments_arrive_incrementally() -> None:
    text = "ünïcödé and <|python_end|> )] " * 40
    raw = '<|python_start|>[write_file(path="a.txt", text=' + json.dumps(text, ensure_ascii=False) + ")]<|python_end|>"

    assert_arguments_stream("llama4_pythonic", raw, {"path": "a.txt", "text": text}, TOOLS)


def test_write_calls_parse_back_and_a_prefill_starts_them() -> None:
    arguments = {"city": "Zürich", "days": [1, 2], "exact": False}

    assert_written_calls_parse_back(
        "llama4_pythonic",
        [("get_weather", arguments), ("get_user_info", {"user_id": 7})],
        TOOLS,
        prefill_ends_at_arguments=False,
    )
