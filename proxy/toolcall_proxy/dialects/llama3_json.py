"""Llama 3.1 / 3.2 / 3.3 JSON tool calling: ``{"name": ..., "parameters": {...}}``.

The call may follow ``<|python_tag|>`` or stand alone, anywhere in the output; parallel calls,
which Meta does not document but models write, are separated by ``;``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..parsing.grammar import CallFormat, CallGrammar, JsonCall
from .spec import Dialect

# Llama writes its arguments under "parameters" (the parser reads "arguments" too)
_CALL = JsonCall(argument_keys=("parameters", "arguments"))

GRAMMAR = CallGrammar(
    formats=(
        CallFormat(
            "<|python_tag|>",
            (_CALL,),
            separator=";",
            opener_is_token=True,
        ),
        CallFormat("{", (_CALL,), separator=";", opener_starts_body=True),
    ),
    hidden_tokens=("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
)


def write_call(name: str, arguments: Mapping[str, Any]) -> str:
    return orjson.dumps({"name": name, "parameters": arguments}).decode()


def prefill(name: str | None) -> str:
    if name is None:
        return '{"name": "'
    return '{"name": ' + orjson.dumps(name).decode() + ', "parameters": '


DIALECT = Dialect(
    name="llama3_json",
    summary="Llama 3.1/3.2/3.3: JSON {name, parameters}, optional <|python_tag|>, results as role ipython",
    models=(
        "meta-llama/Llama-3.1-8B-Instruct",
        "meta-llama/Llama-3.1-70B-Instruct",
        "meta-llama/Llama-3.2-3B-Instruct",
        "meta-llama/Llama-3.3-70B-Instruct",
    ),
    grammar=GRAMMAR,
    stop=("<|eot_id|>", "<|eom_id|>"),
    template_file="llama3_json.jinja",
    write_call=write_call,
    call_separator="; ",
    prefill=prefill,
    prefill_ends_at_arguments=True,
    parallel_calls=False,
    special_tokens=(
        "<|begin_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
        "<|eom_id|>",
        "<|python_tag|>",
    ),
    vllm_parser="llama3_json",
    tokenizer_prefix="<|begin_of_text|>",
)
