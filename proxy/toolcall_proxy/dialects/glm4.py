"""GLM-4-9B-chat: the function name on the first line of the assistant turn, JSON arguments below.

After ``<|assistant|>`` the model writes a metadata line: empty for an answer, the function name
for a call, whose JSON arguments follow on the next line. It then stops at ``<|observation|>``
and waits for the result, so calls are one per turn. As with ChatGLM3, ``<|assistant|>`` may
also show up mid-output to go from prose to a call, so the role tokens are special tokens that
must survive decoding. vLLM has no parser for this model (its ``glm45`` parser is for GLM-4.5's
``<tool_call>`` format); the official API server takes a call when line 2 starts with ``{``,
which ``Arguments(object_only=True)`` mirrors: any other second line is text.

GLM-4's built-in tools (``simple_browser``, ``python``, ``cogview``) are never offered through
the OpenAI API, so their non-JSON bodies stay content.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..parsing.grammar import Arguments, CallFormat, CallGrammar, Name
from .spec import Dialect

_CALL_STEPS = (Name("\n"), Arguments(object_only=True))

GRAMMAR = CallGrammar(
    formats=(
        CallFormat("", _CALL_STEPS),  # every assistant turn starts with its metadata line
        CallFormat("<|assistant|>", _CALL_STEPS, opener_is_token=True),
    ),
    hidden_tokens=("<|user|>", "<|observation|>", "<|system|>", "<|endoftext|>"),
)


def write_call(name: str, arguments: Mapping[str, Any]) -> str:
    # json.dumps spacing, as the official demo and the chat template write arguments
    return f"{name}\n{json.dumps(arguments, ensure_ascii=False)}"


def prefill(name: str | None) -> str:
    # A call has no marker of its own: only a named call can be started for the model.
    return "" if name is None else f"{name}\n"


DIALECT = Dialect(
    name="glm4",
    summary="GLM-4-9B-chat: NAME + newline + {json} after <|assistant|>, results under <|observation|>, "
    "one call per turn",
    models=("THUDM/glm-4-9b-chat", "THUDM/glm-4-9b-chat-1m"),
    grammar=GRAMMAR,
    stop=("<|user|>", "<|observation|>"),
    template_file="glm4.jinja",
    write_call=write_call,
    call_separator="<|assistant|>",  # calls of one message become consecutive assistant turns
    prefill=prefill,
    prefill_ends_at_arguments=True,
    parallel_calls=False,
    special_tokens=("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"),
    prompt_form="text_without_prefix",
    tokenizer_prefix="[gMASK]<sop>",
)
