"""One incremental parser for every dialect's tool calls.

Feed it the model's output in chunks of any size; it returns events: content text, a call's
start (with its name), fragments of the call's JSON arguments, and the call's end. Each input
character is examined once: the text already parsed is never read again, so the cost of a
response is linear in its length however it is split into chunks (vLLM's parsers re-parse the
whole text on every token).

Rules it keeps, whatever the dialect:

* Content is streamed as it arrives, except a suffix that could still become a call marker.
* A call is *committed* (``CallStarted``) only once its name is known, is one of the offered
  tools, and its arguments have begun. Until then its text is held back; if it turns out not
  to be a call, that text is released as content: nothing is lost.
* After the commit, argument fragments are always a prefix of valid JSON (see
  :mod:`.literal`). If the arguments then break off (truncated output, a syntax error), the
  call ends with an error and its raw text, so the response layer can report it.
* Leading whitespace of the output and whitespace directly before a call or the end are
  dropped from content; whitespace between two pieces of text is kept (after a call, the
  whitespace that follows it, so the texts on either side do not run together).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import Enum, auto
from functools import lru_cache
from typing import Any

import orjson

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
from .literal import LiteralError, LiteralTranscoder

__all__ = ["ArgumentsDelta", "CallEnded", "CallParser", "CallStarted", "Event", "ReasoningDelta", "TextDelta"]

_WHITESPACE = " \t\r\n"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:")
_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.:]*\Z")
_MAX_NAME_LENGTH = 256


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True)
class CallStarted:
    index: int
    name: str
    call_id: str | None = None


@dataclass(slots=True)
class ArgumentsDelta:
    index: int
    text: str


@dataclass(slots=True)
class CallEnded:
    index: int
    error: str | None = None
    raw: str = ""  # the call's text as the model wrote it, kept only when ``error`` is set


Event = TextDelta | ReasoningDelta | CallStarted | ArgumentsDelta | CallEnded


class _Status(Enum):
    MORE = auto()  # needs more input
    DONE = auto()
    FAIL = auto()


_Result = tuple[int, _Status, str]


class _Call:
    """What is known of the call being read."""

    __slots__ = ("arguments_complete", "call_id", "committed", "index", "name", "pending_args")

    def __init__(self) -> None:
        self.name: str | None = None
        self.call_id: str | None = None
        self.pending_args: list[str] = []
        self.committed = False
        self.index = -1
        self.arguments_complete = False


@dataclass(frozen=True, slots=True)
class _Markers:
    """What the text scanner looks for, worked out once per grammar rather than once per response."""

    formats: dict[str, CallFormat]
    hidden: frozenset[str]
    pattern: re.Pattern[str] | None
    prefixes: frozenset[str]
    chars: frozenset[str]
    longest_prefix: int


@lru_cache(maxsize=64)
def _markers(grammar: CallGrammar) -> _Markers:
    formats = {f.opener: f for f in grammar.formats if f.opener}
    hidden = frozenset(grammar.hidden_tokens)
    opening = (grammar.reasoning[0],) if grammar.reasoning else ()
    markers = sorted([*formats, *hidden, *opening], key=len, reverse=True)
    prefixes = frozenset(m[:k] for m in markers for k in range(1, len(m)))
    return _Markers(
        formats=formats,
        hidden=hidden,
        pattern=re.compile("|".join(map(re.escape, markers))) if markers else None,
        prefixes=prefixes,
        chars=frozenset("".join(prefixes)),
        longest_prefix=max((len(p) for p in prefixes), default=0),
    )


class CallParser:
    """Parses one response. ``feed`` chunks, then ``finish`` once; both return new events.

    ``tool_names`` are the functions the request offered: a call to any other name is not a
    call (its text stays content). ``None`` accepts any well-formed name.
    """

    def __init__(
        self,
        grammar: CallGrammar,
        tool_names: Collection[str] | Mapping[str, Mapping[str, Any]] | None = None,
        *,
        in_reasoning: bool = False,
    ) -> None:
        self._grammar = grammar
        self._tool_names = frozenset(tool_names) if tool_names is not None else None
        # name -> parameters schema, when given: formats whose values are raw text need the types
        self._schemas: Mapping[str, Mapping[str, Any]] = tool_names if isinstance(tool_names, Mapping) else {}
        markers = _markers(grammar)
        self._formats = markers.formats
        self._hidden = markers.hidden
        self._marker_re = markers.pattern
        self._marker_prefixes = markers.prefixes
        self._marker_chars = markers.chars
        self._longest_prefix = markers.longest_prefix
        self._reasoning_markers = grammar.reasoning
        # a prompt that ends inside a think block (QwQ, DeepSeek-R1) makes the output start there
        self._in_reasoning = in_reasoning and grammar.reasoning is not None
        self._held_thought = ""
        self._thought_started = False
        first = grammar.formats[0] if grammar.formats else None
        self._at_start: CallFormat | None = first if first is not None and first.opener == "" else None

        self._buffer = ""
        self._attempt: _Attempt | None = None
        self._events: list[Event] = []
        self._calls = 0
        self._content_started = False
        self._held_whitespace = ""
        self._finished = False

    # -- public -------------------------------------------------------------------------
    def feed(self, chunk: str) -> list[Event]:
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if chunk:
            self._run(self._buffer + chunk if self._buffer else chunk, final=False)
        return self._take_events()

    def finish(self) -> list[Event]:
        if not self._finished:
            self._finished = True
            self._run(self._buffer, final=True)
            self._buffer = ""
        return self._take_events()

    # -- called by the step runners ----------------------------------------------------------
    def set_name(self, call: _Call, name: str) -> str | None:
        """Records the call's name; returns why it is rejected, or None."""
        if not _NAME_PATTERN.match(name):
            return f"{name[:80]!r} is not a function name"
        if self._tool_names is not None and name not in self._tool_names:
            return f"{name!r} is not one of the offered tools"
        call.name = name
        if call.pending_args:
            self.add_arguments(call, "")
        return None

    def add_arguments(self, call: _Call, text: str) -> None:
        if call.committed:
            if text:
                self._events.append(ArgumentsDelta(call.index, text))
            return
        if text:
            call.pending_args.append(text)
        if call.name is None or not call.pending_args:
            return
        call.committed = True
        self._held_whitespace = ""  # whitespace between text and a call is not content
        call.index = self._calls
        self._calls += 1
        self._events.append(CallStarted(call.index, call.name, call.call_id))
        self._events.append(ArgumentsDelta(call.index, "".join(call.pending_args)))
        call.pending_args.clear()

    def parameter_kinds(self, function: str | None, parameter: str) -> tuple[str, ...]:
        """The JSON types one parameter of an offered tool may have, as its schema says (followed
        through ``$ref``, ``allOf``, ``anyOf``/``oneOf``, enums); ``()`` when it does not say."""
        root = self._schemas.get(function or "")
        if not isinstance(root, Mapping):
            return ()
        parameters = follow_schema(root, root)
        properties = parameters.get("properties")
        schema = properties.get(parameter) if isinstance(properties, Mapping) else None
        if schema is None:
            schema = parameters.get("additionalProperties")  # a schema for the keys not named
        return _schema_kinds(root, schema) if isinstance(schema, Mapping) else ()

    def end_call(self, call: _Call) -> None:
        self._events.append(CallEnded(call.index))

    # -- the loop -------------------------------------------------------------------------
    def _take_events(self) -> list[Event]:
        events = self._events
        self._events = []
        return events

    def _run(self, buffer: str, *, final: bool) -> None:
        pos = 0
        while True:
            attempt = self._attempt
            if attempt is None:
                pos = self._read_reasoning(buffer, pos, final) if self._in_reasoning else self._scan(buffer, pos, final)
                if pos < 0:
                    return
                continue
            pos, status, error = attempt.run(self, buffer, pos, final)
            if status is _Status.MORE:
                self._buffer = buffer[pos:]
                return
            self._attempt = None
            raw = "".join(attempt.raw)
            whole = attempt.checkpointed or attempt.format.opener_starts_body
            if status is _Status.DONE:
                if attempt.call.committed:
                    self.end_call(attempt.call)
            elif attempt.call.committed:
                self._events.append(CallEnded(attempt.call.index, error, raw if whole else attempt.format.opener + raw))
                self._content_started = True  # its raw text is content: what follows is not leading
            else:
                # Not a call after all: what was read since the opener (or since the last whole
                # call of a list) goes back to the text scanner.
                if not attempt.checkpointed:
                    opener = attempt.format.opener
                    if attempt.format.opener_starts_body:
                        raw = raw[len(opener) :]
                    if not attempt.format.opener_is_token:
                        self._text(opener)
                buffer = raw + buffer[pos:]
                pos = 0

    def _partial_marker_length(self, buffer: str, pos: int) -> int:
        if len(buffer) == pos or buffer[-1] not in self._marker_chars:
            return 0
        end = len(buffer)
        for length in range(min(self._longest_prefix, end - pos), 0, -1):
            if buffer[end - length :] in self._marker_prefixes:
                return length
        return 0

    def _scan(self, buffer: str, pos: int, final: bool) -> int:
        """Content up to the next marker, which opens a call (or reasoning, or is hidden).

        Returns where to go on, or -1 when the buffer is used up (a possible marker kept back).
        """
        if self._at_start is not None:
            self._attempt = _Attempt(self._at_start)
            self._at_start = None
            return pos
        match = self._marker_re.search(buffer, pos) if self._marker_re else None
        if match is None:
            hold = 0 if final else self._partial_marker_length(buffer, pos)
            self._text(buffer[pos : len(buffer) - hold])
            self._buffer = buffer[len(buffer) - hold :]
            if final:
                self._held_whitespace = ""
            return -1
        self._text(buffer[pos : match.start()])
        marker = match.group()
        if self._reasoning_markers is not None and marker == self._reasoning_markers[0]:
            self._in_reasoning = True
        elif marker not in self._hidden:
            call_format = self._formats[marker]
            self._attempt = _Attempt(call_format)
            if call_format.opener_starts_body:
                return match.start()
        return match.end()

    def _read_reasoning(self, buffer: str, pos: int, final: bool) -> int:
        """Reasoning up to its closing marker; returns where content resumes, or -1 to wait."""
        assert self._reasoning_markers is not None
        close = self._reasoning_markers[1]
        found = buffer.find(close, pos)
        if found < 0:
            hold = 0 if final else _partial_suffix(buffer[pos:], close)
            self._thought(buffer[pos : len(buffer) - hold])
            self._buffer = buffer[len(buffer) - hold :]
            return -1
        self._thought(buffer[pos:found])
        self._in_reasoning, self._held_thought, self._thought_started = False, "", False
        return found + len(close)

    def _thought(self, text: str) -> None:
        """Reasoning text, with the same whitespace rules as content."""
        if not self._thought_started:
            text = text.lstrip(_WHITESPACE)
            if not text:
                return
        body = text.rstrip(_WHITESPACE)
        if body:
            self._events.append(ReasoningDelta(self._held_thought + body))
            self._held_thought = ""
            self._thought_started = True
        self._held_thought += text[len(body) :]

    def _text(self, text: str) -> None:
        if not text:
            return
        if not self._content_started:
            text = text.lstrip(_WHITESPACE)
            if not text:
                return
        body = text.rstrip(_WHITESPACE)
        if body:
            self._events.append(TextDelta(self._held_whitespace + body))
            self._held_whitespace = ""
            self._content_started = True
        self._held_whitespace += text[len(body) :]


class _Attempt:
    """A call being read: the format's steps, then its optional closer and separator.

    A list of calls (``[call, call]``) is one attempt: each call ends as its element does, and
    the attempt's raw text restarts there (a *checkpoint*), so a later element that turns out
    not to be a call gives back only its own text.
    """

    __slots__ = ("call", "checkpointed", "completed", "format", "raw", "raw_start", "runner", "step_index", "steps")

    def __init__(self, call_format: CallFormat) -> None:
        steps: list[Step] = list(call_format.steps)
        if call_format.closer:
            steps.append(Literal(call_format.closer, optional=True))
        if call_format.separator:
            steps.append(Literal(call_format.separator, optional=True))
        self.format = call_format
        self.steps = steps
        self.step_index = 0
        self.runner = _runner(steps[0])
        self.raw: list[str] = []
        self.raw_start = 0
        self.call = _Call()
        self.checkpointed = False
        self.completed = 0  # calls already ended inside this attempt

    def run(self, parser: CallParser, buffer: str, pos: int, final: bool) -> _Result:
        self.raw_start = pos
        try:
            while True:
                pos, status, error = self.runner.run(parser, self, buffer, pos, final)
                if status is not _Status.DONE:
                    return pos, status, error
                self.step_index += 1
                if self.step_index == len(self.steps):
                    if not self.call.committed and not self.completed:
                        return pos, _Status.FAIL, "the call has no arguments"
                    return pos, _Status.DONE, ""
                self.runner = _runner(self.steps[self.step_index])
        finally:
            self.raw.append(buffer[self.raw_start : pos])

    def checkpoint(self, parser: CallParser, pos: int, buffer: str) -> None:
        """The current call is whole: end it, and read the next one from ``pos``."""
        if self.call.committed:
            parser.end_call(self.call)
            self.completed += 1
        self.call = _Call()
        self.raw.clear()
        self.raw_start = pos
        self.checkpointed = True

    def splice(self, steps: tuple[Step, ...]) -> None:
        """Replaces the current step with ``steps`` (a branch taken)."""
        self.steps[self.step_index : self.step_index + 1] = list(steps)
        self.runner = _runner(self.steps[self.step_index])


def _skip_whitespace(buffer: str, pos: int) -> int:
    end = len(buffer)
    while pos < end and buffer[pos] in _WHITESPACE:
        pos += 1
    return pos


class _LiteralRunner:
    """Whitespace, then the text. Until the text shows up the whitespace stays unconsumed (an
    absent optional literal must leave it to the content), remembered in ``skipped`` so that it
    is not scanned again on the next feed."""

    __slots__ = ("skipped", "step")

    def __init__(self, step: Literal) -> None:
        self.step = step
        self.skipped = 0

    def run(self, parser: CallParser, attempt: _Attempt, buffer: str, pos: int, final: bool) -> _Result:
        start = pos
        pos = _skip_whitespace(buffer, pos + self.skipped)
        text = self.step.text
        if buffer.startswith(text, pos):
            return pos + len(text), _Status.DONE, ""
        if not final and text.startswith(buffer[pos : pos + len(text)]):
            self.skipped = pos - start
            return start, _Status.MORE, ""
        if self.step.optional:
            return start, _Status.DONE, ""
        return pos, _Status.FAIL, f"expected {text!r}"


class _NameRunner:
    """Reads a function name up to its terminator (or up to one of the texts it ends before).
    Whitespace may only trail the name, so prose ("The weather is...") is known not to be a
    name at its first space-then-letter."""

    __slots__ = ("chars", "ends", "hold", "terminator", "trailing_space")

    def __init__(self, step: Name) -> None:
        self.terminator = step.terminator
        self.ends = (step.terminator, *step.ends_before)
        self.hold = max(map(len, self.ends)) - 1
        self.chars: list[str] = []
        self.trailing_space = False

    def run(self, parser: CallParser, attempt: _Attempt, buffer: str, pos: int, final: bool) -> _Result:
        call = attempt.call
        if not any(self.chars):  # spaces before the name ("[f(), g()]") are not part of it
            while pos < len(buffer) and buffer[pos] in " \t" and not buffer.startswith(self.ends, pos):
                pos += 1
        found, ending = -1, self.terminator
        for text in self.ends:
            index = buffer.find(text, pos)
            if index >= 0 and (found < 0 or index < found):
                found, ending = index, text
        # Without an end, keep back what could be its beginning.
        end = found if found >= 0 else max(pos, len(buffer) - self.hold)
        for index in range(pos, end):
            char = buffer[index]
            if char in " \t\r":
                self.trailing_space = True
            elif char not in _NAME_CHARS or self.trailing_space:
                return index, _Status.FAIL, f"{char!r} cannot be part of a function name"
        self.chars.append(buffer[pos:end])
        if found < 0:
            if final:
                return end, _Status.FAIL, "the output ended before the function name did"
            if sum(map(len, self.chars)) > _MAX_NAME_LENGTH:
                return end, _Status.FAIL, "the function name is too long"
            return end, _Status.MORE, ""
        error = parser.set_name(call, "".join(self.chars).strip())
        if error:
            return found, _Status.FAIL, error
        return found + (len(ending) if ending == self.terminator else 0), _Status.DONE, ""


class _ArgumentsRunner:
    __slots__ = ("collected", "object_only", "transcoder", "unwrap")

    def __init__(self, step: Arguments) -> None:
        self.transcoder = LiteralTranscoder(kwargs=step.kwargs)
        self.object_only = step.object_only and not step.kwargs
        self.unwrap = step.unwrap_string and not step.kwargs
        self.collected: list[str] | None = None  # a string's JSON, held until it is whole

    def run(self, parser: CallParser, attempt: _Attempt, buffer: str, pos: int, final: bool) -> _Result:
        call = attempt.call
        transcoder = self.transcoder
        if self.object_only and not transcoder.started:
            # Decided by the first character after the whitespace, before anything is committed.
            first = _skip_whitespace(buffer, pos)
            if first < len(buffer) and buffer[first] != "{":
                return first, _Status.FAIL, "the arguments are not a JSON object"
        if self.unwrap and not transcoder.started:
            first = _skip_whitespace(buffer, pos)
            if first < len(buffer) and buffer[first] in "\"'":
                self.collected = []  # arguments given as a string: the JSON it holds, once read
        pos, error = _feed_value(transcoder, buffer, pos, final)
        if self.collected is None:
            parser.add_arguments(call, transcoder.drain())
        else:
            self.collected.append(transcoder.drain())
        if error:
            return pos, _Status.FAIL, f"the arguments are not valid: {error}"
        if transcoder.done:
            if self.collected is not None:
                parser.add_arguments(call, _unwrap_string_arguments(orjson.loads("".join(self.collected))))
            call.arguments_complete = True
            return pos, _Status.DONE, ""
        return pos, _Status.MORE, ""


class _JsonCallRunner:
    """Reads ``{"name": ..., "arguments": ...}`` with the keys in any order.

    Argument values stream as they are read once the name is known (before that they are
    held by the parser). Arguments given as a string holding JSON (a Granite/old-Qwen habit)
    are unwrapped rather than double-encoded.
    """

    __slots__ = ("collected", "first", "key", "route", "seen", "state", "step", "value")

    def __init__(self, step: JsonCall) -> None:
        self.step = step
        self.state = "open"
        self.first = True
        self.key = ""
        self.value: LiteralTranscoder | None = None
        self.route = ""
        self.collected: list[str] = []
        self.seen: set[str] = set()

    def run(  # noqa: C901 - one state machine, kept together
        self, parser: CallParser, attempt: _Attempt, buffer: str, pos: int, final: bool
    ) -> _Result:
        call = attempt.call
        end = len(buffer)
        while True:
            if self.state == "value":
                pos, status, error = self._read_value(parser, call, buffer, pos, final)
                if status is not _Status.DONE:
                    return pos, status, error
                self.state = "after"
                continue
            if self.state == "key":
                pos, status, error = self._read_key(buffer, pos, final)
                if status is not _Status.DONE:
                    return pos, status, error
                continue
            pos = _skip_whitespace(buffer, pos)
            if pos == end:
                if not final:
                    return pos, _Status.MORE, ""
                if call.committed and call.arguments_complete:
                    return pos, _Status.DONE, ""  # only the object's closing brace is missing
                return pos, _Status.FAIL, "the output ended inside the call"
            char = buffer[pos]
            if self.state == "open":
                if char != "{":
                    return pos, _Status.FAIL, "expected '{'"
                self.state = "key"
                pos += 1
            elif self.state == "after":
                if char == ",":
                    self.state, self.first = "key", False
                    pos += 1
                elif char == "}":
                    return self._close(call, pos + 1)
                else:
                    return pos, _Status.FAIL, f"expected ',' or '}}' in the call object, found {char!r}"
            elif self.state == "colon":
                if char != ":":
                    return pos, _Status.FAIL, f"expected ':' after the key {self.key!r}"
                self.state = "value"
                pos += 1

    def _close(self, call: _Call, pos: int) -> _Result:
        if call.name is None:
            return pos, _Status.FAIL, "the call object has no function name"
        if not call.committed:
            return pos, _Status.FAIL, "the call object has no arguments"
        return pos, _Status.DONE, ""

    def _read_key(self, buffer: str, pos: int, final: bool) -> _Result:
        if self.value is None:
            pos = _skip_whitespace(buffer, pos)
            if pos == len(buffer):
                return pos, (_Status.FAIL if final else _Status.MORE), "the output ended inside the call"
            if buffer[pos] == "}" and not self.first:
                self.state = "after"  # a trailing comma
                return pos, _Status.DONE, ""
            if buffer[pos] not in "\"'":
                return pos, _Status.FAIL, "expected a quoted key in the call object"
            self.value = LiteralTranscoder()
        pos, error = _feed_value(self.value, buffer, pos, final)
        self.collected.append(self.value.drain())
        if error:
            return pos, _Status.FAIL, f"the call object is not valid: {error}"
        if not self.value.done:
            return pos, (_Status.FAIL if final else _Status.MORE), "the output ended inside the call"
        self.key = orjson.loads("".join(self.collected))
        self.collected.clear()
        self.value = None
        self.state = "colon"
        return pos, _Status.DONE, ""

    def _read_value(self, parser: CallParser, call: _Call, buffer: str, pos: int, final: bool) -> _Result:
        if self.value is None:
            pos = _skip_whitespace(buffer, pos)
            if pos == len(buffer):
                return pos, (_Status.FAIL if final else _Status.MORE), "the output ended inside the call"
            self.route = self._route_for(self.key, buffer[pos])
            if self.route in self.seen and self.route != "other":
                return pos, _Status.FAIL, f"the call object gives its {self.route} twice"
            self.seen.add(self.route)
            self.value = LiteralTranscoder()
        value = self.value
        pos, error = _feed_value(value, buffer, pos, final)
        text = value.drain()
        if self.route == "arguments":
            parser.add_arguments(call, text)
        else:
            self.collected.append(text)
        if error:
            return pos, _Status.FAIL, f"the call object is not valid: {error}"
        if not value.done:
            return pos, _Status.MORE, ""
        self.value = None
        collected = "".join(self.collected)
        self.collected.clear()
        if self.route == "arguments":
            call.arguments_complete = True
        elif self.route == "string arguments":
            parser.add_arguments(call, _unwrap_string_arguments(orjson.loads(collected)))
            call.arguments_complete = True
        elif self.route == "name":
            name = orjson.loads(collected)
            if not isinstance(name, str):
                return pos, _Status.FAIL, "the function name is not a string"
            rejection = parser.set_name(call, name)
            if rejection:
                return pos, _Status.FAIL, rejection
        elif self.route == "id":
            call_id = orjson.loads(collected)
            call.call_id = call_id if isinstance(call_id, str) else None
        return pos, _Status.DONE, ""

    def _route_for(self, key: str, first_char: str) -> str:
        if key in self.step.name_keys:
            return "name"
        if key in self.step.argument_keys:
            return "string arguments" if first_char in "\"'" else "arguments"
        if key in self.step.id_keys:
            return "id"
        return "other"


def _feed_value(transcoder: LiteralTranscoder, buffer: str, pos: int, final: bool) -> tuple[int, str]:
    """Feeds a transcoder; returns the new position and an error message ('' if none)."""
    try:
        pos = transcoder.feed(buffer, pos)
    except LiteralError as error:
        return error.position, str(error)
    if final and not transcoder.done:
        try:
            transcoder.finish()
        except LiteralError:
            return pos, "the output ended inside them"
    return pos, ""


def _unwrap_string_arguments(text: str) -> str:
    """``"arguments": "{\\"a\\": 1}"`` means the object; any other string is kept as a string."""
    transcoder = LiteralTranscoder()
    try:
        transcoder.feed(text)
        transcoder.finish()
    except LiteralError:
        return orjson.dumps(text).decode()
    result = transcoder.drain()
    return result if result.startswith(("{", "[")) else orjson.dumps(text).decode()


# How many references and ``allOf`` merges one schema is followed through, and how deep into
# ``anyOf``/``oneOf`` branches its types are looked for: a recursive schema (a tree of nodes) or
# a reference loop stops there.
_MAX_SCHEMA_DEPTH = 32


def follow_schema(root: Any, schema: Any) -> Mapping[str, Any]:
    """``schema`` (a part of ``root``) with its local ``$ref`` followed (``#/$defs/...``,
    ``#/definitions/...``; the keys beside a ``$ref`` kept over the target's) and its ``allOf``
    merged (properties joined, required lists added up, any other key from the first part that
    has it); ``{}`` for what is not a schema. After ``_MAX_SCHEMA_DEPTH`` steps in all (a
    reference loop) what is left is returned without its references."""
    return _follow(root, schema, [_MAX_SCHEMA_DEPTH])


def _follow(root: Any, schema: Any, budget: list[int]) -> Mapping[str, Any]:
    if not isinstance(schema, Mapping):
        return {}
    followed: Mapping[str, Any] = schema
    while budget[0] > 0:
        budget[0] -= 1
        ref = followed.get("$ref")
        if isinstance(ref, str):
            target = resolve(root, ref)
            rest = {key: value for key, value in followed.items() if key != "$ref"}
            followed = {**target, **rest} if isinstance(target, Mapping) else rest
            continue
        all_of = followed.get("allOf")
        if isinstance(all_of, list):
            merged: dict[str, Any] = {key: value for key, value in followed.items() if key != "allOf"}
            for part in all_of:
                for key, value in _follow(root, part, budget).items():
                    if key == "properties" and isinstance(value, Mapping):
                        merged["properties"] = {**(merged.get("properties") or {}), **value}
                    elif key == "required" and isinstance(value, list):
                        merged["required"] = [*(merged.get("required") or []), *value]
                    else:
                        merged.setdefault(key, value)
            followed = merged
            continue
        return followed
    return {key: value for key, value in followed.items() if key not in ("$ref", "allOf")}


_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null", list: "array"}


def _schema_kinds(root: Any, schema: Any, budget: list[int] | None = None) -> tuple[str, ...]:
    """The JSON types a value of ``schema`` may have, in the schema's order: its ``type``, else
    those of its ``enum``/``const`` values, else those of its ``anyOf``/``oneOf`` branches (each
    followed through its references; ``_MAX_SCHEMA_DEPTH`` branches in all), else what
    ``properties``/``items`` imply; ``()`` when the schema does not say."""
    budget = budget if budget is not None else [_MAX_SCHEMA_DEPTH]
    budget[0] -= 1
    schema = follow_schema(root, schema)
    kind = schema.get("type")
    if isinstance(kind, str):
        return (_json_kind(kind),)
    if isinstance(kind, list):
        return tuple(dict.fromkeys(_json_kind(k) for k in kind if isinstance(k, str)))
    values = schema.get("enum") if isinstance(schema.get("enum"), list) else None
    if values is None and "const" in schema:
        values = [schema["const"]]
    if values is not None:
        return tuple(dict.fromkeys(_JSON_TYPES.get(type(value), "object") for value in values))
    kinds: list[str] = []
    for keyword in ("anyOf", "oneOf"):
        for option in schema.get(keyword) or ():
            if budget[0] > 0:
                kinds.extend(_schema_kinds(root, option, budget))
    if kinds:
        return tuple(dict.fromkeys(kinds))
    if isinstance(schema.get("properties"), Mapping):
        return ("object",)
    if "items" in schema:
        return ("array",)
    return ()


# Type names tool schemas use besides JSON Schema's, read as vLLM's Qwen3-Coder parser reads them.
_KIND_PREFIXES = (
    (("int", "uint", "long", "short", "unsigned"), "integer"),
    (("num", "float", "double"), "number"),
    (("bool", "binary"), "boolean"),
    (("dict",), "object"),
    (("list", "arr"), "array"),
)


def _json_kind(kind: str) -> str:
    """``kind`` as a JSON Schema type name (``float`` is a number, ``dict`` an object)."""
    if kind in ("string", "integer", "number", "boolean", "null", "object", "array"):
        return kind
    lowered = kind.strip().lower()
    return next((json_kind for prefixes, json_kind in _KIND_PREFIXES if lowered.startswith(prefixes)), kind)


# Types whose raw-text values are converted (and so written whole); any other value is a string.
_TYPED_KINDS = frozenset(("integer", "number", "boolean", "null", "object", "array"))


def _typed_value(text: str, kinds: tuple[str, ...]) -> str:
    """A raw parameter value as JSON, by the types its schema allows (``_schema_kinds``): the
    first of them other than a string that the text fits, else the text as a string.

    Where the schema allows a string besides other types, a value written as one JSON string
    (``"Paris"``) is that string: so the decode-time constraint has the model write such a
    value, as it has it write every value whose schema allows more than strings.
    """
    value = text.strip()
    for kind in kinds:
        typed = _as_kind(value, kind)
        if typed is not None:
            return typed
    if "string" in kinds and len(kinds) > 1 and value.startswith('"') and value.endswith('"') and len(value) > 1:
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, str):
            return orjson.dumps(decoded).decode()
    return orjson.dumps(text).decode()


def _as_kind(value: str, kind: str) -> str | None:
    """``value`` (stripped raw text) as JSON of this type, or None when it is not one."""
    if kind == "integer" or kind == "number":
        try:
            number = float(value) if kind == "number" and not value.lstrip("-").isdigit() else int(value)
        except ValueError:
            return None
        return orjson.dumps(number).decode() if math.isfinite(number) else None
    if kind == "boolean":
        return value.lower() if value.lower() in ("true", "false") else None
    if kind == "null":
        return "null" if value.lower() in ("null", "none") else None
    if kind == "object" or kind == "array":
        transcoder = LiteralTranscoder()
        try:
            transcoder.feed(value)
            transcoder.finish()
        except LiteralError:
            return None
        written = transcoder.drain()
        return written if written.startswith("{" if kind == "object" else "[") else None
    return None


def _partial_suffix(buffer: str, marker: str) -> int:
    """How many characters at the end of ``buffer`` could be the start of ``marker``."""
    for length in range(min(len(marker) - 1, len(buffer)), 0, -1):
        if marker.startswith(buffer[-length:]):
            return length
    return 0


class _CallIdRunner:
    """The model's id for the call, up to the terminator; whitespace may only surround it."""

    __slots__ = ("chars", "name_within", "started", "terminator", "trailing_space")

    def __init__(self, step: CallId) -> None:
        self.terminator = step.terminator
        self.name_within = step.name_within
        self.chars: list[str] = []
        self.started = False
        self.trailing_space = False

    def run(self, parser: CallParser, attempt: _Attempt, buffer: str, pos: int, final: bool) -> _Result:
        found = buffer.find(self.terminator, pos)
        end = found if found >= 0 else max(pos, len(buffer) - _partial_suffix(buffer, self.terminator))
        for index in range(pos, end):
            char = buffer[index]
            if char in _WHITESPACE:
                self.trailing_space = self.started
            elif char not in _NAME_CHARS or self.trailing_space:
                return index, _Status.FAIL, f"{char!r} cannot be part of a call id"
            else:
                self.started = True
        self.chars.append(buffer[pos:end])
        if found < 0:
            if final or sum(map(len, self.chars)) > _MAX_NAME_LENGTH:
                return end, _Status.FAIL, "the call id does not end"
            return end, _Status.MORE, ""
        call = attempt.call
        call.call_id = "".join(self.chars).strip() or None
        if self.name_within is not None:
            before, after = self.name_within
            head, separator, _ = (call.call_id or "").partition(after)
            if not separator:
                return found, _Status.FAIL, f"the call id {call.call_id!r} names no function"
            rejection = parser.set_name(call, head.rpartition(before)[2])
            if rejection:
                return found, _Status.FAIL, rejection
        return found + len(self.terminator), _Status.DONE, ""


class _SkipRunner:
    __slots__ = ("skipped", "step")

    def __init__(self, step: Skip) -> None:
        self.step = step
        self.skipped = 0

    def run(self, parser: CallParser, attempt: _Attempt, buffer: str, pos: int, final: bool) -> _Result:
        terminator = self.step.terminator
        found = buffer.find(terminator, pos)
        if found >= 0 and self.skipped + found - pos <= self.step.limit:
            return found + len(terminator), _Status.DONE, ""
        end = max(pos, len(buffer) - _partial_suffix(buffer, terminator))
        self.skipped += end - pos
        if found >= 0 or final or self.skipped > self.step.limit:
            return end, _Status.FAIL, f"expected {terminator!r}"
        return end, _Status.MORE, ""


class _BranchRunner:
    __slots__ = ("step",)

    def __init__(self, step: Branch) -> None:
        self.step = step

    def run(self, parser: CallParser, attempt: _Attempt, buffer: str, pos: int, final: bool) -> _Result:
        pos = _skip_whitespace(buffer, pos)
        rest = buffer[pos : pos + max(len(prefix) for prefix, _ in self.step.cases)]
        for prefix, steps in self.step.cases:
            if rest.startswith(prefix):
                attempt.splice(steps)
                return attempt.runner.run(parser, attempt, buffer, pos, final)
        if not final and any(prefix.startswith(rest) for prefix, _ in self.step.cases):
            return pos, _Status.MORE, ""
        if self.step.otherwise is None:
            return pos, _Status.FAIL, "none of the expected forms follows"
        attempt.splice(self.step.otherwise)
        return attempt.runner.run(parser, attempt, buffer, pos, final)


class _CallListRunner:
    """``[element, element]``: each element is one call, ended by the attempt's checkpoint."""

    __slots__ = ("index", "runner", "state", "step")

    def __init__(self, step: CallList) -> None:
        self.step = step
        self.state = "open"
        self.index = 0
        self.runner: _Runner | None = None

    def run(self, parser: CallParser, attempt: _Attempt, buffer: str, pos: int, final: bool) -> _Result:
        step = self.step
        while True:
            if self.state == "element":
                assert self.runner is not None
                pos, status, error = self.runner.run(parser, attempt, buffer, pos, final)
                if status is not _Status.DONE:
                    return pos, status, error
                self.index += 1
                if self.index < len(step.element):
                    self.runner = _runner(step.element[self.index])
                    continue
                if not attempt.call.committed:
                    return pos, _Status.FAIL, "a list element is not a call"
                attempt.checkpoint(parser, pos, buffer)
                self.state = "after"
                continue
            pos = _skip_whitespace(buffer, pos)
            rest = buffer[pos:]
            expected = (step.open,) if self.state == "open" else (step.separator, step.close)
            matched = next((text for text in expected if rest.startswith(text)), None)
            if matched is None:
                if not final and any(text.startswith(rest) for text in expected):
                    return pos, _Status.MORE, ""
                if self.state == "after" and final:
                    return pos, _Status.DONE, ""  # the list was cut after a whole call
                return pos, _Status.FAIL, f"expected {' or '.join(map(repr, expected))}"
            pos += len(matched)
            if matched == step.close and self.state == "after":
                return pos, _Status.DONE, ""
            self.state, self.index = "element", 0
            self.runner = _runner(step.element[0])


class _KeyValueRunner:
    """Tagged key/value arguments; values are raw text, written as JSON by the schema's type.

    A value ends at its closing tag only where the next tag follows that (see
    :class:`~.grammar.KeyValueArguments`): on finding the closing tag the runner looks past it,
    over whitespace, to the next tag, holding the closing tag back until that is known. Each
    character is still looked at a bounded number of times: the whitespace looked past is
    remembered (``looked``), and a closing tag that turns out to be text is passed once.
    """

    __slots__ = (
        "chars",
        "followers",
        "held",
        "kinds",
        "looked",
        "opened",
        "started",
        "state",
        "step",
        "stop_texts",
        "stops",
        "streamed",
    )

    def __init__(self, step: KeyValueArguments) -> None:
        self.step = step
        self.state = "between"
        self.opened = False  # "{" written
        self.chars: list[str] = []
        self.kinds: tuple[str, ...] = ()
        self.streamed = True  # a string value, streamed as it comes
        self.started = False
        self.held = ""
        self.looked = 0  # whitespace known to follow a closing tag being decided
        # the tags that may follow a value (and end it when its closing tag is missing)
        self.followers = (step.key_open, step.end, *step.also_end)
        self.stop_texts = sorted({step.value_close, *self.followers}, key=len, reverse=True)
        self.stops = re.compile("|".join(map(re.escape, self.stop_texts)))

    def run(  # noqa: C901 - one state machine, kept together
        self, parser: CallParser, attempt: _Attempt, buffer: str, pos: int, final: bool
    ) -> _Result:
        call, step = attempt.call, self.step
        while True:
            if self.state == "between":
                pos = _skip_whitespace(buffer, pos)
                rest = buffer[pos:]
                if rest.startswith(step.key_open):
                    pos += len(step.key_open)
                    self.state, self.chars = "key", []
                    continue
                if rest.startswith(self.followers[1:]) or (final and not rest):
                    parser.add_arguments(call, "}" if self.opened else "{}")
                    call.arguments_complete = True
                    return pos, _Status.DONE, ""
                if not final and any(tag.startswith(rest) for tag in self.followers):
                    return pos, _Status.MORE, ""
                return pos, _Status.FAIL, f"expected {step.key_open!r} or {step.end!r}"
            if self.state == "key":
                found = buffer.find(step.key_close, pos)
                end = found if found >= 0 else max(pos, len(buffer) - _partial_suffix(buffer, step.key_close))
                # a name on one line, without tags: else the closing ">" is missing (vLLM #55495)
                broken = next((i for i in range(pos, end) if buffer[i] in "\n<"), -1)
                if broken >= 0:
                    return broken, _Status.FAIL, "a parameter name does not end where its line does"
                self.chars.append(buffer[pos:end])
                if found < 0:
                    if final or sum(map(len, self.chars)) > _MAX_NAME_LENGTH:
                        return end, _Status.FAIL, "a parameter name does not end"
                    return end, _Status.MORE, ""
                key = "".join(self.chars).strip()
                pos = found + len(step.key_close)
                self.kinds = parser.parameter_kinds(call.name, key)
                self.streamed = _TYPED_KINDS.isdisjoint(self.kinds)  # text only: streamed as it comes
                parser.add_arguments(call, ("{" if not self.opened else ", ") + orjson.dumps(key).decode() + ": ")
                self.opened = True
                self.state, self.chars, self.started, self.held = "open value", [], False, ""
                continue
            if self.state == "open value":
                if step.value_open:
                    pos = _skip_whitespace(buffer, pos)
                    rest = buffer[pos:]
                    if not rest.startswith(step.value_open):
                        if not final and step.value_open.startswith(rest):
                            return pos, _Status.MORE, ""
                        return pos, _Status.FAIL, f"expected {step.value_open!r}"
                    pos += len(step.value_open)
                if self.streamed:
                    parser.add_arguments(call, '"')
                self.state = "value"
                continue
            if self.state == "closing":
                # buffer[pos:] starts with the value's closing tag: is the next tag after it?
                after = pos + len(step.value_close)
                probe = _skip_whitespace(buffer, after + self.looked)
                self.looked = probe - after
                rest = buffer[probe:]
                if rest.startswith(self.followers) or (final and not rest):
                    self._end_value(parser, call)
                    pos, self.state = after, "between"
                    continue
                if not final and any(tag.startswith(rest) for tag in self.followers):
                    return pos, _Status.MORE, ""
                # text that looks like the closing tag: part of the value
                self._value_text(parser, call, step.value_close)
                pos, self.state = after, "value"
                continue
            # the value, up to the closing tag or a tag that may follow it
            match = self.stops.search(buffer, pos)
            if match is None:
                hold = 0 if final else max(_partial_suffix(buffer[pos:], stop) for stop in self.stop_texts)
                self._value_text(parser, call, buffer[pos : len(buffer) - hold])
                pos = len(buffer) - hold
                if final:
                    return pos, _Status.FAIL, "the output ended inside a parameter value"
                return pos, _Status.MORE, ""
            self._value_text(parser, call, buffer[pos : match.start()])
            pos = match.start()
            if match.group() == step.value_close:
                self.state, self.looked = "closing", 0
                continue
            self._end_value(parser, call)  # the closing tag is missing: the next tag ends the value
            self.state = "between"

    def _value_text(self, parser: CallParser, call: _Call, text: str) -> None:
        if not text:
            return
        layout = self.step.layout_newlines
        if not self.started:
            self.started = True
            if layout and text.startswith("\n"):  # the line break after the opening tag is layout
                text = text[1:]
        if not self.streamed:
            self.chars.append(text)
            return
        text = self.held + text
        # a line break just before the closing tag is layout too: held until that is known
        self.held = "\n" if layout and text.endswith("\n") else ""
        text = text[: len(text) - len(self.held)]
        if text:
            parser.add_arguments(call, orjson.dumps(text).decode()[1:-1])

    def _end_value(self, parser: CallParser, call: _Call) -> None:
        if self.streamed:
            parser.add_arguments(call, '"')
            return
        text = "".join(self.chars)
        if self.step.layout_newlines:
            text = text.removesuffix("\n")
        parser.add_arguments(call, _typed_value(text, self.kinds))


_Runner = (
    _LiteralRunner
    | _NameRunner
    | _ArgumentsRunner
    | _JsonCallRunner
    | _CallIdRunner
    | _SkipRunner
    | _KeyValueRunner
    | _CallListRunner
    | _BranchRunner
)


def _runner(step: Step) -> _Runner:
    if isinstance(step, Literal):
        return _LiteralRunner(step)
    if isinstance(step, Name):
        return _NameRunner(step)
    if isinstance(step, Arguments):
        return _ArgumentsRunner(step)
    if isinstance(step, JsonCall):
        return _JsonCallRunner(step)
    if isinstance(step, CallId):
        return _CallIdRunner(step)
    if isinstance(step, Skip):
        return _SkipRunner(step)
    if isinstance(step, KeyValueArguments):
        return _KeyValueRunner(step)
    if isinstance(step, CallList):
        return _CallListRunner(step)
    return _BranchRunner(step)
