"""Mistral: ``[TOOL_CALLS]`` then a JSON array of calls (tokenizer v2-v7), or one
``[TOOL_CALLS]NAME[ARGS]{...}`` per call (v11 and later).

The forms, as the models write them (FORMATS.md §9, mistral-common ``instruct.py``)::

    v3/v7:  [TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1B2c3D4e"}]
    v11:    [TOOL_CALLS]get_weather[CALL_ID]a1B2c3D4e[ARGS]{"city": "Paris"}
    v13:    [TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}
    v11+ decoded without control tokens (vLLM's MistralTokenizer): [TOOL_CALLS]get_weather{"city": "Paris"}

The parser takes every form whatever the model's version: what follows ``[TOOL_CALLS]`` tells
them apart (a ``[`` opens the array; anything else is a name). The template renders the v3
layout, which every Mistral tool-calling model's vocabulary has (see ``mistral.jinja``).

Call ids are Mistral's: 9 letters and digits. The model's own id is kept when it comes before
the arguments (v11's ``[CALL_ID]``); otherwise, an id written after them included (the array's
usual order), the proxy makes one of that shape: a call streams from its first argument byte,
with its id in the first frame. Either way the ids sent back in the next request fit the format
the model was trained on.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping
from typing import Any

import orjson

from ..parsing.grammar import Arguments, Branch, CallFormat, CallGrammar, CallId, CallList, JsonCall, Literal, Name
from .spec import Dialect

TOOL_CALLS = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
EOS = "</s>"

_ID_ALPHABET = string.ascii_letters + string.digits

# v11+: NAME, then an optional [CALL_ID]id, then [ARGS] (absent when control tokens were skipped).
_NAMED_CALL = (
    Name(ARGS, ends_before=(CALL_ID, "{")),
    Branch(cases=((CALL_ID, (Literal(CALL_ID), CallId(ARGS))),), otherwise=()),
    Arguments(),
)

GRAMMAR = CallGrammar(
    formats=(
        CallFormat(
            TOOL_CALLS,
            (Branch(cases=(("[", (CallList(element=(JsonCall(),)),)),), otherwise=_NAMED_CALL),),
            opener_is_token=True,
        ),
    ),
    hidden_tokens=(EOS, ARGS, CALL_ID),
)


def mistral_call_id() -> str:
    """A call id as Mistral's tokenizers require: 9 letters and digits."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))


def write_call(name: str, arguments: Mapping[str, Any]) -> str:
    # One element of the v3/v7 array, which the template also renders earlier calls as.
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)


def prefill(name: str | None) -> str:
    if name is None:
        return TOOL_CALLS
    return TOOL_CALLS + '[{"name": ' + orjson.dumps(name).decode() + ', "arguments": '


DIALECT = Dialect(
    name="mistral",
    summary="Mistral (7B v0.3, Nemo, Small, Large, Devstral...): [TOOL_CALLS] + JSON array (v3/v7) or "
    "[TOOL_CALLS]NAME[ARGS]{json} per call (v11+), 9-character call ids",
    models=(
        "mistralai/Mistral-7B-Instruct-v0.3",
        "mistralai/Mistral-Nemo-Instruct-2407",
        "mistralai/Mistral-Small-24B-Instruct-2501",
        "mistralai/Mistral-Large-Instruct-2411",
        "mistralai/Mistral-Small-3.2-24B-Instruct-2506",
        "mistralai/Devstral-Small-2507",
    ),
    grammar=GRAMMAR,
    stop=(EOS,),
    template_file="mistral.jinja",
    write_call=write_call,
    call_separator=", ",
    calls_open=TOOL_CALLS + "[",
    calls_close="]",
    prefill=prefill,
    prefill_ends_at_arguments=True,
    special_tokens=(
        "<s>",
        EOS,
        "[INST]",
        "[/INST]",
        "[AVAILABLE_TOOLS]",
        "[/AVAILABLE_TOOLS]",
        TOOL_CALLS,
        "[TOOL_RESULTS]",
        "[/TOOL_RESULTS]",
        "[TOOL_CONTENT]",
        "[SYSTEM_PROMPT]",
        "[/SYSTEM_PROMPT]",
        ARGS,
        CALL_ID,
    ),
    vllm_parser="mistral",
    call_id=mistral_call_id,
    tokenizer_prefix="<s>",
)
