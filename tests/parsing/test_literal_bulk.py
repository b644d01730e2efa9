"""LiteralTranscoder's fast lane (whole tokens read in one match) changes nothing but the speed.

The reference is the character-by-character path: the same text fed one character at a time, where
no token is ever whole in a chunk. Fed whole, in random pieces, or as a growing buffer read from a
position (as the call parser does), the transcoder must write the same JSON, be ``started`` and
``done`` at the same points, and fail with the same message at the same character.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest

from toolcall_proxy.parsing.literal import LiteralError, LiteralTranscoder

_WHITESPACE = " \t\r\n"


# -- running the transcoder ---------------------------------------------------------------------


@dataclass
class Run:
    """What a transcoder did with one text."""

    output: str = ""
    error: tuple[str, int] | None = None  # the message, and the offending character's index in the text
    finish_error: str | None = None
    stop: int | None = None  # where it stopped reading, once done (trailing whitespace left out)
    started: bool = False
    # after each piece: how much was fed, and the output, ``done`` and ``started`` by then
    steps: list[tuple[int, str, bool, bool]] = field(default_factory=list)


def run(text: str, cuts: list[int], *, kwargs: bool = False, as_buffer: bool = False) -> Run:
    """Feeds the pieces of ``text`` between ``cuts`` until done or failed, then finishes.

    ``as_buffer`` feeds ``text[:end]`` from where the previous piece ended, instead of each piece alone.
    """
    transcoder = LiteralTranscoder(kwargs=kwargs)
    result = Run()
    output: list[str] = []
    bounds = [0, *cuts, len(text)]
    for start, end in pairwise(bounds):
        try:
            stop = transcoder.feed(text[:end], start) if as_buffer else start + transcoder.feed(text[start:end])
        except LiteralError as error:
            output.append(transcoder.drain())
            result.error = (str(error), error.position if as_buffer else start + error.position)
            break
        output.append(transcoder.drain())
        result.steps.append((end, "".join(output), transcoder.done, transcoder.started))
        if transcoder.done:
            # Right after a container, or (the whitespace after a scalar is read while it is at
            # hand) anywhere in the whitespace that follows: the same place for the caller.
            result.stop = len(text[:stop].rstrip(_WHITESPACE))
            break
    else:
        if not transcoder.done:
            try:
                transcoder.finish()
            except LiteralError as error:
                result.finish_error = str(error)
        output.append(transcoder.drain())
    result.output = "".join(output)
    result.started = transcoder.started
    return result


def assert_same_as_one_char_at_a_time(text: str, chunkings: list[list[int]], *, kwargs: bool = False) -> None:
    reference = run(text, list(range(1, len(text))), kwargs=kwargs)
    # what the reference had written, was done and started, after each character
    by_length = {fed: (out, done, started) for fed, out, done, started in reference.steps}
    for cuts in chunkings:
        for as_buffer in (False, True):
            result = run(text, cuts, kwargs=kwargs, as_buffer=as_buffer)
            where = f"text {text!r}, cuts {cuts}, as_buffer={as_buffer}"
            assert (result.output, result.error, result.finish_error, result.stop, result.started) == (
                reference.output,
                reference.error,
                reference.finish_error,
                reference.stop,
                reference.started,
            ), where
            for fed, out, done, started in result.steps:
                if fed in by_length:  # the reference read that far (it stops when done)
                    assert (out, done, started) == by_length[fed], f"after {fed} characters: {where}"


def chunkings_for(text: str, rng: random.Random) -> list[list[int]]:
    """Whole, in a few random cuttings (some token-sized), and every cut in two for short texts."""
    inner = range(1, len(text))
    chunkings: list[list[int]] = [[]]
    for _ in range(3):
        chunkings.append(sorted(rng.sample(inner, min(len(inner), rng.randint(1, 6)))))
    position, token_cuts = rng.randint(1, 6), []
    while position < len(text):
        token_cuts.append(position)
        position += rng.randint(1, 6)
    chunkings.append(token_cuts)
    if len(text) <= 30:
        chunkings.extend([cut] for cut in inner)
    return chunkings


# -- random literals ------------------------------------------------------------------------------

_STRING_PIECES = [
    *"abc xyz019", "'", '"', "\\", "/", "{", "}", "[", "]", ":", ",", "\n", "\t", "\r", "\x00", "\x1f", "\x7f",
    "é", "世界", "🌍", "\u2028", "\\n", "\\u00e9", "\\x41", "true", "12", "-", "e", "</tool_call>",
]  # fmt: skip
_NUMBERS = [
    "0", "-0", "7", "-12", "3.25", "1e5", "1E+5", "-2.5e-3", "0.0", "123456789012345678901234567890",
    "1_000", "0x1F", "0o17", "0b101", ".5", "1.", "+3", "1_000.5", "-.5e3",  # Python-only
    "01", "1.5e", "1x", "--1", "1ee", "12a", "0xg", "1e999", "٣", "1٣",  # not numbers
]  # fmt: skip
_WORDS = ["true", "false", "null", "True", "False", "None"]
_NOT_WORDS = ["trueish", "nul", "nan", "inf", "truex", "True_", "t", "NoneType", "foo", "nullx"]
_SPACES = ["", "", "", " ", "  ", "\n", "\t", "\r\n  ", "\f", "\u00a0"]
_TAILS = ["", "", " ", "  </tool_call>", "\n```", ", 1", "x", "}", "\n", "  "]
_GARBAGE: list[str] = [*_STRING_PIECES, *_NUMBERS, *_WORDS, *_NOT_WORDS, *" ,:{}[]()'\"=", "\\"]


def random_string(rng: random.Random) -> str:
    return "".join(rng.choice(_STRING_PIECES) for _ in range(rng.randint(0, 8)))


def string_literal(rng: random.Random) -> str:
    text = random_string(rng)
    kind = rng.random()
    if kind < 0.5:
        return json.dumps(text, ensure_ascii=rng.random() < 0.5)
    if kind < 0.8:
        return repr(text)
    quote = rng.choice("\"'")
    return quote + text.replace("\\", "") + quote  # raw quotes and control characters: may be invalid


def scalar_literal(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:
        return string_literal(rng)
    if kind < 0.5:
        return rng.choice(_NUMBERS)
    if kind < 0.7:
        number = rng.choice([rng.randint(-(10**6), 10**6), rng.uniform(-1e3, 1e3), rng.uniform(-1, 1) * 1e30])
        return json.dumps(number)
    return rng.choice(_NOT_WORDS if rng.random() < 0.1 else _WORDS)


def key_literal(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.6:
        return json.dumps(random_string(rng))
    if kind < 0.85:
        return repr(random_string(rng))
    return rng.choice(_NUMBERS[:8])  # Python allows {1: 'a'}


def spaces(rng: random.Random) -> str:
    return rng.choice(_SPACES) if rng.random() < 0.4 else rng.choice(["", " "])


def literal(rng: random.Random, depth: int = 0) -> str:
    """A JSON or Python literal as a model might write it: odd spacing, tuples, trailing commas, slips."""
    if depth >= 4 or rng.random() < 0.4:
        return scalar_literal(rng)
    count = rng.randint(0, 4)
    trailing = "," if count and rng.random() < 0.2 else ""
    if rng.random() < 0.5:
        members = []
        for _ in range(count):
            key = key_literal(rng)
            colon = ":" if rng.random() < 0.95 else rng.choice(["", "::", "="])
            members.append(f"{spaces(rng)}{key}{spaces(rng)}{colon}{spaces(rng)}{literal(rng, depth + 1)}{spaces(rng)}")
        comma = "," if rng.random() < 0.95 else rng.choice([",,", ""])
        return "{" + comma.join(members) + trailing + spaces(rng) + "}"
    opening, closing = rng.choice([("[", "]"), ("[", "]"), ("(", ")")])
    if rng.random() < 0.05:
        closing = rng.choice("])}")
    elements = [f"{spaces(rng)}{literal(rng, depth + 1)}{spaces(rng)}" for _ in range(count)]
    return opening + ",".join(elements) + trailing + spaces(rng) + closing


def json_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(["dict", "list"] if depth == 0 else ["dict", "list", "scalar"] if depth < 4 else ["scalar"])
    if kind == "list":
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "dict":
        return {random_string(rng): json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    kind = rng.choice(["string", "number", "constant"])
    if kind == "string":
        return random_string(rng)
    if kind == "number":
        return rng.choice([rng.randint(-(10**6), 10**6), rng.uniform(-1e3, 1e3), rng.uniform(-1, 1) * 1e300, 10**25])
    return rng.choice([True, False, None])


_SERIALIZATIONS: list[Callable[[Any, random.Random], str]] = [
    lambda value, rng: json.dumps(value),
    lambda value, rng: json.dumps(value, ensure_ascii=False),
    lambda value, rng: json.dumps(value, indent=rng.choice([" ", "  ", "\t"])),
    lambda value, rng: json.dumps(value, separators=(",", ":"), ensure_ascii=False),
    lambda value, rng: repr(value),
]


def damaged(text: str, rng: random.Random) -> str:
    """``text`` cut short, or with a character dropped or something inserted."""
    where = rng.randrange(len(text) + 1)
    kind = rng.random()
    if kind < 0.4:
        return text[:where]
    if kind < 0.7:
        return text[:where] + text[where + 1 :]
    return text[:where] + rng.choice(_GARBAGE) + text[where:]


def random_text(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.35:
        text = rng.choice(_SERIALIZATIONS)(json_value(rng), rng)
    elif kind < 0.85:
        text = literal(rng)
    else:
        text = spaces(rng) + scalar_literal(rng)  # a value on its own
    if text and rng.random() < 0.3:
        text = damaged(text, rng)
    return text + rng.choice(_TAILS)


def random_keyword_arguments(rng: random.Random) -> str:
    """``a=1, b='x')`` with well-formed names: the fast lane is for values, and a bad name is
    reported where the piece holding it starts (the name reader's own business)."""
    names = [rng.choice(["a", "b", "x_1", "location", "_"]) for _ in range(rng.randint(0, 3))]
    around = ["", "", " ", "  ", "\n"]
    text = ",".join(
        f"{rng.choice(around)}{name}{rng.choice(around)}={spaces(rng)}{literal(rng, 1)}{spaces(rng)}" for name in names
    )
    text += rng.choice([")", ")", ",)", " )", ""])
    return text + rng.choice(_TAILS)


# -- the checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_literals_read_in_bulk_as_one_character_at_a_time(seed: int) -> None:
    rng = random.Random(f"literal-bulk-{seed}")
    for _ in range(150):
        text = random_text(rng)
        assert_same_as_one_char_at_a_time(text, chunkings_for(text, rng))


@pytest.mark.parametrize("seed", range(4))
def test_keyword_arguments_read_in_bulk_as_one_character_at_a_time(seed: int) -> None:
    rng = random.Random(f"kwargs-bulk-{seed}")
    for _ in range(100):
        text = random_keyword_arguments(rng)
        assert_same_as_one_char_at_a_time(text, chunkings_for(text, rng), kwargs=True)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"location": "San Francisco, CA", "unit": "celsius", "n": [1, -2.5e-3, true, null]}', id="json"),
        pytest.param('{"a":1,"b":"x","c":false}', id="compact"),
        pytest.param('{\n  "a": [\n    1,\n    "x"\n  ]\n}', id="indented"),
        pytest.param('{"a": "line\\nbreak \\"q\\" \\u00e9", "b\\tkey": 1}', id="escapes-in-value-and-key"),
        pytest.param('{"a": 1_000, "b": 0x1F, "c": .5, "d": +3, "e": 1.}', id="python-numbers"),
        pytest.param("{'a': 'b', \"c\": 'd\"e', 1: True, 2.5: None}", id="python-dict"),
        pytest.param('{"a": trueish}', id="word-that-goes-on"),
        pytest.param('{"a": true1}', id="word-then-digit"),
        pytest.param('{"a": 12a}', id="number-then-letter"),
        pytest.param('{"a": 01}', id="leading-zero"),
        pytest.param('{"a": "x" "b": 2}', id="missing-comma"),
        pytest.param('{"a" "b"}', id="missing-colon"),
        pytest.param('{"a":: 1}', id="double-colon"),
        pytest.param('{"a": 1,, "b": 2}', id="double-comma"),
        pytest.param('{"a": 1,}', id="trailing-comma"),
        pytest.param('["x", 1, true,]', id="trailing-comma-list"),
        pytest.param('{"a": "raw\tcontrol"}', id="raw-control-in-string"),
        pytest.param('{"a":\f1}', id="form-feed-is-not-whitespace"),
        pytest.param('{"a": 1\u00a0}', id="nbsp-is-not-whitespace"),
        pytest.param('{"a": 1٣}', id="non-ascii-digit"),
        pytest.param('"top" , "level"', id="top-level-string-then-comma"),
        pytest.param("12 , 3", id="top-level-number-then-comma"),
        pytest.param("true  </tool_call>", id="top-level-word-then-text"),
        pytest.param('{"a": 1}  </tool_call>', id="object-then-text"),
        pytest.param('["a", "b\\', id="cut-in-an-escape"),
        pytest.param('{"a": 1', id="unclosed"),
    ],
)
def test_edge_cases_read_in_bulk_as_one_character_at_a_time(text: str) -> None:
    rng = random.Random(text)
    assert_same_as_one_char_at_a_time(text, chunkings_for(text, rng))


def test_a_large_object_read_in_bulk_as_one_character_at_a_time() -> None:
    rng = random.Random("large")
    items = [
        {"id": i, "name": f"item {i}", "price": i * 1.25, "tags": ["a", "b\n"], "ok": i % 2 == 0} for i in range(40)
    ]
    for text in (json.dumps({"items": items}), json.dumps({"items": items}, indent=2), repr({"items": items})):
        assert_same_as_one_char_at_a_time(text, [[], *(sorted(rng.sample(range(1, len(text)), 20)) for _ in range(3))])
