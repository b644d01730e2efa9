"""ChatGLM3-6B: a metadata line naming the tool, then ``tool_call(k=v)`` in a Python fence.

The model switches turns with its own role tokens (``<|assistant|>`` may appear mid-output to go
from prose to a call), so those are special tokens that must survive decoding. Calls are one
per turn: the model stops at ``<|observation|>`` and waits for the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..parsing.grammar import Arguments, CallFormat, CallGrammar, Literal, Name
from ..tokens import TokenLayout
from .spec import Dialect

_CALL_STEPS = (
    Name("\n"),
    Literal("```"),
    Literal("python", optional=True),
    Literal("tool_call("),
    Arguments(kwargs=True),
    Literal("```", optional=True),
)

GRAMMAR = CallGrammar(
    formats=(
        CallFormat("", _CALL_STEPS),  # every assistant turn starts with its metadata line
        CallFormat("<|assistant|>", _CALL_STEPS, opener_is_token=True),
    ),
    hidden_tokens=("<|user|>", "<|observation|>", "<|system|>", "</s>"),
)


def write_call(name: str, arguments: Mapping[str, Any]) -> str:
    # Python literal syntax, the way the model was trained (the official demo prints repr()).
    keywords = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
    return f"{name}\n```python\ntool_call({keywords})\n```"


def prefill(name: str | None) -> str:
    return "" if name is None else f"{name}\n```python\ntool_call("


# THUDM's tokenization_chatglm.py: the control tokens follow the 64,789 sentencepiece pieces in
# this order; build_single_message encodes "<|role|>" + metadata line + content, each on its own;
# generation ends at eos, <|user|> or <|observation|>.
TOKEN_LAYOUT = TokenLayout(
    control_tokens=(
        "[MASK]",
        "[gMASK]",
        "[sMASK]",
        "sop",
        "eop",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
        "<|observation|>",
    ),
    role_tokens=("<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"),
    stop_tokens=("</s>", "<|user|>", "<|observation|>"),
    metadata_line=True,
    tokenizer_class="ChatGLMTokenizer",
)

DIALECT = Dialect(
    name="chatglm3",
    summary="ChatGLM3-6B: NAME + ```python tool_call(k=v)```, results under <|observation|>, one call per turn",
    models=("THUDM/chatglm3-6b", "THUDM/chatglm3-6b-32k", "THUDM/chatglm3-6b-128k"),
    grammar=GRAMMAR,
    stop=("<|user|>", "<|observation|>"),
    template_file="chatglm3.jinja",
    write_call=write_call,
    call_separator="",
    prefill=prefill,
    parallel_calls=False,
    special_tokens=("[gMASK]", "sop", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"),
    prompt_form="token_ids",
    tokenizer_prefix="[gMASK]sop",
    token_layout=TOKEN_LAYOUT,
)
