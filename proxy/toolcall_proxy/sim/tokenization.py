"""How vLLM tokenizes and detokenizes with a token-layout family's tokenizer (ChatGLM3), and where
it finds the tokenizer's files.

What vLLM (>= 0.10, transformers >= 4.47) does with ChatGLM3's tokenizer, as measured:

* **Text to ids.** The text is split at every occurrence of an *added token*'s text (longest first,
  anywhere, even inside a word: "philosophy" is "philo", ``sop``, "hy"), and each piece between
  them is encoded by raw sentencepiece on its own. ``add_special_tokens`` (the default of
  ``/v1/completions``; the chat path turns it off) puts the tokenizer's prefix, ``[gMASK] sop``,
  first. The added tokens are the ``added_tokens_decoder`` of ``tokenizer_config.json`` and then
  the special tokens the config names (``eos_token``, ``unk_token``, ...) that are no token yet,
  each registered at id ``len(tokenizer)``: the number of distinct token strings. ChatGLM's
  vocabulary spells <unk>, <s> and </s> all as "", so that count is the ids less two, and the
  2024 config's "</s>" lands on 64796 and "<unk>" on 64797, in place of ``<|assistant|>``. The
  2023-12 config names neither: nothing is added and every marker is spelled out.
* **Ids to text** (vLLM's incremental detokenizer): ids of the sentencepiece vocabulary are
  pieces, an added token's id is its text, any other id past the vocabulary is "". Runs of
  pieces are decoded by sentencepiece, added tokens joined to them with a space when
  ``spaces_between_special_tokens`` (the default); ``skip_special_tokens`` drops the config's
  special tokens. Each new id's text is what decoding a window of the last few ids adds.
* **Ending.** Generation ends at eos (unless ``ignore_eos``) or an id of ``stop_token_ids``
  (``stop_reason`` is that id), whose text is not in the output, at ``max_tokens`` ids, or at a
  stop string matched on the decoded text; a stream holds back what could still begin one.

Pure functions and classes: no request, no server.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .. import hub
from ..tokens import PromptTokenizer, TokenizerError, TokenLayout, train_demo_tokenizer
from .engine import Decoded

__all__ = [
    "Detokenizer",
    "OutputRules",
    "VllmTokenizer",
    "control_ids",
    "demo_tokenizer",
    "find_tokenizer",
    "locate_tokenizer",
    "publish_tokenizer",
]

log = logging.getLogger("toolcall_proxy.sim")

INCREMENTAL_OFFSET = 5  # vLLM's INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET
# transformers' SPECIAL_TOKENS_ATTRIBUTES, in the order it registers them
_SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


@dataclass(frozen=True, slots=True)
class OutputRules:
    """The request's fields that decide where the output ends and how its ids read as text."""

    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True


class VllmTokenizer:
    """The model's tokenizer as vLLM loads it: ``tokenizer`` knows the control ids (the model's
    own layout); the added tokens and the special tokens come from ``tokenizer_config.json``."""

    def __init__(self, tokenizer: PromptTokenizer, config: Mapping[str, Any], prefix: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.prefix = tuple(prefix)
        self.vocab_size = min(tokenizer.control_tokens)  # the sentencepiece pieces; control ids follow
        self.added = _added_tokens(tokenizer, self.vocab_size, config)  # id -> text
        self.encoder = {text: index for index, text in sorted(self.added.items())}
        self.special_texts = frozenset(_special_texts(config))
        self.special_ids = frozenset(self.encoder[text] for text in self.special_texts if text in self.encoder)
        self.max_token_id = max(max(tokenizer.control_tokens), *self.added, 0)
        self.length = max(self.max_token_id + 1, self.vocab_size)  # ids past it read as "" (vLLM)
        texts = sorted(self.encoder, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(map(re.escape, texts)) + ")") if texts else None

    @classmethod
    def load(cls, directory: str | Path, layout: TokenLayout, prefix: str) -> VllmTokenizer:
        """The tokenizer in ``directory``; ``prefix`` is the text of the control tokens
        ``add_special_tokens`` puts first (``Dialect.tokenizer_prefix``)."""
        tokenizer = PromptTokenizer.load(directory, layout)
        path = Path(directory) / "tokenizer_config.json"
        config: dict[str, Any] = {}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise TokenizerError(f"{path} is not readable JSON: {error}") from None
            config = loaded if isinstance(loaded, dict) else {}
        return cls(tokenizer, config, control_ids(tokenizer, prefix))

    # -- text to ids ----------------------------------------------------------------------------
    def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        """``tokenizer.encode(text, add_special_tokens=...)``: split at added tokens, each piece
        between them by raw sentencepiece."""
        ids = list(self.prefix) if add_special_tokens else []
        parts = self._split.split(text) if self._split is not None else [text]
        for index, part in enumerate(parts):
            if index % 2:
                ids.append(self.encoder[part])
            else:
                ids += self.tokenizer.encode_span(part)
        return ids

    # -- ids to text ----------------------------------------------------------------------------
    def token(self, token: int, *, skip_special_tokens: bool) -> str | None:
        """``convert_ids_to_tokens`` of one id; None when ``skip_special_tokens`` drops it."""
        if skip_special_tokens and token in self.special_ids:
            return None
        if token in self.added:
            return self.added[token]
        if 0 <= token < self.vocab_size:
            return self.tokenizer.piece(token)
        return ""

    def tokens_to_text(
        self, tokens: Sequence[str], *, skip_special_tokens: bool, spaces_between_special_tokens: bool
    ) -> str:
        """vLLM's ``_convert_tokens_to_string_with_added_encoders``: pieces decoded in runs, added
        tokens as their text between them."""
        if not self.encoder:
            return self.tokenizer.decode_pieces(tokens)
        texts: list[str] = []
        run: list[str] = []
        for token in tokens:
            if skip_special_tokens and token in self.special_texts:
                continue
            if token in self.encoder:
                if run:
                    texts.append(self.tokenizer.decode_pieces(run))
                    run = []
                texts.append(token)
            else:
                run.append(token)
        if run:
            texts.append(self.tokenizer.decode_pieces(run))
        return (" " if spaces_between_special_tokens else "").join(texts)

    def decode(
        self,
        ids: Sequence[int],
        prompt_ids: Sequence[int] = (),
        *,
        skip_special_tokens: bool = True,
        spaces_between_special_tokens: bool = True,
    ) -> str:
        """The text vLLM returns for output ``ids`` that continue ``prompt_ids``."""
        detokenizer = Detokenizer(self, prompt_ids, skip_special_tokens, spaces_between_special_tokens)
        return "".join(detokenizer.step(token) for token in ids)

    # -- the output -----------------------------------------------------------------------------
    def output(self, prompt_ids: Sequence[int], generated: Sequence[int], rules: OutputRules) -> Decoded:
        """What a request gets of the ``generated`` ids (which end with eos): where vLLM stops
        them, their text, what a stream shows after each id, and the ids themselves."""
        detokenizer = Detokenizer(self, prompt_ids, rules.skip_special_tokens, rules.spaces_between_special_tokens)
        stop = [s for s in rules.stop if s]
        hold = max(len(s) for s in stop) - 1 if stop and not rules.include_stop_str_in_output else 0
        text, shown = "", 0
        ids: list[int] = []
        deltas: list[str] = []
        finish: Literal["stop", "length"] = "stop"
        reason: str | int | None = None
        for token in generated:
            ids.append(token)
            # vLLM's check_stop: the length first, then eos, then stop_token_ids
            ended, by_id = True, False
            if rules.max_tokens is not None and len(ids) >= rules.max_tokens:
                finish = "length"
            elif token == self.tokenizer.eos_id and not rules.ignore_eos:
                by_id = True
            elif token in rules.stop_token_ids:
                by_id, reason = True, token
            else:
                ended = False
            if not by_id or rules.include_stop_str_in_output:
                new = detokenizer.step(token)
                text += new
                found = _stop_string(text, len(new), stop, rules.include_stop_str_in_output)
                if found is not None:
                    reason, cut = found
                    text, finish, ended = text[:cut], "stop", True
            visible = len(text) if ended else min(max(len(text) - hold, shown), len(text))
            deltas.append(text[shown:visible])
            shown = max(shown, visible)
            if ended:
                break
        return Decoded(text, tuple(deltas), len(ids), finish, reason, tuple(ids))


class Detokenizer:
    """vLLM's ``detokenize_incrementally`` for one output: each id's text is what decoding the
    window from ``prefix`` on adds to decoding it up to ``read``; the window starts in the
    prompt's last ids. Text that ends in an incomplete character waits for the next id."""

    __slots__ = ("_prefix", "_read", "_skip", "_spaces", "_tokenizer", "_tokens")

    def __init__(
        self, tokenizer: VllmTokenizer, prompt_ids: Sequence[int], skip_special_tokens: bool, spaces: bool
    ) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._spaces = spaces
        context = prompt_ids[len(prompt_ids) - min(len(prompt_ids), INCREMENTAL_OFFSET + 2) :]
        tokens = (tokenizer.token(token, skip_special_tokens=skip_special_tokens) for token in context)
        self._tokens = [token for token in tokens if token is not None]
        self._read = len(self._tokens)
        self._prefix = max(self._read - INCREMENTAL_OFFSET, 0)

    def step(self, token: int) -> str:
        tokenizer = self._tokenizer
        new = tokenizer.token(token, skip_special_tokens=self._skip) if 0 <= token < tokenizer.length else ""
        if new is not None:
            self._tokens.append(new)
        before = self._text(self._tokens[self._prefix : self._read])
        after = self._text(self._tokens[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self._tokens)
        return after[len(before) :]

    def _text(self, tokens: Sequence[str]) -> str:
        return self._tokenizer.tokens_to_text(
            tokens, skip_special_tokens=self._skip, spaces_between_special_tokens=self._spaces
        )


def control_ids(tokenizer: PromptTokenizer, text: str) -> list[int]:
    """The ids of a run of control tokens written as text (``[gMASK]sop``), longest match first."""
    names = sorted(tokenizer.control_ids, key=len, reverse=True)
    ids: list[int] = []
    rest = text
    while rest:
        name = next((n for n in names if rest.startswith(n)), None)
        if name is None:
            raise TokenizerError(f"{text!r} is not a run of this family's control tokens")
        ids.append(tokenizer.control_ids[name])
        rest = rest[len(name) :]
    return ids


def _added_tokens(tokenizer: PromptTokenizer, vocab_size: int, config: Mapping[str, Any]) -> dict[int, str]:
    decoder = config.get("added_tokens_decoder")
    added: dict[int, str] = {}
    if isinstance(decoder, Mapping):
        for key, entry in decoder.items():
            if isinstance(entry, Mapping) and isinstance(entry.get("content"), str) and str(key).isdigit():
                added[int(key)] = entry["content"]
    named = [config[key] for key in _SPECIAL_TOKEN_KEYS if isinstance(config.get(key), str)]
    if not named:
        return added
    # len(tokenizer) counts distinct token strings: the vocabulary's (the pieces, "" for
    # <unk> <s> </s>, the control tokens' texts) and the added ones.
    strings = {tokenizer.piece(index) for index in range(vocab_size)}
    strings |= set(tokenizer.control_ids) | set(added.values())
    for text in named:
        if text not in strings:
            added[len(strings)] = text
            strings.add(text)
    return added


def _special_texts(config: Mapping[str, Any]) -> list[str]:
    """``all_special_tokens``: the texts the config names as special."""
    texts = [config[key] for key in _SPECIAL_TOKEN_KEYS if isinstance(config.get(key), str)]
    extra = config.get("additional_special_tokens")
    if isinstance(extra, list):
        texts += [text for text in extra if isinstance(text, str)]
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, Mapping):
        texts += [
            entry["content"]
            for entry in decoder.values()
            if isinstance(entry, Mapping) and entry.get("special") and isinstance(entry.get("content"), str)
        ]
    return texts


def _stop_string(text: str, new_chars: int, stop: Sequence[str], include: bool) -> tuple[str, int] | None:
    """vLLM's ``check_stop_strings``: the first stop string (in the request's order) that the new
    text completes, and where the text is cut."""
    if not new_chars:
        return None
    for candidate in stop:
        index = text.find(candidate, max(len(text) + 1 - new_chars - len(candidate), 0))
        if index < 0:
            continue
        return candidate, index + len(candidate) if include else index
    return None


# -- where the files are --------------------------------------------------------------------------


def find_tokenizer(source: str, layout: TokenLayout, revision: str = "main") -> Path | None:
    """``source`` as vLLM reads ``--tokenizer`` (or ``--model``): a directory with the tokenizer's
    files, or a model id whose files are in the Hugging Face cache; None when they are not here."""
    folder = Path(source)
    if folder.is_dir():
        return folder if all((folder / name).is_file() for name in layout.files) else None
    if hub.is_model_id(source):
        return hub.cached_snapshot(source, layout.files, revision)
    return None


@functools.cache
def demo_tokenizer(layout: TokenLayout) -> Path:
    """The demo tokenizer's files (``tokens.train_demo_tokenizer``), made once per process."""
    return train_demo_tokenizer(tempfile.mkdtemp(prefix="toolmodel-demo-tokenizer-"), layout)


def publish_tokenizer(model: str, source: Path, layout: TokenLayout) -> Path:
    """Copies the tokenizer the engine serves ``model`` with to ``hub.simulated_tokenizer_dir``,
    where the proxy beside a simulated engine reads it (the operator points it there), as it reads
    vLLM's download beside a real one."""
    target = hub.simulated_tokenizer_dir(model)
    target.mkdir(parents=True, exist_ok=True)
    for name in (*layout.files, "tokenizer_config.json", "config.json"):
        if (source / name).is_file():
            partial = target / (name + ".partial")
            shutil.copyfile(source / name, partial)
            partial.replace(target / name)
    return target


def locate_tokenizer(tokenizer: str | None, model: str, layout: TokenLayout, revision: str = "main") -> Path:
    """The directory of the engine's tokenizer: ``--tokenizer`` (a directory or a cached model id),
    else ``--model``'s files, else the demo tokenizer; published for the proxy either way."""
    if tokenizer:
        found = find_tokenizer(tokenizer, layout, revision)
        if found is None:
            raise TokenizerError(
                f"--tokenizer {tokenizer}: neither a directory with {', '.join(layout.files)} nor a model "
                f"in the Hugging Face cache {hub.cache_dir()} (the simulator downloads nothing)"
            )
    else:
        found = find_tokenizer(model, layout, revision)
    if found is None:
        found = demo_tokenizer(layout)
        log.info(
            "no tokenizer of %s here: serving it with the demo tokenizer (%s's control ids after a small vocabulary)",
            model,
            layout.tokenizer_class,
        )
    published = publish_tokenizer(model, found, layout)
    log.info("the tokenizer for the proxy is in %s", published)
    return found
