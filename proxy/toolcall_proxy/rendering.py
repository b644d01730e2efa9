"""Chat-template rendering the way Hugging Face ``apply_chat_template`` (and so vLLM) does it.

The same template text is mounted into vLLM by the operator and rendered here by the proxy, so
both must see the same environment: a sandbox, ``trim_blocks``/``lstrip_blocks``, the ``tojson``
filter that keeps non-ASCII, ``raise_exception`` and ``strftime_now``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .caching import BoundedCache

__all__ = ["TemplateRenderError", "compile_template", "normalize_messages", "render"]


class TemplateRenderError(ValueError):
    """The chat template rejected the conversation (``raise_exception``) or is broken."""


def _raise_exception(message: str) -> None:
    raise TemplateRenderError(message)


def _tojson(value: Any, indent: int | None = None, separators: Any = None, sort_keys: bool = False) -> str:
    if separators is None and not sort_keys:
        try:
            # Templates print the same tool definitions on every request: orjson's bytes (which
            # keep key order) are a cheap key to the text json.dumps wrote last time.
            return _cached_tojson(orjson.dumps(value), indent)
        except TypeError:
            pass  # not JSON-native (orjson is stricter than json): no caching
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)


_TOJSON: BoundedCache[str] = BoundedCache("template_tojson", max_entries=4096, max_bytes=16 << 20)


def _cached_tojson(key: bytes, indent: int | None) -> str:
    text = _TOJSON.get(
        (key, indent), lambda: json.dumps(json.loads(key), ensure_ascii=False, indent=indent), 3 * len(key)
    )
    return text


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


_ENVIRONMENT = _environment()


@lru_cache(maxsize=64)
def compile_template(source: str) -> Any:
    try:
        return _ENVIRONMENT.from_string(source)
    except TemplateError as error:
        raise TemplateRenderError(f"the chat template does not compile: {error}") from error


def render(source: str, **context: Any) -> str:
    try:
        return str(compile_template(source).render(**context))
    except TemplateRenderError:
        raise
    except TemplateError as error:
        raise TemplateRenderError(f"the chat template failed: {error}") from error


def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages as chat templates expect them, as vLLM prepares them.

    Text parts of a multi-part ``content`` are joined by line breaks, as vLLM joins them;
    tool-call ``arguments`` given as JSON strings become objects (templates print them with
    ``tojson`` or item access).
    """
    normalized = []
    for message in messages:
        item = dict(message)
        content = item.get("content")
        if isinstance(content, list):
            item["content"] = "\n".join(
                part.get("text", "") for part in content if isinstance(part, Mapping) and part.get("type") == "text"
            )
        if item.get("tool_calls"):
            calls = []
            for call in item["tool_calls"]:
                call = dict(call)
                function = dict(call.get("function") or {})
                arguments = function.get("arguments")
                if isinstance(arguments, str):
                    # text that is not JSON is left as it is: the template prints what the client sent
                    with contextlib.suppress(ValueError, RecursionError):
                        function["arguments"] = json.loads(arguments) if arguments.strip() else {}
                call["function"] = function
                calls.append(call)
            item["tool_calls"] = calls
        normalized.append(item)
    return normalized
