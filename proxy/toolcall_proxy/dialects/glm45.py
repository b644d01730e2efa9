"""GLM-4.5 / GLM-4.6: ``<tool_call>NAME\\n<arg_key>K</arg_key>\\n<arg_value>V</arg_value>\\n</tool_call>``.

The name ends at the line break after ``<tool_call>``; each argument is a key and a raw-text
value (strings as they are, anything else as JSON, as the chat template writes them), typed by
the tool's JSON Schema as vLLM's ``glm45`` parser does. Values are written inline, so unlike
Qwen3-Coder's no line break around them is layout: a string keeps its text exactly. A
``</arg_value>`` ends its value only where ``<arg_key>`` or ``</tool_call>`` follows, so a value
may hold that text (see :class:`~toolcall_proxy.parsing.grammar.KeyValueArguments`). Parallel
calls are consecutive ``<tool_call>`` blocks.

GLM-4.5 thinks first: its answer opens with ``<think>...</think>`` (empty when thinking is off,
``enable_thinking: false``), reported as reasoning. After a call it stops at ``<|observation|>``
(an end-of-sequence token, as are ``<|user|>`` and ``<|endoftext|>``).

Differences from vLLM's parser: a parameter the schema does not type stays a string (vLLM reads
it as JSON or a Python literal when it can: ``42`` becomes a number); GLM-4.7's calls without the
line break after the name are not read (vLLM has its ``glm47`` parser for them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..parsing.grammar import CallFormat, CallGrammar, KeyValueArguments, Name
from .spec import Dialect

_ARGUMENTS = KeyValueArguments(
    "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>", "</tool_call>", layout_newlines=False
)

GRAMMAR = CallGrammar(
    formats=(CallFormat("<tool_call>", (Name("\n"), _ARGUMENTS), closer="</tool_call>"),),
    hidden_tokens=("<|user|>", "<|observation|>", "<|endoftext|>"),
    reasoning=("<think>", "</think>"),
)


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def write_call(name: str, arguments: Mapping[str, Any]) -> str:
    pairs = "".join(
        f"<arg_key>{key}</arg_key>\n<arg_value>{_value(value)}</arg_value>\n" for key, value in arguments.items()
    )
    return f"<tool_call>{name}\n{pairs}</tool_call>"


def prefill(name: str | None) -> str:
    return "<tool_call>" if name is None else f"<tool_call>{name}\n"


DIALECT = Dialect(
    name="glm45",
    summary="GLM-4.5/4.6: <tool_call>NAME + <arg_key>K</arg_key><arg_value>raw value</arg_value> pairs, "
    "values typed by the tool's schema, <think> reasoning first, parallel calls",
    models=("zai-org/GLM-4.5", "zai-org/GLM-4.5-Air", "zai-org/GLM-4.6", "zai-org/GLM-4.5-FP8"),
    grammar=GRAMMAR,
    stop=("<|user|>", "<|observation|>"),
    template_file="glm45.jinja",
    write_call=write_call,
    call_separator="\n",
    prefill=prefill,
    special_tokens=(
        "[gMASK]",
        "<sop>",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|observation|>",
        "<|endoftext|>",
    ),
    vllm_parser="glm45",
    prompt_form="text_without_prefix",
    tokenizer_prefix="[gMASK]<sop>",
)
