"""The simulated model on token ids: what it reads in a prompt's ids, and the ids it writes.

A model trained on a token layout (ChatGLM3) knows the structure of a conversation only by its
control ids: ``[gMASK] sop`` once at the start, a role id before every turn. Its text spans are
just text: a user who writes "<|user|>" or "[gMASK]" in a message writes characters, not turns.
So the simulated model reads control ids as the markers the conversation reader
(``engine.read_conversation``) looks for, decodes the spans between them, and defuses
marker-like text inside a span (a word joiner after its first character) so the reader never
takes it for a marker. Ids a model was not trained on — no single prefix, role markers that
arrive spelled out as text — leave it confused: it answers with plain text and no call, and
``Answer.problems`` say exactly what was wrong.

What it writes is ``engine.generate``'s text, turned into ids the way the model writes them:
each control token written by ``generate`` (trusted output, never the request's text) as its id,
each text span encoded on its own as the layout says. ChatGLM3 ends a call with
``<|observation|>`` and an answer with ``<|user|>``; neither is eos, so unless the request stops
on them (``stop_token_ids``) the model goes on as a real one does — a made-up observation or
user turn and another assistant turn — until eos.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import engine
from .tokenization import VllmTokenizer

__all__ = ["CONFUSED_ANSWER", "WORD_JOINER", "Answer", "Reading", "TokenModel"]

WORD_JOINER = "\u2060"  # what defuses a marker in a span: "<|user|>" reads as "<\u2060|user|>"
CONFUSED_ANSWER = "I am not sure what you mean. Could you say it again?"

# What follows a turn-ending role token when nothing stops the model there.
_RUNAWAY = {
    "<|observation|>": '\n{"result": "made up by the model: no tool ran"}<|assistant|>\n'
    "The tool says: made up by the model: no tool ran.",
    "<|user|>": "\nThank you!<|assistant|>\nYou are welcome.",
}


@dataclass(frozen=True, slots=True)
class Reading:
    """A prompt's ids as the model understands them."""

    text: str  # control ids as their markers, spans decoded with marker-like text defused
    problems: tuple[str, ...]  # what in the ids the model was not trained on; empty when all is well


@dataclass(frozen=True, slots=True)
class Answer:
    ids: list[int]  # the generated ids, ending with eos
    calls: tuple[tuple[str, dict[str, Any]], ...]  # the calls among them (for guided modes)
    problems: tuple[str, ...]  # non-empty: the model was confused by the prompt's ids
    scripts: tuple[str, ...] = ()  # the text it writes, then the well-behaved one (sim.constrained)


class TokenModel:
    """One simulated model of a token-layout family (``dialect``), reading and writing ids."""

    def __init__(self, vllm: VllmTokenizer, dialect: str) -> None:
        self.vllm = vllm
        self.dialect = dialect
        tokenizer = self.tokenizer = vllm.tokenizer
        layout = tokenizer.layout
        # "sop" and "eop" are words too: the reader looks for none of them, generate writes none
        markers = sorted((t for t in layout.control_tokens if not t.isalnum()), key=len, reverse=True)
        self._defused = {marker: marker[0] + WORD_JOINER + marker[1:] for marker in markers}
        self._defused.setdefault("<|", "<" + WORD_JOINER + "|")  # any other family's <|marker|>
        self._markers = re.compile("(" + "|".join(map(re.escape, markers)) + ")")
        self._roles = [token for token in layout.role_tokens if token in tokenizer.control_ids]
        self._assistant = next((tokenizer.control_ids[t] for t in self._roles if "assistant" in t), None)
        self._prefix_text = "".join(tokenizer.control_tokens[i] for i in vllm.prefix)

    # -- reading ------------------------------------------------------------------------------
    def read(self, ids: Sequence[int]) -> Reading:
        tokenizer = self.tokenizer
        # the decoder starts as after the prefix: a span, not a metadata line
        decoder = tokenizer.decoder(self.vllm.prefix)
        spans: list[str] = []
        text: list[str] = []
        span: list[str] = []
        for token in ids:
            if not tokenizer.ends_span(token):
                span.append(decoder.feed((token,)))
                continue
            marker = tokenizer.control_tokens.get(token, "")
            out = decoder.feed((token,))
            span.append(out[: len(out) - len(marker)])
            spans.append("".join(span))
            text += [self._defuse(spans[-1]), marker]
            span = []
        span.append(decoder.flush())
        spans.append("".join(span))
        text.append(self._defuse(spans[-1]))
        return Reading("".join(text), tuple(self._problems(ids, spans)))

    def _defuse(self, span: str) -> str:
        for marker, defused in self._defused.items():
            span = span.replace(marker, defused)
        return span

    def _undefuse(self, span: str) -> str:
        for marker, defused in self._defused.items():
            span = span.replace(defused, marker)
        return span

    def _problems(self, ids: Sequence[int], spans: Sequence[str]) -> list[str]:
        problems: list[str] = []
        prefix = list(self.vllm.prefix)
        names = " ".join(self.tokenizer.control_tokens[i] for i in prefix)
        numbers = ", ".join(map(str, prefix))
        if prefix and list(ids[: len(prefix)]) != prefix:
            problems.append(f"prompt does not start with {names} (control ids {numbers})")
        elif prefix and list(ids[len(prefix) : 2 * len(prefix)]) == prefix:
            problems.append(f"prompt starts with {names} twice")
        elif prefix and len(spans) > len(prefix) and spans[len(prefix)].startswith(self._prefix_text):
            problems.append(f"prompt starts with {names} twice: as control ids {numbers}, then as text")
        # Spelled-out role markers are only content when the turns themselves are control ids:
        # a prompt whose last control id is not <|assistant|> got its turns as text.
        last_control = next((t for t in reversed(ids) if t in self.tokenizer.control_tokens), None)
        if last_control != self._assistant:
            for role in self._roles:
                index = self.tokenizer.control_ids[role]
                if index not in ids and any(role in span for span in spans):
                    problems.append(f"{role} reached the model as text, not as control id {index}")
        return problems

    # -- answering ----------------------------------------------------------------------------
    def answer(
        self, prompt_ids: Sequence[int], *, model: str, force: engine.Force = None, misbehave: Sequence[str] = ()
    ) -> Answer:
        """What the model generates after ``prompt_ids``, as ids."""
        reading = self.read(prompt_ids)
        if reading.problems:
            return Answer(self.plain(CONFUSED_ANSWER), (), reading.problems, (CONFUSED_ANSWER,))
        generation = engine.generate(reading.text, dialect=self.dialect, model=model, force=force, misbehave=misbehave)
        scripts = (generation.text, generation.intended)
        return Answer(self.write(generation.text, prompt_ids), generation.calls, (), scripts)

    def plain(self, text: str) -> list[int]:
        """Text as one span, then eos: a confused answer, or what guided decoding writes."""
        return [*self.tokenizer.encode_span(text), self.tokenizer.eos_id]

    def write(self, text: str, prompt_ids: Sequence[int]) -> list[int]:
        """``generate``'s text (which continues ``prompt_ids``) as the ids the model writes."""
        parts = self._markers.split(text)
        if len(parts) > 1 and parts[-1] == "" and parts[-2] in _RUNAWAY:
            parts = self._markers.split(text + _RUNAWAY[parts[-2]])
        parts = [part if index % 2 else self._undefuse(part) for index, part in enumerate(parts)]
        ids = self._first_span(parts[0], prompt_ids)
        if len(parts) > 1:
            ids += self.tokenizer.prompt_ids(["", *parts[1:]])
        return [*ids, self.tokenizer.eos_id]

    def _first_span(self, text: str, prompt_ids: Sequence[int]) -> list[int]:
        """The output's text up to its first control token: it continues the prompt's last span
        (a prefill), or starts one after the prompt's last control id; after a role id, the
        metadata line is a span of its own."""
        tokenizer = self.tokenizer
        last = max((i for i, token in enumerate(prompt_ids) if tokenizer.ends_span(token)), default=-1)
        tail = list(prompt_ids[last + 1 :])
        in_metadata = (
            tokenizer.layout.metadata_line
            and (last < 0 or tokenizer.is_role(prompt_ids[last]))
            and not any(tokenizer.is_newline(token) for token in tail)
        )
        if in_metadata and "\n" in text:
            head, _, rest = text.partition("\n")
            return self._continue(tail, head + "\n") + tokenizer.encode_span(rest)
        return self._continue(tail, text)

    def _continue(self, tail: Sequence[int], text: str) -> list[int]:
        """Ids that go on from the span ``tail`` so that the span reads as its text plus ``text``
        (no "▁" of a span's start where the span goes on)."""
        encode = self.tokenizer.encode_span
        if not tail or not text:
            return encode(text)
        whole = encode(self.tokenizer.decode_span(tail) + text)
        if whole[: len(tail)] == list(tail):
            return whole[len(tail) :]
        sentinel = encode("\n")
        after = encode("\n" + text)
        if after[: len(sentinel)] == sentinel:
            return after[len(sentinel) :]
        return encode(text)
