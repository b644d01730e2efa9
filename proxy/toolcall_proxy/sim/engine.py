"""What the simulated model "generates": pure functions from a prompt to raw model output.

The simulator never sees the request's ``tools``: like a real model it only sees the rendered
prompt. It finds the function definitions printed there (any JSON object with a ``name`` and a
JSON Schema ``parameters``, or an object schema under a line naming the function), reads the
latest user request and the tool results given since, and answers the way the model family
would: calls in the family's own raw format (written by the project's dialects, special tokens
included), one round at a time when the family calls one tool per turn, then a text answer
quoting the results. Everything is deterministic: the same prompt gives the same output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..dialects import generic, get_dialect
from ..dialects.detect import detect
from ..parsing.parser import follow_schema

__all__ = [
    "LAYOUTS",
    "MISBEHAVIOURS",
    "Conversation",
    "Decoded",
    "Force",
    "Generation",
    "Layout",
    "ToolSpec",
    "choose_tool",
    "count_tokens",
    "decode",
    "detect_dialect",
    "extract_entities",
    "find_tools",
    "generate",
    "plan_calls",
    "read_conversation",
    "special_tokens",
    "tokenize",
]

Force = Literal["required"] | str | None  # a tool must be called: any ("required") or this one

# How a model scripted to misbehave gets its calls wrong (``generate(misbehave=...)``).
MISBEHAVIOURS = ("wrong-name", "bad-arguments", "prose", "extra-call")


# -- prompt layouts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a family's prompt puts user turns and tool results, and how its turns end.

    ``results`` are (opener, closers) of one tool result. A user turn whose text starts with a
    result opener carries results, not a request (Qwen and the generic dialect put results in
    user turns). ``call_end``/``text_end`` are the tokens the model writes to end its turn that
    are not end-of-sequence tokens for vLLM, so they reach the output text.
    """

    user: str
    user_end: tuple[str, ...]
    results: tuple[tuple[str, tuple[str, ...]], ...]
    call_end: str = ""
    text_end: str = ""
    text_prefix: str = ""
    special: tuple[str, ...] = ()  # special in the family's tokenizer besides Dialect.special_tokens
    # A result the template JSON-encodes: the JSON string itself (""), or the value under this
    # key of an object (Mistral's {"content": ..., "call_id": ...}); None: the text as written.
    result_key: str | None = None
    # The system text shares the user turn, a blank line before the request (Mistral v3).
    request_last_paragraph: bool = False
    # A first line before each result naming the call it answers (Kimi-K2's "## Return of ID").
    result_header: str = ""


_GLM_ROLES = ("<|assistant|>", "<|observation|>", "<|user|>", "<|system|>")
_TOOL_RESPONSE = ("<tool_response>", ("</tool_response>",))

_DEEPSEEK = Layout(
    user="<｜User｜>",
    user_end=("<｜Assistant｜>",),
    results=(("<｜tool▁output▁begin｜>", ("<｜tool▁output▁end｜>",)),),
)

LAYOUTS: dict[str, Layout] = {
    # ChatGLM3 ends a call turn with <|observation|> and a text turn with <|user|>; neither is an
    # EOS token in its generation config, so without stop strings they show up in the output.
    "chatglm3": Layout(
        user="<|user|>",
        user_end=_GLM_ROLES,
        results=(("<|observation|>", _GLM_ROLES),),
        call_end="<|observation|>",
        text_end="<|user|>",
        text_prefix="\n",  # the empty metadata line of a text turn
    ),
    # Hermes 2 Pro's tokenizer marks <tool_call> special: the reason vLLM's hermes parser turns
    # skip_special_tokens off. Simulating that tokenizer shows what stripping does to calls.
    "hermes": Layout(
        user="<|im_start|>user",
        user_end=("<|im_end|>",),
        results=(_TOOL_RESPONSE,),
        special=("<tool_call>", "</tool_call>"),
    ),
    "llama3_json": Layout(
        user="<|start_header_id|>user<|end_header_id|>",
        user_end=("<|eot_id|>",),
        results=(
            ("<|start_header_id|>ipython<|end_header_id|>", ("<|eot_id|>",)),
            ("<|start_header_id|>tool<|end_header_id|>", ("<|eot_id|>",)),
            _TOOL_RESPONSE,
        ),
    ),
    "generic": Layout(user="<|im_start|>user", user_end=("<|im_end|>",), results=(_TOOL_RESPONSE,)),
    # GLM-4 lays out turns as ChatGLM3 does and ends them with the same non-EOS role tokens.
    "glm4": Layout(
        user="<|user|>",
        user_end=_GLM_ROLES,
        results=(("<|observation|>", _GLM_ROLES),),
        call_end="<|observation|>",
        text_end="<|user|>",
        text_prefix="\n",
    ),
    # DeepSeek ends every turn with <｜end▁of▁sentence｜>, its EOS token: nothing reaches the text.
    "deepseek_v3": _DEEPSEEK,
    "deepseek_v31": _DEEPSEEK,
    # InternLM2's EOS is </s>: the <|im_end|> ending every turn reaches the text (the reason its
    # model card and the dialect pass <|im_end|> as a stop).
    "internlm": Layout(
        user="<|im_start|>user",
        user_end=("<|im_end|>",),
        results=(("<|im_start|>environment name=<|plugin|>", ("<|im_end|>",)),),
        call_end="<|im_end|>",
        text_end="<|im_end|>",
    ),
    # Mistral v3: the tools and the system text come with the last [INST] turn; results are
    # JSON objects holding the tool's output under "content". </s> is the EOS token.
    "mistral": Layout(
        user="[INST]",
        user_end=("[/INST]",),
        results=(("[TOOL_RESULTS]", ("[/TOOL_RESULTS]",)),),
        result_key="content",
        request_last_paragraph=True,
    ),
    # Llama 3.2 pythonic: results under ipython as {"output": ...}; <|eot_id|> is an EOS token.
    "pythonic": Layout(
        user="<|start_header_id|>user<|end_header_id|>",
        user_end=("<|eot_id|>",),
        results=(("<|start_header_id|>ipython<|end_header_id|>", ("<|eot_id|>",)),),
        result_key="output",
    ),
    # Llama 4: results under ipython as JSON strings; <|eot|> is an EOS token.
    "llama4_pythonic": Layout(
        user="<|header_start|>user<|header_end|>",
        user_end=("<|eot|>",),
        results=(("<|header_start|>ipython<|header_end|>", ("<|eot|>",)),),
        result_key="",
    ),
    # Granite 3.x: results under the tool role; <|end_of_text|> is the EOS token.
    "granite": Layout(
        user="<|start_of_role|>user<|end_of_role|>",
        user_end=("<|end_of_text|>",),
        results=(("<|start_of_role|>tool<|end_of_role|>", ("<|end_of_text|>",)),),
    ),
    # Qwen3-Coder lays out turns as Qwen does; <|im_end|> is an EOS token.
    "qwen3_coder": Layout(user="<|im_start|>user", user_end=("<|im_end|>",), results=(_TOOL_RESPONSE,)),
    # GLM-4.5: <|observation|> and <|user|> are EOS tokens (generation_config.json), so they end
    # the output without reaching the text; results are <tool_response> blocks.
    "glm45": Layout(
        user="<|user|>",
        user_end=_GLM_ROLES,
        results=(_TOOL_RESPONSE,),
        text_prefix="\n",  # the line break after <|assistant|>
    ),
    # Kimi-K2: <|im_end|> is its EOS token; each result opens with "## Return of ID".
    "kimi_k2": Layout(
        user="<|im_user|>user<|im_middle|>",
        user_end=("<|im_end|>",),
        results=(("<|im_system|>tool<|im_middle|>", ("<|im_end|>",)),),
        result_header="## Return of ",
    ),
    # gpt-oss (harmony): <|return|> and <|call|> are EOS tokens (generation_config.json), so they
    # end the output without reaching the text; an answer is a message on the final channel.
    "openai": Layout(
        user="<|start|>user<|message|>",
        user_end=("<|end|>",),
        results=((" to=assistant<|channel|>commentary<|message|>", ("<|end|>",)),),
        text_prefix="<|channel|>final<|message|>",
    ),
}


def detect_dialect(template: str) -> str:
    """The dialect a chat template's text belongs to (``dialects.detect``), generic when none."""
    return detect(chat_template=template).dialect or "generic"


def special_tokens(dialect: str) -> frozenset[str]:
    """Tokens ``skip_special_tokens`` removes from this family's output."""
    spec = get_dialect(dialect)
    layout = LAYOUTS.get(dialect, LAYOUTS["generic"])
    tokens = (*spec.special_tokens, *spec.grammar.hidden_tokens, *layout.special)
    # ChatGLM3's "sop" is a special token too, but treating a plain word as one would eat it out
    # of ordinary text ("sopping"); the model never generates it anyway.
    return frozenset(token for token in tokens if not token.isalnum())


# -- tools offered in the prompt ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]


# Where a JSON object or array can begin. Trying only these matters: a failed decode costs a scan
# back to the start of the prompt (JSONDecodeError counts the lines), so prose braces must not get one.
_JSON_START = re.compile(r"\{\s*[\"}]|\[\s*[\[{\"\-\d\]tfn]")
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.:]*\Z")
_MAX_DEPTH = 16


def _as_definition(value: Mapping[str, Any]) -> ToolSpec | None:
    name = value.get("name")
    parameters = value.get("parameters")
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name) or not isinstance(parameters, Mapping):
        return None
    properties = parameters.get("properties")
    if isinstance(properties, Mapping):
        if not all(isinstance(schema, Mapping) for schema in properties.values()):
            return None  # a call's arguments, not a schema
    elif parameters.get("type") != "object":
        return None
    description = value.get("description")
    return ToolSpec(name, description if isinstance(description, str) else "", parameters)


def _definitions(value: Any, depth: int = 0) -> Iterator[ToolSpec]:
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, dict):
        function = value.get("function")
        if value.get("type") == "function" and isinstance(function, Mapping):
            value = function
        spec = _as_definition(value)
        if spec is not None:
            yield spec
            return
        for item in value.values():
            if isinstance(item, dict | list):
                yield from _definitions(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                yield from _definitions(item, depth + 1)


# A line naming the function whose schema follows: a Markdown heading ("### get_weather"), a label
# ("Function: get_weather", "- name: get_weather") or the bare name with a colon ("get_weather:").
_HEADING = re.compile(
    r"^[ \t]*(?:(?P<hashes>\#{1,6})[ \t]+"
    r"|(?P<label>(?:[-*][ \t]+)?(?:function|tool|name)(?:[ \t]+name)?[ \t]*:)[ \t]*)?"
    r"`?(?P<name>[A-Za-z_][A-Za-z0-9_\-.:]*?)`?[ \t]*(?P<colon>:)?[ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)
# Words that head a part of a definition or a section, not a function.
_SECTION_WORD_LIST = """
    parameters params arguments args input inputs schema description returns return output outputs
    properties example examples usage note notes tools functions tool function available
"""
_SECTION_WORDS = frozenset(_SECTION_WORD_LIST.split())
_PLAIN_WORD = re.compile(r"[A-Z][a-z]*\Z")
# The label ending right before the schema ("Parameters: ") and the one opening a description.
_TRAILING_LABEL = re.compile(r"(?:^|\n)[ \t]*(?:[-*][ \t]+)?[A-Za-z][A-Za-z_ ]{0,39}:[ \t]*\n?[ \t]*\Z")
_DESCRIPTION_LABEL = re.compile(r"\A(?:[-*][ \t]+)?description[ \t]*:[ \t]*", re.IGNORECASE)
# How far before a schema its heading may be: the description in between is at most this long.
_HEADING_WINDOW = 4096


def _is_schema(value: Any) -> bool:
    """An object's JSON Schema: ``"type": "object"`` and properties that are schemas themselves."""
    if not isinstance(value, dict) or value.get("type") != "object":
        return False
    properties = value.get("properties")
    return isinstance(properties, Mapping) and all(isinstance(schema, Mapping) for schema in properties.values())


def _headed_schema(prompt: str, window_start: int, start: int, schema: Mapping[str, Any]) -> ToolSpec | None:
    """The function a bare schema belongs to, named by the last heading line in the window before
    it; the text between them, minus its labels, is the description (DeepSeek-V3.1's model card
    layout: "### NAME" / "Description: ..." / "Parameters: {schema}")."""
    heading = None
    for match in _HEADING.finditer(prompt, window_start, start):
        name = match.group("name")
        # "NAME:" alone on a line counts, but a capitalized word so written ("Raises:") heads prose
        bare = not (match.group("hashes") or match.group("label"))
        if bare and (not match.group("colon") or _PLAIN_WORD.match(name)):
            continue
        if name.lower() in _SECTION_WORDS or not _FUNCTION_NAME.match(name):
            continue
        heading = match
    if heading is None:
        return None
    between = _TRAILING_LABEL.sub("", prompt[heading.end() : start]).strip()
    description = " ".join(_DESCRIPTION_LABEL.sub("", between).split())
    return ToolSpec(heading.group("name"), description, schema)


def find_tools(prompt: str) -> tuple[list[ToolSpec], list[tuple[int, int]]]:
    """The function definitions printed in the prompt, first occurrence of each name first,
    and the spans of the JSON values that held them.

    A definition is a JSON object with a ``name`` and a ``parameters`` schema, or a bare object
    schema under a line naming the function (``### NAME``, ``Function: NAME``, ``NAME:``).
    """
    decoder = json.JSONDecoder()
    tools: dict[str, ToolSpec] = {}
    spans: list[tuple[int, int]] = []
    pos = 0
    last_end = 0  # where the previous JSON value ended: a heading is never looked for before it
    while (match := _JSON_START.search(prompt, pos)) is not None:
        start = match.start()
        try:
            value, end = decoder.raw_decode(prompt, start)
        except (ValueError, RecursionError):
            pos = start + 1
            continue
        # A definition has a "parameters" key; most JSON in a prompt (results, data) has none.
        found = list(_definitions(value)) if prompt.find('"parameters"', start, end) >= 0 else []
        if not found and _is_schema(value):
            window_start = max(last_end, start - _HEADING_WINDOW)
            spec = _headed_schema(prompt, window_start, start, value)
            found = [spec] if spec is not None else []
        if found:
            spans.append((start, end))
            for spec in found:
                tools.setdefault(spec.name, spec)
        pos = last_end = end  # whatever the value held was seen: never decode inside it again
    for spec, span in _xml_definitions(prompt):  # Qwen3-Coder lists its tools as XML
        spans.append(span)
        tools.setdefault(spec.name, spec)
    for spec, ts_span in _typescript_definitions(prompt):  # gpt-oss: a TypeScript namespace
        if ts_span is not None:
            spans.append(ts_span)
        tools.setdefault(spec.name, spec)
    return list(tools.values()), spans


# Qwen3-Coder's tool list: <function> <name>, <description>, <parameters> with one <parameter>
# (<name>, <type>, <description>, other schema keys) per property, then the schema's other keys.
_XML_FUNCTION = re.compile(
    r"<function>\n<name>(?P<name>[^<\n]+)</name>(?:\n<description>(?P<description>[^<]*)</description>)?"
    r"\n<parameters>(?P<parameters>.*?)\n</parameters>.*?\n</function>",
    re.DOTALL,
)
_XML_PARAMETER = re.compile(r"\n<parameter>\n<name>(?P<name>[^<\n]+)</name>(?P<fields>.*?)\n</parameter>", re.DOTALL)
# Keys as JSON Schema spells them, "$ref" and "$defs" included (pydantic's nested models).
_XML_FIELD = re.compile(r"\n<(?P<key>[A-Za-z_$][\w$-]*)>(?P<value>.*?)</(?P=key)>", re.DOTALL)
# Scalars the template writes with Jinja's ``string`` filter, which spells them as Python does.
_PYTHON_SCALARS = {"True": True, "False": False, "None": None}


def _xml_value(key: str, text: str) -> Any:
    if key == "description":
        return text
    if key == "type":
        # a list of types is written as Python writes a list: "['string', 'null']"
        if text.startswith("[") and text.endswith("]"):
            kinds = re.findall(r"'([^'\\]*)'", text)
            return kinds or text
        return text
    if text in _PYTHON_SCALARS:
        return _PYTHON_SCALARS[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


def _xml_definitions(prompt: str) -> Iterator[tuple[ToolSpec, tuple[int, int]]]:
    """Function definitions written as Qwen3-Coder's template writes them, with their spans."""
    for match in _XML_FUNCTION.finditer(prompt):
        if not _FUNCTION_NAME.match(match.group("name")):
            continue
        properties: dict[str, Any] = {}
        block = match.group("parameters")
        for parameter in _XML_PARAMETER.finditer(block):
            fields = parameter.group("fields")
            properties[parameter.group("name")] = {
                item.group("key"): _xml_value(item.group("key"), item.group("value"))
                for item in _XML_FIELD.finditer(fields)
            }
        rest = _XML_PARAMETER.sub("", block)
        parameters: dict[str, Any] = {"type": "object", "properties": properties}
        for item in _XML_FIELD.finditer(rest):  # "required" and the schema's other keys
            parameters[item.group("key")] = _xml_value(item.group("key"), item.group("value"))
        yield ToolSpec(match.group("name"), match.group("description") or "", parameters), match.span()


# gpt-oss (harmony) lists its tools as a TypeScript namespace: "// description" lines, then
# "type NAME = (_: {...}) => any;" whose object type holds per parameter "// description" lines,
# "NAME: TYPE," ("NAME?:" when optional) and " // default: VALUE"; "type NAME = () => any;"
# takes none.
_TS_FUNCTION = re.compile(r"^type (?P<name>[A-Za-z_][A-Za-z0-9_\-.:]*) = \((?P<open>_: \{|\) => any;)", re.MULTILINE)
_TS_KEY = re.compile(r"(?P<key>[^\s?:{}|,]+)(?P<optional>\?)?:[ \t]*")
_TS_WORD = re.compile(r"Array<any>|[A-Za-z_]\w*")
_TS_TYPES = {"string": "string", "number": "number", "boolean": "boolean", "null": "null", "object": "object"}


class _TypeScriptError(ValueError):
    pass


class _TypeScriptReader:
    """Reads the TypeScript-like object types of harmony's tool list back into JSON Schemas."""

    def __init__(self, text: str, pos: int) -> None:
        self.text = text
        self.pos = pos

    def expect(self, literal: str) -> None:
        if not self.text.startswith(literal, self.pos):
            raise _TypeScriptError(f"expected {literal!r} at {self.pos}")
        self.pos += len(literal)

    def object(self, depth: int = 0) -> dict[str, Any]:
        if depth > _MAX_DEPTH:
            raise _TypeScriptError("too deep")
        self.expect("{")
        properties: dict[str, Any] = {}
        required: list[str] = []
        comments: list[str] = []
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
                self.pos += 1
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return {"type": "object", "properties": properties, "required": required}
            if self.text.startswith("//", self.pos):
                comments.append(self.line()[2:].strip())
                continue
            key = _TS_KEY.match(self.text, self.pos)
            if key is None:
                raise _TypeScriptError(f"expected a parameter at {self.pos}")
            self.pos = key.end()
            schema = self.union(depth)
            self.expect(",")
            default = self.line().strip()
            if default.startswith("// default: "):
                schema["default"] = _typescript_default(default.removeprefix("// default: "))
            description = "\n".join(line for line in comments if line)
            if description:
                schema["description"] = description
            properties[key.group("key")] = schema
            if not key.group("optional"):
                required.append(key.group("key"))
            comments = []

    def line(self) -> str:
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end < 0 else end
        text = self.text[self.pos : end]
        self.pos = end
        return text

    def union(self, depth: int) -> dict[str, Any]:
        parts = [self.primary(depth)]
        while self.text.startswith(" | ", self.pos):
            self.pos += 3
            parts.append(self.primary(depth))
        if len(parts) == 1:
            return parts[0]
        if all(set(part) == {"const"} and isinstance(part["const"], str) for part in parts):
            return {"type": "string", "enum": [part["const"] for part in parts]}
        if all(set(part) == {"type"} for part in parts):
            return {"type": [part["type"] for part in parts]}
        return {"anyOf": parts}

    def primary(self, depth: int) -> dict[str, Any]:
        schema: dict[str, Any]
        if self.text.startswith("{", self.pos):
            schema = self.object(depth + 1)
        elif self.text.startswith('"', self.pos):
            end = self.text.find('"', self.pos + 1)
            if end < 0 or "\n" in self.text[self.pos : end]:
                raise _TypeScriptError("an unterminated string")
            schema = {"const": self.text[self.pos + 1 : end]}
            self.pos = end + 1
        else:
            word = _TS_WORD.match(self.text, self.pos)
            if word is None:
                raise _TypeScriptError(f"expected a type at {self.pos}")
            self.pos = word.end()
            kind = _TS_TYPES.get(word.group())
            schema = {"type": "array"} if word.group() == "Array<any>" else {"type": kind} if kind else {}
        while self.text.startswith("[]", self.pos):
            self.pos += 2
            schema = {"type": "array", "items": schema}
        return schema


def _typescript_default(text: str) -> Any:
    """A default as harmony prints it: JSON, except an enum's string default, printed bare."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _comment_above(prompt: str, start: int) -> str:
    """The "// " comment lines right above the line starting at ``start``, without the slashes."""
    lines: list[str] = []
    end = start
    while end > 0:
        line_start = prompt.rfind("\n", 0, end - 1) + 1
        line = prompt[line_start : end - 1]
        if not line.startswith("//"):
            break
        lines.append(line[2:].removeprefix(" "))
        end = line_start
    return "\n".join(reversed(lines))


def _typescript_definitions(prompt: str) -> Iterator[tuple[ToolSpec, tuple[int, int] | None]]:
    """Function definitions written as harmony writes them, with the spans of their object types."""
    for match in _TS_FUNCTION.finditer(prompt):
        description = _comment_above(prompt, match.start())
        if match.group("open").startswith(")"):
            yield ToolSpec(match.group("name"), description, {"type": "object", "properties": {}}), None
            continue
        start = match.end() - 1
        reader = _TypeScriptReader(prompt, start)
        try:
            parameters = reader.object()
            reader.expect(") => any;")
        except (_TypeScriptError, RecursionError):
            continue
        yield ToolSpec(match.group("name"), description, parameters), (start, reader.pos - len(") => any;"))


# -- the conversation -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Conversation:
    request: str  # the latest user message, without tool definitions printed into it
    results: tuple[str, ...]  # tool results given after it, in order


def _first(text: str, needles: Sequence[str], start: int) -> int:
    found = [i for i in (text.find(needle, start) for needle in needles) if i >= 0]
    return min(found, default=len(text))


def _results(prompt: str, layout: Layout, start: int) -> tuple[str, ...]:
    closers = dict(layout.results)
    pattern = re.compile("|".join(re.escape(opener) for opener in closers))
    results = []
    for match in pattern.finditer(prompt, start):
        end = _first(prompt, closers[match.group()], match.end())
        text = prompt[match.end() : end].strip()
        if layout.result_header and text.startswith(layout.result_header):
            text = text.partition("\n")[2].strip()
        results.append(_unwrap_result(text, layout.result_key))
    return tuple(results)


def _unwrap_result(text: str, key: str | None) -> str:
    """A tool result as the tool gave it, from the JSON a template wrapped it in."""
    if key is None:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if key:
        if not isinstance(value, dict) or key not in value:
            return text
        value = value[key]
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _read(prompt: str, layout: Layout, spans: Sequence[tuple[int, int]]) -> Conversation | None:
    openers = tuple(opener for opener, _ in layout.results)
    pos = len(prompt)
    while (turn := prompt.rfind(layout.user, 0, pos)) >= 0:
        body_start = turn + len(layout.user)
        body_end = _first(prompt, layout.user_end, body_start)
        body = prompt[body_start:body_end]
        if body.lstrip().startswith(openers):
            pos = turn
            continue
        # Llama puts the tool definitions and instructions into the user turn, before the question.
        for _, span_end in spans:
            if body_start <= span_end <= body_end:
                body_start = span_end
        request = prompt[body_start:body_end].strip()
        if layout.request_last_paragraph:
            request = request.rsplit("\n\n", 1)[-1].strip()
        return Conversation(request, _results(prompt, layout, body_end))
    return None


def read_conversation(prompt: str, dialect: str, spans: Sequence[tuple[int, int]] = ()) -> Conversation:
    """The latest request and the results since, read with the dialect's layout, else with the
    first layout whose user marker is in the prompt (a generic model may use any template)."""
    first = LAYOUTS.get(dialect, LAYOUTS["generic"])
    for layout in (first, *(layout for layout in LAYOUTS.values() if layout is not first)):
        found = _read(prompt, layout, spans)
        if found is not None:
            return found
    tail = prompt[max((end for _, end in spans), default=0) :].strip()
    return Conversation(tail.rsplit("\n\n", 1)[-1].strip(), ())


# -- words, entities and arguments ----------------------------------------------------------------

# Words that name nothing: never an entity, never evidence for a tool.
_COMMON_WORDS = """
    a about after all also am an and any are as at be been before but by can could did do does
    for from get give had has have he hello her hey hi him his how i i'd i'll i'm if in into is
    it it's its just let let's like me might my no not now of off ok okay on or our out please
    she should show so some than thank thanks that the their them then there these they this
    those to today tomorrow tonight up us use want was we were what what's whats when where
    which who why will with would yes yesterday you your
    tell find check look search list compare fetch give call make need know see help
    right currently json
"""
# Parameter names that take a named thing from the request: a place, or something to look up.
_ENTITY_PARAMETER_WORDS = """
    location locations city cities place places country countries destination origin address
    region area town where venue airport
    query q search term terms keyword keywords topic subject question name symbol ticker company
    person title entity
"""
_COMMON = frozenset(_COMMON_WORDS.split())
_ENTITY_PARAMETERS = frozenset(_ENTITY_PARAMETER_WORDS.split())
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?|\d+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_CAPITALIZED = re.compile(
    r"[A-Z][\w'’&-]*(?:[ \t]+(?:(?:of|the|de|da|del|di|du|la|le|los|las|van|von|y)[ \t]+)?[A-Z][\w'’&-]*)*"
)
_QUOTED = re.compile(r"[\"“]([^\"“”\n]{1,80})[\"”]")
_AFTER_PREPOSITION = re.compile(r"\b(?:in|at|near|for|about|of|from|to|on)\s+([^?.!;:\n]+)", re.IGNORECASE)
_LIST_SEPARATOR = re.compile(r"\s*(?:,|&|/|\band\b|\bor\b)\s*", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+|\n\s*)$")


def _stem(word: str) -> str:
    word = word.lower().replace("’", "'")
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith(("ss", "'s")) and len(word) > 3:
        return word[:-1]
    return word


def _words(text: str) -> set[str]:
    """Content words of a text or identifier (``get_current_weather``, ``getWeather``)."""
    text = _CAMEL.sub(" ", text.replace("_", " ").replace("-", " "))
    return {_stem(w) for w in _WORD.findall(text) if w.lower().replace("’", "'") not in _COMMON}


def _score(tool: ToolSpec, request_words: set[str]) -> int:
    return 2 * len(_words(tool.name) & request_words) + len(_words(tool.description) & request_words)


def choose_tool(tools: Sequence[ToolSpec], request: str) -> tuple[ToolSpec | None, int]:
    """The tool sharing most words with the request (name words count double); the first on ties."""
    request_words = _words(request)
    best: ToolSpec | None = None
    best_score = -1
    for tool in tools:
        score = _score(tool, request_words)
        if score > best_score:
            best, best_score = tool, score
    return best, max(best_score, 0)


def _trim_common(words: list[str]) -> list[str]:
    while words and words[0].lower().replace("’", "'") in _COMMON:
        words.pop(0)
    while words and words[-1].lower().replace("’", "'") in _COMMON:
        words.pop()
    return words


def _clean_entity(phrase: str) -> str:
    words = _trim_common(phrase.split())
    text = " ".join(words).strip(" .,'’\"")
    return re.sub(r"['’]s\Z", "", text)


def extract_entities(request: str, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Named things in a request: quoted text, else capitalized phrases, else what follows a
    preposition. "San Francisco, Tokyo, and Paris" gives three."""
    found: list[str] = [q.strip() for q in _QUOTED.findall(request) if q.strip()]
    if not found:
        initial: list[str] = []
        for match in _CAPITALIZED.finditer(request):
            phrase = _clean_entity(match.group())
            if not phrase:
                continue
            # A capitalized first word of a sentence is usually just that ("Book a flight to
            # Paris"); it counts only when nothing else is named.
            sentence_initial = _SENTENCE_START.search(request, 0, match.start()) is not None
            if sentence_initial and " " not in phrase and phrase == match.group().split()[0]:
                initial.append(phrase)
            else:
                found.append(phrase)
        if not found:
            found = initial
    if not found:
        matches = _AFTER_PREPOSITION.findall(request)
        if matches:
            found = [_clean_entity(part) for part in _LIST_SEPARATOR.split(matches[-1])]
    unique: list[str] = []
    for entity in found:
        if entity and entity.lower() not in exclude and entity not in unique:
            unique.append(entity)
    return unique


def _phrase(request: str) -> str:
    words = _trim_common(re.sub(r"\s+", " ", request).strip(" ?!.").split())
    return " ".join(words[:8]).strip(" ?!.,") or request.strip()[:60]


@dataclass(slots=True)
class _Context:
    request: str
    words: set[str]
    lower: str
    entities: list[str]
    number: float | None = None
    assigned: dict[str, str] = field(default_factory=dict)
    root: Mapping[str, Any] = field(default_factory=dict)  # the tool's parameters: where "$ref"s point
    tokens: list[str] = field(default_factory=list)  # the request's words and numbers, in order


# The request's words and numbers in order, to find the number written next to a parameter's name.
_TOKEN = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?|[^\W\d_]+(?:['’][^\W\d_]+)?")
# How many words from a parameter's name (or its object's: "a budget of 1500") its number may be.
_NUMBER_WINDOW = 3


def _is_null(schema: Any, root: Mapping[str, Any]) -> bool:
    schema = follow_schema(root, schema)
    return schema.get("type") == "null" or ("const" in schema and schema["const"] is None)


def _nullable(schema: Any, root: Mapping[str, Any]) -> bool:
    """Whether null is one of the values the schema offers besides others (``Optional[X]``)."""
    schema = follow_schema(root, schema)
    kind = schema.get("type")
    if isinstance(kind, list):
        return "null" in kind
    options = [o for key in ("anyOf", "oneOf") for o in schema.get(key) or () if isinstance(o, Mapping)]
    return any(_is_null(option, root) for option in options)


def _resolve(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema`` followed through its references and ``allOf`` (into ``root``'s definitions),
    then, where ``anyOf``/``oneOf`` offer branches, the first that is not null, with the keys
    beside them (a description, a default)."""
    resolved = follow_schema(root, schema)
    for _ in range(_MAX_DEPTH):
        options = next((resolved[key] for key in ("anyOf", "oneOf") if isinstance(resolved.get(key), list)), None)
        if not options:
            return resolved
        rest = {k: v for k, v in resolved.items() if k not in ("anyOf", "oneOf")}
        usable = [o for o in options if isinstance(o, Mapping) and not _is_null(o, root)]
        resolved = follow_schema(root, {**rest, **(usable[0] if usable else {"type": "null"})})
    return resolved


def _type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if isinstance(kind, str):
        return kind
    if isinstance(schema.get("properties"), Mapping):
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _entity_like(name: str, schema: Mapping[str, Any]) -> bool:
    words = {w.lower() for w in _WORD.findall(_CAMEL.sub(" ", name.replace("_", " ")))}
    if words & _ENTITY_PARAMETERS:
        return True
    description = schema.get("description")
    return isinstance(description, str) and bool(_words(description) & {"city", "location", "place"})


def _mentioned(name: str, schema: Mapping[str, Any], context: _Context) -> bool:
    if _words(name) & context.words:
        return True
    enum = schema.get("enum")
    return isinstance(enum, list) and any(_mentions(context, value) for value in enum)


def _mentions(context: _Context, value: Any) -> bool:
    return (
        isinstance(value, str)
        and bool(value)
        and re.search(rf"\b{re.escape(value.lower())}\b", context.lower) is not None
    )


def _number_near(names: Sequence[str], context: _Context) -> float | None:
    """The number written closest to a word of the first of ``names`` the request names (the
    parameter's own name, then the names of the objects holding it), within a few words."""
    for name in names:
        wanted = _words(name)
        at = [i for i, token in enumerate(context.tokens) if _stem(token) in wanted]
        best: tuple[int, float] | None = None
        for i, token in enumerate(context.tokens):
            if _NUMBER.fullmatch(token) is None:
                continue
            distance = min((abs(i - j) for j in at), default=_NUMBER_WINDOW + 1)
            if distance <= _NUMBER_WINDOW and (best is None or distance < best[0]):
                best = (distance, float(token))
        if best is not None:
            return best[1]
    return None


def _number(schema: Mapping[str, Any], context: _Context, integer: bool, names: Sequence[str] = ()) -> float | int:
    value: float
    near = _number_near(names, context)
    if near is not None:
        value = near
    elif context.number is not None:
        value = context.number
    elif isinstance(schema.get("default"), int | float) and not isinstance(schema.get("default"), bool):
        value = schema["default"]
    elif isinstance(schema.get("minimum"), int | float):
        value = schema["minimum"]
    else:
        value = 1
    if isinstance(schema.get("maximum"), int | float):
        value = min(value, schema["maximum"])
    if isinstance(schema.get("minimum"), int | float):
        value = max(value, schema["minimum"])
    return int(value) if integer or float(value).is_integer() else value


_FORMATS = {
    "date": "2024-06-01",
    "date-time": "2024-06-01T12:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com",
}


def _string(name: str, schema: Mapping[str, Any], context: _Context) -> str:
    if name in context.assigned:
        return context.assigned[name]
    if _entity_like(name, schema) and context.entities:
        return context.entities[0]
    if isinstance(schema.get("default"), str):
        return str(schema["default"])
    if schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    return _phrase(context.request)


def _left_null(name: str, schema: Any, context: _Context) -> bool:
    """A value that may be null (``Optional[X]``) and that the request says nothing of: a model
    leaves it null."""
    if not _nullable(schema, context.root):
        return False
    resolved = _resolve(schema, context.root)
    if resolved.get("default") is not None or name in context.assigned:
        return False
    if _entity_like(name, resolved) and context.entities:
        return False
    return not _mentioned(name, resolved, context)


def _value(name: str, schema: Any, context: _Context, depth: int = 0, path: tuple[str, ...] = ()) -> Any:
    """A value for the parameter ``name`` (inside the objects named by ``path``) from the request."""
    if _left_null(name, schema, context):
        return None
    schema = _resolve(schema, context.root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        mentioned = [value for value in enum if _mentions(context, value)]
        if mentioned:
            return mentioned[0]
        return schema["default"] if schema.get("default") in enum else enum[0]
    kind = _type(schema)
    if kind == "object":
        return _object(schema, context, depth + 1, (*path, name)) if depth < _MAX_DEPTH else {}
    if kind == "array":
        items = _resolve(schema.get("items"), context.root)
        if _entity_like(name, schema) and _type(items) == "string" and "enum" not in items and context.entities:
            return list(context.entities)
        return [_value(name, schema.get("items"), context, depth + 1, path)] if depth < _MAX_DEPTH else []
    if kind in ("integer", "number"):
        return _number(schema, context, kind == "integer", (name, *reversed(path)))
    if kind == "boolean":
        default = schema.get("default")
        return default if isinstance(default, bool) else False
    if kind == "null":
        return None
    return _string(name, schema, context)


def _chosen_properties(schema: Mapping[str, Any], context: _Context) -> list[str]:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return []
    required = schema.get("required")
    if isinstance(required, list):
        wanted = {name for name in required if isinstance(name, str)}
    else:
        wanted = {name for name, sub in properties.items() if _entity_like(name, _resolve(sub, context.root))}
    wanted |= {name for name, sub in properties.items() if _mentioned(name, _resolve(sub, context.root), context)}
    if not wanted and not isinstance(required, list):
        wanted = set(properties)
    return [name for name in properties if name in wanted]


def _object(schema: Mapping[str, Any], context: _Context, depth: int = 0, path: tuple[str, ...] = ()) -> dict[str, Any]:
    schema = _resolve(schema, context.root)
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    return {name: _value(name, properties[name], context, depth, path) for name in _chosen_properties(schema, context)}


def _entity_parameters(schema: Any, context: _Context, depth: int = 0) -> list[str]:
    """The parameters that take a named thing from the request, in the schema's order, those
    of the objects it holds (a traveller's name) included."""
    schema = _resolve(schema, context.root)
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or depth > _MAX_DEPTH:
        return []
    names: list[str] = []
    for name in _chosen_properties(schema, context):
        sub = _resolve(properties[name], context.root)
        kind = _type(sub)
        if kind == "string" and "enum" not in sub and _entity_like(name, sub):
            found = [name]
        elif kind == "object":
            found = _entity_parameters(sub, context, depth + 1)
        elif kind == "array" and _type(_resolve(sub.get("items"), context.root)) == "object":
            found = _entity_parameters(sub.get("items"), context, depth + 1)
        else:
            found = []
        names += [slot for slot in found if slot not in names]
    return names


def _enum_values(tool: ToolSpec) -> frozenset[str]:
    """Choices such as "celsius", anywhere in the parameters (their definitions included):
    mentioned in a request, but never a place or a query."""
    found: set[str] = set()

    def collect(value: Any, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        if isinstance(value, Mapping):
            enum = value.get("enum")
            if isinstance(enum, list):
                found.update(str(choice).lower() for choice in enum if isinstance(choice, str | int | float))
            for item in value.values():
                collect(item, depth + 1)
        elif isinstance(value, list):
            for item in value:
                collect(item, depth + 1)

    collect(tool.parameters, 0)
    return frozenset(found)


def plan_calls(tool: ToolSpec, request: str) -> list[dict[str, Any]]:
    """The arguments of each call the request needs: one per named entity when the tool takes one
    place/query at a time, else a single call."""
    exclude = _enum_values(tool)
    number = _NUMBER.search(request)
    context = _Context(
        request=request,
        words=_words(request),
        lower=request.lower(),
        entities=extract_entities(request, exclude),
        number=float(number.group()) if number else None,
        root=tool.parameters,
        tokens=_TOKEN.findall(request),
    )
    slots = _entity_parameters(tool.parameters, context)
    if len(slots) == 1 and len(context.entities) > 1:
        calls = []
        for entity in context.entities:
            context.assigned = {slots[0]: entity}
            calls.append(_object(tool.parameters, context))
        return calls
    if slots and context.entities:
        # Several places in one call ("from Paris to Tokyo"): named in order.
        context.assigned = {slot: context.entities[i % len(context.entities)] for i, slot in enumerate(slots)}
    return [_object(tool.parameters, context)]


# -- the answer -----------------------------------------------------------------------------------


def _clip(text: str, limit: int = 200) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _final_answer(results: Sequence[str], labels: Sequence[str]) -> str:
    parts = [f"{labels[i]}: {_clip(result)}" if i < len(labels) else _clip(result) for i, result in enumerate(results)]
    return "Here is what I found: " + "; ".join(parts) + "."


def _plain_answer(request: str, model: str) -> str:
    request = _clip(request)
    if not request:
        return f"Hello! This is a simulated answer from {model}."
    return f"You asked: '{request}'. This is a simulated answer from {model}."


def _continuation(prefill: str, text: str) -> str:
    """What follows ``prefill`` in ``text``, matching them while ignoring whitespace.

    The proxy forces a call by ending the prompt with the start of one (``Dialect.prefill``), whose
    spacing differs from what ``write_call`` produces; the model just goes on from there.
    """
    j = 0
    for char in prefill:
        if char.isspace():
            continue
        while j < len(text) and text[j].isspace():
            j += 1
        if j >= len(text) or text[j] != char:
            return text  # not the start of our answer: the model ignores it and writes its own
        j += 1
    return text[j:]


def _prefill(prompt: str, dialect: str, tools: Sequence[ToolSpec]) -> tuple[str, Force]:
    """The forced start of the answer, or the generic protocol's stated obligation to call."""
    spec = get_dialect(dialect)
    if spec.transport == "chat":
        for tool in tools:
            if generic.MUST_CALL_NAMED.format(name=tool.name) in prompt:
                return "", tool.name
        if generic.MUST_CALL_ANY in prompt:
            return "", "required"
    for tool in tools:
        text = spec.prefill(tool.name)
        if text and prompt.endswith(text):
            return text, tool.name
    text = spec.prefill(None)
    if text and prompt.endswith(text):
        return text, "required"
    return "", None


@dataclass(frozen=True, slots=True)
class Generation:
    text: str  # the raw output, special tokens included, as a model with this template writes it
    calls: tuple[tuple[str, dict[str, Any]], ...]  # the calls it contains, for guided (forced) modes
    tokens: tuple[str, ...]
    # What a well-behaved model writes: ``text`` itself unless the model was scripted to
    # misbehave. A constrained model that strays goes on with it (see sim.constrained).
    intended: str = ""


def generate(
    prompt: str, *, dialect: str, model: str, force: Force = None, misbehave: Sequence[str] = ()
) -> Generation:
    """The model's output for a prompt.

    ``force`` makes a call mandatory, as guided decoding does for ``tool_choice`` "required" or a
    named tool; a prompt ending in the dialect's prefill forces the same way. ``misbehave`` names
    the ways (``MISBEHAVIOURS``) a model scripted to misbehave gets the calls it makes wrong.
    """
    spec = get_dialect(dialect)
    layout = LAYOUTS.get(dialect, LAYOUTS["generic"])
    tools, spans = find_tools(prompt)
    prefill, prefill_force = _prefill(prompt, dialect, tools)
    force = force or prefill_force
    conversation = read_conversation(prompt, dialect, spans)

    tool: ToolSpec | None = None
    if force not in (None, "required"):
        tool = next((t for t in tools if t.name == force), ToolSpec(str(force), "", {}))
    elif tools:
        best, score = choose_tool(tools, conversation.request)
        if score > 0 or force == "required":
            tool = best

    calls: list[tuple[str, dict[str, Any]]] = []
    if tool is not None:
        arguments = plan_calls(tool, conversation.request)
        rounds = [arguments] if spec.parallel_calls else [[a] for a in arguments]
        done = len(conversation.results)
        if done < len(rounds):
            calls = [(tool.name, a) for a in rounds[done]]
        elif force is not None:
            calls = [(tool.name, a) for a in rounds[-1]]

    if calls:
        text = spec.write_calls(calls) + layout.call_end
    elif conversation.results:
        # Results come back in the order of the calls, which is the order of the entities.
        labels = extract_entities(conversation.request, _enum_values(tool)) if tool is not None else []
        text = layout.text_prefix + _final_answer(conversation.results, labels) + layout.text_end
    else:
        text = layout.text_prefix + _plain_answer(conversation.request, model) + layout.text_end
    intended = text
    if calls and misbehave:
        text = _misbehaved(calls, misbehave, dialect, _plain_answer(conversation.request, model))
    if prefill:
        text = _continuation(prefill, text)
        intended = _continuation(prefill, intended)
    return Generation(text, tuple(calls), tuple(tokenize(text, special_tokens(dialect))), intended)


def _misbehaved(calls: Sequence[tuple[str, dict[str, Any]]], kinds: Sequence[str], dialect: str, prose: str) -> str:
    """The calls written wrong: prose instead, a name not offered, arguments of the wrong types,
    or one call too many."""
    layout = LAYOUTS.get(dialect, LAYOUTS["generic"])
    if "prose" in kinds:
        return layout.text_prefix + prose + layout.text_end
    wrong = [(f"{name}_v2" if "wrong-name" in kinds else name, arguments) for name, arguments in calls]
    if "bad-arguments" in kinds:
        wrong = [(name, _spoiled(arguments)) for name, arguments in wrong]
    if "extra-call" in kinds:
        wrong.append(wrong[0])
    return get_dialect(dialect).write_calls(wrong) + layout.call_end


def _spoiled(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The first argument (usually the one required) left out, the others of the wrong types,
    and a key no schema asked for: wrong in every family's syntax, raw-text values included."""
    spoiled: dict[str, Any] = {}
    for key, value in list(arguments.items())[1:]:
        if isinstance(value, str):
            spoiled[key] = 42
        elif isinstance(value, bool | int | float):
            spoiled[key] = "many"
        else:
            spoiled[key] = "see above"
    spoiled["confidence"] = "high"
    return spoiled


# -- tokens ---------------------------------------------------------------------------------------

_TOKEN_PATTERNS = (
    r"<\|[^<>|\s]{1,40}\|>",  # <|im_end|>, <|eot_id|>, ...
    r"</?[A-Za-z_][\w.-]{0,40}>",  # <tool_call>, </tool_response>, ...
    r" ?[^\W\d_]{1,4}",  # words, in pieces of up to four letters
    r"\d{1,3}",
    r"\n+",
    r"[ \t]+",
    r"[^\w\s][^\w\s<]?",  # punctuation in pairs, never swallowing the "<" of a marker
    r".",
)
_TOKENIZERS: dict[frozenset[str], re.Pattern[str]] = {}


def tokenize(text: str, special: frozenset[str] = frozenset()) -> list[str]:
    """Deterministic pseudo-tokens: each special or marker token alone, other text in pieces of
    about three or four characters. Their concatenation is ``text``."""
    pattern = _TOKENIZERS.get(special)
    if pattern is None:
        alternatives = [re.escape(token) for token in sorted(special, key=len, reverse=True)]
        pattern = re.compile("|".join((*alternatives, *_TOKEN_PATTERNS)), re.DOTALL)
        _TOKENIZERS[special] = pattern
    return pattern.findall(text)


def count_tokens(text: str) -> int:
    """Prompt tokens as usage reports them: about four characters each."""
    return max(1, (len(text) + 3) // 4)


@dataclass(frozen=True, slots=True)
class Decoded:
    """The output as a request sees it, and what a stream shows after each generated token."""

    text: str
    deltas: tuple[str, ...]
    completion_tokens: int
    finish_reason: Literal["stop", "length"]
    stop_reason: str | int | None  # the stop string, or the stop_token_ids id, that ended it
    token_ids: tuple[int, ...] = ()  # when the simulator works on ids: the generated ids, one per delta


def decode(
    tokens: Sequence[str],
    *,
    special: frozenset[str] = frozenset(),
    skip_special_tokens: bool = True,
    stop: Sequence[str] = (),
    max_tokens: int | None = None,
    include_stop_str_in_output: bool = False,
) -> Decoded:
    """Detokenize like vLLM: special tokens dropped when asked, then stop strings matched on the
    decoded text, then ``max_tokens``.

    A stream holds back the last ``len(longest stop) - 1`` characters until they cannot begin a
    stop string, as vLLM does, so a stop string never leaks into streamed text.
    """
    stop = [s for s in stop if s]
    longest = max((len(s) for s in stop), default=0)
    text = ""
    ends: list[int] = []
    finish: Literal["stop", "length"] = "stop"
    stop_reason: str | None = None
    cut: int | None = None
    for token in tokens:
        if max_tokens is not None and len(ends) >= max_tokens:
            finish = "length"
            break
        previous = len(text)
        text += "" if skip_special_tokens and token in special else token
        ends.append(len(text))
        if stop:
            window = max(0, previous - longest + 1)
            hits = [(i, s) for s in stop if (i := text.find(s, window)) >= 0]
            if hits:
                index, stop_reason = min(hits)
                cut = index + len(stop_reason) if include_stop_str_in_output else index
                break
    else:
        if max_tokens is not None and len(ends) >= max_tokens:
            finish = "length"  # the end-of-sequence token did not fit
    if cut is not None:
        text = text[:cut]
    completion_tokens = len(ends)
    if cut is None and finish == "stop":
        completion_tokens += 1  # vLLM counts the end-of-sequence token
    hold = 0 if include_stop_str_in_output else max(longest - 1, 0)
    deltas: list[str] = []
    shown = 0
    for i, end in enumerate(ends):
        visible = len(text) if i == len(ends) - 1 else min(max(end - hold, shown), len(text))
        deltas.append(text[shown:visible])
        shown = visible
    return Decoded(text, tuple(deltas), completion_tokens, finish, stop_reason)
