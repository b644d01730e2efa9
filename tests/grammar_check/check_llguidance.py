"""The proxy's grammars (``dump_grammars.py``) in one llguidance release, with nothing else
installed: each compiles against the family's vocabulary and takes the family's written calls.

    python tests/grammar_check/check_llguidance.py GRAMMARS.json

vLLM pins llguidance 0.7.x (0.10, 0.11), 1.3.x (0.12 to 0.20) and 1.7.x (0.34): hack/grammar-check.sh
runs this in each. Exit status 1 names every failure.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from typing import Any

from llguidance import LLMatcher, LLTokenizer, TokenizerWrapper


class Bytes:
    """256 byte tokens, eos, the family's control tokens (0xFF marks them)."""

    def __init__(self, specials: list[str]) -> None:
        self.tokens = [bytes([i]) for i in range(256)] + [b"\xff" + s.encode() for s in specials]
        self.eos_token_id = 256
        self.bos_token_id = None
        self.special_token_ids = list(range(256, len(self.tokens)))

    def __call__(self, text: str | bytes) -> list[int]:
        return list(text.encode() if isinstance(text, str) else text)


def takes(tokenizer: Any, grammar: str, ids: list[int], stops: list[list[int]]) -> bool:
    for tail in ([], *stops):  # a closer that is a stop token (gpt-oss's <|call|>) ends the text
        matcher = LLMatcher(tokenizer, LLMatcher.grammar_from_lark(grammar), log_level=0)
        if not matcher.is_error() and all(matcher.consume_token(t) for t in [*ids, *tail]) and matcher.is_accepting():
            return True
    return False


def main(path: str) -> int:
    failures: list[str] = []
    grammars = 0
    with open(path, encoding="utf-8") as file:
        entries = json.load(file)
    for entry in entries:
        tokenizer = LLTokenizer(TokenizerWrapper(Bytes(entry["specials"])), slices=[])
        for grammar in entry["grammars"]:
            grammars += 1
            problem = LLMatcher.validate_grammar(LLMatcher.grammar_from_lark(grammar), tokenizer)
            if problem:
                failures.append(f"{entry['dialect']}: {problem.splitlines()[0]}")
        for ids in entry["calls"]:
            if not takes(tokenizer, entry["required"], ids, entry["stops"]):
                failures.append(f"{entry['dialect']}: a written call is not in the required grammar")
    print(f"llguidance {version('llguidance')}: {grammars} grammars, {len(failures)} failures")
    for failure in failures:
        print("  " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
