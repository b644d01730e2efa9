"""DeepSeek-V3 (0324) and R1-0528: fenced JSON arguments between fullwidth-bar special tokens.

One block holds all the calls of a turn::

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
    ```json
    {...}
    ```<｜tool▁call▁end｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>...<｜tool▁call▁end｜><｜tool▁calls▁end｜>

The block opener and each call opener are both call markers (the first call follows the block
opener, later ones stand alone); ``<｜tool▁calls▁end｜>`` is consumed after a call. When the
markers do not frame a call, they are left in the content with the rest of the text, as they
were written (vLLM's deepseek_v31 tests expect that for a broken block). The JSON may span
lines (vLLM's regex, without DOTALL, misses pretty-printed arguments), and the closing fence may
be missing: a call whose arguments are complete is a call.

R1-0528 thinks first; its ``<think>`` text is not separated from the content yet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..parsing.grammar import Arguments, CallFormat, CallGrammar, Literal, Name
from .spec import Dialect

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"
END_OF_SENTENCE = "<｜end▁of▁sentence｜>"

_CALL_STEPS = (
    Literal("function"),
    Literal(SEP),
    Name("\n"),
    Literal("```"),
    Literal("json", optional=True),
    Arguments(),
    Literal("```", optional=True),
)

GRAMMAR = CallGrammar(
    formats=(
        CallFormat(CALLS_BEGIN, (Literal(CALL_BEGIN), *_CALL_STEPS), closer=CALL_END, separator=CALLS_END),
        CallFormat(CALL_BEGIN, _CALL_STEPS, closer=CALL_END, separator=CALLS_END),
    ),
    hidden_tokens=(END_OF_SENTENCE,),
    reasoning=("<think>", "</think>"),  # R1-0528 thinks first
)


def write_call(name: str, arguments: Mapping[str, Any]) -> str:
    # One call; Dialect.write_calls puts the calls of a turn into one block (calls_open/close),
    # separated by "\n" as DeepSeek's template writes them.
    body = json.dumps(arguments, ensure_ascii=False)
    return f"{CALL_BEGIN}function{SEP}{name}\n```json\n{body}\n```{CALL_END}"


def prefill(name: str | None) -> str:
    if name is None:
        return f"{CALLS_BEGIN}{CALL_BEGIN}function{SEP}"
    return f"{CALLS_BEGIN}{CALL_BEGIN}function{SEP}{name}\n```json\n"


DIALECT = Dialect(
    name="deepseek_v3",
    summary="DeepSeek-V3-0324 / R1-0528: <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME + ```json fence, "
    "parallel calls in one <｜tool▁calls▁begin｜> block",
    models=("deepseek-ai/DeepSeek-V3-0324", "deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-R1-0528"),
    grammar=GRAMMAR,
    stop=(END_OF_SENTENCE,),
    template_file="deepseek_v3.jinja",
    write_call=write_call,
    call_separator="\n",
    calls_open=CALLS_BEGIN,
    calls_close=CALLS_END,
    prefill=prefill,
    prefill_ends_at_arguments=True,
    special_tokens=(
        "<｜begin▁of▁sentence｜>",
        END_OF_SENTENCE,
        "<｜User｜>",
        "<｜Assistant｜>",
        CALLS_BEGIN,
        CALLS_END,
        CALL_BEGIN,
        CALL_END,
        SEP,
        "<｜tool▁outputs▁begin｜>",
        "<｜tool▁outputs▁end｜>",
        "<｜tool▁output▁begin｜>",
        "<｜tool▁output▁end｜>",
    ),
    vllm_parser="deepseek_v3",
    tokenizer_prefix="<｜begin▁of▁sentence｜>",
)
