"""Checks a chat request's tool-calling fields; every error names the field and the fix."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..caching import BoundedCache
from .arguments import ArgumentsCheck
from .errors import bad_request
from .schemas import check_tool_schema

__all__ = ["ChatToolRequest", "Tool", "ToolChoice", "needs_tool_path", "parse_tool_request", "tools_known"]

MAX_TOOLS = 128
_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_\-.:]{1,64}\Z")
MAX_CHOICES = 16  # n: each choice is a generation of its own on the engine
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    definition: Mapping[str, Any]  # the whole {"type": "function", "function": {...}} entry
    parameters: Mapping[str, Any]
    strict: bool
    arguments: ArgumentsCheck  # checks the arguments of a call
    schema_json: bytes = b""  # the parameters as JSON with sorted keys: the schema's identity


# What a checked schema costs to keep, per byte of its JSON: the parsed schema, its validator
# and the quick check built from it (measured with tracemalloc: ~19 bytes for a 160 KB schema;
# counted as 32 to keep the estimate on the safe side).
_KEPT_PER_BYTE = 32
_SCHEMAS: BoundedCache[ArgumentsCheck] = BoundedCache("tool_schemas", max_entries=2048, max_bytes=64 << 20)
_TOOLS_LISTS: BoundedCache[tuple[Tool, ...]] = BoundedCache("tools_lists", max_entries=256, max_bytes=64 << 20)


def _arguments_check(schema_json: bytes) -> ArgumentsCheck:
    """A compiled schema (``check_tool_schema`` has passed it). Clients send the same tools with
    every request: each distinct schema is compiled once."""
    return _SCHEMAS.get(
        schema_json, lambda: ArgumentsCheck(orjson.loads(schema_json)), len(schema_json) * _KEPT_PER_BYTE
    )


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: str  # "none" | "auto" | "required" | "named"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ChatToolRequest:
    body: Mapping[str, Any]
    messages: list[Mapping[str, Any]]
    tools: list[Tool]
    choice: ToolChoice
    parallel: bool
    stream: bool
    include_usage: bool
    # what the chat template is rendered with beside the messages: chat_template_kwargs, and
    # reasoning_effort as vLLM passes it
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # response_format's JSON schema: an answer that makes no call is JSON of it
    answer_schema: Mapping[str, Any] | None = None
    n: int = 1  # choices to generate, each parsed apart
    top_logprobs: int | None = None  # logprobs asked for: how many likeliest tokens beside each

    @property
    def offered(self) -> list[Tool]:
        """The tools the model may call under ``tool_choice``."""
        if self.choice.mode == "none":
            return []
        if self.choice.mode == "named":
            return [tool for tool in self.tools if tool.name == self.choice.name]
        return self.tools

    @property
    def forced_name(self) -> str | None:
        """The one function the answer must call: named, or "required" with a single tool offered."""
        if self.choice.mode == "named":
            return self.choice.name
        if self.choice.mode == "required" and len(self.tools) == 1:
            return self.tools[0].name
        return None

    def must_validate(self, name: str) -> bool:
        """Whether a call of ``name`` is checked before the client sees it: under a forced choice
        every call is, else the calls of strict tools (strict applies per tool) and of a tool
        that was not offered."""
        if self.choice.mode in ("required", "named"):
            return True
        tool = next((tool for tool in self.offered if tool.name == name), None)
        return tool is None or tool.strict


def needs_tool_path(body: Mapping[str, Any]) -> bool:
    """Whether the request uses tools at all; if not, it goes to the upstream untouched."""
    if body.get("tools") or body.get("functions"):
        return True
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    return any(
        isinstance(message, dict) and (message.get("role") in ("tool", "function") or message.get("tool_calls"))
        for message in messages
    )


def tools_known(body: Mapping[str, Any]) -> bool:
    """Whether this request's tools were checked before (or it has none): then checking it is
    microseconds, and it may be done on the event loop. A response_format schema is checked off
    it, as a new tool's is (its size is the client's to choose)."""
    answer_format = body.get("response_format")
    if isinstance(answer_format, Mapping) and answer_format.get("type") == "json_schema":
        return False
    tools = body.get("tools")
    if not tools or (isinstance(tools, list) and len(tools) > MAX_TOOLS):
        return True  # none, or refused at once by their count
    try:
        return orjson.dumps(tools) in _TOOLS_LISTS
    except (TypeError, orjson.JSONEncodeError):
        return True  # refused at once, without a schema checked


def parse_tool_request(body: Mapping[str, Any]) -> ChatToolRequest:
    if "functions" in body:
        raise bad_request("functions", "the legacy 'functions' field is not supported; send 'tools' instead")
    messages = _messages(body.get("messages"))
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), tools)
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise bad_request("parallel_tool_calls", "must be true or false")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("stream", "must be true or false")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise bad_request("stream_options", "is only allowed when stream is true")
    options = options or {}
    if not isinstance(options, Mapping):
        raise bad_request("stream_options", 'must be an object such as {"include_usage": true}')
    if options.get("continuous_usage_stats"):
        raise bad_request(
            "stream_options.continuous_usage_stats", "usage in every chunk is not given with tools; use include_usage"
        )
    n = body.get("n") or 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        raise bad_request("n", f"{n!r}: give a number of choices from 1 to {MAX_CHOICES}")
    _check_sampling(body)
    template_kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(template_kwargs, Mapping):
        raise bad_request("chat_template_kwargs", 'must be an object such as {"enable_thinking": false}')
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in ("minimal", "low", "medium", "high"):
            raise bad_request("reasoning_effort", f"{effort!r}: choose minimal, low, medium or high")
        template_kwargs = {"reasoning_effort": effort, **template_kwargs}
    _refuse_unsupported(body)
    return ChatToolRequest(
        body=body,
        messages=messages,
        tools=tools,
        choice=choice,
        parallel=parallel,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        template_kwargs=template_kwargs,
        answer_schema=_answer_schema(body.get("response_format")),
        n=n,
        top_logprobs=_top_logprobs(body),
    )


def _top_logprobs(body: Mapping[str, Any]) -> int | None:
    """None unless ``logprobs`` is true; then ``top_logprobs`` (0 to 20, OpenAI's bound)."""
    wanted, top = body.get("logprobs"), body.get("top_logprobs")
    if wanted is not None and not isinstance(wanted, bool):
        raise bad_request("logprobs", "must be true or false")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20):
        raise bad_request("top_logprobs", f"{top!r}: give a number from 0 to 20")
    if top is not None and not wanted:
        raise bad_request("top_logprobs", "needs logprobs: true")
    return (top or 0) if wanted else None


def _answer_schema(value: Any) -> Mapping[str, Any] | None:
    """The JSON schema a ``response_format`` holds an answer to, or None for free text."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise bad_request("response_format.json_schema.schema", "must be a JSON Schema object")
        check_tool_schema(schema, "response_format.json_schema.schema")
        return schema
    raise bad_request(
        "response_format", 'choose {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", ...}'
    )


# Chat fields the tool path does not honour yet: refused by name rather than dropped unseen.
_UNSUPPORTED = {
    "audio": "audio output is not supported",
    "modalities": "only text output is supported; leave modalities out",
    "prediction": "predicted outputs are not supported; leave prediction out",
    "continue_final_message": "continuing the final message is not supported with tools",
}


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for key, why in _UNSUPPORTED.items():
        value = body.get(key)
        if value not in (None, False) and not (key == "modalities" and value == ["text"]):
            raise bad_request(key, why)


_NUMBERS = ("temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty")
_INTEGERS = ("seed", "top_k", "max_tokens", "max_completion_tokens", "min_tokens")


def _check_sampling(body: Mapping[str, Any]) -> None:
    """The sampling fields the proxy relays or computes with have the types the engine takes."""
    for key in _NUMBERS:
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise bad_request(key, f"{value!r} is not a number")
    for key in _INTEGERS:
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise bad_request(key, f"{value!r} is not an integer")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and value < 1:
            raise bad_request(key, f"{value} leaves no room for an answer: give at least 1, or leave it out")
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(item, str) for item in stop))
    ):
        raise bad_request("stop", "must be a string or a list of strings")


def _messages(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not value:
        raise bad_request("messages", "must be a non-empty list of {role, content} objects")
    called: set[str | None] = set()  # the ids of the calls made so far, which tool messages answer
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise bad_request(where, "must be an object with 'role' and 'content'")
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise bad_request(f"{where}.role", f"{role!r} is not a role; use one of {', '.join(sorted(_ROLES))}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise bad_request(f"{where}.content", "must be a string or a list of content parts")
        if isinstance(content, list):
            _text_parts(content, f"{where}.content")
        if role == "tool":
            _tool_result(message, where, called)
        calls = message.get("tool_calls")
        if calls is not None:
            if role != "assistant":
                raise bad_request(f"{where}.tool_calls", "only assistant messages carry tool_calls")
            _history_calls(calls, f"{where}.tool_calls")
            called.update(call.get("id") for call in calls if isinstance(call.get("id"), str))
    return value


def _text_parts(parts: list[Any], where: str) -> None:
    for number, part in enumerate(parts):
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            raise bad_request(f"{where}[{number}]", 'must be a part such as {"type": "text", "text": "..."}')
        if part["type"] != "text":
            raise bad_request(
                f"{where}[{number}].type",
                f"{part['type']!r} parts need a multimodal model; the proxy prompts this family with text only",
            )
        if not isinstance(part.get("text"), str):
            raise bad_request(f"{where}[{number}].text", "must be a string")


def _tool_result(message: Mapping[str, Any], where: str, called: set[str | None]) -> None:
    if message.get("content") is None:
        raise bad_request(f"{where}.content", "a tool message needs the tool's result as content")
    answered = message.get("tool_call_id")
    if not isinstance(answered, str) or not answered:
        raise bad_request(f"{where}.tool_call_id", "a tool message names the call it answers by its id")
    if answered not in called:
        raise bad_request(
            f"{where}.tool_call_id", f"{answered!r} is no call of an earlier assistant message, which a tool answers"
        )


def _history_calls(calls: Any, where: str) -> None:
    if not isinstance(calls, list):
        raise bad_request(where, "must be a list of tool calls")
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise bad_request(f"{where}[{index}].function.name", "each tool call needs function.name")
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str | Mapping):
            raise bad_request(f"{where}[{index}].function.arguments", "must be a JSON string")


def _tools(value: Any) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request("tools", 'must be a list of {"type": "function", "function": {...}} objects')
    if len(value) > MAX_TOOLS:
        raise bad_request("tools", f"offers {len(value)} tools; offer at most {MAX_TOOLS} (OpenAI's limit too)")
    try:
        key = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return list(_checked_tools(value))  # not JSON-native: checked without the cache, and refused there
    # Agents send the same tools with every turn: each distinct list is checked once. (Tools are
    # read-only from here on, so requests may share them.)
    return list(_TOOLS_LISTS.get(key, lambda: _checked_tools(orjson.loads(key)), len(key) * _KEPT_PER_BYTE))


def _checked_tools(value: list[Any]) -> tuple[Tool, ...]:
    tools: list[Tool] = []
    names: set[str] = set()
    for index, entry in enumerate(value):
        where = f"tools[{index}]"
        if not isinstance(entry, Mapping) or entry.get("type", "function") != "function":
            raise bad_request(f"{where}.type", "only tools of type 'function' are supported")
        function = entry.get("function")
        if not isinstance(function, Mapping):
            raise bad_request(f"{where}.function", "must be an object with name, description and parameters")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request(f"{where}.function.name", "every tool needs a name")
        if not _FUNCTION_NAME.match(name):
            raise bad_request(f"{where}.function.name", f"{name!r}: use 1-64 letters, digits, '_' or '-'")
        if name in names:
            raise bad_request(f"{where}.function.name", f"{name!r} is offered twice; tool names must be unique")
        names.add(name)
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, Mapping):
            raise bad_request(f"{where}.function.parameters", "must be a JSON Schema object")
        check_tool_schema(parameters, f"{where}.function.parameters")
        try:
            schema_json = orjson.dumps(parameters, option=orjson.OPT_SORT_KEYS)
        except (TypeError, orjson.JSONEncodeError):
            raise bad_request(f"{where}.function.parameters", "must be a JSON Schema object") from None
        arguments = _arguments_check(schema_json)
        strict = function.get("strict", False)
        if not isinstance(strict, bool):
            raise bad_request(f"{where}.function.strict", "must be true or false")
        tools.append(Tool(name, entry, parameters, strict, arguments, schema_json))
    return tuple(tools)


def _tool_choice(value: Any, tools: list[Tool]) -> ToolChoice:
    if value is None:
        return ToolChoice("auto" if tools else "none")
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise bad_request("tool_choice", f"{value!r}: use 'none', 'auto', 'required' or a named function")
        if value == "required" and not tools:
            raise bad_request("tool_choice", "'required' needs at least one entry in tools")
        return ToolChoice(value)
    function = value.get("function") if isinstance(value, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(name, str):
        raise bad_request("tool_choice", 'a named choice looks like {"type": "function", "function": {"name": "..."}}')
    if name not in {tool.name for tool in tools}:
        raise bad_request("tool_choice.function.name", f"{name!r} is not one of the tools offered in this request")
    return ToolChoice("named", name)
