"""GLM-4.5/4.6 outputs through the ``glm45`` dialect: whole, at every 2-chunk split, in random token
chunkings and one character at a time, all folding into the same response.

Values are raw text typed by the tool's JSON Schema, so every case is parsed with the offered
tools' schemas (``TOOLS``), as the proxy parses them. The oracle holds no GLM-4.5 case.

CONSTRUCTED: written for this test (one after an output quoted in ik_llama.cpp discussion #753, whose
display turned line breaks into spaces: the line break after the name is restored) in
the format the GLM-4.5/4.6 chat template teaches and vLLM's glm4_moe_tool_parser.py reads
(``<tool_call>NAME\\n<arg_key>K</arg_key>\\n<arg_value>V</arg_value>\\n</tool_call>``, a
``<think>`` block first).
"""

from __future__ import annotations

from typing import Any

import pytest
from _fold import assert_arguments_stream, assert_parses, assert_written_calls_parse_back, parse_in_chunks

TOOLS: dict[str, dict[str, Any]] = {
    "get_weather": {"type": "object", "properties": {"location": {"type": "string"}, "days": {"type": "integer"}}},
    "write_file": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}},
    "search": {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "filters": {"type": "object"},
            "tags": {"type": "array"},
            "limit": {"type": "integer"},
            "exact": {"type": "boolean"},
        },
    },
    "get_time": {"type": "object", "properties": {}},
    "ls": {"type": "object", "properties": {"dirPath": {"type": "string"}}},
}


def _call(name: str, **values: str) -> str:
    pairs = "".join(f"<arg_key>{key}</arg_key>\n<arg_value>{value}</arg_value>\n" for key, value in values.items())
    return f"<tool_call>{name}\n{pairs}</tool_call>"


CASES = [
    pytest.param(
        "\n<think>The user wants two cities.</think>\nChecking both.\n"
        + _call("get_weather", location="Paris")
        + "\n"
        + _call("get_weather", location="Rome", days="3"),
        "Checking both.",
        [("get_weather", {"location": "Paris"}), ("get_weather", {"location": "Rome", "days": 3})],
        id="CONSTRUCTED-reasoning-text-then-two-calls",
    ),
    pytest.param(
        _call("get_weather", days="3", location="Paris") + "\nI will wait.",
        "I will wait.",
        [("get_weather", {"days": 3, "location": "Paris"})],
        id="CONSTRUCTED-text-after-the-call",
    ),
    pytest.param(
        "Let me search for configuration files in the backend directory to help locate this information: "
        "<tool_call>ls\n<arg_key>dirPath</arg_key> <arg_value>backend</arg_value> </tool_call>",
        "Let me search for configuration files in the backend directory to help locate this information:",
        [("ls", {"dirPath": "backend"})],
        id="CONSTRUCTED-as-ik-llama-cpp-discussion-753-quotes-it-newline-after-the-name",
    ),
    pytest.param(
        _call(
            "search",
            query="hotels",
            filters='{"stars": [4, 5], "area": {"lat": 48.85}}',
            tags='["a", "b"]',
            exact="True",
            limit="10",
        ),
        None,
        [
            (
                "search",
                {
                    "query": "hotels",
                    "filters": {"stars": [4, 5], "area": {"lat": 48.85}},
                    "tags": ["a", "b"],
                    "exact": True,
                    "limit": 10,
                },
            )
        ],
        id="CONSTRUCTED-nested-objects-and-arrays-typed-by-the-schema",
    ),
    pytest.param(
        _call("write_file", path="\nC:\\temp\\été.txt\n", content='He said "hi"\t😀 深圳 \\u00e9'),
        None,
        [("write_file", {"path": "\nC:\\temp\\été.txt\n", "content": 'He said "hi"\t😀 深圳 \\u00e9'})],
        id="CONSTRUCTED-unicode-escapes-and-line-breaks-kept-exactly",
    ),
    pytest.param(
        _call("write_file", content='x = "</arg_value>"  # not the end'),
        None,
        [("write_file", {"content": 'x = "</arg_value>"  # not the end'})],
        id="CONSTRUCTED-closing-tag-inside-a-value-is-text-unless-the-next-tag-follows",
    ),
    pytest.param(_call("get_time"), None, [("get_time", {})], id="CONSTRUCTED-no-arguments"),
    pytest.param(
        "\n<think></think>\nParis is the capital of France.",
        "Paris is the capital of France.",
        [],
        id="CONSTRUCTED-plain-answer-after-an-empty-think-block",
    ),
    pytest.param(
        "Write <tool_call> then the name.", "Write <tool_call> then the name.", [], id="CONSTRUCTED-marker-in-prose"
    ),
    pytest.param(
        "<tool_call>get weather\n</tool_call>",
        "<tool_call>get weather\n</tool_call>",
        [],
        id="CONSTRUCTED-malformed-name-is-text",
    ),
    pytest.param(
        "<tool_call>get_weather\n<arg_value>Paris</arg_value>\n</tool_call>",
        "<tool_call>get_weather\n<arg_value>Paris</arg_value>\n</tool_call>",
        [],
        id="CONSTRUCTED-value-without-key-is-text",
    ),
    pytest.param(
        "<tool_call>get_weather<arg_key>location</arg_key><arg_value>Paris</arg_value></tool_call>",
        "<tool_call>get_weather<arg_key>location</arg_key><arg_value>Paris</arg_value></tool_call>",
        [],
        id="CONSTRUCTED-glm47-compact-form-is-not-glm45s",
    ),
    pytest.param(
        _call("translate", text="hi"), _call("translate", text="hi"), [], id="CONSTRUCTED-not-an-offered-tool"
    ),
]


@pytest.mark.parametrize(("raw", "content", "calls"), CASES)
def test_output_parses_the_same_however_it_is_chunked(raw: str, content: str | None, calls: list[Any]) -> None:
    assert_parses("glm45", raw, content, calls, TOOLS)


def test_the_think_block_is_reasoning() -> None:
    raw = "\n<think>Need the weather.\nCall the tool.</think>\n" + _call("get_weather", location="Oslo")

    result = parse_in_chunks("glm45", raw, tool_names=TOOLS)

    assert result.reasoning == "Need the weather.\nCall the tool."
    assert result.content is None
    assert [call.name for call in result.calls] == ["get_weather"]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("<tool_call>get_weather\n<arg_key>location</arg_key>\n<arg_value>Par", id="cut-off-mid-value"),
        pytest.param(
            "<tool_call>get_weather\n<arg_key>location</arg_key>\n<arg_value>Paris</arg_val", id="cut-off-in-closer"
        ),
        pytest.param(
            "<tool_call>get_weather\n<arg_key>location</arg_key>\nParis\n</tool_call>", id="malformed-value-untagged"
        ),
    ],
)
def test_a_broken_call_is_content_as_written_never_a_crash(raw: str) -> None:
    assert_parses("glm45", raw, raw, [], TOOLS, failed=1)


@pytest.mark.parametrize("raw", ["<tool_call>get_wea", "<tool_call>get_weather\n<arg_key>locat"])
def test_a_call_cut_off_before_its_arguments_begin_is_content(raw: str) -> None:
    assert_parses("glm45", raw, raw, [], TOOLS)


def test_long_string_values_arrive_incrementally() -> None:
    text = 'ünïcödé "quoted" </arg_value> and <tool_call>\n' * 40
    raw = _call("write_file", path="a.txt", content=text)

    assert_arguments_stream("glm45", raw, {"path": "a.txt", "content": text}, TOOLS)


def test_write_call_parses_back_and_a_named_prefill_starts_it() -> None:
    arguments = {"query": "Zürich </arg_value> x", "filters": {"a": [1, "b"]}, "limit": 3, "exact": True}

    assert_written_calls_parse_back("glm45", [("search", arguments)], TOOLS, prefill_ends_at_arguments=False)


# A nested pydantic model as the OpenAI SDK's pydantic_function_tool and openai-agents send it.
BOOK_TRIP: dict[str, Any] = {
    "type": "object",
    "properties": {
        "destination": {"type": "string"},
        "budget": {"$ref": "#/$defs/Budget"},
        "travellers": {"type": "array", "items": {"$ref": "#/$defs/Traveller"}},
        "return_date": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "nights": {"allOf": [{"$ref": "#/$defs/Count"}]},
        "cabin": {"$ref": "#/$defs/Cabin"},
    },
    "required": ["destination", "budget", "travellers", "return_date"],
    "additionalProperties": False,
    "$defs": {
        "Budget": {
            "type": "object",
            "properties": {"amount": {"type": "number"}, "currency": {"enum": ["EUR", "USD"], "type": "string"}},
            "required": ["amount", "currency"],
            "additionalProperties": False,
        },
        "Traveller": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}},
        "Count": {"type": "integer"},
        "Cabin": {"enum": ["economy", "business"]},
    },
}
NESTED_TOOLS = {**TOOLS, "book_trip": BOOK_TRIP}


@pytest.mark.parametrize(
    ("values", "arguments"),
    [
        pytest.param(
            {
                "destination": "Lisbon",
                "budget": '{"amount": 1500, "currency": "EUR"}',
                "travellers": '[{"name": "Ana", "age": 34}]',
                "return_date": "null",
                "nights": "3",
                "cabin": "business",
            },
            {
                "destination": "Lisbon",
                "budget": {"amount": 1500, "currency": "EUR"},
                "travellers": [{"name": "Ana", "age": 34}],
                "return_date": None,
                "nights": 3,
                "cabin": "business",
            },
            id="refs-allof-nullable-enum",
        ),
        pytest.param(
            {"return_date": "2024-06-10", "budget": "{'amount': 99.5, 'currency': 'USD'}"},
            {"return_date": "2024-06-10", "budget": {"amount": 99.5, "currency": "USD"}},
            id="nullable-string-and-a-python-dict",
        ),
    ],
)
def test_nested_models_behind_refs_are_typed_by_the_schemas_they_point_to(
    values: dict[str, str], arguments: dict[str, Any]
) -> None:
    assert_parses("glm45", _call("book_trip", **values), None, [("book_trip", arguments)], NESTED_TOOLS)


def test_nested_arguments_written_by_the_dialect_parse_back() -> None:
    arguments = {
        "destination": "Lisbon",
        "budget": {"amount": 1500, "currency": "EUR"},
        "travellers": [{"name": "Ana", "age": 34}],
        "return_date": None,
    }

    assert_written_calls_parse_back("glm45", [("book_trip", arguments)], NESTED_TOOLS, prefill_ends_at_arguments=False)
