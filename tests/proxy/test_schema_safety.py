"""A tool schema is data from any client: it never makes the proxy open a URL or a file, never
backtracks, never recurses without end; what the proxy will not use is a 400 naming it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, web
from fake_engine import serving
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from toolcall_proxy.server.arguments import ArgumentsCheck
from toolcall_proxy.server.errors import ProxyError
from toolcall_proxy.server.schemas import MAX_SCHEMA_DEPTH, check_tool_schema
from toolcall_proxy.server.validation import MAX_TOOLS, parse_tool_request


def tool(parameters: dict[str, Any], name: str = "f", strict: bool = False) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters, "strict": strict}}


def refused(parameters: dict[str, Any]) -> ProxyError:
    with pytest.raises(ProxyError) as caught:
        parse_tool_request({"messages": [{"role": "user", "content": "hi"}], "tools": [tool(parameters)]})
    assert caught.value.status == 400
    return caught.value


async def test_a_ref_to_a_url_is_refused_and_never_fetched(stack):
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"type": "string"})

    async with serving("/{tail:.*}", record) as server:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [tool({"type": "object", "properties": {"x": {"$ref": f"{server}/internal/secret.json"}}})],
        }
        async with ClientSession() as session, session.post(stack.url + "/v1/chat/completions", json=body) as response:
            status, error = response.status, (await response.json())["error"]
        await asyncio.sleep(0.05)
    assert status == 400
    assert error["param"] == "tools[0].function.parameters.properties.x.$ref"
    assert "points outside the schema" in error["message"] and "#/$defs/Name" in error["message"]
    assert hits == []
    assert stack.engine.requests == []


@pytest.mark.parametrize(
    "ref",
    ["file:///etc/passwd", "https://json-schema.org/draft/2020-12/schema", "other.json#/x", "urn:uuid:1"],
)
def test_any_ref_outside_the_document_is_refused(ref):
    error = refused({"type": "object", "properties": {"x": {"$ref": ref}}})
    assert error.param == "tools[0].function.parameters.properties.x.$ref"
    assert "only references inside it are followed" in error.message


def test_a_ref_to_nothing_is_refused_and_one_to_defs_is_followed():
    error = refused({"type": "object", "properties": {"x": {"$ref": "#/$defs/Missing"}}, "$defs": {}})
    assert "points to nothing in the schema" in error.message
    budget = {
        "type": "object",
        "properties": {"budget": {"$ref": "#/$defs/Money"}},
        "$defs": {"Money": {"type": "object", "properties": {"amount": {"type": "number"}}, "required": ["amount"]}},
    }
    check = ArgumentsCheck(budget)
    assert check.problem({"budget": {"amount": 3}}) is None
    assert "amount" in (check.problem({"budget": {"currency": "EUR"}}) or "")


@pytest.mark.parametrize(
    "parameters",
    [
        {"$ref": "#"},
        {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}},
        {
            "$ref": "#/$defs/a",
            "$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}},
        },
        {"type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"not": {"$ref": "#/$defs/a"}}}},
    ],
    ids=["root", "self", "through allOf and anyOf", "through not"],
)
def test_a_ref_that_leads_back_to_itself_on_the_same_value_is_refused(parameters):
    assert "without a step into the value" in refused(parameters).message


def test_a_recursive_schema_that_steps_into_the_value_is_fine():
    tree = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#"}}},
    }
    check_tool_schema(tree, "parameters")
    assert ArgumentsCheck(tree).problem({"name": "a", "children": [{"name": "b", "children": []}]}) is None


def test_patterns_are_matched_in_linear_time_and_backtracking_ones_are_refused():
    # (a+)+$ takes Python's re minutes on 40 a's and a b; RE2 answers at once
    check = ArgumentsCheck({"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}})
    assert "does not match" in (check.problem({"s": "a" * 40 + "b"}) or "")
    assert check.problem({"s": "aaaa"}) is None
    error = refused({"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a)\\1$"}}})
    assert error.param == "tools[0].function.parameters.properties.s.pattern"
    assert "backreference or lookaround" in error.message
    error = refused({"type": "object", "patternProperties": {"^x": {"type": "string"}}})
    assert error.param == "tools[0].function.parameters.patternProperties"


def test_size_and_nesting_are_bounded_before_any_recursive_walk():
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(300):
        deep = {"type": "object", "properties": {"x": deep}}
    assert f"nests deeper than {MAX_SCHEMA_DEPTH} levels" in refused(deep).message
    wide = {"type": "object", "properties": {f"p{i}": {"type": "object", "properties": {}} for i in range(3000)}}
    assert "more than 5000 nested objects" in refused(wide).message
    with pytest.raises(ProxyError) as caught:
        parse_tool_request(
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [tool({}, f"f{i}") for i in range(MAX_TOOLS + 1)],
            }
        )
    assert caught.value.param == "tools" and f"at most {MAX_TOOLS}" in caught.value.message


def test_dynamic_refs_and_nested_ids_are_refused():
    assert refused({"$dynamicRef": "#meta"}).param == "tools[0].function.parameters.$dynamicRef"
    nested_id = {"type": "object", "properties": {"x": {"$id": "http://example.com/x", "type": "string"}}}
    assert refused(nested_id).param == "tools[0].function.parameters.properties.x.$id"


async def test_new_tools_are_checked_off_the_event_loop_and_known_ones_on_it(stack, monkeypatch):
    import threading

    from toolcall_proxy.server import validation

    threads: list[int] = []
    check = validation._checked_tools

    def recording(value: Any) -> Any:
        threads.append(threading.get_ident())
        return check(value)

    monkeypatch.setattr(validation, "_checked_tools", recording)
    new_tools = [tool({"type": "object", "properties": {"q": {"type": "string"}}}, name="fresh_tool")]
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": new_tools}
    async with ClientSession() as session:
        for _ in range(3):
            async with session.post(stack.url + "/v1/chat/completions", json=body) as response:
                assert response.status == 200
    # checked in a worker thread the first time and the second (when it is kept); known after that
    assert len(threads) == 2 and threading.get_ident() not in threads


# -- the keyword table against jsonschema's metaschema check ------------------------------------

REAL_WORLD_SCHEMAS: list[dict[str, Any]] = [
    {  # pydantic: a nested model, an enum, an optional field, a list of models
        "type": "object",
        "title": "Booking",
        "properties": {
            "guest": {"$ref": "#/$defs/Guest"},
            "nights": {"type": "integer", "minimum": 1, "maximum": 30, "multipleOf": 1},
            "room": {"enum": ["single", "double"], "type": "string"},
            "notes": {"anyOf": [{"type": "string", "maxLength": 200}, {"type": "null"}], "default": None},
            "extras": {"type": "array", "items": {"$ref": "#/$defs/Extra"}, "minItems": 0, "uniqueItems": True},
        },
        "required": ["guest", "nights"],
        "additionalProperties": False,
        "$defs": {
            "Guest": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "email": {"format": "email", "type": "string"},
                },
                "required": ["name"],
            },
            "Extra": {"type": "object", "properties": {"kind": {"const": "breakfast"}}, "examples": [{"kind": "x"}]},
        },
    },
    {  # zod / Vercel ai: nullable types, tuples, dependent fields, conditionals
        "type": "object",
        "properties": {
            "point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "items": False},
            "tags": {"type": ["array", "null"], "items": {"type": "string"}, "maxItems": 5, "contains": {"const": "a"}},
            "card": {"type": "string", "pattern": "^[0-9]{16}$"},
            "meta": {"type": "object", "propertyNames": {"maxLength": 8}, "maxProperties": 4, "minProperties": 0},
        },
        "dependentRequired": {"card": ["point"]},
        "dependentSchemas": {"tags": {"required": ["meta"]}},
        "if": {"properties": {"card": {"const": "0"}}},
        "then": {"required": ["tags"]},
        "else": {"not": {"required": ["tags"]}},
        "allOf": [{"description": "all of"}],
        "oneOf": [{"required": ["point"]}, {"required": ["card"]}],
        "unevaluatedProperties": False,
    },
]
# Keywords whose values this check leaves to the other rules (refs, RE2 patterns, URIs).
NOT_BY_TABLE = {"$ref", "pattern", "$id", "$schema", "$anchor", "$dynamicAnchor", "patternProperties"}
WRONG_VALUES: list[Any] = [
    5,
    -1,
    1.5,
    0,
    "x",
    "strng",
    True,
    None,
    [],
    ["a", "a"],
    ["string", "string"],
    [1],
    {},
    {"a": 1},
]


def mutations(schema: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (place, wrong value) pair: each keyword of each subschema given each wrong value."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key not in NOT_BY_TABLE:
                for wrong in WRONG_VALUES:
                    yield (*path, key), wrong
            yield from mutations(value, (*path, key))
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from mutations(value, (*path, index))


def mutated(schema: Any, place: tuple[Any, ...], value: Any) -> Any:
    copy = orjson.loads(orjson.dumps(schema))
    node = copy
    for step in place[:-1]:
        node = node[step]
    node[place[-1]] = value
    return copy


@pytest.mark.parametrize("schema", REAL_WORLD_SCHEMAS, ids=["pydantic", "zod"])
def test_the_keyword_table_agrees_with_the_metaschema_on_every_mutation(schema):
    check_tool_schema(schema, "p")
    Draft202012Validator.check_schema(schema)
    compared = 0
    for place, wrong in mutations(schema):
        candidate = mutated(schema, place, wrong)
        try:
            Draft202012Validator.check_schema(candidate)
            metaschema_says = "valid"
        except SchemaError:
            metaschema_says = "invalid"
        try:
            check_tool_schema(candidate, "p")
            table_says = "valid"
        except ProxyError as error:
            if "points" in error.message or "leads back" in error.message or "needs backtracking" in error.message:
                continue  # a ref or pattern rule, not the table's
            table_says = "invalid"
        assert table_says == metaschema_says, (place, wrong)
        compared += 1
    assert compared > 500


def test_a_wrong_keyword_is_named_with_what_it_takes():
    error = refused({"type": "object", "properties": {"when": {"type": "date"}}})
    assert error.param == "tools[0].function.parameters.properties.when.type"
    assert error.message.endswith("takes a type, not 'date'")
    error = refused({"type": "object", "required": "city"})
    assert error.param == "tools[0].function.parameters.required" and "list of unique strings" in error.message
