"""Incremental transcoder: one JSON *or* Python literal in, canonical JSON out.

Models write tool arguments as JSON (Hermes, Llama), as Python dict literals (Hermes 2 Pro's
``{'name': ...}``), or as Python keyword arguments (ChatGLM3's ``tool_call(city='Paris')``). This
module reads any of them one chunk at a time and writes valid JSON text as soon as each byte of it
is certain, so tool-call arguments can be streamed without ever re-parsing what came before.

Cost is linear: every input character is looked at a bounded number of times (a number or word the
fast lane below turns down is read again by the per-character steps), runs of plain string
characters are copied in bulk, and common whole tokens (a plain key with its colon, then a plain
string, a JSON number or true/false/null with the comma after it) are read with one regex match.
Model output is data: nothing here evaluates it.
"""

from __future__ import annotations

import re
from enum import Enum, auto

import orjson

__all__ = ["LiteralError", "LiteralTranscoder"]


class LiteralError(ValueError):
    """The text is not a JSON or Python literal (or not one we accept).

    ``position`` is the index of the offending character in the fed text.
    """

    position: int = 0


class _State(Enum):
    VALUE = auto()  # a value must start here
    VALUE_OR_CLOSE = auto()  # first element of a list/tuple, or its end
    KEY_OR_CLOSE = auto()  # first key of an object, or its end
    KEY = auto()  # a key after a comma (a trailing comma may be followed by the end)
    COLON = auto()
    AFTER_VALUE = auto()  # a comma or the container's end
    STRING = auto()
    ESCAPE = auto()  # just read a backslash inside a string
    HEX_ESCAPE = auto()  # reading the digits of \x, \u or \U
    NUMBER = auto()
    WORD = auto()
    KWARG_NAME = auto()
    DONE = auto()


# The states as module-level names: on Python 3.11 looking a member up on the Enum class
# (``_State.VALUE``) costs several times a global read, and the loop in ``feed`` compares the state
# a few times per token.
_VALUE = _State.VALUE
_VALUE_OR_CLOSE = _State.VALUE_OR_CLOSE
_KEY_OR_CLOSE = _State.KEY_OR_CLOSE
_KEY = _State.KEY
_COLON = _State.COLON
_AFTER_VALUE = _State.AFTER_VALUE
_STRING = _State.STRING
_ESCAPE = _State.ESCAPE
_HEX_ESCAPE = _State.HEX_ESCAPE
_NUMBER = _State.NUMBER
_WORD = _State.WORD
_KWARG_NAME = _State.KWARG_NAME
_DONE = _State.DONE


_WHITESPACE = " \t\r\n"
_NUMBER_START = "0123456789-+."
_NUMBER_CHARS = frozenset("0123456789+-.eE_xXoObBabcdefABCDEF")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789")
_WORDS = {"true": "true", "True": "true", "false": "false", "False": "false", "null": "null", "None": "null"}
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?\Z")
# Characters copied verbatim inside a string: everything but the quote, backslash, controls and,
# for single-quoted Python strings, the double quote (which JSON must escape).
_PLAIN_RUN = {
    '"': re.compile(r'[^"\\\x00-\x1f]+'),
    "'": re.compile(r"[^'\"\\\x00-\x1f]+"),
}
# Escapes that mean the same in JSON and Python, written through unchanged.
_SHARED_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "/", "b": "\\b", "f": "\\f", "n": "\\n", "r": "\\r", "t": "\\t"}
# Python-only escapes, rewritten for JSON.
_PYTHON_ESCAPES = {"'": "'", "a": "\\u0007", "v": "\\u000b", "\n": ""}
_HEX_ESCAPE_LENGTH = {"x": 2, "u": 4, "U": 8}
_CONTROL_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}
_CLOSERS = {"{": "}", "[": "]", "(": ")", "kwargs": ")"}

# The fast lane. Where a chunk holds a whole common token, one regex match reads it instead of the
# per-character steps; the states are the ones those steps would reach, and a token that could still
# go on in the next chunk is not taken, so how the input is cut never changes the result.
_WS = r"[ \t\r\n]*"  # exactly _WHITESPACE (``\s`` would also take \f, \v and Unicode spaces)
_RUN = r'[^"\\\x00-\x1f]*'  # the plain part of a double-quoted string, as _PLAIN_RUN['"']
# A scalar whose end is certain: ``value`` is what the output gets (a double-quoted string without
# escapes is JSON already), or what _WORDS maps to it. A number or word ends at the first character
# that cannot continue it, so that character must be here ("12" + "3", "true" + "ish" stay possible
# at the chunk's end). The number is _JSON_NUMBER with ASCII digits: Python-only forms (1_000,
# 0x1F, .5, +3) never match (a number character would follow) and _end_number reads them. A string
# that stops at a backslash, a control character or the chunk's end (no ``closed``) is taken up to
# there and goes on in the string state, so its start is not read twice.
_SCALAR = (
    rf'(?P<value>"{_RUN}(?P<closed>")?'
    r"|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?(?=[^0-9+\-.eE_xXoObBa-fA-F])"
    r"|(?:true|false|null|True|False|None)(?=[^A-Za-z_]))"
    rf"{_WS}(?P<comma>,{_WS})?"  # then, inside a container, the comma after it
)
# A value (in a list, after a key's colon, at the top level).
_PLAIN_VALUE = re.compile(_SCALAR)
_PLAIN_VALUE_START = frozenset('"-0123456789tfnTFN')
# An object member, ``"key": value, ``, as far as it is plain and here: the key's plain start;
# or the whole key with its colon; or that and a scalar. It always matches at a double quote.
_PLAIN_MEMBER = re.compile(rf'"(?P<key>{_RUN})(?P<colon>"{_WS}:{_WS}(?:{_SCALAR})?)?')
# What a comma leads to, by the innermost container: a key, an element (or, after a trailing comma,
# the end), a keyword argument.
_AFTER_COMMA = {"{": _KEY, "[": _VALUE_OR_CLOSE, "(": _VALUE_OR_CLOSE, "kwargs": _KWARG_NAME}


def _json_char(char: str) -> str:
    """A decoded character as it must appear inside a JSON string."""
    if char == '"':
        return '\\"'
    if char == "\\":
        return "\\\\"
    if char < " ":
        return _CONTROL_ESCAPES.get(char) or f"\\u{ord(char):04x}"
    return char


class LiteralTranscoder:
    """Reads one value (or a keyword-argument list) and writes it as JSON.

    ``feed(text, pos)`` consumes ``text`` from ``pos`` and returns where it stopped: at the end
    of ``text`` (feed more), or just after the value (``done`` is then true). Output accumulates
    in ``out`` until the caller ``drain()``s it. Separators follow ``json.dumps``: ``", "`` and
    ``": "``.

    With ``kwargs=True`` the input is the inside of a Python call, ``a=1, b='x')``, read up to
    and including the closing parenthesis and written as the object ``{"a": 1, "b": "x"}``.
    """

    __slots__ = (
        "_buffer",
        "_first",
        "_hex_kind",
        "_hex_left",
        "_key_pending",
        "_quote",
        "_stack",
        "_state",
        "done",
        "out",
        "started",
    )

    def __init__(self, *, kwargs: bool = False) -> None:
        self._stack: list[str] = []
        self._state = _VALUE
        self._first = True  # no element written yet in the innermost container
        self._quote = '"'
        self._buffer: list[str] = []
        self._hex_kind = ""
        self._hex_left = 0
        self._key_pending = False  # the string being read is an object key
        self.out: list[str] = []
        self.done = False
        self.started = False  # the value's first character has been read
        if kwargs:
            self._stack.append("kwargs")
            self.out.append("{")
            self._state = _KWARG_NAME
            self.started = True

    def drain(self) -> str:
        text = "".join(self.out)
        self.out.clear()
        return text

    # The loop below is the hot path of argument streaming: one branch per state, with the
    # common cases (plain string runs, whitespace, then the fast lane's whole tokens) first.
    def feed(self, text: str, pos: int = 0) -> int:  # noqa: C901 - one state machine, kept together
        end = len(text)
        out = self.out
        state = self._state
        try:
            while pos < end:
                state = self._state
                if state is _STRING:
                    match = _PLAIN_RUN[self._quote].match(text, pos)
                    if match is not None:
                        out.append(match.group())
                        pos = match.end()
                        continue
                    char = text[pos]
                    pos += 1
                    if char == self._quote:
                        out.append('"')
                        self._end_string()
                    elif char == "\\":
                        self._state = _ESCAPE
                    else:  # a control character or, in a single-quoted string, a double quote
                        out.append(_json_char(char))
                    continue
                char = text[pos]
                if state is _ESCAPE:
                    pos += 1
                    self._escape(char)
                    continue
                if state is _HEX_ESCAPE:
                    pos += 1
                    self._hex_digit(char)
                    continue
                if state is _NUMBER:
                    if char in _NUMBER_CHARS:
                        self._buffer.append(char)
                        pos += 1
                        continue
                    self._end_number()
                    continue
                if state is _WORD:
                    if char in _WORD_CHARS:
                        self._buffer.append(char)
                        pos += 1
                        continue
                    self._end_word()
                    continue
                if char in _WHITESPACE:
                    pos += 1
                    continue
                if state is _DONE:
                    return pos
                # The fast lane (see _SCALAR): whole plain tokens, each in one match.
                if state is _KEY or state is _KEY_OR_CLOSE:
                    if char == '"':
                        pos = self._plain_member(text, pos)
                        continue
                elif (state is _VALUE or state is _VALUE_OR_CLOSE) and char in _PLAIN_VALUE_START:
                    fast = self._plain_value(text, pos)
                    if fast:
                        pos = fast
                        continue
                pos += 1
                if state is _VALUE or state is _VALUE_OR_CLOSE:
                    if state is _VALUE_OR_CLOSE and char in ")]":
                        self._close(char)
                    else:
                        self._start_value(char)
                elif state is _AFTER_VALUE:
                    self._after_value(char)
                elif state is _KEY_OR_CLOSE or state is _KEY:
                    if char == "}":
                        self._close(char)
                    elif char in "\"'":
                        self._comma()
                        self._key_pending = True
                        self._start_string(char)
                    elif char in _NUMBER_START:  # Python allows {1: 'a'}; JSON keys are strings
                        self._comma()
                        self._key_pending = True
                        out.append('"')
                        self._buffer = [char]
                        self._state = _NUMBER
                    else:
                        raise LiteralError(f"expected an object key, found {char!r}")
                elif state is _COLON:
                    if char != ":":
                        raise LiteralError(f"expected ':' after an object key, found {char!r}")
                    out.append(": ")
                    self._state = _VALUE
                elif state is _KWARG_NAME:
                    pos = self._kwarg_name(text, pos - 1)
                if self.done:
                    return pos
        except LiteralError as error:
            # At the offending character: the one just read or, for a bad number or word, the
            # one that ended it (not read yet, and always in this chunk).
            error.position = pos if state is _NUMBER or state is _WORD else max(pos - 1, 0)
            raise
        return pos

    def finish(self) -> None:
        """The input ended: complete a value that needed one more character to be sure of."""
        if self._state is _NUMBER and not self._stack:
            self._end_number()
        elif self._state is _WORD and not self._stack:
            self._end_word()
        if not self.done:
            raise LiteralError("the value is incomplete")

    # -- the fast lane: whole tokens in one match ------------------------------------------
    def _plain_member(self, text: str, pos: int) -> int:
        """Reads an object member from its key's opening quote at ``pos``, as far as it is plain.

        Returns where reading goes on: in the key's string state, in the value state, or after the
        value.
        """
        match = _PLAIN_MEMBER.match(text, pos)
        assert match is not None  # text[pos] is the quote, and all after it is optional
        key, colon, value, closed, comma = match.groups()
        self._quote = '"'
        if colon is None:  # the key goes on past an escape, a control character or the chunk's end
            self._comma()
            self._key_pending = True
            self.out.append('"' + key)
            self._state = _STRING
            return match.end()
        self.out.append(('"' if self._first else ', "') + key + '": ')
        if value is None:
            self._state = _VALUE
            return match.end()
        return self._plain_scalar(match, value, closed, comma)

    def _plain_value(self, text: str, pos: int) -> int:
        """Reads a scalar at ``pos`` in one match; 0 (never where one ends) if the fast lane does not take it."""
        match = _PLAIN_VALUE.match(text, pos)
        if match is None:
            return 0
        value, closed, comma = match.groups()
        self.started = True
        self._element_separator()
        return self._plain_scalar(match, value, closed, comma)

    def _plain_scalar(self, match: re.Match[str], value: str, closed: str | None, comma: str | None) -> int:
        """Writes the scalar of a ``_SCALAR`` match (its groups given); returns where reading goes on."""
        if value[0] != '"':
            self.out.append(_WORDS.get(value, value))  # a word (as JSON) or a number
        else:
            self._quote = '"'
            self.out.append(value)
            if closed is None:
                self._state = _STRING
                return match.end("value")
        self._value_done()
        if not self._stack:  # the whole value: what follows is not ours to read
            return match.end("value")
        if comma is not None:
            self._state = _AFTER_COMMA[self._stack[-1]]
        return match.end()

    # -- values ---------------------------------------------------------------------------
    def _start_value(self, char: str) -> None:
        self.started = True
        if char in "\"'":
            self._start_string(char)
        elif char in "{[(":
            self._element_separator()
            self._stack.append(char)
            self.out.append("{" if char == "{" else "[")
            self._first = True
            self._state = _KEY_OR_CLOSE if char == "{" else _VALUE_OR_CLOSE
        elif char in _NUMBER_START:
            self._buffer = [char]
            self._state = _NUMBER
        elif char in _WORD_CHARS:
            self._buffer = [char]
            self._state = _WORD
        else:
            raise LiteralError(f"expected a value, found {char!r}")

    def _value_done(self) -> None:
        self._first = False
        if self._stack:
            self._state = _AFTER_VALUE
        else:
            self._state = _DONE
            self.done = True

    def _comma(self) -> None:
        if not self._first:
            self.out.append(", ")

    def _after_value(self, char: str) -> None:
        top = self._stack[-1]
        if char == ",":
            self._state = _AFTER_COMMA[top]
            return
        if char in "}])":
            self._close(char)
            return
        if char == ":" and top == "{":
            raise LiteralError("an object key must be followed by a value, not a second ':'")
        raise LiteralError(f"expected ',' or {_CLOSERS[top]!r}, found {char!r}")

    def _close(self, char: str) -> None:
        top = self._stack.pop()
        if _CLOSERS[top] != char:
            raise LiteralError(f"expected {_CLOSERS[top]!r}, found {char!r}")
        self.out.append("}" if top in ("{", "kwargs") else "]")
        self._value_done()

    def _element_separator(self) -> None:
        """Before a value inside a list: a comma unless it is the first element."""
        if self._stack and self._stack[-1] in ("[", "("):
            self._comma()

    # -- strings --------------------------------------------------------------------------
    def _start_string(self, quote: str) -> None:
        if not self._key_pending:
            self._element_separator()
        self.started = True
        self._quote = quote
        self.out.append('"')
        self._state = _STRING

    def _end_string(self) -> None:
        if self._key_pending:
            self._key_pending = False
            self._state = _COLON
        else:
            self._value_done()

    def _escape(self, char: str) -> None:
        self._state = _STRING
        if char in _SHARED_ESCAPES:
            self.out.append(_SHARED_ESCAPES[char])
        elif char in _PYTHON_ESCAPES:
            self.out.append(_PYTHON_ESCAPES[char])
        elif char in _HEX_ESCAPE_LENGTH:
            self._hex_kind = char
            self._hex_left = _HEX_ESCAPE_LENGTH[char]
            self._buffer = []
            self._state = _HEX_ESCAPE
        elif char in "01234567":
            # Python octal escape: the common case is \0; longer forms are rare, one digit read
            self.out.append(f"\\u{int(char, 8):04x}")
        else:
            # Python keeps the backslash of an unknown escape ("\d" is two characters)
            self.out.append("\\\\" + _json_char(char))

    def _hex_digit(self, char: str) -> None:
        if char not in "0123456789abcdefABCDEF":
            raise LiteralError(f"bad \\{self._hex_kind} escape in a string: {char!r} is not a hex digit")
        self._buffer.append(char)
        self._hex_left -= 1
        if self._hex_left:
            return
        digits = "".join(self._buffer)
        self._buffer = []
        self._state = _STRING
        if self._hex_kind == "u":
            self.out.append("\\u" + digits)  # kept as written: surrogate pairs stay intact
            return
        code = int(digits, 16)
        if code > 0x10FFFF:
            raise LiteralError(f"bad \\U escape: {digits} is beyond Unicode")
        self.out.append(_json_char(chr(code)))

    # -- numbers and words ----------------------------------------------------------------
    def _end_number(self) -> None:
        text = "".join(self._buffer)
        self._buffer = []
        if self._key_pending:  # a numeric Python dict key, written as a JSON string
            self._key_pending = False
            self.out.append(text + '"')
            self._state = _COLON
            return
        self._element_separator()
        if _JSON_NUMBER.match(text):
            self.out.append(text)
        else:
            self.out.append(_python_number(text))
        self._value_done()

    def _end_word(self) -> None:
        word = "".join(self._buffer)
        self._buffer = []
        if word not in _WORDS:
            raise LiteralError(f"{word!r} is not a literal (expected true/false/null or a quoted string)")
        self._element_separator()
        self.out.append(_WORDS[word])
        self._value_done()

    # -- keyword arguments ----------------------------------------------------------------
    def _kwarg_name(self, text: str, pos: int) -> int:
        """Reads ``name=`` (or the closing parenthesis); returns the position after it."""
        char = text[pos]
        if char == ")" and not self._buffer:
            self._close(char)
            return pos + 1
        end = len(text)
        while pos < end and text[pos] in _IDENT_CHARS:
            self._buffer.append(text[pos])
            pos += 1
        while pos < end and text[pos] in _WHITESPACE:
            pos += 1
        if pos == end:
            return pos
        if text[pos] != "=" or not self._buffer:
            found = "".join(self._buffer) or text[pos]
            raise LiteralError(f"expected a keyword argument name=value, found {found!r}")
        name = "".join(self._buffer)
        if name[0].isdigit():
            raise LiteralError(f"{name!r} is not a keyword argument name")
        self._buffer = []
        self._comma()
        self.out.append(f'"{name}": ')
        self._state = _VALUE
        return pos + 1


def _python_number(text: str) -> str:
    """A Python numeric literal (``1_000``, ``0x1F``, ``.5``, ``+3``) written as JSON."""
    cleaned = text.replace("_", "")
    try:
        value: int | float = int(cleaned, 0)
    except ValueError:
        try:
            value = float(cleaned)
        except ValueError:
            raise LiteralError(f"{text!r} is not a number") from None
    if isinstance(value, int):
        return str(value)  # JSON numbers have no size limit (orjson's stop at 64 bits)
    if value != value or value in (float("inf"), float("-inf")):
        raise LiteralError(f"{text!r} has no JSON form")
    return orjson.dumps(value).decode()
