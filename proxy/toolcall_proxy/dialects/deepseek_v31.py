"""DeepSeek-V3.1: ``<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{json}<｜tool▁call▁end｜>``, no type, no fence.

Calls share one ``<｜tool▁calls▁begin｜>`` … ``<｜tool▁calls▁end｜>`` block, chained without
separators, as in DeepSeek-V3 (see :mod:`.deepseek_v3` for how the block is read). The prompt
ends with ``<｜Assistant｜></think>`` (non-thinking mode); with ``thinking`` set the model thinks
first and its text up to ``</think>`` is not separated from the content yet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..parsing.grammar import Arguments, CallFormat, CallGrammar, Literal, Name
from .deepseek_v3 import CALL_BEGIN, CALL_END, CALLS_BEGIN, CALLS_END, END_OF_SENTENCE, SEP
from .spec import Dialect

_CALL_STEPS = (Name(SEP), Arguments())

GRAMMAR = CallGrammar(
    formats=(
        CallFormat(CALLS_BEGIN, (Literal(CALL_BEGIN), *_CALL_STEPS), closer=CALL_END, separator=CALLS_END),
        CallFormat(CALL_BEGIN, _CALL_STEPS, closer=CALL_END, separator=CALLS_END),
    ),
    hidden_tokens=(END_OF_SENTENCE,),
    reasoning=("<think>", "</think>"),  # thinking mode
)


def write_call(name: str, arguments: Mapping[str, Any]) -> str:
    # One call; Dialect.write_calls chains the calls of a turn in one block (calls_open/close).
    return f"{CALL_BEGIN}{name}{SEP}{json.dumps(arguments, ensure_ascii=False)}{CALL_END}"


def prefill(name: str | None) -> str:
    if name is None:
        return f"{CALLS_BEGIN}{CALL_BEGIN}"
    return f"{CALLS_BEGIN}{CALL_BEGIN}{name}{SEP}"


DIALECT = Dialect(
    name="deepseek_v31",
    summary="DeepSeek-V3.1: <｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{json}<｜tool▁call▁end｜>, "
    "parallel calls in one <｜tool▁calls▁begin｜> block",
    models=("deepseek-ai/DeepSeek-V3.1", "deepseek-ai/DeepSeek-V3.1-Terminus"),
    grammar=GRAMMAR,
    stop=(END_OF_SENTENCE,),
    template_file="deepseek_v31.jinja",
    write_call=write_call,
    call_separator="",
    calls_open=CALLS_BEGIN,
    calls_close=CALLS_END,
    prefill=prefill,
    prefill_ends_at_arguments=True,
    special_tokens=(
        "<｜begin▁of▁sentence｜>",
        END_OF_SENTENCE,
        "<｜User｜>",
        "<｜Assistant｜>",
        "<think>",
        "</think>",
        CALLS_BEGIN,
        CALLS_END,
        CALL_BEGIN,
        CALL_END,
        SEP,
        "<｜tool▁output▁begin｜>",
        "<｜tool▁output▁end｜>",
    ),
    vllm_parser="deepseek_v31",
    tokenizer_prefix="<｜begin▁of▁sentence｜>",
)
