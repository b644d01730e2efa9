"""LiteralTranscoder: one JSON or Python literal (or a keyword-argument list) in, JSON out, a chunk at a time."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from _fold import chunks, token_cuts

from toolcall_proxy.parsing.literal import LiteralError, LiteralTranscoder


def transcode(text: str, *, kwargs: bool = False, cuts: list[int] | None = None) -> str:
    """Feeds ``text`` (in the pieces between ``cuts``), finishes it, and returns all the JSON written."""
    transcoder = LiteralTranscoder(kwargs=kwargs)
    out = []
    for chunk in chunks(text, cuts or []):
        transcoder.feed(chunk)
        out.append(transcoder.drain())
    if not transcoder.done:
        transcoder.finish()
    out.append(transcoder.drain())
    return "".join(out)


def literal_error(text: str, *, kwargs: bool = False) -> LiteralError:
    with pytest.raises(LiteralError) as caught:
        transcode(text, kwargs=kwargs)
    return caught.value


# -- what it accepts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        pytest.param('{"a": [1, 2.5, "x"], "b": {"c": null}}', '{"a": [1, 2.5, "x"], "b": {"c": null}}', id="json"),
        pytest.param('{"a":1,"b":[true,false]}', '{"a": 1, "b": [true, false]}', id="json-compact-gets-spaces"),
        pytest.param('{\n  "a": [\n    1\n  ]\n}', '{"a": [1]}', id="json-indented"),
        pytest.param("{'city': 'Paris', 'n': 2}", '{"city": "Paris", "n": 2}', id="python-dict-quotes"),
        pytest.param("'say \"hi\"'", '"say \\"hi\\""', id="double-quote-inside-single-quoted"),
        pytest.param('"it\'s"', '"it\'s"', id="single-quote-inside-double-quoted"),
        pytest.param("[True, False, None]", "[true, false, null]", id="python-constants"),
        pytest.param("(1, 'a')", '[1, "a"]', id="tuple"),
        pytest.param("(1,)", "[1]", id="one-tuple"),
        pytest.param("()", "[]", id="empty-tuple"),
        pytest.param("[1, 2,]", "[1, 2]", id="trailing-comma-list"),
        pytest.param("{'a': 1,}", '{"a": 1}', id="trailing-comma-dict"),
        pytest.param(
            "{1: 'a', 2.5: 'b', -3: 'c'}", '{"1": "a", "2.5": "b", "-3": "c"}', id="numeric-keys-become-strings"
        ),
        pytest.param("{}", "{}", id="empty-dict"),
    ],
)
def test_json_and_python_literals(literal: str, expected: str) -> None:
    assert transcode(literal) == expected


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        pytest.param(r'"a\nb"', r'"a\nb"', id="newline"),
        pytest.param(r'"a\"b"', r'"a\"b"', id="double-quote"),
        pytest.param(r"'a\'b'", '"a\'b"', id="single-quote"),
        pytest.param(r'"\x41"', '"A"', id="x-escape"),
        pytest.param(r'"\u00e9"', r'"\u00e9"', id="u-escape-kept-as-written"),
        pytest.param(r'"\ud83d\ude00"', r'"\ud83d\ude00"', id="surrogate-pair-kept-as-written"),
        pytest.param(r'"\U0001F600"', '"😀"', id="U-escape"),
        pytest.param(r'"\x01"', r'"\u0001"', id="x-escape-control"),
        pytest.param(r'"\0"', r'"\u0000"', id="octal-zero"),
        pytest.param(r'"\a\v"', r'"\u0007\u000b"', id="python-bell-vtab"),
        pytest.param(r'"\/\\\b\f\r\t"', r'"/\\\b\f\r\t"', id="json-escapes"),
        pytest.param(r'"C:\dir\q"', r'"C:\\dir\\q"', id="unknown-escape-keeps-backslash"),
        pytest.param("'line\\\ncontinued'", '"linecontinued"', id="backslash-newline-is-nothing"),
        pytest.param('"a\tb\nc\x00d\x1fe"', r'"a\tb\nc\u0000d\u001fe"', id="raw-control-chars-escaped"),
        pytest.param('"世界 🌍"', '"世界 🌍"', id="non-ascii-passes-through"),
    ],
)
def test_string_escapes(literal: str, expected: str) -> None:
    assert transcode(literal) == expected
    assert json.loads(transcode(literal)) == json.loads(expected)


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("0", "0"),
        ("-12", "-12"),
        ("1.5e-3", "1.5e-3"),
        ("1_000", "1000"),
        ("0x1F", "31"),
        ("0o17", "15"),
        ("0b101", "5"),
        (".5", "0.5"),
        ("1.", "1.0"),
        ("+3", "3"),
        ("1_000.5", "1000.5"),
        ("0x1FFFFFFFFFFFFFFFFF", "590295810358705651711"),  # beyond 64 bits: JSON has no limit
    ],
)
def test_numbers(literal: str, expected: str) -> None:
    assert transcode(literal) == expected
    assert transcode(f"[{literal}]") == f"[{expected}]"


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", "NaN", "Infinity", "[1, nan]"])
def test_numbers_without_a_json_form_are_rejected(literal: str) -> None:
    literal_error(literal)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        pytest.param("a=1, b='x')", '{"a": 1, "b": "x"}', id="simple"),
        pytest.param(")", "{}", id="empty"),
        pytest.param("a = [1, (2, 3)] , b=None)", '{"a": [1, [2, 3]], "b": null}', id="spaces-and-tuples"),
        pytest.param("a=1,)", '{"a": 1}', id="trailing-comma"),
        pytest.param("location=\"北京\", unit='celsius')", '{"location": "北京", "unit": "celsius"}', id="chatglm3"),
    ],
)
def test_keyword_arguments(arguments: str, expected: str) -> None:
    assert transcode(arguments, kwargs=True) == expected


def test_reading_stops_right_after_the_value() -> None:
    transcoder = LiteralTranscoder()
    text = '{"a": 1}  </tool_call>'
    assert transcoder.feed(text) == len('{"a": 1}')  # what follows is the caller's to read
    assert transcoder.done
    assert transcoder.drain() == '{"a": 1}'
    kwargs = LiteralTranscoder(kwargs=True)
    text = "a=1)\n```"
    assert kwargs.feed(text) == len("a=1)")
    assert kwargs.done


def test_a_top_level_number_or_word_needs_the_end_of_input_to_be_sure() -> None:
    transcoder = LiteralTranscoder()
    transcoder.feed("12")
    assert not transcoder.done and transcoder.drain() == ""  # "123" is still possible
    transcoder.finish()
    assert transcoder.drain() == "12"


# -- what it rejects, and where -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kwargs", "position"),
    [
        pytest.param('{"a" 1}', False, 5, id="missing-colon: at the 1"),
        pytest.param("[1 2]", False, 3, id="missing-comma: at the 2"),
        pytest.param('{"a": 1 "b": 2}', False, 8, id="missing-comma-in-object"),
        pytest.param("[foo, 1]", False, 4, id="bare-word: where it ends"),
        pytest.param("[1x]", False, 3, id="bad-number: where it ends"),
        pytest.param("[1,,2]", False, 3, id="double-comma"),
        pytest.param("{,}", False, 1, id="comma-instead-of-key"),
        pytest.param('"\\x4"', False, 4, id="short-hex-escape"),
        pytest.param("a=1, 2)", True, 5, id="positional-after-keyword"),
        pytest.param("1=2)", True, 0, id="positional-first"),
        pytest.param("a=1 b=2)", True, 4, id="kwargs-missing-comma"),
    ],
)
def test_errors_point_at_the_offending_character(text: str, kwargs: bool, position: int) -> None:
    assert literal_error(text, kwargs=kwargs).position == position


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("foo", id="bare-word"),
        pytest.param('"abc', id="unterminated-string"),
        pytest.param("[1, 2", id="unclosed-list"),
        pytest.param("a=1", id="unclosed-kwargs"),
    ],
)
def test_incomplete_or_unknown_values_fail_at_the_end(text: str) -> None:
    transcoder = LiteralTranscoder(kwargs=text.startswith("a="))
    transcoder.feed(text)
    with pytest.raises(LiteralError):
        transcoder.finish()


def test_the_error_position_does_not_depend_on_how_the_text_was_cut() -> None:
    text = '{"a": foo}'
    for cut in range(1, len(text)):
        transcoder = LiteralTranscoder()
        transcoder.feed(text[:cut])
        try:
            transcoder.feed(text[cut:])
        except LiteralError as error:
            assert cut + error.position == text.index("}"), f"cut at {cut}"
        else:
            pytest.fail(f"no error when cut at {cut}")


# -- property: any value, any serialization, any chunking -------------------------------------

_STRING_PIECES = [
    *"abcxyz ABC 019",
    "'", '"', "\\", "/", "{", "}", "[", "]", ":", ",", "\n", "\t", "\r", "\x00", "\x1f", "\x7f",
    "é", "世界", "🌍", "😀", "\u2028", "\ufeff", "</tool_call>", "\\n", "'''", "\\u00e9",
]  # fmt: skip


def random_string(rng: random.Random) -> str:
    return "".join(rng.choice(_STRING_PIECES) for _ in range(rng.randint(0, 12)))


def random_number(rng: random.Random) -> int | float:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randint(-1000, 1000)
    if kind == 1:
        return rng.randint(-(10**30), 10**30)
    if kind == 2:
        return rng.uniform(-1000, 1000)
    if kind == 3:
        return rng.uniform(-1, 1) * 10.0 ** rng.randint(-300, 300)
    return rng.choice([0, -0.0, 0.5, 1e-7, 1e16, 1.5e300])


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """Mostly containers near the top, only scalars from depth 4 down."""
    kind = rng.choice(["dict", "list"] if depth == 0 else ["dict", "list", "scalar"] if depth < 4 else ["scalar"])
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "dict":
        return {random_string(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    kind = rng.choice(["string", "string", "number", "constant"])
    if kind == "string":
        return random_string(rng)
    return random_number(rng) if kind == "number" else rng.choice([True, False, None])


def python_literal(value: Any, rng: random.Random) -> str:
    """Python source for ``value``, written as a model might: tuples, trailing commas, odd spacing."""
    space = rng.choice(["", " ", "\n  "])
    if isinstance(value, list):
        items = [python_literal(item, rng) for item in value]
        if rng.random() < 0.3:  # a tuple
            body = ", ".join(items) + ("," if len(items) == 1 or (items and rng.random() < 0.5) else "")
            return f"({space}{body}{space})"
        trailing = "," if items and rng.random() < 0.3 else ""
        return f"[{space}{', '.join(items)}{trailing}{space}]"
    if isinstance(value, dict):
        items = [f"{key!r}{space}:{space}{python_literal(item, rng)}" for key, item in value.items()]
        trailing = "," if items and rng.random() < 0.3 else ""
        return f"{{{space}{f',{space}'.join(items)}{trailing}{space}}}"
    return repr(value)


SERIALIZATIONS: dict[str, Callable[[Any, random.Random], str]] = {
    "json": lambda value, rng: json.dumps(value),
    "json-unicode": lambda value, rng: json.dumps(value, ensure_ascii=False),
    "json-indented": lambda value, rng: json.dumps(value, indent=2, ensure_ascii=rng.random() < 0.5),
    "json-compact": lambda value, rng: json.dumps(value, separators=(",", ":"), ensure_ascii=False),
    "python-repr": lambda value, rng: repr(value),
    "python-literal": python_literal,
}


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
@pytest.mark.parametrize("seed", range(30))
def test_any_value_round_trips_in_any_chunking(serialization: str, seed: int) -> None:
    rng = random.Random(f"{serialization}-{seed}")
    value = random_value(rng)
    text = SERIALIZATIONS[serialization](value, rng)

    whole = transcode(text)

    assert json.loads(whole) == value
    chunkings = [list(range(1, len(text))), *(token_cuts(text, rng) for _ in range(5))]
    for cuts in chunkings:
        assert transcode(text, cuts=cuts) == whole, f"chunks: {chunks(text, cuts)}"


@pytest.mark.parametrize("seed", range(20))
def test_any_keyword_arguments_round_trip_in_any_chunking(seed: int) -> None:
    rng = random.Random(f"kwargs-{seed}")
    names = {f"{rng.choice('abcxyz_')}{rng.choice(['', '1', 'name', '_2'])}" for _ in range(rng.randint(0, 4))}
    arguments = {name: random_value(rng) for name in names}
    text = ", ".join(f"{name}={python_literal(value, rng)}" for name, value in arguments.items()) + ")"

    whole = transcode(text, kwargs=True)

    assert json.loads(whole) == arguments
    for cuts in [list(range(1, len(text))), *(token_cuts(text, rng) for _ in range(5))]:
        assert transcode(text, kwargs=True, cuts=cuts) == whole, f"chunks: {chunks(text, cuts)}"
