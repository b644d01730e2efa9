"""Constrained decoding in the simulated engine, by llguidance (vLLM's ``guidance`` backend).

A request's grammar (``structured_outputs`` from vLLM 0.11, ``guided_*`` before 0.12) is run the
way an engine runs it: a matcher over the vocabulary masks the tokens the grammar forbids at
each step. The simulated model's own answer is its script: at each step it takes its next
scripted token when the mask allows it, else the allowed token a model would find likeliest to
get back on track (end if it may, close what is open, open a call, then digits, letters,
punctuation and last whitespace, so that every repair moves towards an end). A model scripted
to misbehave thus shows its fault unconstrained and writes a valid answer constrained.

The vocabulary is bytes plus the family's control tokens as single tokens, so a grammar that
names a control token (``<|python_tag|>``) requires the token, not its text spelled out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson

from ..server.constraints import version_tuple

if TYPE_CHECKING:
    from llguidance import LLTokenizer

# llguidance (the `demo` extra) is imported where a constraint is run, so the simulator serves
# requests without one where it is not installed.

__all__ = [
    "EOS",
    "Constraint",
    "ConstraintError",
    "Vocabulary",
    "check",
    "constrained_text",
    "is_single_token",
    "request_constraint",
]

EOS = "<eos>"
_STUCK = 4
_MAX_STEPS = 8192  # bytes: a repair that never ends is cut here, as max_tokens would
_CLOSERS = b"\"'}])>"
_DIGITS = b"0123456789"
_LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_WHITESPACE = b" \t\r\n"


# the kinds of constraint vLLM takes, by their names in `structured_outputs` (`guided_<kind>` before)
_KINDS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")


class ConstraintError(ValueError):
    """A constraint vLLM would refuse: the request is answered with a 400 naming ``param``."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class Constraint:
    """One request's constraint: a Lark grammar (llguidance's dialect; GBNF is converted) or a
    JSON schema."""

    kind: str  # "grammar" | "json"
    value: str | Mapping[str, Any]
    field: str | None = None  # the request field it came in, named by a refusal

    def serialized(self) -> str:
        from llguidance import LLMatcher, grammar_from

        if self.kind == "json":
            schema = self.value if isinstance(self.value, str) else orjson.dumps(self.value).decode()
            return LLMatcher.grammar_from_json_schema(schema)
        return grammar_from("grammar", str(self.value))  # Lark, or GBNF converted, as vLLM's guidance reads it


def request_constraint(body: Mapping[str, Any], *, version: str, backend: str) -> tuple[Constraint | None, list[str]]:
    """The request's constraint as the vLLM of ``version`` reads it, and the fields it ignores.

    vLLM 0.11 brought ``structured_outputs``; ``guided_*`` fields went in 0.12 and are ignored
    (logged, not refused) from then on, as ``structured_outputs`` is by the versions before it.
    With the ``xgrammar`` backend chosen (no fallback), a Lark grammar is refused before vLLM
    0.34 (xgrammar reads Lark from 0.2.5).
    """
    release = version_tuple(version)
    found, ignored = _constraint_fields(body, release)
    if not found:
        return None, ignored
    if len(found) > 1:
        raise ConstraintError(
            "You can only use one kind of structured outputs constraint but multiple are specified: "
            + ", ".join(field for _, _, field in found),
            found[1][2],
        )
    kind, value, field = found[0]
    if kind == "grammar" and isinstance(value, str):
        if backend == "xgrammar" and release < (0, 34) and not re.search(r"^\s*\w+\s*::=", value, re.MULTILINE):
            raise ConstraintError("Invalid grammar specification.", field)
        return Constraint("grammar", value, field), ignored
    if kind == "json" and isinstance(value, str | Mapping):
        return Constraint("json", value, field), ignored
    if kind == "json_object":
        return Constraint("json", {"type": "object"}, field), ignored
    if kind == "regex" and isinstance(value, str):
        return Constraint("grammar", "start: /" + value.replace("/", "\\/") + "/", field), ignored
    if kind == "choice" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return Constraint("grammar", "start: " + " | ".join(orjson.dumps(v).decode() for v in value), field), ignored
    if kind == "structural_tag":
        raise ConstraintError(f"the simulator does not take {field}", field)
    raise ConstraintError(f"{field} is not a valid {kind} constraint", field)


def _constraint_fields(
    body: Mapping[str, Any], release: tuple[int, ...]
) -> tuple[list[tuple[str, Any, str]], list[str]]:
    """The (kind, value, field) constraints the request sets that this release reads, and the
    fields it ignores."""
    found: list[tuple[str, Any, str]] = []
    ignored: list[str] = []
    outputs = body.get("structured_outputs")
    if outputs is not None:
        if release < (0, 11):
            ignored.append("structured_outputs")
        elif not isinstance(outputs, Mapping):
            raise ConstraintError("structured_outputs must be an object", "structured_outputs")
        else:
            found += [(kind, outputs[kind], f"structured_outputs.{kind}") for kind in _KINDS if outputs.get(kind)]
    for kind in _KINDS:
        name = f"guided_{kind}"
        if body.get(name) is not None:
            if release < (0, 12):
                found.append((kind, body[name], name))
            else:
                ignored.append(name)
    return found, ignored


_SINGLE_TOKEN = re.compile(r"<[^<>]+>|\[[A-Z_]+\]")


def is_single_token(text: str) -> bool:
    """Whether a control token's text is one marker (``<|call|>``, ``[TOOL_CALLS]``), not several."""
    return _SINGLE_TOKEN.fullmatch(text) is not None


class Vocabulary:
    """256 byte tokens, then eos and the family's control tokens (0xFF-prefixed, as llguidance
    marks special tokens)."""

    def __init__(self, control_tokens: Sequence[str], stops: Sequence[str] = ()) -> None:
        """``stops`` are the family's turn-ending tokens: the engine stops after one; where the
        model would write one the grammar does not have, it ends its answer (the engine's end of
        sequence) instead."""
        self.specials = list(dict.fromkeys([EOS, *control_tokens, *stops]))
        self.tokens = [bytes([i]) for i in range(256)] + [b"\xff" + s.encode() for s in self.specials]
        self.eos_token_id = 256
        self.bos_token_id = None
        self.special_token_ids = list(range(256, len(self.tokens)))
        self.stop_ids = frozenset(256 + self.specials.index(stop) for stop in stops)
        self._split = re.compile("(" + "|".join(map(re.escape, sorted(self.specials, key=len, reverse=True))) + ")")
        # the order in which a model off its script picks among the allowed tokens: end, a
        # control token (which ends free text where the grammar waits for one), then what closes
        self._preference = [
            self.eos_token_id,
            *self.special_token_ids[1:],
            *_CLOSERS,
            *_DIGITS,
            *_LETTERS,
            *(b for b in range(33, 127) if b not in _CLOSERS + _DIGITS + _LETTERS),
            *_WHITESPACE,
        ]

    @cached_property
    def tokenizer(self) -> LLTokenizer:
        from llguidance import LLTokenizer, TokenizerWrapper

        return LLTokenizer(TokenizerWrapper(self), slices=[])

    def __call__(self, text: str | bytes) -> list[int]:  # the wrapper's encode
        return list(text.encode() if isinstance(text, str) else text)

    def ids(self, text: str) -> list[int]:
        """``text`` as the engine's tokenizer gives it: control tokens as theirs, the rest bytes."""
        ids: list[int] = []
        for piece in self._split.split(text):
            if piece in self.specials:
                ids.append(256 + self.specials.index(piece))
            else:
                ids.extend(piece.encode())
        return ids

    def text(self, ids: Sequence[int]) -> str:
        data = b"".join(self.tokens[i][1:] if i >= 256 else self.tokens[i] for i in ids)
        return data.decode(errors="replace")

    def repair(self, mask: bytes, avoid: int | None = None) -> int | None:
        """The preferred allowed token but ``avoid`` (unless it is the only one), or None when the
        mask allows nothing at all."""
        candidates: tuple[int, ...] = (*self._preference, *range(len(self.tokens)))
        allowed = (token for token in candidates if mask[token >> 3] >> (token & 7) & 1)
        first: int | None = next(allowed, None)
        if first is not None and first == avoid:
            return next(allowed, first)
        return first


def check(constraint: Constraint, vocabulary: Vocabulary) -> str:
    """The serialized grammar, or :class:`ConstraintError` with llguidance's message."""
    from llguidance import LLMatcher

    try:
        grammar = constraint.serialized()
    except ValueError as error:
        raise ConstraintError(f"Invalid grammar specification: {error}", constraint.field) from None
    problem = LLMatcher.validate_grammar(grammar, vocabulary.tokenizer)
    if problem:
        raise ConstraintError(f"Grammar error: {problem}", constraint.field)
    return grammar


def constrained_text(constraint: Constraint, scripts: Sequence[str], vocabulary: Vocabulary) -> str:
    """What the model writes under ``constraint`` when it would write ``scripts[0]``.

    The later scripts are what it would write next likeliest (the well-behaved answer of a model
    scripted to misbehave). When the grammar refuses a token of the first, the model is taken
    back to where the next script parted from what it wrote, and goes on with that one: at that
    point, the next likeliest token was the next script's. Where no script has a token the
    grammar allows, the model repairs (``Vocabulary.repair``).
    """
    from llguidance import LLMatcher

    matcher = LLMatcher(vocabulary.tokenizer, check(constraint, vocabulary), log_level=0)
    if matcher.is_error():
        raise ConstraintError(matcher.get_error())
    eos = vocabulary.eos_token_id
    streams = [[*vocabulary.ids(script), eos] for script in scripts]
    # how far each script agrees with what was written: it leads while it agrees all along
    agreed = [0] * len(streams)
    followed = 0  # the script the model goes by
    out: list[int] = []
    repairs: list[int] = []  # the tokens taken off every script, latest last
    for _ in range(_MAX_STEPS):
        if matcher.is_stopped():
            break
        mask = matcher.compute_bitmask()
        token: int | None = None
        while followed < len(streams):
            stream = streams[followed]
            if agreed[followed] == len(out) and agreed[followed] < len(stream):
                candidate = stream[agreed[followed]]
                if mask[candidate >> 3] >> (candidate & 7) & 1:
                    token = candidate
                    break
                if candidate in vocabulary.stop_ids and mask[eos >> 3] >> (eos & 7) & 1:
                    token = eos  # the turn's end the grammar does not name: the answer ends here
                    break
            followed += 1
            if followed < len(streams) and agreed[followed] < len(out):
                # back to where the next script parted, to go on with it from there
                matcher.rollback(len(out) - agreed[followed])
                del out[agreed[followed] :]
                mask = matcher.compute_bitmask()
        if token is None:
            # a repair that keeps writing one token (a quote in free text) is stuck: try another
            stuck = repairs[-1] if len(repairs) >= _STUCK and len(set(repairs[-_STUCK:])) == 1 else None
            token = vocabulary.repair(mask, avoid=stuck)
            if token is not None:
                repairs.append(token)
        for index, stream in enumerate(streams):
            if agreed[index] == len(out) and agreed[index] < len(stream) and stream[agreed[index]] == token:
                agreed[index] += 1
        if token is None or token == eos or not matcher.consume_token(token):
            break
        out.append(token)
        if token in vocabulary.stop_ids:
            break  # the engine stops at the family's turn-ending tokens (its stop ids)
    return vocabulary.text(out)
