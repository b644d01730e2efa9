"""InternLM2 / 2.5 chat: ``<|action_start|><|plugin|>\\n{"name": ..., "parameters": {...}}<|action_end|>``.

The model "speaks, then calls": text, then one action block, then ``<|im_end|>``; the result
comes back in an ``environment`` turn, so calls are one per turn. ``<|action_start|>``
followed by anything but ``<|plugin|>`` (the code interpreter's ``<|interpreter|>``) is not a
function call and stays content.

GGUF builds of InternLM2 (llama.cpp, ollama) decode these special tokens under their original
placeholder names, ``[UNUSED_TOKEN_144][UNUSED_TOKEN_141]`` … ``[UNUSED_TOKEN_143]``: the same
call under another spelling, read the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..parsing.grammar import CallFormat, CallGrammar, JsonCall, Literal
from .spec import Dialect

ACTION_START = "<|action_start|>"
PLUGIN = "<|plugin|>"
ACTION_END = "<|action_end|>"
IM_END = "<|im_end|>"

# InternLM writes its arguments under "parameters" (the parser reads "arguments" too)
_CALL = JsonCall(argument_keys=("parameters", "arguments"))

GRAMMAR = CallGrammar(
    formats=(
        CallFormat(ACTION_START, (Literal(PLUGIN), _CALL), closer=ACTION_END),
        # the same tokens as a GGUF vocabulary names them (ids 92541, 92538, 92540)
        CallFormat(
            "[UNUSED_TOKEN_144]",
            (Literal("[UNUSED_TOKEN_141]"), _CALL),
            closer="[UNUSED_TOKEN_143]",
        ),
    ),
    hidden_tokens=(IM_END, "[UNUSED_TOKEN_145]", "</s>"),
)


def write_call(name: str, arguments: Mapping[str, Any]) -> str:
    # json.dumps spacing, as in the examples of InternLM's chat_format.md
    body = json.dumps({"name": name, "parameters": arguments}, ensure_ascii=False)
    return f"{ACTION_START}{PLUGIN}\n{body}{ACTION_END}"


def prefill(name: str | None) -> str:
    if name is None:
        return f"{ACTION_START}{PLUGIN}\n"
    return f'{ACTION_START}{PLUGIN}\n{{"name": {json.dumps(name, ensure_ascii=False)}, "parameters": '


DIALECT = Dialect(
    name="internlm",
    summary="InternLM2/2.5: <|action_start|><|plugin|> + {name, parameters} + <|action_end|>, results as "
    "environment turns, one call per turn",
    models=(
        "internlm/internlm2_5-7b-chat",
        "internlm/internlm2_5-20b-chat",
        "internlm/internlm2-chat-7b",
        "internlm/internlm2-chat-20b",
    ),
    grammar=GRAMMAR,
    stop=(IM_END,),
    template_file="internlm.jinja",
    write_call=write_call,
    call_separator="",
    prefill=prefill,
    prefill_ends_at_arguments=True,
    parallel_calls=False,
    special_tokens=("<|im_start|>", IM_END, ACTION_START, ACTION_END, PLUGIN, "<|interpreter|>"),
    vllm_parser="internlm",
    tokenizer_prefix="<s>",
)
