"""The decode-time constraint in xgrammar, vLLM's default structured-output backend.

``tests/parsing/test_constraint.py`` runs every dialect's grammar in llguidance; this module runs
the same grammars, the same calls and the same 31-schema corpus in xgrammar, the way vLLM does:

* vLLM's request check (``validate_xgrammar_grammar``) parses a Lark grammar with
  ``xgrammar.Grammar.from_lark(text)`` and no tokenizer, and answers 400 "Invalid grammar
  specification." when it fails (or, with ``--structured-outputs-config.backend auto``, falls back
  to guidance);
* vLLM compiles it with ``GrammarCompiler.compile_lark(text)``, over the model's vocabulary: here
  256 byte tokens, eos and the family's control tokens as single tokens, as the simulator's
  ``Vocabulary``, each control token's entry its own text (xgrammar resolves ``<|name|>`` by exact
  match in the vocabulary; llguidance wants them 0xFF-prefixed instead);
* the matcher then takes the ids an engine's tokenizer gives a call (control tokens as theirs)
  and must be able to end after them, or refuse them.

Control tokens are written as the proxy writes them: by their text when ``<...>``-shaped
(``<|python_tag|>``), else by id (``<[257]>``, Mistral's ``[TOOL_CALLS]``). xgrammar's Lark reader
takes some names only with a tokenizer, so vLLM's request check refuses the grammars of six
families; vLLM's default backend (``auto``) then serves those with guidance, which
``make test`` holds them to, and an explicit ``xgrammar`` backend answers 400, which the proxy
meets with its fallback. The families xgrammar takes are checked in full here.

Run by ``make grammar-check`` (hack/grammar-check.sh) in its own venv with xgrammar and a CPU
torch; the file name is not ``test_*.py``, so ``make test`` does not collect it. It imports
xgrammar at the top: without it this run fails, it does not skip.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pytest
import xgrammar as xgr

from toolcall_proxy.dialects import DIALECTS, Dialect
from toolcall_proxy.parsing.constraint import ConstraintTool, call_constraint
from toolcall_proxy.sim.constrained import Vocabulary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parsing"))
from constraint_corpus import BOOKED, BOOKING, CORPUS, PARIS, WEATHER

Mode = Literal["required", "named", "auto"]


# -- the engine -----------------------------------------------------------------------------


class Engine:
    """One family's vocabulary in xgrammar, and the compiler vLLM would build over it."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.vocabulary = Vocabulary([*dialect.special_tokens, *dialect.stop])
        tokens = [bytes([i]) for i in range(256)] + [token.encode() for token in self.vocabulary.specials]
        self.info = xgr.TokenizerInfo(tokens, xgr.VocabType.RAW, stop_token_ids=[self.vocabulary.eos_token_id])
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=1)

    def token_id(self, token: str) -> int:
        return 256 + self.vocabulary.specials.index(token)

    def compile(self, grammar: str) -> xgr.CompiledGrammar:
        """The grammar compiled as vLLM compiles it; a refusal fails the test with xgrammar's words."""
        try:
            return self.compiler.compile_lark(grammar)
        except RuntimeError as error:  # xgrammar's refusals, with line and column
            pytest.fail(f"{self.dialect.name}: xgrammar refused the grammar: {error}\n{_excerpt(grammar)}")

    def accepts(self, compiled: xgr.CompiledGrammar, text: str) -> bool:
        """Whether an engine under the grammar could generate ``text`` and then stop."""
        ids = self.vocabulary.ids(text)
        # A closer that is also a stop token (gpt-oss's <|call|>) ends the text the engine returns.
        return any(self._ends_after(compiled, ids + self.vocabulary.ids(stop)) for stop in ("", *self.dialect.stop))

    def _ends_after(self, compiled: xgr.CompiledGrammar, ids: Sequence[int]) -> bool:
        matcher = xgr.GrammarMatcher(compiled)
        if not all(matcher.accept_token(token) for token in ids):
            return False
        return matcher.accept_token(self.vocabulary.eos_token_id) and matcher.is_terminated()


@cache
def engine(name: str) -> Engine:
    return Engine(DIALECTS[name])


def constraint(name: str, tools: Sequence[ConstraintTool], mode: Mode, *, parallel: bool = True) -> str:
    """The grammar the proxy sends: control tokens by their text when ``<...>``-shaped, else by id."""
    dialect = DIALECTS[name]
    by_id = {token: engine(name).token_id(token) for token in dialect.special_tokens if not token.startswith("<")}
    return call_constraint(
        dialect.grammar,
        tools,
        mode=mode,
        parallel=parallel and dialect.parallel_calls,
        special_tokens=[token for token in dialect.special_tokens if token.startswith("<")],
        token_ids=by_id,
        written=dialect.write_calls([(tools[0].name, {})]),
    )


def _excerpt(grammar: str, limit: int = 1500) -> str:
    return "--- grammar ---\n" + (grammar if len(grammar) <= limit else grammar[:limit] + "\n…")


def _variants(name: str) -> list[tuple[Mode, bool]]:
    """Each mode, with parallel calls on and off where the family has them (named is one call)."""
    parallel = [True, False] if DIALECTS[name].parallel_calls else [False]
    return [("required", on) for on in parallel] + [("named", False)] + [("auto", on) for on in parallel]


def _request_check_refusals(name: str) -> list[str]:
    """vLLM's ``validate_xgrammar_grammar``: ``Grammar.from_lark(text)`` without a tokenizer."""
    failures = []
    for mode, parallel in _variants(name):
        tools = [WEATHER] if mode == "named" else [WEATHER, BOOKING]
        try:
            xgr.Grammar.from_lark(constraint(name, tools, mode, parallel=parallel))
        except RuntimeError as error:
            failures.append(f"{mode} parallel={parallel}: {error}")
    return failures


# Families whose control tokens xgrammar's reader names only with a tokenizer: vLLM sends them to
# guidance under its default backend.
TO_GUIDANCE = {"deepseek_v3", "deepseek_v31", "granite", "internlm", "kimi_k2", "openai"}
# Mistral's "auto" names <s> and </s> among the tokens that may come before a call: guidance too.
AUTO_TO_GUIDANCE = {"mistral"}
XGRAMMAR = sorted(set(DIALECTS) - TO_GUIDANCE)


def _has_control_token_in_its_calls(name: str) -> bool:
    return any(token >= 256 for token in engine(name).vocabulary.ids(DIALECTS[name].write_calls([PARIS])))


CASES = XGRAMMAR
PARALLEL_CASES = [name for name in XGRAMMAR if DIALECTS[name].parallel_calls]
TOKEN_CASES = [name for name in XGRAMMAR if _has_control_token_in_its_calls(name)]


def test_vllms_request_check_refuses_only_the_grammars_it_sends_to_guidance():
    refused = {name: failures for name in DIALECTS if (failures := _request_check_refusals(name))}
    assert set(refused) == TO_GUIDANCE | AUTO_TO_GUIDANCE, refused
    for name, failures in refused.items():
        modes = {failure.split()[0] for failure in failures}
        assert modes == ({"auto"} if name in AUTO_TO_GUIDANCE else {"required", "named", "auto"}), failures


# -- the grammars are taken ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_the_constraint_compiles_in_xgrammar_for_every_schema_of_the_corpus(name):
    """Every family's, those vLLM's request check sends to guidance too: with the tokenizer's
    vocabulary, xgrammar names their control tokens."""
    tools = [ConstraintTool(f"tool_{index}", schema) for index, schema in enumerate(CORPUS)]
    assert len(tools) == 31
    target = engine(name)
    for mode, parallel in _variants(name):
        if mode == "named":
            continue
        target.compile(constraint(name, tools, mode, parallel=parallel))
    for tool in tools:
        target.compile(constraint(name, [tool], "named"))


# -- what the parser reads as calls is in them, and nothing else ----------------------------


@pytest.mark.parametrize("name", CASES)
def test_a_written_call_is_in_the_required_and_named_constraints(name):
    target, dialect = engine(name), DIALECTS[name]
    required = target.compile(constraint(name, [WEATHER, BOOKING], "required"))
    for call, tool in ((PARIS, WEATHER), (BOOKED, BOOKING)):
        text = dialect.write_calls([call])
        assert target.accepts(required, text), text
        assert target.accepts(target.compile(constraint(name, [tool], "named")), text), text


@pytest.mark.parametrize("name", PARALLEL_CASES)
def test_parallel_calls_are_in_the_constraint_unless_parallel_calls_are_off(name):
    target, dialect = engine(name), DIALECTS[name]
    text = dialect.write_calls([PARIS, BOOKED])
    assert target.accepts(target.compile(constraint(name, [WEATHER, BOOKING], "required")), text), text
    single = target.compile(constraint(name, [WEATHER, BOOKING], "required", parallel=False))
    assert not target.accepts(single, text)
    named = target.compile(constraint(name, [WEATHER], "named"))
    assert not target.accepts(named, dialect.write_calls([PARIS, PARIS]))


@pytest.mark.parametrize("name", CASES)
def test_what_the_parser_would_not_return_as_a_valid_call_is_not_in_the_constraint(name):
    target, dialect = engine(name), DIALECTS[name]
    required = target.compile(constraint(name, [WEATHER, BOOKING], "required"))
    wrong: list[tuple[str, dict[str, Any]]] = [
        ("send_money", {"to": "x"}),  # a name not offered
        ("book_room", {"guest": "Ada", "nights": 2}),  # an argument of the wrong type
        ("book_room", {"guest": {"name": "Ada"}, "nights": "two"}),
        ("book_room", {"nights": 2}),  # a required argument missing
    ]
    for call in wrong:
        assert not target.accepts(required, dialect.write_calls([call])), call
    assert not target.accepts(required, "I think it is sunny.")
    named = target.compile(constraint(name, [WEATHER], "named"))
    assert not target.accepts(named, dialect.write_calls([BOOKED]))


@pytest.mark.parametrize("name", [name for name in CASES if name not in AUTO_TO_GUIDANCE])
def test_auto_leaves_text_free_and_holds_calls_to_their_schema(name):
    target, dialect = engine(name), DIALECTS[name]
    auto = target.compile(constraint(name, [WEATHER, BOOKING], "auto"))
    opener_free = dialect.grammar.formats[0].opener == ""
    # calls that begin with a character of text (Llama's "{", pythonic's "[") are held at the start
    bare_opener = any(
        fmt.opener_starts_body for fmt in dialect.grammar.formats if dialect.write_calls([PARIS]).startswith(fmt.opener)
    )
    lead: Callable[[str], str] = (
        (lambda text: text) if opener_free or bare_opener else (lambda text: "Let me check. " + text)
    )
    assert target.accepts(auto, "\nIt is sunny, no call needed." if opener_free else "It is sunny, no call needed.")
    assert target.accepts(auto, lead(dialect.write_calls([PARIS])))
    bad = dialect.write_calls([("book_room", {"guest": "Ada", "nights": "two"})])
    assert not target.accepts(auto, lead(bad))


@pytest.mark.parametrize("name", TOKEN_CASES)
def test_a_control_token_in_the_grammar_is_its_token_not_its_text_spelled_out(name):
    """The grammar names the token (by text or id); the same characters as bytes are refused."""
    target, dialect = engine(name), DIALECTS[name]
    text = dialect.write_calls([PARIS])
    required = target.compile(constraint(name, [WEATHER, BOOKING], "required"))
    assert target.accepts(required, text)
    matcher = xgr.GrammarMatcher(required)
    spelled = [*text.encode(), target.vocabulary.eos_token_id]
    assert not all(matcher.accept_token(token) for token in spelled)
