"""Tool schemas from clients are data: checked for what could hurt the proxy before anything uses them.

A schema arrives in every request that offers the tool, from any client that can reach the
Service, and three of its features could turn the proxy against itself:

* ``$ref`` to a URL or a file: jsonschema would fetch it (a request to any internal address, a
  file read, a stall while a URL hangs). Only references inside the schema (``#/$defs/...``)
  are followed, to a place that exists; anything else is a 400 naming the tool and the ref. The
  validator is also built on a registry that retrieves nothing, whatever the walk missed.
* ``pattern``: Python's ``re`` backtracks, so ``(a+)+$`` against the model's arguments grows
  exponentially with their length. Patterns are compiled and matched by RE2, which runs in linear
  time; one RE2 cannot compile (backreferences, lookaround) is a 400. ``patternProperties``, which
  jsonschema matches with ``re`` in several keywords, is refused (OpenAI's strict schemas do not
  take it either).
* Size, nesting and cycles: a schema is walked before any recursive use, with bounds on its depth
  and its number of subschemas, and references that lead back to themselves without a step into
  the value (``$defs/a`` is ``{"$ref": "#/$defs/a"}``, or ``allOf`` around it) are refused: a
  validator would recurse on them forever. A recursive schema that steps into the value (a tree
  whose ``children`` are items of ``#``) is fine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import re2
import referencing
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.protocols import Validator

from ..caching import BoundedCache
from .errors import bad_request

__all__ = ["MAX_SCHEMA_DEPTH", "MAX_SCHEMA_NODES", "check_tool_schema", "safe_validator"]

MAX_SCHEMA_DEPTH = 64  # pydantic's deepest models nest a few levels; 64 leaves room, bounds recursion
MAX_SCHEMA_NODES = 5_000  # objects and arrays in one tool's parameters

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a client's bad pattern is its 400, not the proxy's log
_UNSUPPORTED_REFS = ("$dynamicRef", "$recursiveRef")


def check_tool_schema(schema: Mapping[str, Any], where: str) -> None:
    """Refuses (400, naming ``where`` and the fix) a schema the proxy will not use."""
    nodes = 0
    for path, node, depth in _walk(schema):
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            raise bad_request(
                where, f"has more than {MAX_SCHEMA_NODES} nested objects and lists; send a smaller schema"
            )
        if depth > MAX_SCHEMA_DEPTH:
            raise bad_request(f"{where}{path}", f"nests deeper than {MAX_SCHEMA_DEPTH} levels; flatten the schema")
        if not isinstance(node, Mapping):
            continue
        for keyword in _UNSUPPORTED_REFS:
            if keyword in node:
                raise bad_request(f"{where}{path}.{keyword}", "is not supported; use $ref to #/$defs/... instead")
        if "$id" in node and path:
            raise bad_request(f"{where}{path}.$id", "a nested $id is not supported; name subschemas in $defs")
        ref = node.get("$ref")
        if ref is not None:
            _check_ref(schema, ref, f"{where}{path}.$ref")
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            _check_pattern(pattern, f"{where}{path}.pattern")
        if "patternProperties" in node:
            raise bad_request(
                f"{where}{path}.patternProperties",
                "is not supported; name the properties, or give additionalProperties a schema",
            )
    _check_ref_cycles(schema, where)


# Keywords that apply their subschemas to the same value: a cycle through only these never ends.
_SAME_VALUE = ("allOf", "anyOf", "oneOf")
_SAME_VALUE_ONE = ("not", "if", "then", "else")


def _check_ref_cycles(schema: Mapping[str, Any], where: str) -> None:
    """Refuses a reference that reaches itself again on the same value (a depth-first search over
    the schemas each one applies to its own value, from every reference's target)."""
    state: dict[str, bool] = {}  # True: on the current path; False: explored, no cycle through it
    for start in _refs(schema):
        if start in state:
            continue
        state[start] = True
        stack = [(start, _same_value_targets(_resolve(schema, start), start))]
        while stack:
            pointer, targets = stack[-1]
            target = next(targets, None)
            if target is None:
                state[pointer] = False
                stack.pop()
            elif state.get(target):
                raise bad_request(
                    f"{where}.$ref", f"{target!r} leads back to itself without a step into the value: it never ends"
                )
            elif target not in state:
                state[target] = True
                stack.append((target, _same_value_targets(_resolve(schema, target), target)))


def _refs(schema: Any) -> Iterator[str]:
    for _, node, _ in _walk(schema):
        if isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            yield node["$ref"]


def _same_value_targets(node: Any, pointer: str) -> Iterator[str]:
    """The pointers of the schemas ``node`` applies to the value it is given."""
    if not isinstance(node, Mapping):
        return
    if isinstance(node.get("$ref"), str):
        yield node["$ref"]
    for keyword in _SAME_VALUE:
        items = node.get(keyword)
        if isinstance(items, list):
            for index in range(len(items)):
                yield f"{pointer}/{keyword}/{index}"
    for keyword in _SAME_VALUE_ONE:
        if isinstance(node.get(keyword), Mapping):
            yield f"{pointer}/{keyword}"


def _resolve(schema: Mapping[str, Any], ref: str) -> Any:
    node: Any = schema
    for raw in ref[2:].split("/") if ref.startswith("#/") else ():
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def safe_validator(schema: Mapping[str, Any]) -> Validator:
    """A draft 2020-12 validator that retrieves nothing and matches patterns with RE2 (the schema
    has passed ``check_tool_schema``)."""
    validator: Validator = _SafeValidator(schema, registry=_NO_RETRIEVAL)
    return validator


def _walk(schema: Any) -> Iterator[tuple[str, Any, int]]:
    """Every object and list in ``schema``, with its path and depth, without recursion."""
    stack: list[tuple[str, Any, int]] = [("", schema, 0)]
    while stack:
        path, node, depth = stack.pop()
        yield path, node, depth
        if isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(value, Mapping | list):
                    stack.append((f"{path}.{key}", value, depth + 1))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                if isinstance(value, Mapping | list):
                    stack.append((f"{path}[{index}]", value, depth + 1))


def _check_ref(schema: Mapping[str, Any], ref: Any, where: str) -> None:
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise bad_request(
            where,
            f"{ref!r} points outside the schema; only references inside it are followed, such as '#/$defs/Name'",
        )
    if ref in ("#", ""):
        return
    if not ref.startswith("#/"):
        raise bad_request(where, f"{ref!r}: use a JSON pointer such as '#/$defs/Name' (anchors are not supported)")
    if _resolve(schema, ref) is None:
        raise bad_request(where, f"{ref!r} points to nothing in the schema; define it under $defs")


def _check_pattern(pattern: str, where: str) -> None:
    try:
        _compiled(pattern)
    except re2.error:
        raise bad_request(
            where,
            f"{pattern!r} needs backtracking (a backreference or lookaround) or is not a regular expression; "
            "use a pattern without them",
        ) from None


# RE2 programs, shared by every schema that uses the pattern (its size times 64 estimates one)
_PATTERNS: BoundedCache[Any] = BoundedCache("schema_patterns", max_entries=1024, max_bytes=16 << 20)


def _compiled(pattern: str) -> Any:
    return _PATTERNS.get(pattern, lambda: re2.compile(pattern, _RE2_OPTIONS), 64 * len(pattern) + 1024)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# An empty registry retrieves nothing (referencing's default): a reference outside the schema
# fails to resolve instead of being fetched.
_NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry()
_SafeValidator = validators.extend(Draft202012Validator, {"pattern": _pattern})  # type: ignore[no-untyped-call]
