"""Every dialect's constraint grammars as the proxy writes them, with a vocabulary and the calls
they must take, as JSON for ``check_llguidance.py`` to run in each llguidance release vLLM pins
(the proxy's grammars do not depend on the llguidance installed beside them).

    python tests/grammar_check/dump_grammars.py OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parsing"))
from constraint_corpus import BOOKED, BOOKING, CORPUS, PARIS, WEATHER

from toolcall_proxy.dialects import DIALECTS, Dialect
from toolcall_proxy.parsing.constraint import ConstraintTool, call_constraint
from toolcall_proxy.sim.constrained import Vocabulary


def _grammar(dialect: Dialect, chosen: list[ConstraintTool], mode: str) -> str:
    vocabulary = Vocabulary([*dialect.special_tokens, *dialect.stop])
    return call_constraint(
        dialect.grammar,
        chosen,
        mode=mode,  # type: ignore[arg-type]
        parallel=dialect.parallel_calls,
        special_tokens=[token for token in dialect.special_tokens if token.startswith("<")],
        token_ids={token: vocabulary.ids(token)[0] for token in dialect.special_tokens if not token.startswith("<")},
        written=dialect.write_calls([(chosen[0].name, {})]),
    )


def main(out: str) -> None:
    entries = []
    tools = [ConstraintTool(f"tool_{index}", schema) for index, schema in enumerate(CORPUS)]
    for name, dialect in sorted(DIALECTS.items()):
        vocabulary = Vocabulary([*dialect.special_tokens, *dialect.stop])
        grammars = [_grammar(dialect, tools, "required"), _grammar(dialect, tools, "auto")]
        grammars += [_grammar(dialect, [tool], "named") for tool in tools]
        entries.append(
            {
                "dialect": name,
                "specials": vocabulary.specials,
                "grammars": grammars,
                "required": _grammar(dialect, [WEATHER, BOOKING], "required"),
                "calls": [vocabulary.ids(dialect.write_calls([call])) for call in (PARIS, BOOKED)],
                "stops": [vocabulary.ids(stop) for stop in dialect.stop],
            }
        )
    Path(out).write_text(json.dumps(entries), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
