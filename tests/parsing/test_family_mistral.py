# ruff: noqa: E501 - raw model outputs are verbatim literals, long lines included
"""Mistral outputs through the ``mistral`` dialect: whole, at every 2-chunk split, in random token
chunkings and one character at a time, all folding into the same response.

REAL: taken from /work/shared/oracle/cases.jsonl (the source named there). CONSTRUCTED: written for
this test in the forms of FORMATS.md §9 and mistral-common's encoder: ``[TOOL_CALLS]`` then a JSON
array (v3/v7, often after a space), or one ``[TOOL_CALLS]NAME[CALL_ID]ID[ARGS]{...}`` per call (v11;
v13 without ``[CALL_ID]``; ``NAME{...}`` when the control tokens were decoded away).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _fold import assert_arguments_stream, assert_parses, assert_written_calls_parse_back, parse_in_chunks

from toolcall_proxy.dialects import get_dialect

TOOLS = {"get_weather", "get_time", "add", "bash", "write_file", "search"}

CASES = [
    pytest.param(
        '[TOOL_CALLS][{"name": "add", "arguments": {"a": 3.5, "b": 4}, "id": "123456789"}]',
        None,
        [("add", {"a": 3.5, "b": 4})],
        id="REAL-llama-cpp-nemo-array-with-id",
    ),
    pytest.param(
        'Hello[TOOL_CALLS] [{"name": "add", "arguments":{"a": 1, "b": 2}}]',
        "Hello",
        [("add", {"a": 1, "b": 2})],
        id="REAL-vllm-text-before-the-array",
    ),
    pytest.param(
        '[TOOL_CALLS] [{"arguments": {"city": "Paris"}, "name": "get_weather"}, '
        '{"name": "get_time", "arguments": {"tz": "Europe/Paris"}}]</s>',
        None,
        [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "Europe/Paris"})],
        id="CONSTRUCTED-v3-two-calls-arguments-first-eos-hidden",
    ),
    pytest.param(
        '[TOOL_CALLS]get_weather[CALL_ID]a1B2c3D4e[ARGS]{"city": "Paris"}'
        '[TOOL_CALLS]get_time[CALL_ID]f5G6h7I8j[ARGS]{"tz": "Europe/Paris"}',
        None,
        [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "Europe/Paris"})],
        id="CONSTRUCTED-v11-two-calls-with-ids",
    ),
    pytest.param(
        'I will check.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}</s>',
        "I will check.",
        [("get_weather", {"city": "Paris"})],
        id="CONSTRUCTED-v13-text-then-call",
    ),
    pytest.param(
        '[TOOL_CALLS]add{"a": 3.5, "b": 4}[TOOL_CALLS]get_time{}',
        None,
        [("add", {"a": 3.5, "b": 4}), ("get_time", {})],
        id="REAL-vllm-v11-decoded-without-control-tokens",
    ),
    pytest.param(
        '[TOOL_CALLS] [\n  {\n    "name": "search",\n    "arguments": {\n      "filters": {"stars": [4, 5], '
        '"area": {"lat": 48.85, "lon": 2.35}},\n      "limit": 10,\n      "exact": false,\n      "cursor": null\n'
        "    }\n  }\n]",
        None,
        [
            (
                "search",
                {
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
        '[TOOL_CALLS]write_file[ARGS]{"path": "C:\\\\temp\\\\a.txt", "text": "He said \\"hi\\"\\nÉté 😀 \\u00e9\\t."}',
        None,
        [("write_file", {"path": "C:\\temp\\a.txt", "text": 'He said "hi"\nÉté 😀 é\t.'})],
        id="CONSTRUCTED-unicode-and-escapes",
    ),
    pytest.param(
        '[TOOL_CALLS] [{"name": "write_file", "arguments": {"path": "x", "text": "}] [TOOL_CALLS]get_time[ARGS]{} ]"}}]',
        None,
        [("write_file", {"path": "x", "text": "}] [TOOL_CALLS]get_time[ARGS]{} ]"})],
        id="CONSTRUCTED-markers-and-closing-brackets-inside-a-string-argument",
    ),
    pytest.param(
        'hi{hi[TOOL_CALLS]bash{"command": "print(\\"hello world!\\")\\nre.compile(r\'{}\')"}',
        "hi{hi",
        [("bash", {"command": "print(\"hello world!\")\nre.compile(r'{}')"})],
        id="REAL-vllm-braces-in-content-and-arguments",
    ),
    pytest.param(
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Dallas"}}]\nLet me know if you need more.',
        "Let me know if you need more.",
        [("get_weather", {"city": "Dallas"})],
        id="CONSTRUCTED-text-after-the-array",
    ),
    pytest.param("This is a test", "This is a test", [], id="REAL-vllm-plain-answer"),
    pytest.param(
        'Use [brackets] and {"a": 1} freely.</s>',
        'Use [brackets] and {"a": 1} freely.',
        [],
        id="CONSTRUCTED-brackets-and-json-in-prose",
    ),
    pytest.param(
        '[TOOL_CALLS]translate[ARGS]{"text": "hi"}',
        'translate{"text": "hi"}',
        [],
        id="CONSTRUCTED-not-an-offered-tool-is-text-without-control-tokens",
    ),
]


@pytest.mark.parametrize(("raw", "content", "calls"), CASES)
def test_output_parses_the_same_however_it_is_chunked(raw: str, content: str | None, calls: list[Any]) -> None:
    assert_parses("mistral", raw, content, calls, TOOLS)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('[TOOL_CALLS]get_weather[ARGS]{"city": "Par', id="CONSTRUCTED-v11-cut-off-mid-string"),
        pytest.param(
            '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": [1, 2', id="CONSTRUCTED-v3-cut-off-mid-array"
        ),
        pytest.param(
            '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris",, "unit": "c"}', id="CONSTRUCTED-malformed-double-comma"
        ),
        pytest.param(
            '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": Paris}}]', id="CONSTRUCTED-malformed-bare-word"
        ),
    ],
)
def test_a_broken_call_is_content_as_written_never_a_crash(raw: str) -> None:
    assert_parses("mistral", raw, raw, [], TOOLS, failed=1)


@pytest.mark.parametrize(
    ("raw", "content"),
    [
        pytest.param("[TOOL_CALLS]get_wea", "get_wea", id="CONSTRUCTED-cut-off-in-the-name"),
        pytest.param("[TOOL_CALLS]get_weather[CALL_ID]a1B2", "get_weathera1B2", id="CONSTRUCTED-cut-off-in-the-id"),
        pytest.param(
            '[TOOL_CALLS] [{"name": "get_wea', '[{"name": "get_wea', id="CONSTRUCTED-cut-off-before-the-arguments"
        ),
        pytest.param("[TOOL_CALLS]", None, id="CONSTRUCTED-only-the-token"),
    ],
)
def test_a_call_cut_off_before_its_arguments_is_content_without_control_tokens(raw: str, content: str | None) -> None:
    assert_parses("mistral", raw, content, [], TOOLS)


def test_the_models_own_call_ids_are_kept_when_they_come_before_the_arguments() -> None:
    # A call streams from its first argument byte, its id in the first frame: an id written after
    # the arguments (the array order of mistral-common's template) comes too late, and the proxy
    # gives the call a new Mistral-shaped id, the same whether the response streams or not.
    named = parse_in_chunks("mistral", "[TOOL_CALLS]get_time[CALL_ID]a1B2c3D4e[ARGS]{}", tool_names=TOOLS)
    id_first = parse_in_chunks(
        "mistral", '[TOOL_CALLS] [{"id": "Zz9Yy8Xx7", "name": "get_time", "arguments": {}}]', tool_names=TOOLS
    )
    id_last = parse_in_chunks(
        "mistral", '[TOOL_CALLS] [{"name": "get_time", "arguments": {}, "id": "Zz9Yy8Xx7"}]', tool_names=TOOLS
    )
    v13 = parse_in_chunks("mistral", "[TOOL_CALLS]get_time[ARGS]{}", tool_names=TOOLS)

    calls = [*named.calls, *id_first.calls, *id_last.calls, *v13.calls]
    assert [call.call_id for call in calls] == ["a1B2c3D4e", "Zz9Yy8Xx7", None, None]


def test_new_call_ids_have_mistrals_shape() -> None:
    ids = {get_dialect("mistral").call_id() for _ in range(50)}

    assert len(ids) == 50
    assert all(len(call_id) == 9 and call_id.isascii() and call_id.isalnum() for call_id in ids)


@pytest.mark.parametrize("form", ["array", "named"])
def test_long_arguments_arrive_incrementally(form: str) -> None:
    text = "ünïcödé and [TOOL_CALLS] ]} " * 40
    arguments = json.dumps({"path": "a.txt", "text": text}, ensure_ascii=False)
    if form == "array":
        raw = '[TOOL_CALLS] [{"name": "write_file", "arguments": ' + arguments + "}]"
    else:
        raw = "[TOOL_CALLS]write_file[ARGS]" + arguments

    assert_arguments_stream("mistral", raw, {"path": "a.txt", "text": text}, TOOLS)


def test_write_calls_parse_back_and_a_named_prefill_starts_them() -> None:
    arguments = {"city": "Zürich", "days": [1, 2], "options": {"unit": "celsius"}}

    assert_written_calls_parse_back(
        "mistral", [("get_weather", arguments), ("get_time", {})], TOOLS, prefill_ends_at_arguments=True
    )
