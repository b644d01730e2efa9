"""OpenAI's published contract for chat completions, as two validators that report, never raise.

The contract is OpenAI's own OpenAPI document, ``shared/openai/openapi.json`` beside the repository
(``../shared``; the tests fail without it, they do not skip). Every object the proxy writes for
``POST /v1/chat/completions`` is checked twice:

* **the document's JSON Schema**: ``CreateChatCompletionResponse`` for a whole answer,
  ``CreateChatCompletionStreamResponse`` for each streamed chunk, ``ErrorResponse`` (``{"error":
  Error}``) for an error, validated by ``jsonschema`` as draft 2020-12 (OpenAPI 3.1's dialect);
* **the ``openai`` package's pydantic types in strict mode** (``ChatCompletion``,
  ``ChatCompletionChunk``, ``ErrorObject`` for the ``error`` member), what the SDK's users parse
  responses into.

How the OpenAPI document is read as JSON Schema:

* ``$ref: "#/components/schemas/X"`` is resolved by a ``referencing`` registry that holds the
  document (the schemas these objects need, copied with their references) as one resource: each
  validator is ``{"$ref": "<document>#/components/schemas/X"}``, and the references inside resolve
  against the same document. Nothing is fetched.
* ``nullable: true`` (OpenAPI 3.0's keyword, which OpenAI's 3.1 document still uses, e.g. a chunk's
  ``finish_reason`` and ``usage``) also allows null: the schema becomes ``{"anyOf": [<the schema
  without nullable>, {"type": "null"}]}``, so a sibling ``enum`` or ``$ref`` cannot refuse the null.
  ``nullable: false`` is dropped.
* ``additionalProperties`` is **as written**: OpenAI's schemas leave objects open (none of these
  says ``additionalProperties: false``), so what vLLM adds (``stop_reason``, ``token_ids``,
  ``prompt_logprobs``, ``reasoning_content``, ...) is allowed, while a missing required member, a
  wrong type or a value outside an ``enum`` is not.
* ``discriminator`` is ignored (it only says which ``oneOf`` branch to try first; ``oneOf`` itself
  decides), and so are ``x-...`` extensions, ``example``, ``deprecated`` and ``default`` (unknown
  keywords or annotations to ``jsonschema``). ``format`` is an annotation, not asserted (OpenAI's
  ``unixtime`` is no JSON Schema format).

What strict mode does with the ``openai`` types (pydantic 2): no coercion, so a string where a
number goes, a number where a string goes, or ``1.0`` for an ``int`` field (``created``, ``index``,
token counts) is refused. The last is stricter than the document: JSON Schema's ``integer`` is any
number with a zero fractional part, so ``"created": 1.0`` passes the schema and fails pydantic
(lax pydantic would take it). ``int`` for a ``float`` field (``logprob: 0``) passes both. The types
are otherwise looser than the document: members the document requires but the SDK defaults
(``message.refusal``, ``choices[].logprobs``) are not missed by pydantic, and its models take extra
members (``extra="allow"``); that is why both validators run.

Each ``*_violations`` function returns a list of :class:`Violation` (empty when the object keeps the
contract).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
from jsonschema.exceptions import ValidationError
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.shared import ErrorObject
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
OPENAPI = SHARED / "openai" / "openapi.json"
DOCUMENT_URI = "urn:openai:openapi.json"

COMPLETION = "CreateChatCompletionResponse"
CHUNK = "CreateChatCompletionStreamResponse"
ERROR = "ErrorResponse"
_SCHEMA_PREFIX = "#/components/schemas/"


class ContractMissing(Exception):
    """``shared/openai/openapi.json`` is not beside the repository."""


@dataclass(frozen=True)
class Violation:
    """One way an object breaks the contract.

    ``validator``: ``openapi`` (the document's schema), ``pydantic`` (the SDK's strict types) or
    the caller's own (``http``, ``sse``, ``status``, ...). ``path``: where, as ``$.choices[0].x``.
    ``kind``: the same with list indices as ``[*]`` and without the offending value, to group the
    same fault across responses."""

    validator: str
    path: str
    message: str
    kind: str

    def __str__(self) -> str:
        return f"{self.validator} {self.path}: {self.message}"


def json_path(parts: Iterable[str | int]) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _general(path: str) -> str:
    return re.sub(r"\[\d+\]", "[*]", path)


# -- the document, read as JSON Schema ------------------------------------------------------------


def _nullable_as_null(node: Any) -> Any:
    """``node`` with every ``nullable: true`` turned into ``anyOf: [..., {"type": "null"}]``."""
    if isinstance(node, list):
        return [_nullable_as_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    # ``properties`` maps names to schemas: a property called "nullable" is no keyword.
    out = {
        key: ({k: _nullable_as_null(v) for k, v in value.items()} if key == "properties" else _nullable_as_null(value))
        for key, value in node.items()
    }
    if out.pop("nullable", False) is True:
        keep = {k: out.pop(k) for k in ("description", "title", "deprecated") if k in out}
        return {"anyOf": [out, {"type": "null"}], **keep}
    return out


def _references(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMA_PREFIX):
            yield ref.removeprefix(_SCHEMA_PREFIX)
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _closure(schemas: dict[str, Any], roots: Sequence[str]) -> dict[str, Any]:
    """The named schemas and every schema they reference, transitively."""
    todo, seen = list(roots), set[str]()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in schemas:
            raise ContractMissing(f"{OPENAPI}: no schema {name!r} in components.schemas")
        seen.add(name)
        todo.extend(_references(schemas[name]))
    return {name: schemas[name] for name in sorted(seen)}


@functools.cache
def _validators() -> dict[str, jsonschema.protocols.Validator]:
    if not OPENAPI.is_file():
        raise ContractMissing(
            f"{OPENAPI} is missing: clone shared/ beside the repository (the OpenAI contract tests need it)"
        )
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    schemas = _closure(document["components"]["schemas"], [COMPLETION, CHUNK, ERROR])
    contents = {"components": {"schemas": _nullable_as_null(copy.deepcopy(schemas))}}
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(contents, default_specification=DRAFT202012)
    )
    validators: dict[str, jsonschema.protocols.Validator] = {}
    for name in (COMPLETION, CHUNK, ERROR):
        schema = {"$ref": f"{DOCUMENT_URI}{_SCHEMA_PREFIX}{name}"}
        validators[name] = jsonschema.Draft202012Validator(schema, registry=registry)
    return validators


def load() -> None:
    """Read the document now; :class:`ContractMissing` says what is missing."""
    _validators()


def _leaves(error: ValidationError) -> list[ValidationError]:
    """What to report for ``error``: for an ``anyOf``/``oneOf`` none of whose branches matched, the
    errors of the branch that came closest (not one the value's type already ruled out), found the
    same way inside it; the error itself when every branch refused the value's type."""
    if not error.context:
        return [error]
    near = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
    if not near:
        return [error]
    branches: dict[Any, list[ValidationError]] = {}
    for e in near:
        branches.setdefault(e.relative_schema_path[0], []).append(e)

    def distance(errors: list[ValidationError]) -> tuple[bool, int]:
        # A branch whose tag member (``type``, the ``discriminator``) refuses the value is farthest.
        tag = any(e.validator in ("enum", "const") and len(e.relative_path) <= 1 for e in errors)
        return tag, len(errors)

    closest = min(branches.values(), key=distance)
    return [leaf for e in closest for leaf in _leaves(e)]


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _schema_violation(error: ValidationError, leaf: ValidationError) -> Violation:
    path = json_path(leaf.absolute_path)
    keyword = str(leaf.validator)
    if keyword == "required":
        missing = re.match(r"'([^']*)' is a required property", leaf.message)
        message = f"{missing.group(1)!r} is required" if missing else leaf.message
        kind_message = message
    elif keyword == "type" or (keyword in ("anyOf", "oneOf") and leaf.context):
        types = [leaf.validator_value] if keyword == "type" else [e.validator_value for e in leaf.context or ()]
        wanted = " or ".join(repr(t) for t in types)
        message = f"{_short(leaf.instance)} is not of type {wanted}"
        kind_message = f"{type(leaf.instance).__name__} is not of type {wanted}"
    elif keyword in ("enum", "const"):
        message = f"{_short(leaf.instance)} is not one of {leaf.validator_value!r}"
        kind_message = message
    else:
        message = leaf.message if len(leaf.message) <= 200 else leaf.message[:197] + "..."
        kind_message = f"fails {keyword!r}"
    if leaf is not error:
        message += f" (in the closest branch of the {error.validator} at {json_path(error.absolute_path)})"
    return Violation("openapi", path, message, f"openapi {_general(path)}: {kind_message}")


def _schema_violations(name: str, value: Any) -> list[Violation]:
    validator = _validators()[name]
    errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    return [_schema_violation(error, leaf) for error in errors for leaf in _leaves(error)]


def _union_member(loc: Sequence[str | int]) -> int | None:
    """Where in ``loc`` pydantic named the member of a union it tried (a model's class name)."""
    return next((i for i, part in enumerate(loc) if isinstance(part, str) and part[:1].isupper()), None)


def _closest_members(errors: Sequence[Any]) -> list[Any]:
    """Pydantic reports a value that fits no member of a union once per member. Keep the members
    whose ``type`` literal accepted the value (the union's tag), and drop the member's name from
    the path when one member is left."""
    by_member: dict[tuple[Any, ...], list[Any]] = {}
    for error in errors:
        at = _union_member(error["loc"])
        key = tuple(error["loc"][: at + 1]) if at is not None else ()
        by_member.setdefault(key, []).append(error)
    wrong_tag = {
        key
        for key, group in by_member.items()
        if key and any(e["type"] == "literal_error" and tuple(e["loc"]) == (*key, "type") for e in group)
    }

    def dropped(key: tuple[Any, ...]) -> bool:
        return key in wrong_tag and any(k not in wrong_tag for k in by_member if k[:-1] == key[:-1])

    kept: list[Any] = []
    for key, group in by_member.items():
        if key and dropped(key):
            continue
        if key and len([k for k in by_member if k and k[:-1] == key[:-1] and not dropped(k)]) == 1:
            group = [{**e, "loc": (*key[:-1], *e["loc"][len(key) :])} for e in group]
        kept.extend(group)
    return kept


def _pydantic_violations(
    model: type[pydantic.BaseModel], value: Any, prefix: Sequence[str | int] = ()
) -> list[Violation]:
    try:
        model.model_validate(value, strict=True)
    except pydantic.ValidationError as exc:
        out = []
        for error in _closest_members(exc.errors()):
            path = json_path([*prefix, *error["loc"]])
            message = f"{error['msg']} [{error['type']}], got {_short(error['input'])}"
            kind = f"pydantic {_general(path)}: {error['msg']} [{error['type']}]"
            out.append(Violation("pydantic", path, message, kind))
        return out
    return []


# -- one function per object -----------------------------------------------------------------------


def chat_completion_violations(body: Any) -> list[Violation]:
    """A whole ``chat.completion`` answer (a 200 to a request without ``stream``)."""
    return _schema_violations(COMPLETION, body) + _pydantic_violations(ChatCompletion, body)


def chat_completion_chunk_violations(chunk: Any) -> list[Violation]:
    """One ``chat.completion.chunk``, the JSON of one SSE ``data:`` line."""
    return _schema_violations(CHUNK, chunk) + _pydantic_violations(ChatCompletionChunk, chunk)


def error_violations(body: Any) -> list[Violation]:
    """An error body, ``{"error": {"message", "type", "param", "code"}}`` (also an error frame in a
    stream)."""
    out = _schema_violations(ERROR, body)
    if isinstance(body, dict) and "error" in body:
        out += _pydantic_violations(ErrorObject, body["error"], ["error"])
    return out
