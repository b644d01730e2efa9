"""Prompts as the model's own token ids, for families whose engine cannot get them from text.

ChatGLM3's tokenizer keeps its control tokens (``[gMASK]``, ``sop``, ``<|user|>``, ...) outside
the sentencepiece vocabulary, right after it, and its reference code (``build_chat_input``)
builds a prompt as ids: each control token's id, and each piece of text encoded by raw
sentencepiece on its own, so every span starts with its own ``▁``. No text reaches the same ids
through vLLM's tokenizer (role markers are spelled out, the prefix is doubled, span starts lose
their ``▁``), so for such a family the proxy builds the ids itself and reads the output's ids
back the same way.

A dialect states the layout as data (``TokenLayout``); its chat template writes each control
token through ``control(...)``, which renders as the token's text for vLLM and as an unforgeable
marker here, so text from a request can never become a control token.
"""

from __future__ import annotations

import io
import json
import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sentencepiece

from .caching import BoundedCache

__all__ = [
    "ControlMarkers",
    "OutputDecoder",
    "PromptTokenizer",
    "TokenLayout",
    "TokenizerError",
]


class TokenizerError(ValueError):
    """The tokenizer files are missing, unreadable, or not this model family's."""


@dataclass(frozen=True, slots=True)
class TokenLayout:
    """How a family's reference code turns a conversation into ids.

    ``control_tokens`` take the ids right after the sentencepiece vocabulary, in this order.
    ``stop_tokens`` end the model's turn: control tokens, or ``"</s>"`` for sentencepiece's eos.
    With ``metadata_line``, the text after a role token is two spans: its first line (with the
    newline) and the rest, each encoded on its own, as ``build_single_message`` does.
    """

    control_tokens: tuple[str, ...]
    role_tokens: tuple[str, ...]
    stop_tokens: tuple[str, ...]
    metadata_line: bool
    tokenizer_class: str  # what the model's tokenizer_config.json names, to catch a wrong directory
    files: tuple[str, ...] = ("tokenizer.model",)


class ControlMarkers:
    """What ``control(token)`` renders as in a template, for one prompt: an unguessable marker.

    A new random key per prompt means no text a client sends can contain a marker, so only the
    template's own ``control(...)`` calls become control ids.
    """

    __slots__ = ("_opening",)

    def __init__(self) -> None:
        self._opening = "\x00" + secrets.token_hex(12) + "\x00"

    def __call__(self, token: str) -> str:
        return f"{self._opening}{token}\x00"

    def split(self, text: str) -> list[str]:
        """Text, control token, text, control token, ..., text (odd places are control tokens)."""
        first, *marked = text.split(self._opening)
        parts = [first]
        for piece in marked:
            token, _, rest = piece.partition("\x00")  # the NUL control() wrote after the name
            parts += (token, rest)
        return parts


_CACHED_SPAN = 64  # characters: shorter spans cost less to encode than to look up


class PromptTokenizer:
    """Raw sentencepiece plus the layout's control ids: prompts in, output text out."""

    def __init__(
        self, model: sentencepiece.SentencePieceProcessor, layout: TokenLayout, source: str, *, demo: bool = False
    ) -> None:
        self.layout = layout
        self.source = source  # where the files came from, for messages
        self.demo = demo  # train_demo_tokenizer's, not a model's
        self._sp = model
        base = model.vocab_size()
        self.control_ids = {token: base + index for index, token in enumerate(layout.control_tokens)}
        self.control_tokens = {index: token for token, index in self.control_ids.items()}
        self._role_ids = frozenset(self.control_ids[token] for token in layout.role_tokens)
        self.stop_ids = tuple(
            model.eos_id() if token == "</s>" else self.control_ids[token] for token in layout.stop_tokens
        )
        self._eos = model.eos_id()
        self._spans: BoundedCache[tuple[int, ...]] = BoundedCache("prompt_spans", max_entries=4096, max_bytes=16 << 20)
        self._newline_ids = frozenset(
            index for index in range(base) if "\n" in model.id_to_piece(index) or model.id_to_piece(index) == "<0x0A>"
        )

    @classmethod
    def load(cls, directory: str | Path, layout: TokenLayout) -> PromptTokenizer:
        """Loads ``directory``'s sentencepiece model, checked against the family's layout."""
        folder = Path(directory)
        missing = [name for name in layout.files if not (folder / name).is_file()]
        if missing:
            raise TokenizerError(f"{folder} has no {', '.join(missing)}")
        config = folder / "tokenizer_config.json"
        settings = _json(config) if config.is_file() else {}
        if settings:
            declared = settings.get("tokenizer_class")
            if declared and declared != layout.tokenizer_class:
                raise TokenizerError(
                    f"{config} names tokenizer {declared!r}, not {layout.tokenizer_class!r}: "
                    "point the proxy at this model family's tokenizer"
                )
        try:
            model = sentencepiece.SentencePieceProcessor(model_file=str(folder / layout.files[0]))
        except (OSError, RuntimeError) as error:
            raise TokenizerError(f"{folder / layout.files[0]} is not a sentencepiece model: {error}") from None
        tokenizer = cls(model, layout, str(folder), demo=bool(settings.get(_DEMO_MARK)))
        model_config = folder / "config.json"
        if model_config.is_file():
            model_settings = _json(model_config)
            size = model_settings.get("padded_vocab_size") or model_settings.get("vocab_size")
            if isinstance(size, int) and max(tokenizer.control_tokens) >= size:
                raise TokenizerError(
                    f"{folder}: the control ids reach {max(tokenizer.control_tokens)}, past the model's "
                    f"{size} embeddings in config.json: this tokenizer is not the model's"
                )
        return tokenizer

    # -- prompts ------------------------------------------------------------------------------
    def encode_span(self, text: str) -> list[int]:
        if len(text) < _CACHED_SPAN:
            return list(self._sp.encode(text)) if text else []
        # The long spans (the tools' JSON, a system prompt, earlier turns) come back with every
        # request of a conversation, and encoding costs ~0.2 us a character.
        return list(self._spans.get(text, lambda: tuple(self._sp.encode(text)), 8 * len(text)))

    def prompt_ids(self, parts: Sequence[str]) -> list[int]:
        """The ids of a prompt split by ``ControlMarkers.split``: control ids for the control
        tokens, each text span encoded on its own."""
        ids: list[int] = []
        after_role = False
        for index, part in enumerate(parts):
            if index % 2:
                control = self.control_ids.get(part)
                if control is None:
                    raise TokenizerError(f"the template wrote control({part!r}), which this family has not")
                ids.append(control)
                after_role = control in self._role_ids
                continue
            if after_role and self.layout.metadata_line and "\n" in part:
                head, _, rest = part.partition("\n")
                ids += self.encode_span(head + "\n")
                ids += self.encode_span(rest)
            else:
                ids += self.encode_span(part)
        return ids

    def decoder(self, prompt_ids: Sequence[int]) -> OutputDecoder:
        """A decoder for the output that continues ``prompt_ids`` (which may end in a prefill)."""
        return OutputDecoder(self, prompt_ids)

    # -- output -------------------------------------------------------------------------------
    def ends_span(self, token: int) -> bool:
        """A control id, or sentencepiece's eos (which decodes as nothing)."""
        return token in self.control_tokens or token == self._eos

    def is_newline(self, token: int) -> bool:
        return token in self._newline_ids

    def is_role(self, token: int) -> bool:
        return token in self._role_ids

    def decode_span(self, ids: Sequence[int]) -> str:
        return str(self._sp.decode(list(ids)))

    @property
    def eos_id(self) -> int:
        return self._eos

    def piece(self, token: int) -> str:
        """A sentencepiece id's piece as the model's tokenizer names it (``▁hello``, ``<0x0A>``);
        sentencepiece's own <unk>, <s> and </s> are "", as ``convert_id_to_token`` gives them."""
        if self._sp.is_control(token) or self._sp.is_unknown(token):
            return ""
        return str(self._sp.id_to_piece(token))

    def decode_pieces(self, pieces: Sequence[str]) -> str:
        """Pieces to text, as ``convert_tokens_to_string`` does (a leading "▁" is no space)."""
        return str(self._sp.decode_pieces(list(pieces)))

    def text(self, ids: Iterable[int]) -> str:
        """The ids as the official ``tokenizer.decode`` reads them, control tokens as their text."""
        decoder = OutputDecoder(self, ())
        return decoder.feed(ids) + decoder.flush()


class OutputDecoder:
    """Output ids to text, incrementally: control ids as their marker text, text spans decoded as
    the reference code encodes them (a span starts after each control id and, after a role token,
    again after the first newline), bytes of a character split across ids held until whole."""

    __slots__ = ("_in_metadata", "_prefix", "_read", "_span", "_tokenizer")

    def __init__(self, tokenizer: PromptTokenizer, prompt_ids: Sequence[int]) -> None:
        self._tokenizer = tokenizer
        # The output continues the prompt's last span when the prompt ends in a prefill: that
        # span is the context the first output ids are decoded in (a span's first "▁" is no space).
        last = max((i for i, token in enumerate(prompt_ids) if tokenizer.ends_span(token)), default=-1)
        self._in_metadata = last < 0 or tokenizer.is_role(prompt_ids[last])
        tail = list(prompt_ids[last + 1 :])
        if self._in_metadata and tokenizer.layout.metadata_line:
            newline = next((i for i, token in enumerate(tail) if tokenizer.is_newline(token)), None)
            if newline is not None:
                tail, self._in_metadata = tail[newline + 1 :], False
        self._span = tail
        self._read = len(tail)
        self._prefix = max(0, self._read - _CONTEXT)

    def feed(self, ids: Iterable[int]) -> str:
        out = [self._step(token) for token in ids]
        return "".join(out)

    def flush(self) -> str:
        """What is held back (an incomplete character) when the output ends."""
        return self._take(final=True)

    def _step(self, token: int) -> str:
        tokenizer = self._tokenizer
        if tokenizer.ends_span(token):
            held = self._take(final=True)
            self._span, self._prefix, self._read = [], 0, 0
            self._in_metadata = tokenizer.is_role(token)
            return held + tokenizer.control_tokens.get(token, "")
        self._span.append(token)
        text = self._take(final=False)
        if self._in_metadata and tokenizer.layout.metadata_line and tokenizer.is_newline(token):
            text += self._take(final=True)
            self._span, self._prefix, self._read = [], 0, 0
            self._in_metadata = False
        return text

    def _take(self, *, final: bool) -> str:
        span, decode = self._span, self._tokenizer.decode_span
        if self._read >= len(span):
            return ""
        # Decoding a window and the same window less its new ids gives the new text: a window's
        # first "▁" is dropped in both, as sentencepiece drops it at a span's start.
        before = decode(span[self._prefix : self._read])
        after = decode(span[self._prefix :])
        if len(after) <= len(before) or (after.endswith("\ufffd") and not final):
            return ""
        self._prefix, self._read = self._read, len(span)
        return after[len(before) :]


_CONTEXT = 5  # ids decoded before the new ones, as vLLM's INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TokenizerError(f"{path} is not readable JSON: {error}") from None
    return value if isinstance(value, dict) else {}


# -- a small tokenizer with a family's layout, for the demo and tests ---------------------------

_DEMO_TEXT = (
    "the weather in what is like today tomorrow city country temperature degrees celsius fahrenheit "
    "sunny cloudy rain snow wind humidity forecast get current location unit answer question tool "
    "call function result name description parameters type object string number integer boolean "
    "array required properties enum you have access to following tools as best can a an of and or "
    "for with from this that it be are was were will would should please thank hello model assistant "
    "user system observation san francisco tokyo paris london new york berlin beijing search query "
    "time date price stock email send message book flight hotel restaurant weather_tool python json"
)


_DEMO_MARK = "toolmodel_demo_tokenizer"  # in its tokenizer_config.json


def train_demo_tokenizer(directory: str | Path, layout: TokenLayout, *, vocab_size: int = 800) -> Path:
    """Writes a small sentencepiece tokenizer with ``layout``'s control-id layout into ``directory``
    (``tokenizer.model``, ``tokenizer_config.json``), for runs that have no real one to download.

    Byte fallback makes every text encodable; the corpus is fixed, so the same files come out of
    every run. It walks the same code as the real tokenizer: only the ids differ.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    words = _DEMO_TEXT.split()
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 14))) for _ in range(2000)]
    lines += [
        "tool_call(location='Tokyo', unit=\"celsius\")",
        '{"name": "get_current_weather", "parameters": {"type": "object", "properties": {}}}',
        "```python\ntool_call(city='Paris')\n```",
        "What's the weather like in San Francisco, Tokyo, and Paris?",
    ] * 20
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",  # as the real one: "\n" and "\t" kept (NFKC makes them spaces)
        num_threads=1,
        minloglevel=2,
    )
    (folder / layout.files[0]).write_bytes(model.getvalue())
    config = {"tokenizer_class": layout.tokenizer_class, _DEMO_MARK: True}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder
