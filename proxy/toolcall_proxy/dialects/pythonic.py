"""Pythonic tool calls: a Python list of calls with keyword arguments, ``[f(a=1, b='x'), g()]``.

Llama 3.2 1B/3B (Meta's "zero shot function calling" format) and fine-tunes such as ToolACE
write it with Llama 3's turn tokens; Llama 4 writes the same list with its own tokens (the
``llama4_pythonic`` dialect, which shares this grammar). Values are Python literals (``True``,
``None``, single or double quotes, dict and list literals); positional arguments and a call
outside a list are not calls (llama-models ``tool_utils.is_valid_python_list``).

The list may follow ``<|python_tag|>`` (Llama 3.2's end-to-end example) or sit between
``<|python_start|>`` and ``<|python_end|>`` (Llama 4); any ``[`` in the output may open one,
and it is a call only when its elements are calls of offered tools, so brackets in prose stay
prose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..parsing.grammar import Arguments, CallFormat, CallGrammar, CallList, Name
from .spec import Dialect

_LIST = CallList(element=(Name("("), Arguments(kwargs=True)))

GRAMMAR = CallGrammar(
    formats=(
        CallFormat("<|python_tag|>", (_LIST,), opener_is_token=True),
        CallFormat("<|python_start|>", (_LIST,), closer="<|python_end|>", opener_is_token=True),
        CallFormat("[", (_LIST,), opener_starts_body=True),
    ),
    hidden_tokens=("<|eot_id|>", "<|eom_id|>", "<|eot|>", "<|eom|>", "<|end_of_text|>", "<|python_end|>"),
)


def python_literal(value: Any) -> str:
    """A JSON value written as the Python literal the models use."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{python_literal(str(k))}: {python_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    return repr(value)  # str, int, float, bool, None: Python's own spelling


def write_call(name: str, arguments: Mapping[str, Any]) -> str:
    keywords = ", ".join(f"{key}={python_literal(value)}" for key, value in arguments.items())
    return f"{name}({keywords})"


def prefill(name: str | None) -> str:
    return "[" if name is None else f"[{name}("


DIALECT = Dialect(
    name="pythonic",
    summary="Llama 3.2 1B/3B, ToolACE: a Python list of calls [f(a=1), g(b='x')], Llama 3 turns, "
    "results as role ipython",
    models=(
        "meta-llama/Llama-3.2-1B-Instruct",
        "meta-llama/Llama-3.2-3B-Instruct",
        "Team-ACE/ToolACE-8B",
    ),
    grammar=GRAMMAR,
    stop=("<|eot_id|>", "<|eom_id|>"),
    template_file="pythonic.jinja",
    write_call=write_call,
    call_separator=", ",
    calls_open="[",
    calls_close="]",
    prefill=prefill,
    special_tokens=(
        "<|begin_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
        "<|eom_id|>",
        "<|python_tag|>",
    ),
    vllm_parser="pythonic",
    tokenizer_prefix="<|begin_of_text|>",
)
