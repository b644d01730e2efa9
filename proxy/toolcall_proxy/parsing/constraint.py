"""The decode-time constraint of a call grammar: what the engine may generate, as a Lark grammar.

The :class:`~toolcall_proxy.parsing.grammar.CallGrammar` that the parser runs is also the source
of the constraint, so the two cannot disagree: each step becomes a Lark rule (a ``Literal`` its
text, a ``Name`` the offered names, JSON ``Arguments`` the tool's schema through llguidance's
``%json``, Python keyword arguments and tagged key/value pairs a rule typed by the schema), and
the output is then

* ``required``: one or more calls and nothing else (one with ``parallel`` false);
* ``named``: exactly one call, of that tool;
* ``auto``: free text, and from a call's opener on a call that must be right (the strict tools'
  case), as a structural tag with the opener as trigger would; for formats whose calls have no
  opener (ChatGLM3's and GLM-4's first line names the tool), the whole output: a text turn (its
  first line empty) or a call turn.

The grammar is llguidance's Lark dialect (vLLM's ``guidance`` backend; xgrammar reads it too from
0.2.5, vLLM 0.34). Control tokens are written as token references (``<|python_tag|>``), so the
model must generate the token, not its text spelled out in pieces; a token whose text is not
``<...>``-shaped (Mistral's ``[TOOL_CALLS]``) cannot be named without its id, and such a grammar
cannot be built (:class:`Unconstrainable`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from typing import Literal as Kind

from ..jsonpointer import resolve
from .grammar import (
    Arguments,
    Branch,
    CallFormat,
    CallGrammar,
    CallId,
    CallList,
    JsonCall,
    KeyValueArguments,
    Literal,
    Name,
    Skip,
    Step,
)

__all__ = ["ConstraintTool", "Unconstrainable", "answer_constraint", "call_constraint", "marker_candidates"]

Mode = Kind["required", "named", "auto"]


class Unconstrainable(ValueError):
    """The grammar cannot be written for this dialect (say why, so the proxy can log it once)."""


@dataclass(frozen=True, slots=True)
class ConstraintTool:
    name: str
    parameters: Mapping[str, Any]


def call_constraint(
    grammar: CallGrammar,
    tools: Sequence[ConstraintTool],
    *,
    mode: Mode,
    parallel: bool = True,
    special_tokens: Sequence[str] = (),
    token_ids: Mapping[str, int] | None = None,
    written: str = "",
    answer_schema: Mapping[str, Any] | None = None,
) -> str:
    """The Lark grammar of the outputs that ``grammar``'s parser reads as calls of ``tools`` (for
    ``named``, give the one tool). ``special_tokens`` are the texts the model writes as single
    tokens, named by their text (``<...>``) or, in ``token_ids``, by their id; ``written`` is a
    call as the family writes it, which picks the format calls take (the one whose opener begins
    it; the grammar's first when none does). ``answer_schema`` (a ``response_format``) holds an
    answer without calls to a JSON schema under ``auto``; with no tools, see ``answer_constraint``.
    What the grammar holds ends with the engine's end of sequence, which an engine allows where the
    grammar may end (a family's other turn-ending tokens, ChatGLM3's <|user|>, are not in it: as
    names, xgrammar's request check would refuse them)."""
    if not tools:
        raise ValueError("a constraint needs at least one tool")
    ids = dict(token_ids or {})
    special_tokens = [*special_tokens, *(token for token in ids if token not in special_tokens)]
    first = _written_format(grammar, written)
    # Without an opener the first line is what tells a call turn (a name) from a text turn (an
    # empty line), so nothing may come before the name.
    bare = first.opener == ""
    special = frozenset(special_tokens)
    framing = tuple(t for t in grammar.hidden_tokens if any(s in t and s != t for s in special))
    writer = _Writer(
        tools, special, parallel=parallel and mode != "named", bare_names=bare, token_ids=ids, framing=framing
    )
    calls = writer.calls(grammar, first)
    if mode in ("required", "named"):
        writer.rule("start", calls if bare else f"{_WS} {calls}")
    elif answer_schema is not None:
        # calls, or an answer that is JSON of the schema (a text turn's empty first line before it)
        answer = writer.rule("answer", _answer(answer_schema, bare))
        writer.rule("start", f"{calls if bare else f'{_WS} {calls}'} | {answer}")
    elif first.opener == "":
        # No opener: the first line either names a tool (a call turn) or is empty (a text turn).
        writer.rule("start", f"{calls} | TEXT_TURN")
        writer.rule("TEXT_TURN", r"/[ \t]*\n(.|\n)*/")
    else:
        # Free text up to the first opener, then calls.
        if first.opener_starts_body:  # the opener is the call's first character (Llama's "{")
            if len(first.opener) != 1:
                raise Unconstrainable(f"free text cannot be told from a call that begins with {first.opener!r}")
            # calls first, or text that does not begin as a call does
            text = writer.rule("TEXT_NOT_A_CALL", f"/([^{re.escape(first.opener)} \\t\\r\\n](.|\\n)*)?/")
            writer.rule("start", f"{_WS} {writer.calls(grammar, first)} {_WS} | {_WS} {text}")
        else:
            # Text, then calls, each from its opener on, in blocks: xgrammar's dispatch pattern, which
            # both engines hold calls to (as an alternative of free text, xgrammar let anything by)
            after_opener = writer.calls(grammar, first, opener_written=True)
            block = writer.rule("block", f"{writer.up_to(first.opener)} {after_opener}")
            head = next(iter(_split_special(first.opener, writer.special)), "")
            if any(head in text for text in framing):  # text framed by the calls' own opening token
                writer.rule("start", f"{block}* {writer.rule('text', writer.free_text(head))}")
            else:
                writer.rule("start", f"{block}* TEXT")
                writer.rule("TEXT", r"/(.|\n)*/")
    return writer.finish()


def answer_constraint(grammar: CallGrammar, schema: Mapping[str, Any]) -> str:
    """The Lark grammar of an answer that is JSON of ``schema`` and no call (``response_format``
    without tools), as the family writes a text answer (ChatGLM3's starts with an empty line)."""
    bare = bool(grammar.formats) and grammar.formats[0].opener == ""
    writer = _Writer((), frozenset(), parallel=False)
    writer.rule("start", _answer(schema, bare))
    return writer.finish()


def _answer(schema: Mapping[str, Any], bare: bool) -> str:
    text_turn = r"/[ \t]*\n/ " if bare else ""
    return f"{text_turn}{_WS} {_json(schema)} {_WS}"


# -- writing Lark ----------------------------------------------------------------------------

_WS = "ws"
_PYTHON_STRING = r"""/'([^'\\\n]|\\.)*'/ | /"([^"\\\n]|\\.)*"/"""
_INTEGER = r"/-?(0|[1-9][0-9]*)/"
_NUMBER = r"/-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/"


@dataclass
class _Writer:
    tools: Sequence[ConstraintTool]
    special: frozenset[str]
    parallel: bool
    bare_names: bool = False  # a name starts its line: no whitespace before it
    # texts the family writes outside calls that hold control tokens (gpt-oss's
    # "<|channel|>final<|message|>"): free text may hold them, as the parser does
    framing: tuple[str, ...] = ()
    token_ids: Mapping[str, int] = field(default_factory=dict)  # control tokens named by id
    rules: dict[str, str] = field(default_factory=dict)
    _calls: dict[tuple[int, bool], str] = field(default_factory=dict)
    _counter: int = 0

    # -- bookkeeping -------------------------------------------------------------------
    def rule(self, name: str, body: str) -> str:
        self.rules[name] = body
        return name.split("[")[0]

    def fresh(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}_{self._counter}"

    def finish(self) -> str:
        self.rules.setdefault(_WS, "SPACE?")
        self.rules.setdefault("SPACE", r"/[ \t\r\n]+/")
        # No "%llguidance {}" header: xgrammar's Lark reader refuses it, and both read it without
        return "\n".join(f"{name}: {body}" for name, body in self.rules.items()) + "\n"

    def text(self, text: str) -> str:
        """A fixed text: its special tokens as token references, the rest as strings."""
        parts = []
        for piece in _split_special(text, self.special):
            if piece in self.special:
                parts.append(self.token(piece))
            elif piece:
                parts.append(json.dumps(piece, ensure_ascii=False))
        return " ".join(parts) if parts else '""'

    def token(self, token: str) -> str:
        """A reference to a control token: by its text if llguidance can name it so, else by id."""
        if token in self.token_ids:
            return f"<[{self.token_ids[token]}]>"
        if not _nameable(token):
            raise Unconstrainable(f"the control token {token!r} can only be named in a grammar by its id")
        return token

    def up_to(self, end: str, *, limit: int | None = None) -> str:
        """Any text (and control tokens), then ``end``."""
        head, *rest = _split_special(end, self.special)
        tail = " ".join(self.text(piece) for piece in rest)
        if head in self.special:
            # Text cannot hold a control token: it ends where the token comes. Other control tokens
            # may come before it (gpt-oss's header: `` <|constrain|>json<|message|>``).
            return f"{self.free_text(head)} {self.text(head)} {tail}".rstrip()
        span = "*" if limit is None else f"{{0,{limit}}}"
        name = self.fresh("up_to")
        # A lazy lexeme ends at the first ``head``, as a structural tag's trigger does.
        lazy = self.rule(f"{name}[lazy]", "/(.|\\n)" + span + "/ " + self.text(head))
        return f"{lazy} {tail}".rstrip()

    def free_text(self, head: str) -> str:
        """Text and control tokens, but ``head`` only where the family's framing has it (gpt-oss's
        final channel begins with the token its calls begin with)."""
        others = sorted(token for token in self.special - {head} if _nameable(token) or token in self.token_ids)
        framing = sorted(text for text in self.framing if head in text and text != head)
        pieces = " | ".join(["SOME_TEXT", *(self.text(token) for token in [*others, *framing])])
        self.rules.setdefault("SOME_TEXT", r"/(.|\n)+/")
        return f"({pieces})*"

    # -- calls ------------------------------------------------------------------------
    def calls(self, grammar: CallGrammar, first: CallFormat, *, opener_written: bool = False) -> str:
        """One call in ``first``'s format, then (``parallel``) more in the format later calls take."""
        head = self.call(first, opener_written=opener_written)
        if not self.parallel:
            return head
        return f"{head} ({_WS} {self.call(_later_format(grammar, first))})*"

    def call(self, fmt: CallFormat, *, opener_written: bool = False) -> str:
        key = (id(fmt), opener_written)
        if key not in self._calls:
            self._calls[key] = self._call(fmt, opener_written=opener_written)
        return self._calls[key]

    def _call(self, fmt: CallFormat, *, opener_written: bool) -> str:
        parts = []
        if not opener_written and not fmt.opener_starts_body:
            parts.append(self.text(fmt.opener))
        parts.append(self.steps(fmt.steps, self.tools))
        if fmt.closer:
            parts.append(f"{_WS} {self.text(fmt.closer)}")
        if fmt.separator:
            parts.append(f"({_WS} {self.text(fmt.separator)})?")
        return self.rule(self.fresh("call"), " ".join(part for part in parts if part != '""'))

    def steps(self, steps: Sequence[Step], tools: Sequence[ConstraintTool]) -> str:
        """``steps`` for any of ``tools``: one alternative per tool where a step depends on the
        tool (its name fixes its arguments), else one sequence."""
        if len(tools) > 1 and any(isinstance(step, Name | JsonCall | CallId) for step in steps):
            alternatives = [self.steps(steps, [tool]) for tool in tools]
            return self.rule(self.fresh("any_tool"), " | ".join(alternatives))
        return " ".join(self.step(step, tools) for step in steps) or '""'

    def step(self, step: Step, tools: Sequence[ConstraintTool]) -> str:
        if isinstance(step, Literal):
            text = f"{_WS} {self.text(step.text)}"
            return f"({text})?" if step.optional else text
        if isinstance(step, Name):
            names = " | ".join(json.dumps(tool.name) for tool in tools)
            return f"{'' if self.bare_names else _WS} ({names}) {self.text(step.terminator)}".lstrip()
        if isinstance(step, CallId):
            if step.name_within is not None:
                # One lexeme (a prefix, the name, the index), so no part of it can end early.
                before, after = step.name_within
                name = re.escape(_one(tools).name)
                lexeme = f"/([A-Za-z0-9_-]+{re.escape(before)})*{name}{re.escape(after)}[0-9]+/"
                return f"{_WS} {lexeme} {_WS} {self.text(step.terminator)}"
            return f"{_WS} /[A-Za-z0-9_-]{{1,64}}/ {_WS} {self.text(step.terminator)}"
        if isinstance(step, Skip):
            return self.up_to(step.terminator, limit=step.limit)
        if isinstance(step, Arguments):
            return self.arguments(step, _one(tools))
        if isinstance(step, JsonCall):
            return f"{_WS} {self.json_call(step, _one(tools))}"
        if isinstance(step, KeyValueArguments):
            return self.key_values(step, _one(tools))
        if isinstance(step, CallList):
            element = self.steps(step.element, tools)
            open_, sep, close = self.text(step.open), self.text(step.separator), self.text(step.close)
            more = f"({_WS} {sep} {element})*" if self.parallel else ""
            return f"{_WS} {open_} {element} {more} {_WS} {close}"
        if isinstance(step, Branch):
            cases = [f"{self.steps(steps, tools)}" for _, steps in step.cases]
            if step.otherwise is not None:
                cases.append(self.steps(step.otherwise, tools))
            return self.rule(self.fresh("branch"), " | ".join(cases))
        raise TypeError(f"no constraint for {step!r}")

    # -- arguments -----------------------------------------------------------------------
    def arguments(self, step: Arguments, tool: ConstraintTool) -> str:
        if step.kwargs:
            return f'{self.python_keywords(tool.parameters)} {_WS} ")"'
        return f"{_WS} {_json(tool.parameters)}"

    def json_call(self, step: JsonCall, tool: ConstraintTool) -> str:
        """The call object, name first, with the keys the family writes (the first of each)."""
        defs, arguments = _hoisted(tool.parameters)
        name_key, arguments_key = step.name_keys[0], step.argument_keys[0]
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {name_key: {"const": tool.name}, arguments_key: arguments},
            "required": [name_key, arguments_key],
            "additionalProperties": False,
        }
        if defs:
            schema = {**schema, "$defs": defs}
        return _json(schema)

    def key_values(self, step: KeyValueArguments, tool: ConstraintTool) -> str:
        """Tagged pairs, the schema's properties in order, values raw text typed by the schema."""
        properties, required = _object_members(tool.parameters)
        defs, _ = _hoisted(tool.parameters)
        pairs = []
        for name, schema in properties.items():
            head = f"{_WS} {self.text(step.key_open + name + step.key_close)} {_WS} {self.text(step.value_open)}"
            close = self.text(step.value_close)
            resolved = _resolve(tool.parameters, schema)
            choices = resolved.get("enum", [resolved["const"]] if "const" in resolved else None)
            if isinstance(choices, list) and choices and all(isinstance(choice, str) for choice in choices):
                # a string enum is one of its texts, as the parser returns raw text
                texts = " | ".join(json.dumps(choice, ensure_ascii=False) for choice in choices)
                pair = f"{head} {_WS} ({texts}) {_WS} {close}"
            elif _is_text(tool.parameters, schema):
                value = self.rule(f"{self.fresh('raw_value')}[lazy]", f"/(.|\\n)*/ {close}")
                pair = f"{head} {value}"
            else:
                standalone = _standalone(tool.parameters, schema, defs)
                pair = f"{head} {_WS} {_json(standalone)} {_WS} {close}"
            pair = self.rule(self.fresh("pair"), pair)
            pairs.append(pair if name in required else f"{pair}?")
        return " ".join(pairs) if pairs else '""'

    def python_keywords(self, parameters: Mapping[str, Any]) -> str:
        properties, required = _object_members(parameters)
        literals = _PythonLiterals(self, parameters)  # one per tool: a $ref is one rule however often used
        items = []
        for name, schema in properties.items():
            value = literals.rule_for(schema)
            items.append((f'{_WS} "{name}" {_WS} "=" {_WS} {value}', name in required))
        return _comma_sequence(self, items) if items else '""'


_MARKER = re.compile(r"<[^<>\s]{1,40}>|\[[A-Z_]{2,40}\]")


def marker_candidates(grammar: CallGrammar, special_tokens: Sequence[str] = ()) -> frozenset[str]:
    """The family's control tokens and the texts in its call grammar that look like one
    (``<tool_call>``, ``[TOOL_CALLS]``): whether each is a single token is the served model's
    tokenizer's to say."""
    texts: list[str] = list(special_tokens)

    def collect(value: Any) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, tuple | list):
            for item in value:
                collect(item)
        elif hasattr(value, "__dataclass_fields__"):
            for name in value.__dataclass_fields__:
                collect(getattr(value, name))

    collect(grammar)
    return frozenset(marker for text in texts for marker in _MARKER.findall(text))


def _nameable(token: str) -> bool:
    """Whether llguidance's Lark can name the control token by its text (``<|name|>``)."""
    return token.startswith("<") and token.endswith(">")


def _written_format(grammar: CallGrammar, written: str) -> CallFormat:
    starting = [fmt for fmt in grammar.formats if fmt.opener and written.startswith(fmt.opener)]
    if starting:
        return max(starting, key=lambda fmt: len(fmt.opener))
    return grammar.formats[0]


def _later_format(grammar: CallGrammar, first: CallFormat) -> CallFormat:
    """The format of a turn's later calls: where the first call's opener opens a block whose calls
    each begin with a marker of their own (DeepSeek's and Kimi-K2's), the format that begins at
    that marker; else the first format again."""
    lead = first.steps[0] if first.steps else None
    if isinstance(lead, Literal) and not lead.optional:
        for fmt in grammar.formats:
            if fmt.opener == lead.text:
                return fmt
    return first


def _json(schema: Mapping[str, Any]) -> str:
    return "%json " + json.dumps(schema, ensure_ascii=False, sort_keys=False)


def _one(tools: Sequence[ConstraintTool]) -> ConstraintTool:
    if len(tools) != 1:
        raise AssertionError("the tool is fixed by the name before its arguments")
    return tools[0]


def _split_special(text: str, special: frozenset[str]) -> Iterator[str]:
    if not special:
        yield text
        return
    pattern = "(" + "|".join(re.escape(token) for token in sorted(special, key=len, reverse=True)) + ")"
    yield from (piece for piece in re.split(pattern, text) if piece)


def _comma_sequence(writer: _Writer, items: Sequence[tuple[str, bool]]) -> str:
    """Items in order, joined by commas, the optional ones possibly absent (linear in rules:
    ``first_i`` is what follows when nothing was written yet, ``after_i`` when something was)."""
    first, after = '""', '""'
    for body, required in reversed(items):
        item = writer.rule(writer.fresh("item"), body)
        new_after = f'{_WS} "," {item} {after}'
        new_first = f"{item} {after}"
        if not required:
            new_after = f"({new_after}) | {after}" if after != '""' else f"({new_after})?"
            new_first = f"({new_first}) | {first}" if first != '""' else f"({new_first})?"
        after = writer.rule(writer.fresh("after"), new_after)
        first = writer.rule(writer.fresh("first"), new_first)
    return first


# -- schemas -------------------------------------------------------------------------------


def _resolve(root: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema`` with its local ``$ref`` followed (refs were checked: local, present, no loop
    without a step into the value) and a lone ``allOf`` unwrapped."""
    for _ in range(64):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            target = resolve(root, ref)  # checked: it points to a schema in the document
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            continue
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in all_of:
                part = _resolve(root, part) if isinstance(part, Mapping) else {}
                for key, value in part.items():
                    if key == "properties":
                        merged["properties"] = {**merged.get("properties", {}), **value}
                    elif key == "required":
                        merged["required"] = [*merged.get("required", []), *value]
                    else:
                        merged.setdefault(key, value)
            schema = merged
            continue
        return schema
    return schema


def _object_members(parameters: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    schema = _resolve(parameters, parameters)
    properties = schema.get("properties") or {}
    return dict(properties), set(schema.get("required") or ())


def _types(root: Mapping[str, Any], schema: Mapping[str, Any]) -> set[str]:
    schema = _resolve(root, schema)
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return set(kind)
    found: set[str] = set()
    for keyword in ("anyOf", "oneOf"):
        for option in schema.get(keyword) or ():
            if isinstance(option, Mapping):
                found |= _types(root, option)
    if "enum" in schema or "const" in schema:
        values = schema.get("enum") or [schema.get("const")]
        found |= {"string" if isinstance(value, str) else "other" for value in values}
    return found


def _is_text(root: Mapping[str, Any], schema: Mapping[str, Any]) -> bool:
    """A value written as raw text: the schema allows strings (``Optional[str]`` too: the parser
    reads ``null`` or a number in raw text as such where the schema takes it), or does not say."""
    types = _types(root, schema)
    return not types or "string" in types


def _hoisted(parameters: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(definitions, schema): ``parameters`` made embeddable under another root that carries the
    definitions as ``$defs`` (``definitions`` refs rewritten; other refs inlined)."""
    defs = {**(parameters.get("definitions") or {}), **(parameters.get("$defs") or {})}
    body = {k: v for k, v in parameters.items() if k not in ("$defs", "definitions", "$schema", "$id")}
    return _rewrite_refs(parameters, defs), _rewrite_refs(parameters, body)


def _standalone(root: Mapping[str, Any], schema: Mapping[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (a part of ``root``) as a document of its own, with ``root``'s definitions
    (``defs``, as ``_hoisted`` gives them)."""
    body = _rewrite_refs(root, dict(schema))
    return {**body, "$defs": defs} if defs else body


def _rewrite_refs(root: Mapping[str, Any], value: Any) -> Any:
    if isinstance(value, Mapping):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            value = {**value, "$ref": "#/$defs/" + ref[len("#/definitions/") :]}
        elif isinstance(ref, str) and not ref.startswith("#/$defs/"):
            inlined = {**_resolve(root, {"$ref": ref}), **{k: v for k, v in value.items() if k != "$ref"}}
            return _rewrite_refs(root, inlined)
        return {key: _rewrite_refs(root, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rewrite_refs(root, item) for item in value]
    return value


@dataclass
class _PythonLiterals:
    """Rules for Python literals (ChatGLM3's and the pythonic format's arguments) typed by a
    schema: strings in either quote, ``True``/``False``/``None``, lists, dicts."""

    writer: _Writer
    root: Mapping[str, Any]
    _named: dict[str, str] = field(default_factory=dict)

    def rule_for(self, schema: Any) -> str:
        if not isinstance(schema, Mapping):
            return self._any() if schema is not False else '""'
        ref = schema.get("$ref")
        if isinstance(ref, str) and len(schema) == 1:
            if ref not in self._named:  # named once, so a recursive schema is a recursive rule
                self._named[ref] = self.writer.fresh("py_ref")
                self.writer.rule(self._named[ref], self.rule_for(_resolve(self.root, schema)))
            return self._named[ref]
        schema = _resolve(self.root, schema)
        if "const" in schema:
            return _python_value(schema["const"])
        if isinstance(schema.get("enum"), list):
            return "(" + " | ".join(_python_value(value) for value in schema["enum"]) + ")"
        for keyword in ("anyOf", "oneOf"):
            options = schema.get(keyword)
            if isinstance(options, list) and options:
                return "(" + " | ".join(self.rule_for(option) for option in options) + ")"
        kinds = schema.get("type")
        if isinstance(kinds, list):
            return "(" + " | ".join(self.rule_for({**schema, "type": kind}) for kind in kinds) + ")"
        return self._typed(kinds, schema)

    def _typed(self, kind: Any, schema: Mapping[str, Any]) -> str:
        simple: dict[Any, Callable[[], str]] = {
            "string": lambda: f"({_PYTHON_STRING})",
            "integer": lambda: _INTEGER,
            "number": lambda: _NUMBER,
            "boolean": lambda: '("True" | "False")',
            "null": lambda: '"None"',
        }
        if kind in simple:
            return simple[kind]()
        if kind == "array":
            item = self.rule_for(schema.get("items", True))
            return f'"[" {_WS} ({item} ({_WS} "," {_WS} {item})*)? {_WS} "]"'
        if kind == "object" or "properties" in schema:
            properties = schema.get("properties") or {}
            required = set(schema.get("required") or ())
            items = [
                (f'{_WS} {_python_value(name)} {_WS} ":" {_WS} {self.rule_for(value)}', name in required)
                for name, value in properties.items()
            ]
            if not items:
                return self._any_dict()
            return f'"{{" {_WS} {_comma_sequence(self.writer, items)} {_WS} "}}"'
        return self._any()

    def _any(self) -> str:
        if "py_any" not in self.writer.rules:
            self.writer.rule("py_any", "")  # reserved: the rule refers to itself
            items = f'py_any ({_WS} "," {_WS} py_any)*'
            pair = f'({_PYTHON_STRING}) {_WS} ":" {_WS} py_any'
            pairs = f'{pair} ({_WS} "," {_WS} {pair})*'
            self.writer.rule(
                "py_any",
                f'{_PYTHON_STRING} | {_NUMBER} | "True" | "False" | "None" '
                f'| "[" {_WS} ({items})? {_WS} "]" | "{{" {_WS} ({pairs})? {_WS} "}}"',
            )
        return "py_any"

    def _any_dict(self) -> str:
        self._any()
        pairs = f'({_PYTHON_STRING}) {_WS} ":" {_WS} py_any'
        return f'"{{" {_WS} ({pairs} ({_WS} "," {_WS} {pairs})*)? {_WS} "}}"'


def _python_value(value: Any) -> str:
    """A constant as the Python literal the model writes (either quote for strings)."""
    if isinstance(value, str):
        double = json.dumps(value, ensure_ascii=False)
        return f"({json.dumps(repr(value), ensure_ascii=False)} | {json.dumps(double, ensure_ascii=False)})"
    return json.dumps(repr(value), ensure_ascii=False)
