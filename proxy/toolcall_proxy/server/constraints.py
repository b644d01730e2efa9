"""Decode-time constraints on tool calls: which grammar a request's answer must follow, and the
fields the engine takes it in.

``tool_choice`` "required" or a named tool, and ``auto`` with a strict tool, are enforced by the
engine while it generates: the dialect's call grammar (``parsing.constraint``) becomes a Lark
grammar that vLLM's ``guidance`` backend runs, so the model can write nothing but calls of the
offered tools with arguments that fit their schemas. The engine is asked in the fields its
version reads (``structured_outputs`` from vLLM 0.11, ``guided_grammar`` from 0.4 until 0.11),
found by asking it (``GET /version``) unless ``--guided-decoding`` says. An engine that cannot
constrain, or refuses a grammar, gets the request without one: the prefill and the one retry
then do what they can, and a call that fails its schema is never returned as a call.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson

from ..caching import BoundedCache
from ..dialects import Dialect
from ..parsing.constraint import ConstraintTool, Unconstrainable, answer_constraint, call_constraint
from .validation import ChatToolRequest

__all__ = [
    "GUIDED",
    "OFF",
    "STRUCTURED_OUTPUTS",
    "GrammarBook",
    "engine_fields",
    "grammar_fields",
    "schema_fields",
    "tokens_of",
    "version_of",
    "version_tuple",
]

log = logging.getLogger("toolmodel.proxy")

# How the engine takes a grammar: `structured_outputs: {"grammar": ...}` (vLLM >= 0.11),
# `guided_grammar` (vLLM 0.4 to 0.11; 0.12 ignores it), or not at all.
STRUCTURED_OUTPUTS, GUIDED, OFF = "structured_outputs", "guided", "off"

# A tool that is not strict is held to the call's shape only under "auto": any JSON object.
_ANY_OBJECT: Mapping[str, Any] = {"type": "object"}
# Each grammar is about as large as the schemas it holds; counted twice over for the text.
_BYTES_PER_SCHEMA_BYTE = 4
_MAX_REFUSED = 1024


def version_tuple(version: str) -> tuple[int, ...]:
    """``"0.10.2"`` -> ``(0, 10, 2)``; a suffix (``0.11.0rc1``, ``+cu128``) is ignored."""
    parts = []
    for part in version.split("+")[0].split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def engine_fields(version: str) -> str:
    """The fields a vLLM release takes a grammar in."""
    release = version_tuple(version)
    if release >= (0, 11):
        return STRUCTURED_OUTPUTS
    if release >= (0, 4):
        return GUIDED
    return OFF


def grammar_fields(fields: str, grammar: str) -> dict[str, Any]:
    """The request fields that carry ``grammar`` to an engine taking ``fields``."""
    if fields == STRUCTURED_OUTPUTS:
        return {"structured_outputs": {"grammar": grammar}}
    if fields == GUIDED:
        return {"guided_grammar": grammar}
    return {}


def schema_fields(fields: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The request fields that hold a named call's arguments to ``schema`` after its prefill."""
    if fields == STRUCTURED_OUTPUTS:
        return {"structured_outputs": {"json": schema}}
    if fields == GUIDED:
        return {"guided_json": schema}
    return {}


class GrammarBook:
    """Each request's grammar, made once per distinct tools list and choice.

    A grammar the engine refused is remembered as refused, so a client that keeps sending the
    same tools is not refused anew on every turn.
    """

    def __init__(self, dialect: Dialect, single_tokens: Mapping[str, int] | None = None) -> None:
        """``single_tokens``: the dialect's markers that the served model's tokenizer has as one
        token, with their ids (``/tokenize``); None: the family's usual control tokens."""
        self.dialect = dialect
        if single_tokens is None:
            self._special: tuple[str, ...] = dialect.special_tokens
            self._token_ids: dict[str, int] = {}
        else:
            self._special = tuple(token for token in single_tokens if token.startswith("<") and token.endswith(">"))
            self._token_ids = {token: id for token, id in single_tokens.items() if token not in self._special}
        self._grammars: BoundedCache[str | None] = BoundedCache("grammars", max_entries=512, max_bytes=64 << 20)
        self._refused: OrderedDict[int, None] = OrderedDict()  # hashes of the grammars refused, oldest first
        self._said_unconstrainable = False

    def grammar(self, request: ChatToolRequest) -> str | None:
        """The grammar the answer must follow (refused or not: see ``is_refused``), or None when
        nothing is to be enforced or the family's grammar cannot be written."""
        choice, schema = request.choice.mode, request.answer_schema
        tools = request.offered
        if choice in ("required", "named"):
            mode = choice
        elif schema is not None and not tools:
            mode = "answer"
        elif choice == "auto" and (schema is not None or any(tool.strict for tool in request.tools)):
            mode = "auto"
        else:
            return None
        answer = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS) if schema is not None and mode != "named" else b""
        key = (mode, request.parallel, answer, tuple((tool.name, tool.strict, tool.schema_json) for tool in tools))
        cost = (len(answer) + sum(len(tool.schema_json) for tool in tools)) * _BYTES_PER_SCHEMA_BYTE
        return self._grammars.get(key, lambda: self._make(request, mode), cost)

    def is_refused(self, constraint: str) -> bool:
        return hash(constraint) in self._refused

    def refuse(self, constraint: str) -> None:
        """The engine would not take ``constraint`` (a grammar or a schema): it is not sent again."""
        self._refused[hash(constraint)] = None
        if len(self._refused) > _MAX_REFUSED:
            self._refused.popitem(last=False)

    def _make(self, request: ChatToolRequest, mode: str) -> str | None:
        dialect = self.dialect
        if mode == "answer":
            assert request.answer_schema is not None
            return answer_constraint(dialect.grammar, request.answer_schema)
        tools = [
            ConstraintTool(tool.name, tool.parameters if mode != "auto" or tool.strict else _ANY_OBJECT)
            for tool in request.offered
        ]
        try:
            return call_constraint(
                dialect.grammar,
                tools,
                mode=mode,  # type: ignore[arg-type]
                parallel=request.parallel and dialect.parallel_calls,
                special_tokens=self._special,
                token_ids=self._token_ids,
                written=dialect.write_calls([(tools[0].name, {})]),
                answer_schema=request.answer_schema if mode == "auto" else None,
            )
        except Unconstrainable as reason:
            if not self._said_unconstrainable:
                self._said_unconstrainable = True
                log.warning(
                    "%s: tool calls cannot be constrained (%s); prefill and retry instead", dialect.name, reason
                )
            return None


def tokens_of(body: bytes) -> list[int] | None:
    """The ids in a ``POST /tokenize`` answer, or None if it is not vLLM's shape."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    tokens = value.get("tokens") if isinstance(value, dict) else None
    if isinstance(tokens, list) and all(isinstance(token, int) for token in tokens):
        return tokens
    return None


def version_of(body: bytes) -> str | None:
    """The version in a ``GET /version`` answer, or None if it is not vLLM's shape."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    version = value.get("version") if isinstance(value, dict) else None
    return version if isinstance(version, str) and version_tuple(version) else None
