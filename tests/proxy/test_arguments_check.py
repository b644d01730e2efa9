"""The arguments check: the quick closures never vouch for what jsonschema rejects, and every
verdict and message is jsonschema's."""

from __future__ import annotations

import random
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from toolcall_proxy.server.arguments import ArgumentsCheck

WEATHER = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "City and state"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "items": {
            "type": "array",
            "maxItems": 3,
            "items": {"type": "object", "properties": {"id": {"type": "integer"}, "ok": {"type": "boolean"}}},
        },
    },
    "required": ["location"],
    "additionalProperties": False,
}


def jsonschema_problem(schema: Any, value: Any) -> str | None:
    error = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
    if error is None:
        return None
    return f"at {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"


def test_fitting_arguments_are_vouched_for_by_the_quick_check() -> None:
    check = ArgumentsCheck(WEATHER)
    value = {"location": "Paris", "unit": "celsius", "days": 3, "items": [{"id": 1, "ok": True}]}
    assert check.quick is not None and check.quick(value)
    assert check.problem(value) is None


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({}, "(root)"),  # location missing
        ({"location": 7}, "location"),
        ({"location": "Paris", "unit": "kelvin"}, "unit"),
        ({"location": "Paris", "days": 0}, "days"),
        ({"location": "Paris", "days": True}, "days"),  # a boolean is not an integer
        ({"location": "Paris", "items": [{"id": "x"}]}, "items/0/id"),
        ({"location": "Paris", "items": [{}, {}, {}, {}]}, "items"),
        ({"location": "Paris", "colour": "red"}, "(root)"),  # additionalProperties: false
    ],
)
def test_arguments_that_break_the_schema_get_jsonschemas_message(value: Any, where: str) -> None:
    problem = ArgumentsCheck(WEATHER).problem(value)
    assert problem is not None and problem.startswith(f"at {where}: ")
    assert problem == jsonschema_problem(WEATHER, value)


@pytest.mark.parametrize(
    "schema",
    [
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"type": "string"}}},
        {"type": "string", "pattern": "^a"},
        {"type": "array", "uniqueItems": True},
        {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
        {"type": "object", "minProperties": 1},
    ],
)
def test_schemas_beyond_the_quick_subset_are_left_to_jsonschema(schema: dict[str, Any]) -> None:
    check = ArgumentsCheck(schema)
    assert check.quick is None
    for value in ("abc", "b", 3, [1, 1], {"x": 1}, None):
        assert check.problem(value) == jsonschema_problem(schema, value)


def test_enum_and_const_compare_as_json_does() -> None:
    check = ArgumentsCheck({"enum": [1, "a", None, False, [1]]})
    assert check.problem(1.0) is None  # 1.0 and 1 are the same JSON number
    assert check.problem(True) is not None  # true is not 1
    assert check.problem(0) is not None  # nor is 0 false
    assert check.problem([1]) is None  # a list in an enum: jsonschema's comparison decides
    assert ArgumentsCheck({"const": "x"}).problem("y") is not None


# -- differential: random schemas of the quick subset, random values near them --------------------
_SCALAR_TYPES = ["string", "integer", "number", "boolean", "null"]


def random_schema(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    kind = rng.choice(_SCALAR_TYPES + (["object", "array"] if depth < 3 else []))
    other = rng.choice([name for name in _SCALAR_TYPES if name != kind])
    schema: dict[str, Any] = {"type": kind if rng.random() < 0.85 else [kind, other]}
    schema.update(_KEYWORDS.get(kind, lambda rng, depth: {})(rng, depth))
    if rng.random() < 0.1:
        schema["const"] = rng.choice([1, "a", None, True])
    if rng.random() < 0.2:
        schema["description"] = "annotations change nothing"
    return schema


def _sometimes(rng: random.Random, chance: float, **choices: Any) -> dict[str, Any]:
    return {key: make() for key, make in choices.items() if rng.random() < chance}


def _string_keywords(rng: random.Random, depth: int) -> dict[str, Any]:
    return _sometimes(
        rng,
        0.3,
        enum=lambda: rng.sample(["a", "b", "c", "", "1"], rng.randint(1, 3)),
        minLength=lambda: rng.randint(0, 2),
        maxLength=lambda: rng.randint(1, 3),
    )


def _number_keywords(rng: random.Random, depth: int) -> dict[str, Any]:
    bound = lambda: rng.choice([-1, 0, 1, 2.5, 10])  # noqa: E731
    keywords = _sometimes(rng, 0.25, minimum=bound, maximum=bound, exclusiveMinimum=bound, exclusiveMaximum=bound)
    return keywords | _sometimes(rng, 0.2, enum=lambda: [1, 2.0, True, "1"])


def _object_keywords(rng: random.Random, depth: int) -> dict[str, Any]:
    names = rng.sample(["a", "b", "c", "d"], rng.randint(0, 3))
    keywords: dict[str, Any] = {"properties": {name: random_schema(rng, depth + 1) for name in names}}
    if names and rng.random() < 0.5:
        keywords["required"] = rng.sample(names, rng.randint(1, len(names)))
    if rng.random() < 0.4:
        keywords["additionalProperties"] = rng.choice([False, True, random_schema(rng, depth + 1)])
    return keywords


def _array_keywords(rng: random.Random, depth: int) -> dict[str, Any]:
    return _sometimes(rng, 0.8, items=lambda: random_schema(rng, depth + 1)) | _sometimes(
        rng, 0.3, minItems=lambda: rng.randint(0, 2), maxItems=lambda: rng.randint(0, 3)
    )


_KEYWORDS = {
    "string": _string_keywords,
    "integer": _number_keywords,
    "number": _number_keywords,
    "object": _object_keywords,
    "array": _array_keywords,
}


def value_near(rng: random.Random, schema: Any) -> Any:
    if not isinstance(schema, dict) or rng.random() < 0.1:
        return rng.choice([0, 1, 1.0, -1, 2.5, 11, True, False, None, "", "a", "abcd", [], {}, [1], {"a": 1}])
    if "enum" in schema and rng.random() < 0.5:
        return rng.choice(schema["enum"])
    kind = schema["type"] if isinstance(schema["type"], str) else rng.choice(schema["type"])
    if kind == "object":
        value = {name: value_near(rng, sub) for name, sub in schema.get("properties", {}).items() if rng.random() < 0.8}
        if rng.random() < 0.2:
            value["zz"] = value_near(rng, schema.get("additionalProperties"))
        return value
    if kind == "array":
        return [value_near(rng, schema.get("items")) for _ in range(rng.randint(0, 4))]
    return {
        "string": lambda: rng.choice(["", "a", "b", "abc", "abcd"]),
        "integer": lambda: rng.choice([-2, 0, 1, 2, 10, 11, 3.0, True]),
        "number": lambda: rng.choice([-1.5, 0, 1, 2.5, 9.99, 10, 12.0, False]),
        "boolean": lambda: rng.choice([True, False, 0, 1]),
        "null": lambda: rng.choice([None, 0, ""]),
    }[kind]()


def test_the_quick_check_agrees_with_jsonschema_on_random_schemas() -> None:
    rng = random.Random(20261123)
    vouched = rejected = 0
    for _ in range(600):
        schema = random_schema(rng)
        Draft202012Validator.check_schema(schema)
        check = ArgumentsCheck(schema)
        assert check.quick is not None, schema  # the generator stays inside the subset
        for _ in range(15):
            value = value_near(rng, schema)
            expected = jsonschema_problem(schema, value)
            if check.quick(value):
                assert expected is None, (schema, value)
                vouched += 1
            else:
                rejected += 1
            assert check.problem(value) == expected
    # both verdicts were exercised many times, so the comparison above means something
    assert vouched > 1500 and rejected > 1500
