"""OpenAI's shapes for what the proxy relays from vLLM.

A chat request without tools goes to vLLM's own chat endpoint and its answer comes back through
the proxy. vLLM writes a few fields OpenAI's API document does not allow as it writes them
(``message.annotations: null`` and ``function_call: null`` where the document wants an array or an
object, ``usage.prompt_tokens_details: null``, an error's ``code`` as the HTTP status number); a
client that validates against the document, or the ``openai`` package's types in strict mode,
refuses them. The proxy leaves them out (a field that is absent says what null meant) and words
errors as OpenAI does. Streamed chunks are relayed as they are: vLLM's are valid as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["chat_completion", "error_body", "usage"]

# message fields that vLLM writes as null where the document wants a value or nothing
_MESSAGE_NULLS = ("annotations", "function_call", "audio")
_USAGE_DETAILS = ("prompt_tokens_details", "completion_tokens_details")


def usage(value: Mapping[str, Any]) -> dict[str, Any]:
    """Token counts without the details vLLM leaves null."""
    return {key: item for key, item in value.items() if not (item is None and key in _USAGE_DETAILS)}


def chat_completion(body: dict[str, Any]) -> dict[str, Any]:
    """A relayed chat completion, its null-for-absent fields left out (in place)."""
    for choice in body.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            for key in _MESSAGE_NULLS:
                if key in message and message[key] is None:
                    del message[key]
            message.setdefault("refusal", None)
    if isinstance(body.get("usage"), Mapping):
        body["usage"] = usage(body["usage"])
    return body


def error_body(status: int, body: bytes) -> bytes:
    """An engine's error answer as OpenAI words one: ``{"error": {message, type, param, code}}``,
    ``code`` a string or null (vLLM puts the HTTP status there, older vLLM the whole error at the
    top level)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    error = value.get("error", value) if isinstance(value, dict) else None
    if not isinstance(error, dict):
        text = body.decode("utf-8", "replace")[:500] or f"the model server answered {status}"
        error = {"message": text}
    code = error.get("code")
    shaped = {
        "message": str(error.get("message") or f"the model server answered {status}"),
        "type": str(error.get("type") or ("invalid_request_error" if status < 500 else "upstream_error")),
        "param": error.get("param") if isinstance(error.get("param"), str) else None,
        "code": None if code is None or (isinstance(code, int) and code == status) else str(code),
    }
    return orjson.dumps({"error": shaped})
