"""Test helpers: run a dialect's parser over text cut into chunks, make token-like cuts, and check
that a response folds the same however it is cut.

The family tests (``test_family_*.py``) hold only their cases and what is particular to a family;
the checks every family repeats are here: one raw output folds into the same response whole, at
every 2-chunk split, in random token chunkings and one character at a time (``assert_parses``);
long arguments stream (``assert_arguments_stream``); what the dialect writes for calls reads back as
those calls, and its prefills start it (``assert_written_calls_parse_back``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import pairwise
from typing import Any

from toolcall_proxy.dialects import Dialect, get_dialect
from toolcall_proxy.parsing import ArgumentsDelta, CallEnded, Event, ParseResult, fold

__all__ = [
    "RANDOM_CHUNKINGS",
    "argument_deltas_char_by_char",
    "assert_arguments_stream",
    "assert_parses",
    "assert_same_however_chunked",
    "assert_written_calls_parse_back",
    "calls_of",
    "chunks",
    "events_in_chunks",
    "every_two_chunk_cut",
    "parse_in_chunks",
    "token_cuts",
]

# The offered tools: names, or names -> parameter schemas (which type the raw-text values of
# Qwen3-Coder and GLM-4.5).
ToolNames = Collection[str] | Mapping[str, Mapping[str, Any]] | None

RANDOM_CHUNKINGS = 20


def chunks(text: str, cuts: Sequence[int]) -> list[str]:
    """The pieces of ``text`` between ``cuts``."""
    return [text[start:end] for start, end in pairwise([0, *cuts, len(text)])]


def events_in_chunks(
    dialect: Dialect | str,
    raw: str,
    cuts: Sequence[int] = (),
    tool_names: ToolNames = None,
    *,
    prompt: str = "",
) -> list[Event]:
    """All events of parsing ``raw`` fed as the pieces between ``cuts`` (indices into ``raw``), then finished.

    ``prompt`` is the end of the prompt: one that opens a reasoning block starts the output in it.
    """
    if isinstance(dialect, str):
        dialect = get_dialect(dialect)
    parser = dialect.parser(tool_names, prompt=prompt)
    events: list[Event] = []
    for chunk in chunks(raw, cuts):
        events += parser.feed(chunk)
    events += parser.finish()
    return events


def parse_in_chunks(
    dialect: Dialect | str,
    raw: str,
    cuts: Sequence[int] = (),
    tool_names: ToolNames = None,
    *,
    prompt: str = "",
) -> ParseResult:
    """The response ``raw`` folds into when it arrives as the pieces between ``cuts``."""
    return fold(events_in_chunks(dialect, raw, cuts, tool_names, prompt=prompt))


def every_two_chunk_cut(text: str) -> list[list[int]]:
    """One cut at each inner character boundary: every way to split ``text`` in two non-empty chunks."""
    return [[cut] for cut in range(1, len(text))]


def token_cuts(text: str, rng: random.Random, *, max_piece: int = 8) -> list[int]:
    """Cuts that split ``text`` into pieces of 1 to ``max_piece`` characters, like detokenized tokens."""
    cuts: list[int] = []
    position = rng.randint(1, max_piece)
    while position < len(text):
        cuts.append(position)
        position += rng.randint(1, max_piece)
    return cuts


def assert_same_however_chunked(parse: Callable[[list[int]], ParseResult], raw: str, seed: object) -> ParseResult:
    """``parse(cuts)`` of ``raw`` is the same response at every 2-chunk split, in ``RANDOM_CHUNKINGS``
    random token-like chunkings (drawn from ``seed``) and one character at a time as it is whole.
    Returns the whole response."""
    whole = parse([])
    for cuts in every_two_chunk_cut(raw):
        assert parse(cuts) == whole, f"split at {cuts[0]}: {chunks(raw, cuts)}"
    rng = random.Random(seed)
    for _ in range(RANDOM_CHUNKINGS):
        cuts = token_cuts(raw, rng)
        assert parse(cuts) == whole, f"chunks: {chunks(raw, cuts)}"
    assert parse(list(range(1, len(raw)))) == whole, "one character at a time"
    return whole


def calls_of(result: ParseResult) -> list[tuple[str, Any]]:
    """The calls of a response as (name, decoded arguments)."""
    return [(call.name, json.loads(call.arguments)) for call in result.calls]


def assert_parses(
    dialect: str,
    raw: str,
    content: str | None,
    calls: list[tuple[str, Any]],
    tool_names: ToolNames = None,
    *,
    failed: int = 0,
) -> ParseResult:
    """``raw`` folds into ``content`` and ``calls`` (with ``failed`` failed calls) whole, at every
    2-chunk split, in random token-like chunkings, and one character at a time. Returns the response."""
    whole = parse_in_chunks(dialect, raw, [], tool_names)
    assert (whole.content, calls_of(whole)) == (content, calls)
    assert len(whole.failures) == failed, whole.failures
    assert_same_however_chunked(lambda cuts: parse_in_chunks(dialect, raw, cuts, tool_names), raw, seed=raw)
    return whole


def argument_deltas_char_by_char(dialect: str, raw: str, tool_names: ToolNames = None) -> list[str]:
    """The argument fragments of call 0 when ``raw`` arrives one character per chunk; asserts the
    call ended without error."""
    events = events_in_chunks(dialect, raw, range(1, len(raw)), tool_names)
    ended = [event for event in events if isinstance(event, CallEnded) and event.index == 0]
    assert ended and ended[0].error is None, ended
    return [event.text for event in events if isinstance(event, ArgumentsDelta) and event.index == 0 and event.text]


def assert_arguments_stream(dialect: str, raw: str, arguments: Any, tool_names: ToolNames = None) -> None:
    """Arriving one character at a time, the long arguments of call 0 in ``raw`` are given out as they
    come, in more than 100 fragments that join into ``arguments``."""
    deltas = argument_deltas_char_by_char(dialect, raw, tool_names)

    assert len(deltas) > 100
    assert json.loads("".join(deltas)) == arguments


def assert_written_calls_parse_back(
    dialect: Dialect | str, calls: list[tuple[str, Any]], tool_names: ToolNames, *, prefill_ends_at_arguments: bool
) -> str:
    """What the dialect writes for ``calls`` (the history of earlier turns, a forced call) parses back
    into those calls and no text, and starts with both the named prefill of its first call and the
    unnamed one. Returns what it wrote.

    ``prefill_ends_at_arguments``: what the dialect must say of its named prefill. Where it ends where
    the arguments begin, guided decoding writes only the arguments after it: the prefill for
    get_weather and ``{"city": "Paris"}`` must be that one call, its arguments as written.
    """
    if isinstance(dialect, str):
        dialect = get_dialect(dialect)
    raw = dialect.write_calls(calls)

    result = parse_in_chunks(dialect, raw, tool_names=tool_names)
    assert (result.content, calls_of(result)) == (None, calls)
    assert raw.startswith(dialect.prefill(calls[0][0]))
    assert raw.startswith(dialect.prefill(None))
    assert dialect.prefill_ends_at_arguments == prefill_ends_at_arguments
    if prefill_ends_at_arguments:
        guided = parse_in_chunks(dialect, dialect.prefill("get_weather") + '{"city": "Paris"}', tool_names=tool_names)
        assert [(call.name, call.arguments) for call in guided.calls] == [("get_weather", '{"city": "Paris"}')]
    return raw
