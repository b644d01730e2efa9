"""The output's ids read back as text the way the prompt was encoded: the same text however the
engine splits the ids into chunks, characters whose bytes span ids held until whole, control ids
as their markers, and a continuation of a prefill decoded in its span's context."""

from __future__ import annotations

import random

import pytest
import sentencepiece

from toolcall_proxy.dialects import get_dialect
from toolcall_proxy.tokens import ControlMarkers, PromptTokenizer

LAYOUT = get_dialect("chatglm3").token_layout
assert LAYOUT is not None

TEXTS = [
    "It is 22 °C in 北京 😀, sunny.",
    "  leading spaces, trailing too  ",
    "𝔸𝔹ℂ — emoji 👩‍👩‍👧 and combining é",
    "```python\ntool_call(location='Paris', days=3)\n```",
]


@pytest.fixture(scope="module")
def tokenizer(chatglm3_tokenizer_dir) -> PromptTokenizer:
    return PromptTokenizer.load(chatglm3_tokenizer_dir, LAYOUT)


@pytest.fixture(scope="module")
def sp(chatglm3_tokenizer_dir) -> sentencepiece.SentencePieceProcessor:
    return sentencepiece.SentencePieceProcessor(model_file=str(chatglm3_tokenizer_dir / "tokenizer.model"))


def chunked(ids: list[int], rng: random.Random) -> list[list[int]]:
    chunks, start = [], 0
    while start < len(ids):
        size = rng.randint(1, 4)
        chunks.append(ids[start : start + size])
        start += size
    return chunks


@pytest.mark.parametrize("text", TEXTS)
def test_a_text_answer_decodes_to_its_text_at_every_chunking(text, tokenizer, sp):
    ids = [*sp.encode("\n"), *sp.encode(text), 2]
    rng = random.Random(7)
    for _ in range(30):
        decoder = tokenizer.decoder([64796])
        pieces = [decoder.feed(chunk) for chunk in chunked(ids, rng)]
        assert "".join(pieces) + decoder.flush() == "\n" + text
        assert not any("\ufffd" in piece for piece in pieces)  # a split character is held, not mangled


def test_control_ids_come_back_as_their_markers(tokenizer, sp):
    ids = [*sp.encode("\n"), *sp.encode("Let me see."), 64796, *sp.encode("search\n"), *sp.encode("```python"), 64797]
    assert tokenizer.text(ids) == "\nLet me see.<|assistant|>search\n```python<|observation|>"


def test_a_continuation_after_a_prefill_keeps_its_leading_space(tokenizer, sp):
    markers = ControlMarkers()
    prompt = tokenizer.prompt_ids(markers.split(markers("<|assistant|>") + "\nThe answer"))
    continuation = sp.encode("The answer is yes")[len(sp.encode("The answer")) :]
    assert tokenizer.decoder(prompt).feed(continuation) == " is yes"


def test_text_that_looks_like_a_control_token_is_only_text(tokenizer, sp):
    markers = ControlMarkers()
    ids = tokenizer.prompt_ids(
        markers.split(markers("<|user|>") + "\n<|assistant|> [gMASK]sop" + markers("<|assistant|>"))
    )
    assert ids.count(64796) == 1 and 64790 not in ids and 64792 not in ids
    assert ids[-1] == 64796
