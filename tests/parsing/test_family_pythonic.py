# ruff: noqa: E501 - raw model outputs are verbatim literals, long lines included
"""Llama 3.2 pythonic outputs through the ``pythonic`` dialect: whole, at every 2-chunk split, in
random token chunkings and one character at a time, all folding into the same response.

REAL: taken from /work/shared/oracle/cases.jsonl (the source named there). CONSTRUCTED: written for
this test in the format of FORMATS.md §8 (a Python list of calls with keyword arguments, Python
literals, optionally after ``<|python_tag|>``).
"""

from __future__ import annotations

from typing import Any

import pytest
from _fold import assert_arguments_stream, assert_parses, assert_written_calls_parse_back

TOOLS = {"get_weather", "get_time", "register_user", "write_file", "search"}

CASES = [
    pytest.param(
        "[get_weather(city='San Francisco', metric='celsius'), get_weather(city='Seattle', metric='celsius')]<|eot_id|>",
        None,
        [
            ("get_weather", {"city": "San Francisco", "metric": "celsius"}),
            ("get_weather", {"city": "Seattle", "metric": "celsius"}),
        ],
        id="REAL-llama-models-two-calls",
    ),
    pytest.param(
        '<|python_tag|>[get_weather(city="San Francisco", metric="celsius")]<|eot_id|>',
        None,
        [("get_weather", {"city": "San Francisco", "metric": "celsius"})],
        id="REAL-llama-models-python-tag",
    ),
    pytest.param(
        "[register_user(name='John Doe', age=37, address={'city': 'San Francisco', 'state': 'CA'}, role=None, "
        "passed_test=True, aliases=['John', 'Johnny'])]",
        None,
        [
            (
                "register_user",
                {
                    "name": "John Doe",
                    "age": 37,
                    "address": {"city": "San Francisco", "state": "CA"},
                    "role": None,
                    "passed_test": True,
                    "aliases": ["John", "Johnny"],
                },
            )
        ],
        id="REAL-vllm-python-literals-nested",
    ),
    pytest.param(
        "[get_weather(city='Martha\\'s Vineyard', metric='\\\"cool units\\\"')]",
        None,
        [("get_weather", {"city": "Martha's Vineyard", "metric": '"cool units"'})],
        id="REAL-vllm-escaped-quotes",
    ),
    pytest.param(
        "Let me check. [get_weather(city='Paris'), get_time(tz='Europe/Paris')] One moment.",
        "Let me check. One moment.",
        [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "Europe/Paris"})],
        id="CONSTRUCTED-text-before-and-after",
    ),
    pytest.param(
        "[search(query='hotels', filters={'stars': [4, 5], 'area': {'lat': 48.85, 'lon': 2.35}}, limit=10, "
        "exact=False, cursor=None)]",
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
        id="CONSTRUCTED-nested-objects-and-arrays",
    ),
    pytest.param(
        "[write_file(path='C:\\\\temp\\\\a.txt', text='He said \"hi\"\\nÉté 😀 \\u00e9\\t.')]",
        None,
        [("write_file", {"path": "C:\\temp\\a.txt", "text": 'He said "hi"\nÉté 😀 é\t.'})],
        id="CONSTRUCTED-unicode-and-escapes",
    ),
    pytest.param(
        "[write_file(path='x', text='a)], [get_time()] <|eot_id|> ]')]",
        None,
        [("write_file", {"path": "x", "text": "a)], [get_time()] <|eot_id|> ]"})],
        id="CONSTRUCTED-closing-brackets-and-markers-inside-a-string-argument",
    ),
    pytest.param(
        "The weather in San Francisco is 25 C.<|eot_id|>",
        "The weather in San Francisco is 25 C.",
        [],
        id="REAL-llama-models-plain-answer",
    ),
    pytest.param(
        "See [1], [note] and [a, b] here.", "See [1], [note] and [a, b] here.", [], id="CONSTRUCTED-brackets-in-prose"
    ),
    pytest.param("[]", "[]", [], id="REAL-llama-models-empty-list"),
    pytest.param(
        'get_weather(city="Paris")', 'get_weather(city="Paris")', [], id="REAL-llama-models-bare-call-is-not-a-call"
    ),
    pytest.param("[translate(text='hi')]", "[translate(text='hi')]", [], id="CONSTRUCTED-not-an-offered-tool"),
]


@pytest.mark.parametrize(("raw", "content", "calls"), CASES)
def test_output_parses_the_same_however_it_is_chunked(raw: str, content: str | None, calls: list[Any]) -> None:
    assert_parses("pythonic", raw, content, calls, TOOLS)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("[get_weather(city='Par", id="CONSTRUCTED-cut-off-mid-string"),
        pytest.param("[get_weather(city='Paris', days=[1, 2", id="CONSTRUCTED-cut-off-mid-list"),
        pytest.param('[get_weather(city="water", celcius=True', id="REAL-llama-models-cut-off-before-the-parenthesis"),
        pytest.param("[get_weather(city=Paris)]", id="CONSTRUCTED-malformed-bare-word"),
        pytest.param("[get_weather(city='Paris',, days=3)]", id="CONSTRUCTED-malformed-double-comma"),
        pytest.param("[get_weather('Paris', True)]", id="REAL-llama-models-positional-arguments"),
    ],
)
def test_a_broken_call_is_content_as_written_never_a_crash(raw: str) -> None:
    assert_parses("pythonic", raw, raw, [], TOOLS, failed=1)


def test_a_call_cut_off_in_its_name_is_content() -> None:
    assert_parses("pythonic", "[get_wea", "[get_wea", [], TOOLS)


def test_a_list_cut_after_a_whole_call_keeps_that_call() -> None:
    assert_parses(
        "pythonic", "[get_weather(city='Paris'), get_ti", ", get_ti", [("get_weather", {"city": "Paris"})], TOOLS
    )


def test_long_arguments_arrive_incrementally() -> None:
    text = "ünïcödé and )] [x(y=1)] " * 40
    raw = f"[write_file(path='a.txt', text={text!r})]"

    assert_arguments_stream("pythonic", raw, {"path": "a.txt", "text": text}, TOOLS)


def test_write_calls_parse_back_and_a_prefill_starts_them() -> None:
    arguments = {"city": "Zürich", "days": [1, 2], "options": {"unit": "celsius", "raw": None}, "exact": True}

    calls = [("get_weather", arguments), ("get_time", {})]

    # keyword arguments are not a JSON value
    assert_written_calls_parse_back("pythonic", calls, TOOLS, prefill_ends_at_arguments=False)
