"""Llama 4 (Scout, Maverick): pythonic calls ``[f(a=1), g()]``, optionally inside
``<|python_start|>...<|python_end|>``, with Llama 4's turn tokens.

The calls are read by the ``pythonic`` grammar; only the prompt differs from Llama 3.2's, in
every token (``<|header_start|>``/``<|header_end|>``/``<|eot|>`` instead of
``<|start_header_id|>``/``<|end_header_id|>``/``<|eot_id|>``) and in where the tools go, so the
two cannot share one template.
"""

from __future__ import annotations

from .pythonic import GRAMMAR, prefill, write_call
from .spec import Dialect

DIALECT = Dialect(
    name="llama4_pythonic",
    summary="Llama 4 Scout/Maverick: a Python list of calls [f(a=1), g(b='x')], optionally in "
    "<|python_start|>...<|python_end|>, Llama 4 turns, results as role ipython",
    models=(
        "meta-llama/Llama-4-Scout-17B-16E-Instruct",
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8",
    ),
    grammar=GRAMMAR,
    stop=("<|eot|>", "<|eom|>"),
    template_file="llama4_pythonic.jinja",
    write_call=write_call,
    call_separator=", ",
    calls_open="[",
    calls_close="]",
    prefill=prefill,
    special_tokens=(
        "<|begin_of_text|>",
        "<|header_start|>",
        "<|header_end|>",
        "<|eot|>",
        "<|eom|>",
        "<|python_start|>",
        "<|python_end|>",
    ),
    vllm_parser="llama4_pythonic",
    tokenizer_prefix="<|begin_of_text|>",
)
