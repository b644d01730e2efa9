"""Qwen3-Coder outputs through the ``qwen3_coder`` dialect: whole, at every 2-chunk split, in random
token chunkings and one character at a time, all folding into the same response.

Parameter values are raw text typed by the tool's JSON Schema, so every case is parsed with the
offered tools' schemas (``TOOLS``), as the proxy parses them.

REAL: taken from /work/shared/oracle/cases.jsonl (the source named there). CONSTRUCTED: written for
this test in the format of FORMATS.md §6 (``<tool_call>\\n<function=NAME>\\n<parameter=K>\\nV\\n
</parameter>\\n</function>\\n</tool_call>``, one tag per line, values on lines of their own).
"""

from __future__ import annotations

from typing import Any

import pytest
from _fold import assert_arguments_stream, assert_parses, assert_written_calls_parse_back

TOOLS: dict[str, dict[str, Any]] = {
    "get_current_weather": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "state": {"type": "string"}, "unit": {"type": "string"}},
    },
    "write_file": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}},
    "search": {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "filters": {"type": "object"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "limit": {"type": "integer"},
            "exact": {"type": "boolean"},
            "ratio": {"type": "float"},  # not JSON Schema's name, but vLLM reads it as a number
        },
    },
    "get_time": {"type": "object", "properties": {}},
}


def _call(name: str, **values: str) -> str:
    parameters = "".join(f"<parameter={key}>\n{value}\n</parameter>\n" for key, value in values.items())
    return f"<tool_call>\n<function={name}>\n{parameters}</function>\n</tool_call>"


CASES = [
    pytest.param(
        _call("get_current_weather", city="Dallas", state="TX", unit="fahrenheit")
        + "\n"
        + _call("get_current_weather", city="Orlando", state="FL", unit="celsius"),
        None,
        [
            ("get_current_weather", {"city": "Dallas", "state": "TX", "unit": "fahrenheit"}),
            ("get_current_weather", {"city": "Orlando", "state": "FL", "unit": "celsius"}),
        ],
        id="REAL-vllm-test-two-calls-in-one-output",
    ),
    pytest.param(
        "Let me look that up.\n\n" + _call("get_current_weather", city="Paris") + "\nI will report back.",
        "Let me look that up.\nI will report back.",
        [("get_current_weather", {"city": "Paris"})],
        id="CONSTRUCTED-text-before-and-after-the-call",
    ),
    pytest.param(
        _call(
            "search",
            query="hotels",
            filters='{\n  "stars": [4, 5],\n  "area": {"lat": 48.85, "lon": 2.35}\n}',
            tags='["cheap", "central"]',
            limit="10",
            exact="false",
            ratio="0.75",
        ),
        None,
        [
            (
                "search",
                {
                    "query": "hotels",
                    "filters": {"stars": [4, 5], "area": {"lat": 48.85, "lon": 2.35}},
                    "tags": ["cheap", "central"],
                    "limit": 10,
                    "exact": False,
                    "ratio": 0.75,
                },
            )
        ],
        id="CONSTRUCTED-nested-objects-and-arrays-typed-by-the-schema",
    ),
    pytest.param(
        _call("write_file", path="C:\\temp\\été.txt", content='He said "hi"\ttab\n😀 深圳 \\u00e9'),
        None,
        [("write_file", {"path": "C:\\temp\\été.txt", "content": 'He said "hi"\ttab\n😀 深圳 \\u00e9'})],
        id="CONSTRUCTED-unicode-quotes-backslashes-kept-verbatim",
    ),
    pytest.param(
        _call("write_file", path="parser.py", content='END = "</parameter>"\nprint(END)  # </parameter> is text here'),
        None,
        [
            (
                "write_file",
                {"path": "parser.py", "content": 'END = "</parameter>"\nprint(END)  # </parameter> is text here'},
            )
        ],
        id="CONSTRUCTED-closing-tag-inside-a-value-is-text-unless-the-next-tag-follows",
    ),
    pytest.param(
        "<tool_call>\n<function=write_file>\n<parameter=path>\n/tmp/a.py\n</parameter>\n<parameter=content>\n"
        'def f():\n    return "</parameter>"\n</parameter>\n</function>\n</tool_call>',
        None,
        [("write_file", {"path": "/tmp/a.py", "content": 'def f():\n    return "</parameter>"'})],
        id="REAL-rapid-mlx-1542-closing-tag-in-a-value-vllm-pr-34919",
    ),
    pytest.param(
        "Let me check the weather for you:\n<tool_call>\n<function=get_current_weather>\n<parameter=city>\nDallas\n"
        "<parameter=state>\nTX\n</parameter>\n</function>\n</tool_call>",
        "Let me check the weather for you:",
        [("get_current_weather", {"city": "Dallas", "state": "TX"})],
        id="REAL-vllm-test-missing-closing-tag-ended-by-the-next-parameter",
    ),
    pytest.param(
        "<tool_call>\n<function=search>\n<parameter=limit>\n1024\n\n\n</tool_call>",
        None,
        [("search", {"limit": 1024})],
        id="REAL-vllm-21571-missing-parameter-and-function-closers",
    ),
    pytest.param(_call("get_time"), None, [("get_time", {})], id="REAL-sglang-test-no-parameters"),
    pytest.param(
        '<tool_call>\n{"name": "get_current_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
        None,
        [("get_current_weather", {"city": "Oslo"})],
        id="CONSTRUCTED-hermes-json-inside-tool-call",
    ),
    pytest.param(
        "<function=get_current_weather>\n<parameter=city>\nDallas\n</parameter>\n</function>",
        None,
        [("get_current_weather", {"city": "Dallas"})],
        id="REAL-vllm-test-function-without-tool-call-wrapper",
    ),
    pytest.param("The weather in Paris is 22 °C.", "The weather in Paris is 22 °C.", [], id="CONSTRUCTED-plain-answer"),
    pytest.param(
        "Wrap each call in <tool_call> tags, and write <function=NAME> inside.",
        "Wrap each call in <tool_call> tags, and write <function=NAME> inside.",
        [],
        id="CONSTRUCTED-markers-in-prose-are-text-club-3090-72",
    ),
    pytest.param(
        _call("translate", text="hi"), _call("translate", text="hi"), [], id="CONSTRUCTED-not-an-offered-tool"
    ),
    pytest.param(
        "<tool_call>\n<function=get weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
        "<tool_call>\n<function=get weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
        [],
        id="CONSTRUCTED-malformed-name-is-text",
    ),
]


@pytest.mark.parametrize(("raw", "content", "calls"), CASES)
def test_output_parses_the_same_however_it_is_chunked(raw: str, content: str | None, calls: list[Any]) -> None:
    assert_parses("qwen3_coder", raw, content, calls, TOOLS)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("<tool_call>\n<function=get_current_weather>\n<parameter=city>\nPar", id="cut-off-mid-value"),
        pytest.param(
            "<tool_call>\n<function=get_current_weather>\n<parameter=city>\nParis\n</param", id="cut-off-in-closer"
        ),
        pytest.param(
            "<tool_call>\n<function=write_file>\n<parameter=content>\nsee </parameter> below", id="cut-off-after-text"
        ),
        pytest.param(
            '<tool_call>\n{"name": "get_current_weather", "arguments": {"city": }}\n</tool_call>', id="malformed-json"
        ),
        pytest.param(
            "<tool_call>\n<function=get_current_weather>\n<parameter=city>\nParis\n</parameter>\n"
            "<parameter=state\nTX\n</parameter>\n</function>\n</tool_call>",
            id="malformed-parameter-tag-vllm-55495",
        ),
    ],
)
def test_a_broken_call_is_content_as_written_never_a_crash(raw: str) -> None:
    assert_parses("qwen3_coder", raw, raw, [], TOOLS, failed=1)


def test_a_first_parameter_tag_without_its_closing_bracket_is_not_a_call() -> None:
    # Nothing of the call was given out yet, so it is text; its name never leaks into arguments.
    raw = "<tool_call>\n<function=get_current_weather>\n<parameter=city\nParis\n</parameter>\n</function>\n</tool_call>"

    assert_parses("qwen3_coder", raw, raw, [], TOOLS)


def test_a_call_cut_off_in_its_name_is_content() -> None:
    assert_parses("qwen3_coder", "<tool_call>\n<function=get_curr", "<tool_call>\n<function=get_curr", [], TOOLS)


def test_a_bare_function_closer_inside_a_value_ends_it_as_in_vllm() -> None:
    # The documented limit: a value cannot hold </function> (nor <parameter= or </tool_call>), which
    # end it even without </parameter>; the rest stays content, nothing is lost.
    raw = _call("write_file", content="a </function> b")

    assert_parses(
        "qwen3_coder",
        raw,
        "b\n</parameter>\n</function>\n</tool_call>",
        [("write_file", {"content": "a "})],
        TOOLS,
    )


def test_values_the_schema_does_not_type_stay_strings() -> None:
    # vLLM's qwen3_coder parser: a parameter the schema does not name stays a string; no schema at all
    # (no tools given) leaves every value a string.
    raw = _call("get_current_weather", city="Paris", days="3")

    assert_parses("qwen3_coder", raw, None, [("get_current_weather", {"city": "Paris", "days": "3"})], TOOLS)
    assert_parses("qwen3_coder", _call("search", limit="10"), None, [("search", {"limit": "10"})], None)


def test_long_string_values_arrive_incrementally() -> None:
    text = 'ünïcödé "quoted" </parameter> and <tool_call>\n' * 40
    raw = _call("write_file", path="a.txt", content=text)

    # the line breaks around the value are layout; the text's own last line break is kept
    assert_arguments_stream("qwen3_coder", raw, {"path": "a.txt", "content": text}, TOOLS)


def test_write_call_parses_back_and_a_named_prefill_starts_it() -> None:
    arguments = {"query": "Zürich </parameter> x", "filters": {"a": [1, "b"]}, "limit": 3, "exact": True}

    # the continuation is XML, not a JSON value
    assert_written_calls_parse_back("qwen3_coder", [("search", arguments)], TOOLS, prefill_ends_at_arguments=False)


# What pydantic (the OpenAI SDK's pydantic_function_tool, openai-agents, pydantic-ai) sends for a
# nested model: the nested parts are references into "$defs", optional fields are anyOf with null.
NESTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "destination": {"type": "string"},
        "budget": {"$ref": "#/$defs/Budget"},
        "travellers": {"type": "array", "items": {"$ref": "#/$defs/Traveller"}},
        "return_date": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "nights": {"allOf": [{"$ref": "#/definitions/Count"}], "description": "how many"},
        "cabin": {"$ref": "#/$defs/Cabin"},
        "stars": {"enum": [3, 4, 5]},
        "seats": {"type": ["integer", "null"]},
        "ref": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
        "itinerary": {"$ref": "#/$defs/Stop"},
    },
    "required": ["destination", "budget"],
    "additionalProperties": False,
    "$defs": {
        "Budget": {
            "type": "object",
            "properties": {"amount": {"type": "number"}, "currency": {"enum": ["EUR", "USD"], "type": "string"}},
            "required": ["amount", "currency"],
            "additionalProperties": False,
        },
        "Traveller": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}},
        "Cabin": {"type": "string", "enum": ["economy", "business"]},
        # recursive: a stop and the stops after it
        "Stop": {"type": "object", "properties": {"city": {"type": "string"}, "next": {"$ref": "#/$defs/Stop"}}},
    },
    "definitions": {"Count": {"type": "integer", "minimum": 1}},
}
NESTED_TOOLS = {**TOOLS, "book_trip": NESTED}


def test_nested_models_behind_refs_are_typed_by_the_schemas_they_point_to() -> None:
    raw = _call(
        "book_trip",
        destination="Lisbon",
        budget='{"amount": 1500, "currency": "EUR"}',
        travellers='[{"name": "Ana", "age": 34}]',
        return_date="null",
        nights="3",
        cabin="business",
        stars="4",
        seats="2",
        ref="A12",
        itinerary='{"city": "Porto", "next": {"city": "Faro"}}',
    )
    arguments = {
        "destination": "Lisbon",
        "budget": {"amount": 1500, "currency": "EUR"},
        "travellers": [{"name": "Ana", "age": 34}],
        "return_date": None,
        "nights": 3,
        "cabin": "business",
        "stars": 4,
        "seats": 2,
        "ref": "A12",
        "itinerary": {"city": "Porto", "next": {"city": "Faro"}},
    }

    assert_parses("qwen3_coder", raw, None, [("book_trip", arguments)], NESTED_TOOLS)


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        pytest.param("return_date", "2024-06-10", "2024-06-10", id="nullable-string-text"),
        pytest.param("return_date", '"2024-06-10"', "2024-06-10", id="nullable-string-written-as-json"),
        pytest.param("return_date", "None", None, id="nullable-string-python-none"),
        pytest.param("seats", "null", None, id="type-list-with-null"),
        pytest.param("ref", "12", 12, id="one-of-the-first-branch-that-fits"),
        pytest.param("ref", "twelve", "twelve", id="one-of-text-fits-only-the-string"),
        pytest.param("nights", "many", "many", id="text-that-fits-no-type-stays-a-string"),
        pytest.param("budget", "null", "null", id="an-object-is-not-null-unless-the-schema-says"),
        pytest.param("destination", '"Lisbon"', '"Lisbon"', id="a-string-only-parameter-keeps-its-quotes"),
    ],
)
def test_anyof_oneof_and_nullable_values_take_the_first_type_the_text_fits(name: str, text: str, value: Any) -> None:
    assert_parses("qwen3_coder", _call("book_trip", **{name: text}), None, [("book_trip", {name: value})], NESTED_TOOLS)


def test_keys_beyond_the_properties_are_typed_by_additional_properties() -> None:
    tools = {"tag": {"type": "object", "properties": {}, "additionalProperties": {"$ref": "#/$defs/N"}}}
    tools["tag"]["$defs"] = {"N": {"type": "integer"}}

    assert_parses("qwen3_coder", _call("tag", weight="7"), None, [("tag", {"weight": 7})], tools)


def test_a_reference_loop_ends_and_leaves_the_value_a_string() -> None:
    loop = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"$ref": "#/$defs/B"}},
        "$defs": {
            "A": {"$ref": "#/$defs/A2"},
            "A2": {"$ref": "#/$defs/A"},
            "B": {"allOf": [{"$ref": "#/$defs/B"}, {"$ref": "#/$defs/B"}], "anyOf": [{"$ref": "#/$defs/B"}] * 4},
        },
    }

    assert_parses("qwen3_coder", _call("loop", a="1", b="2"), None, [("loop", {"a": "1", "b": "2"})], {"loop": loop})


def test_nested_arguments_written_by_the_dialect_parse_back() -> None:
    arguments = {
        "destination": "Lisbon",
        "budget": {"amount": 1500.5, "currency": "USD"},
        "travellers": [{"name": "Ana", "age": 34}, {"name": "Ben", "age": 36}],
        "return_date": None,
        "cabin": "economy",
    }

    assert_written_calls_parse_back(
        "qwen3_coder", [("book_trip", arguments)], NESTED_TOOLS, prefill_ends_at_arguments=False
    )
