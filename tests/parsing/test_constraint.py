"""The decode-time constraint is the parser's own grammar: what a family writes as calls of the
offered tools is in it, and what the parser would not return as a valid call is not.

Each grammar is run by llguidance (vLLM's ``guidance`` backend) over a byte vocabulary plus the
family's control tokens, as an engine runs it over the model's vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from constraint_corpus import BOOKED, BOOKING, CORPUS, PARIS, WEATHER
from llguidance import LLMatcher

from toolcall_proxy.dialects import DIALECTS, Dialect
from toolcall_proxy.parsing.constraint import ConstraintTool, Unconstrainable, answer_constraint, call_constraint
from toolcall_proxy.parsing.grammar import KeyValueArguments
from toolcall_proxy.sim.constrained import Vocabulary


def control_tokens(dialect: Dialect) -> list[str]:
    return [*dialect.special_tokens, *dialect.stop]


def vocabulary(dialect: Dialect) -> Vocabulary:
    """Bytes and the family's control tokens, each one token (as the engine's tokenizer has them)."""
    return Vocabulary(control_tokens(dialect))


def constraint(
    dialect: Dialect, tools: Sequence[ConstraintTool], mode: str, parallel: bool = True, *, by_id: bool = True
) -> str:
    """The dialect's constraint; a control token whose text is not ``<...>`` is named by its id in
    the vocabulary (as the proxy learns it from the engine's /tokenize), unless ``by_id`` is off."""
    written = dialect.write_calls([(tools[0].name, {})])
    ids = vocabulary(dialect).ids
    special = [token for token in dialect.special_tokens if token.startswith("<")]
    token_ids = {token: ids(token)[0] for token in dialect.special_tokens if not token.startswith("<")}
    return call_constraint(
        dialect.grammar,
        tools,
        mode=mode,  # type: ignore[arg-type]
        parallel=parallel and dialect.parallel_calls,
        special_tokens=special if by_id else dialect.special_tokens,
        token_ids=token_ids if by_id else None,
        written=written,
    )


def accepts(dialect: Dialect, grammar: str, text: str) -> bool:
    """Whether an engine under ``grammar`` could generate ``text`` and then stop."""
    words = vocabulary(dialect)
    tokenizer = words.tokenizer
    lark = LLMatcher.grammar_from_lark(grammar)
    assert LLMatcher.validate_grammar(lark, tokenizer) == "", LLMatcher.validate_grammar(lark, tokenizer)
    matcher = LLMatcher(tokenizer, lark, log_level=0)
    for token in words.ids(text):
        if not matcher.consume_token(token):
            return False
    if matcher.is_accepting():
        return True
    # A closer that is also a stop token (gpt-oss's <|call|>) ends the text the engine returns.
    for stop in dialect.stop:
        trial = matcher.deep_copy()
        if all(trial.consume_token(token) for token in words.ids(stop)) and trial.is_accepting():
            return True
    return False


CONSTRAINED = sorted(DIALECTS)


def _raw_text_values(dialect: Dialect) -> bool:
    """Whether the family writes argument values as raw text between tags (Qwen3-Coder, GLM-4.5)."""
    return any(isinstance(step, KeyValueArguments) for fmt in dialect.grammar.formats for step in fmt.steps)


def test_a_control_token_not_written_as_a_tag_is_named_by_its_id_or_not_at_all():
    # Mistral's [TOOL_CALLS] cannot be named by its text in llguidance's Lark: by id it can
    mistral = DIALECTS["mistral"]
    with pytest.raises(Unconstrainable, match=r"\[TOOL_CALLS\]"):
        constraint(mistral, [WEATHER], "required", by_id=False)
    assert f"<[{vocabulary(mistral).ids('[TOOL_CALLS]')[0]}]>" in constraint(mistral, [WEATHER], "required")


@pytest.mark.parametrize("name", CONSTRAINED)
def test_a_written_call_is_in_the_required_and_named_constraints(name):
    dialect = DIALECTS[name]
    for call in (PARIS, BOOKED):
        text = dialect.write_calls([call])
        assert accepts(dialect, constraint(dialect, [WEATHER, BOOKING], "required"), text), text
        tool = WEATHER if call is PARIS else BOOKING
        assert accepts(dialect, constraint(dialect, [tool], "named"), text), text


@pytest.mark.parametrize("name", [name for name in CONSTRAINED if DIALECTS[name].parallel_calls])
def test_parallel_calls_are_in_the_constraint_unless_parallel_calls_are_off(name):
    dialect = DIALECTS[name]
    text = dialect.write_calls([PARIS, BOOKED])
    assert accepts(dialect, constraint(dialect, [WEATHER, BOOKING], "required"), text), text
    assert not accepts(dialect, constraint(dialect, [WEATHER, BOOKING], "required", parallel=False), text)
    assert not accepts(dialect, constraint(dialect, [WEATHER], "named"), dialect.write_calls([PARIS, PARIS]))


@pytest.mark.parametrize("name", CONSTRAINED)
def test_what_the_parser_would_not_return_as_a_valid_call_is_not_in_the_constraint(name):
    dialect = DIALECTS[name]
    required = constraint(dialect, [WEATHER, BOOKING], "required")
    assert not accepts(dialect, required, dialect.write_calls([("send_money", {"to": "x"})]))
    assert not accepts(dialect, required, dialect.write_calls([("book_room", {"guest": "Ada", "nights": 2})]))
    assert not accepts(dialect, required, dialect.write_calls([("book_room", {"nights": 2})]))
    assert not accepts(dialect, required, "I think it is sunny.")
    assert not accepts(dialect, constraint(dialect, [WEATHER], "named"), dialect.write_calls([BOOKED]))


@pytest.mark.parametrize("name", CONSTRAINED)
def test_auto_leaves_text_free_and_holds_calls_to_their_schema(name):
    dialect = DIALECTS[name]
    auto = constraint(dialect, [WEATHER, BOOKING], "auto")
    opener_free = dialect.grammar.formats[0].opener == ""
    # a family whose calls begin with a character of text (Llama's "{", pythonic's "["): held
    # where calls begin, at the start; later, text may quote such a character (JSON results)
    bare_opener = dialect.grammar.formats[0].opener_starts_body or any(
        fmt.opener_starts_body for fmt in dialect.grammar.formats if dialect.write_calls([PARIS]).startswith(fmt.opener)
    )
    lead = "" if opener_free or bare_opener else "Let me check. "
    text = "\nIt is sunny, no call needed." if opener_free else "It is sunny, no call needed."
    assert accepts(dialect, auto, text)
    assert accepts(dialect, auto, lead + dialect.write_calls([PARIS]))
    bad = dialect.write_calls([("book_room", {"guest": "Ada", "nights": "two"})])
    assert not accepts(dialect, auto, lead + bad)
    if bare_opener:
        assert accepts(dialect, auto, 'Paris: {"temperature": 11} and [1, 2].')


# -- every grammar compiles for real-world schemas ------------------------------------------


@pytest.mark.parametrize("name", CONSTRAINED)
def test_the_constraint_compiles_in_llguidance_for_every_schema_of_the_corpus(name):
    dialect = DIALECTS[name]
    tokenizer = vocabulary(dialect).tokenizer
    tools = [ConstraintTool(f"tool_{index}", schema) for index, schema in enumerate(CORPUS)]
    assert len(tools) >= 30
    for mode in ("required", "auto"):
        lark = LLMatcher.grammar_from_lark(constraint(dialect, tools, mode))
        assert LLMatcher.validate_grammar(lark, tokenizer) == "", (mode, LLMatcher.validate_grammar(lark, tokenizer))
    for tool in tools:
        lark = LLMatcher.grammar_from_lark(constraint(dialect, [tool], "named"))
        assert LLMatcher.validate_grammar(lark, tokenizer) == "", (
            tool.name,
            LLMatcher.validate_grammar(lark, tokenizer),
        )


@pytest.mark.parametrize("name", [name for name, dialect in DIALECTS.items() if _raw_text_values(dialect)])
def test_a_raw_text_value_with_an_enum_is_one_of_its_values(name):
    dialect = DIALECTS[name]
    required = constraint(dialect, [WEATHER], "required")
    assert accepts(dialect, required, dialect.write_calls([("get_weather", {"city": "Paris", "unit": "celsius"})]))
    assert not accepts(dialect, required, dialect.write_calls([("get_weather", {"city": "Paris", "unit": "kelvin"})]))


@pytest.mark.parametrize("name", [name for name, dialect in DIALECTS.items() if _raw_text_values(dialect)])
def test_a_raw_text_value_that_may_be_null_takes_text_and_null(name):
    dialect = DIALECTS[name]
    trip = ConstraintTool(
        "book_trip",
        {
            "type": "object",
            "properties": {"back": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            "required": ["back"],
        },
    )
    required = constraint(dialect, [trip], "required")
    assert accepts(dialect, required, dialect.write_calls([("book_trip", {"back": "2026-12-24"})]))
    assert accepts(dialect, required, dialect.write_calls([("book_trip", {"back": None})]))


@pytest.mark.parametrize("name", CONSTRAINED)
def test_a_response_format_makes_an_answer_without_calls_json_of_its_schema(name):
    dialect = DIALECTS[name]
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    text_turn = "\n" if dialect.grammar.formats[0].opener == "" else ""
    written = dialect.write_calls([(WEATHER.name, {})])
    vocabulary_ids = vocabulary(dialect).ids
    auto = call_constraint(
        dialect.grammar,
        [WEATHER],
        mode="auto",
        special_tokens=[t for t in dialect.special_tokens if t.startswith("<")],
        token_ids={t: vocabulary_ids(t)[0] for t in dialect.special_tokens if not t.startswith("<")},
        written=written,
        answer_schema=schema,
    )
    assert accepts(dialect, auto, text_turn + '{"city": "Paris"}')
    assert accepts(dialect, auto, dialect.write_calls([PARIS]))
    assert not accepts(dialect, auto, text_turn + "It is sunny in Paris.")
    assert not accepts(dialect, auto, text_turn + '{"town": "Paris"}')
    alone = answer_constraint(dialect.grammar, schema)
    assert accepts(dialect, alone, text_turn + '{"city": "Paris"}')
    assert not accepts(dialect, alone, dialect.write_calls([PARIS]))
