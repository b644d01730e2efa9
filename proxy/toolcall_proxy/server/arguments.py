"""Checks a tool call's arguments against the tool's JSON Schema.

jsonschema is the judge, but it walks a schema through generic machinery that costs about
0.3 ms for a list of ten small objects, paid on every call the proxy returns. Most tool schemas
use a handful of keywords (type, properties, required, enum, items, bounds), so each schema is
also compiled into plain closures for that subset: a *quick check* that can only say "valid for
sure" or "not sure". Arguments it vouches for are valid; anything else, including every schema
that uses a keyword outside the subset, goes to jsonschema, which also words the error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized
from typing import Any

from .schemas import safe_validator

__all__ = ["ArgumentsCheck"]

QuickCheck = Callable[[Any], bool]  # True: valid for sure; False: ask jsonschema

# Assertion and applicator keywords of draft 2020-12 that the quick check does not implement:
# a schema that uses one anywhere it looks is checked by jsonschema alone. Keywords that are not
# here and not implemented below are annotations (title, description, default, format, ...) or
# unknown words, which jsonschema ignores as well.
_DELEGATED = frozenset(
    {
        "$ref",
        "$dynamicRef",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "contains",
        "dependentRequired",
        "dependentSchemas",
        "maxProperties",
        "minProperties",
        "multipleOf",
        "pattern",
        "patternProperties",
        "prefixItems",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
        "uniqueItems",
    }
)


class ArgumentsCheck:
    """One tool's parameters schema, ready to check arguments (schema already checked)."""

    __slots__ = ("_validator", "quick")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._validator = safe_validator(schema)
        self.quick = _compile(schema)  # None: the schema is beyond the quick subset

    def problem(self, value: Any) -> str | None:
        """Where and how ``value`` breaks the schema, or None if it fits."""
        quick = self.quick
        if quick is not None and quick(value):
            return None
        error = next(iter(self._validator.iter_errors(value)), None)
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        return f"at {where}: {error.message}"


def _compile(schema: Any) -> QuickCheck | None:  # noqa: C901 - one branch per keyword
    """The quick check of ``schema``, or None if it uses a keyword outside the subset."""
    if schema is True or schema == {}:
        return _anything
    if not isinstance(schema, Mapping) or not _DELEGATED.isdisjoint(schema):
        return None
    checks: list[QuickCheck] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        tests = [_TYPES[name] for name in names if name in _TYPES]
        if not tests or len(tests) != len(names):
            return None
        checks.append(tests[0] if len(tests) == 1 else _any_of(tests))
    for keyword in ("enum", "const"):
        if keyword in schema:
            allowed = schema[keyword] if keyword == "enum" else [schema[keyword]]
            if not isinstance(allowed, list):
                return None
            checks.append(_member_of(allowed))
    bounds = _number_bounds(schema)
    if bounds is not None:
        checks.append(bounds)
    lengths = _sized(schema, "minLength", "maxLength", str)
    if lengths is not None:
        checks.append(lengths)
    sizes = _sized(schema, "minItems", "maxItems", list)
    if sizes is not None:
        checks.append(sizes)
    if "items" in schema:
        item = _compile(schema["items"])
        if item is None:
            return None
        checks.append(_items(item))
    if {"properties", "required", "additionalProperties"} & schema.keys():
        members = _object_members(schema)
        if members is None:
            return None
        checks.append(members)
    if not checks:
        return _anything
    return checks[0] if len(checks) == 1 else _all_of(checks)


def _anything(value: Any) -> bool:
    return True


def _integer(value: Any) -> bool:
    kind = type(value)
    return kind is int or (kind is float and value.is_integer())


_TYPES: dict[str, QuickCheck] = {
    "string": lambda value: type(value) is str,
    "integer": _integer,
    "number": lambda value: type(value) is int or type(value) is float,
    "boolean": lambda value: type(value) is bool,
    "object": lambda value: type(value) is dict,
    "array": lambda value: type(value) is list,
    "null": lambda value: value is None,
}


def _any_of(tests: list[QuickCheck]) -> QuickCheck:
    return lambda value: any(test(value) for test in tests)


def _all_of(checks: list[QuickCheck]) -> QuickCheck:
    def check(value: Any) -> bool:
        for one in checks:  # noqa: SIM110 - a plain loop costs less than all() over a generator
            if not one(value):
                return False
        return True

    return check


def _scalar_key(value: Any) -> tuple[str, Any] | None:
    """A key under which JSON-equal scalars meet: 1 and 1.0 do, 1 and true do not."""
    kind = type(value)
    if kind is str:
        return ("s", value)
    if kind is bool:
        return ("b", value)
    if kind is int or kind is float:
        return ("n", value)
    if value is None:
        return ("z", None)
    return None  # an object or an array: left to jsonschema


def _member_of(allowed: list[Any]) -> QuickCheck:
    keys = {key for key in map(_scalar_key, allowed) if key is not None}

    def check(value: Any) -> bool:
        return _scalar_key(value) in keys

    return check


def _number_bounds(schema: Mapping[str, Any]) -> QuickCheck | None:
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    above, below = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if minimum is None and maximum is None and above is None and below is None:
        return None

    def check(value: Any) -> bool:
        if type(value) is not int and type(value) is not float:
            return True  # bounds apply to numbers only
        return (
            (minimum is None or value >= minimum)
            and (maximum is None or value <= maximum)
            and (above is None or value > above)
            and (below is None or value < below)
        )

    return check


def _sized(schema: Mapping[str, Any], low_key: str, high_key: str, kind: type[Sized]) -> QuickCheck | None:
    low, high = schema.get(low_key), schema.get(high_key)
    if low is None and high is None:
        return None

    def check(value: Any) -> bool:
        if type(value) is not kind:
            return True
        size = len(value)
        return (low is None or size >= low) and (high is None or size <= high)

    return check


def _items(item: QuickCheck) -> QuickCheck:
    def check(value: Any) -> bool:
        if type(value) is not list:
            return True
        for element in value:  # noqa: SIM110 - as in _all_of
            if not item(element):
                return False
        return True

    return check


def _object_members(schema: Mapping[str, Any]) -> QuickCheck | None:
    properties: dict[str, QuickCheck] = {}
    for name, subschema in (schema.get("properties") or {}).items():
        compiled = _compile(subschema)
        if compiled is None:
            return None
        properties[name] = compiled
    required = tuple(schema.get("required") or ())
    extra = schema.get("additionalProperties", True)
    others = _compile(extra) if extra is not False else None
    if extra is not False and others is None:
        return None

    def check(value: Any) -> bool:
        if type(value) is not dict:
            return True
        for name in required:
            if name not in value:
                return False
        for name, member in value.items():
            test = properties.get(name, others)
            if test is None or not test(member):
                return False
        return True

    return check
