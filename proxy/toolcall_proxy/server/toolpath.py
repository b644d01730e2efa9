"""Requests with tools: what to ask the upstream, and how to turn its text into ``tool_calls``."""

from __future__ import annotations

import logging
import secrets
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..dialects import Dialect
from ..parsing.parser import ArgumentsDelta, CallEnded, CallParser, CallStarted, Event, ReasoningDelta, TextDelta
from ..parsing.result import ParsedCall, fold
from ..rendering import TemplateRenderError
from ..tokens import ControlMarkers, OutputDecoder, PromptTokenizer
from . import contract
from .constraints import OFF, GrammarBook, grammar_fields, schema_fields
from .errors import ProxyError
from .metrics import ProxyMetrics
from .settings import ProxySettings
from .validation import ChatToolRequest, Tool

__all__ = [
    "Answer",
    "OutputReader",
    "StreamConverter",
    "ToolPath",
    "UpstreamCall",
    "add_usage",
    "chat_logprobs",
    "chunk_head",
]

log = logging.getLogger("toolmodel.proxy")

# Fields relayed to /v1/completions as they are: OpenAI's sampling fields and vLLM's extensions,
# which vLLM's completions endpoint takes as its chat endpoint does.
_SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "length_penalty",
    "logit_bias",
    "user",
    "ignore_eos",
    "min_tokens",
    "include_stop_str_in_output",
    "bad_words",
    "allowed_token_ids",
    "truncate_prompt_tokens",
    "priority",
    "cache_salt",
    "kv_transfer_params",
    "vllm_xargs",
)
# A client's own constraint fields for vLLM: relayed where the proxy sends none of its own.
_CLIENT_CONSTRAINTS = (
    "response_format",
    "structured_outputs",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
)
_ID_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """``prefix`` + random letters and digits (OpenAI's shape): one urandom read, not one per letter."""
    return prefix + "".join(_ID_ALPHABET[byte % 62] for byte in secrets.token_bytes(length))


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One request to the upstream: its path, JSON body, and the text we put in the model's mouth.

    ``prompt`` is the prompt as text (markers as their text, the prefill included) whatever form
    the engine gets it in; ``prompt_ids`` are the ids sent, for token-id dialects.
    """

    path: str
    payload: dict[str, Any]
    prefill: str
    prompt: str = ""
    prompt_ids: list[int] | None = None
    tokenizer: PromptTokenizer | None = None
    constraint: str | None = None  # the grammar or schema the engine was asked to enforce

    def reader(self) -> OutputReader:
        return OutputReader(self)


class OutputReader:
    """The model's output text from the engine's choices, in order.

    For a token-id dialect the output's ids (``return_token_ids``) are decoded here the way the
    prompt was encoded, so control tokens come back as their markers; an engine that does not
    return ids (vLLM before 0.10.2) gives its own text, and the control id it stopped on
    (``stop_reason``) is added as its marker.
    """

    __slots__ = ("_decoder", "_tokenizer")
    _warned = False

    def __init__(self, call: UpstreamCall) -> None:
        self._tokenizer = call.tokenizer
        self._decoder: OutputDecoder | None = None
        if call.tokenizer is not None:
            self._decoder = call.tokenizer.decoder(call.prompt_ids or [])

    def text(self, choice: Mapping[str, Any]) -> str:
        ids = choice.get("token_ids")
        if self._decoder is not None and isinstance(ids, list):
            decoded = self._decoder.feed(ids)
            if choice.get("finish_reason"):
                decoded += self._decoder.flush()
            return decoded
        text: Any = choice.get("text")
        if text is None:
            text = (choice.get("delta") or choice.get("message") or {}).get("content") or ""
        if self._tokenizer is not None:
            if not OutputReader._warned:
                OutputReader._warned = True
                log.warning(
                    "the engine returns no token_ids (vLLM < 0.10.2): its text is used, and a role "
                    "token in the middle of an answer cannot be seen"
                )
            reason = choice.get("stop_reason")
            if isinstance(reason, int):
                text = str(text) + self._tokenizer.control_tokens.get(reason, "")
        return str(text)


@dataclass(frozen=True, slots=True)
class _Constraint:
    text: str  # the grammar, or the arguments' schema as JSON
    fields: dict[str, Any]  # the request fields that carry it
    whole_answer: bool  # a grammar of the whole answer, not of the arguments after a prefill


@dataclass(frozen=True, slots=True)
class Answer:
    """What the model said, as the response will carry it."""

    content: str | None
    calls: list[ParsedCall]
    reasoning: str | None = None


class ToolPath:
    def __init__(self, dialect: Dialect, settings: ProxySettings, metrics: ProxyMetrics) -> None:
        self.dialect = dialect
        self.settings = settings
        self.metrics = metrics
        self.tokenizer: PromptTokenizer | None = None  # set once loaded, for token-id dialects
        self.grammars = GrammarBook(dialect)
        # how the engine takes a constraint (constraints.engine_fields), once the proxy asked it
        # (ProxyApp._ask_engine); until then nothing is constrained
        self.engine_fields = OFF
        self._said_refused = False

    # -- the upstream request --------------------------------------------------------------
    def upstream_call(self, request: ChatToolRequest, *, retry: bool = False, constrain: bool = True) -> UpstreamCall:
        """The engine's request; ``constrain`` false leaves the decode-time constraint out (the
        engine refused it), and the prefill and a retry do what they can instead. A template
        that refuses the messages (its ``raise_exception``) is a 400 with its message."""
        try:
            return self._upstream_call(request, retry=retry, constrain=constrain)
        except TemplateRenderError as error:
            raise ProxyError(
                400, f"messages: the {self.dialect.name} chat template refused them: {error}", param="messages"
            ) from None

    def _upstream_call(self, request: ChatToolRequest, *, retry: bool, constrain: bool) -> UpstreamCall:
        body = request.body
        offered = request.offered
        forced = request.forced_name
        constraint = self._constraint(request) if constrain else None
        prefill = ""
        if constraint is not None and constraint.whole_answer:
            pass  # the grammar writes the calls' start itself; a prefill would put it there twice
        elif forced is not None:
            prefill = self.dialect.prefill(forced)
        elif request.choice.mode == "required":
            prefill = self.dialect.prefill(None)
        stop = _stop_list(body.get("stop")) + [s for s in self.dialect.stop if s not in _stop_list(body.get("stop"))]
        if self.dialect.transport == "chat":
            assert self.dialect.rewrite_messages is not None
            payload = {
                key: value
                for key, value in body.items()
                if key not in ("tools", "tool_choice", "parallel_tool_calls", "functions", "function_call")
            }
            obligation = forced or ("required" if request.choice.mode == "required" else None)
            payload["messages"] = self.dialect.rewrite_messages(
                request.messages, [t.definition for t in offered], obligation
            )
            prefill = ""  # a chat upstream cannot be given the start of the answer
            path = "/v1/chat/completions"
        else:
            tools = [t.definition for t in offered] or None
            prompt_ids: list[int] | None = None
            kwargs = request.template_kwargs
            if self.dialect.prompt_form == "token_ids":
                tokenizer = self.loaded_tokenizer()
                markers = ControlMarkers()
                parts = markers.split(
                    self.dialect.render_prompt(request.messages, tools, control_token=markers, template_kwargs=kwargs)
                    + prefill
                )
                prompt_ids = tokenizer.prompt_ids(parts)
                prompt = "".join(parts)  # the markers' text between the spans
                stop = _stop_list(body.get("stop"))  # the family's stops are ids now
            else:
                prompt = self.dialect.render_prompt(request.messages, tools, template_kwargs=kwargs) + prefill
            payload = {
                "model": body.get("model"),
                "prompt": prompt if prompt_ids is None else prompt_ids,
                # none given: null, which vLLM takes as what remains of the context (as its chat
                # endpoint does; left out, /v1/completions would stop at 16)
                "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens"),
                "stream": request.stream,
            }
            payload.update({key: body[key] for key in _SAMPLING_FIELDS if key in body})
            if request.stream and request.include_usage:
                payload["stream_options"] = {"include_usage": True}
            if request.n > 1:
                payload["n"] = request.n
            if request.top_logprobs is not None:
                payload["logprobs"] = request.top_logprobs
            payload.update(self._prompt_fields(request))
            path = "/v1/completions"
        own = {key: body[key] for key in _CLIENT_CONSTRAINTS if body.get(key) is not None}
        if constraint is not None:
            clashing = [key for key in own if key != "response_format"]  # that one is in the grammar
            if clashing:
                field = clashing[0]
                raise ProxyError(
                    400,
                    f"{field}: the proxy constrains this request's tool calls itself; "
                    "give the answer's shape with response_format instead",
                    param=field,
                )
            payload.update(constraint.fields)
        elif self.dialect.transport == "completions":
            payload.update(own)  # the engine's own, where no grammar of the proxy's went
        if stop:
            payload["stop"] = stop
        # Markers such as ChatGLM3's <|assistant|> or Mistral's [TOOL_CALLS] are special tokens;
        # vLLM strips those from the text unless told not to.
        payload["skip_special_tokens"] = False
        if retry:
            # The first answer missed the required call: sample again rather than repeat it.
            payload["temperature"] = max(float(payload.get("temperature") or 0.0), 0.7)
            payload["seed"] = int(payload.get("seed") or 0) + 1
        enforced = constraint.text if constraint is not None else None
        if self.dialect.transport == "chat":
            return UpstreamCall(path, payload, prefill, constraint=enforced)
        tokenizer_used = self.tokenizer if prompt_ids else None
        return UpstreamCall(path, payload, prefill, prompt, prompt_ids, tokenizer_used, enforced)

    def _constraint(self, request: ChatToolRequest) -> _Constraint | None:
        """What the engine is asked to enforce: the grammar of the whole answer, else (a family
        whose markers a grammar cannot name, or a grammar the engine refused) a named call's
        arguments by their schema after the prefill."""
        mode = request.choice.mode
        strict = mode == "auto" and any(tool.strict for tool in request.tools)
        if not (mode in ("required", "named") or strict or request.answer_schema is not None):
            return None
        fields = self.engine_fields
        if fields == OFF:
            self.metrics.unconstrained.labels(self.dialect.name, "engine").inc()
            return None
        grammar = self.grammars.grammar(request)
        if grammar is not None and not self.grammars.is_refused(grammar):
            return _Constraint(grammar, grammar_fields(fields, grammar), whole_answer=True)
        forced = request.forced_name
        if forced is not None and self.dialect.prefill_ends_at_arguments:
            schema = request.offered[0].parameters
            text = orjson.dumps(schema).decode()
            if not self.grammars.is_refused(text):
                return _Constraint(text, schema_fields(fields, schema), whole_answer=False)
        self.metrics.unconstrained.labels(self.dialect.name, "dialect" if grammar is None else "refused").inc()
        return None

    def constraint_refused(self, call: UpstreamCall, reason: str) -> None:
        """The engine answered 400 to ``call``'s constraint: it is not sent again."""
        assert call.constraint is not None
        self.grammars.refuse(call.constraint)
        self.metrics.unconstrained.labels(self.dialect.name, "refused").inc()
        if not self._said_refused:
            self._said_refused = True
            log.warning(
                "the engine refused a tool-call constraint (%s); such requests go without one: "
                "prefill and one retry, and a call failing its schema is not returned as a call",
                reason,
            )

    def loaded_tokenizer(self) -> PromptTokenizer:
        if self.tokenizer is None:
            raise ProxyError(503, "the proxy is not ready: its tokenizer is not loaded yet", type="server_error")
        return self.tokenizer

    def _prompt_fields(self, request: ChatToolRequest) -> dict[str, Any]:
        """How the engine must take the prompt so the model gets the ids it was trained on."""
        # Markers in the output must come back as they are: no spaces around special tokens.
        fields: dict[str, Any] = {"spaces_between_special_tokens": False}
        stop_ids = [i for i in request.body.get("stop_token_ids") or () if isinstance(i, int)]
        if self.dialect.prompt_form == "text_without_prefix":
            fields["add_special_tokens"] = False  # the template wrote the prefix already
        elif self.dialect.prompt_form == "token_ids":
            assert self.tokenizer is not None
            stop_ids = [*self.tokenizer.stop_ids, *(i for i in stop_ids if i not in self.tokenizer.stop_ids)]
            fields["return_token_ids"] = True
        if stop_ids:
            fields["stop_token_ids"] = stop_ids
        return fields

    # -- non-streaming ---------------------------------------------------------------------
    def parser(self, request: ChatToolRequest, upstream_call: UpstreamCall) -> CallParser:
        """The parser for this request's answer; with no tool offered nothing parses as a call."""
        # the schemas type raw-text values (Qwen3-Coder's <parameter=...>)
        tools = {tool.name: tool.parameters for tool in request.offered}
        return self.dialect.parser(tools, prompt=upstream_call.prompt)

    def parse_text(self, request: ChatToolRequest, upstream_call: UpstreamCall, text: str) -> Answer:
        parser = self.parser(request, upstream_call)
        prefill = upstream_call.prefill
        result = fold([*parser.feed(prefill + text), *parser.finish()])
        for failure in result.failures:
            self.count_failure("syntax", failure.error, failure.raw)
        content = result.content
        if prefill and content and content.startswith(prefill.strip()):
            # a forced start the model did not follow is ours, not the model's
            content = content[len(prefill.strip()) :].strip() or None
        calls: list[ParsedCall] = []
        for call in result.calls:
            if not request.parallel and calls:
                log.info("dropped a second tool call (%s): parallel_tool_calls is false", call.name)
                continue
            problem = self.check_arguments(request, call.name, call.arguments)
            if problem and request.must_validate(call.name):
                self.count_failure("schema", problem, call.arguments)
                rewritten = self.dialect.write_calls([(call.name, _loads_or_text(call.arguments))])
                content = f"{content}\n{rewritten}" if content else rewritten
                continue
            calls.append(call)
        self.metrics.tool_calls.labels(self.dialect.name).inc(len(calls))
        return Answer(content, calls, result.reasoning)

    def completion_response(
        self,
        request: ChatToolRequest,
        upstream: Mapping[str, Any],
        answers: Sequence[tuple[Answer, str | None]],
        usage: Mapping[str, Any] | None = None,
        logprobs: Sequence[Any] = (),
    ) -> dict[str, Any]:
        """The chat completion of each choice's (answer, finish reason); ``usage`` is summed over
        every engine call the request made; ``logprobs`` each choice's from the engine."""
        response: dict[str, Any] = {
            "id": new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": upstream.get("model") or request.body.get("model"),
            "choices": [self._choice_json(index, *answer) for index, answer in enumerate(answers)],
        }
        if request.top_logprobs is not None:
            for choice, engine_logprobs in zip(response["choices"], logprobs, strict=False):
                choice["logprobs"] = {"content": chat_logprobs(engine_logprobs, request.top_logprobs), "refusal": None}
        if usage is not None:
            response["usage"] = contract.usage(usage)
        return response

    def _choice_json(self, index: int, answer: Answer, finish_reason: str | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": answer.content, "refusal": None}
        if answer.reasoning is not None:
            # current vLLM writes `reasoning`, older vLLM and most clients read `reasoning_content`
            message["reasoning"] = message["reasoning_content"] = answer.reasoning
        if answer.calls:
            message["tool_calls"] = [self._tool_call_json(call) for call in answer.calls]
            if finish_reason != "length":
                finish_reason = "tool_calls"
        return {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason or "stop"}

    def _tool_call_json(self, call: ParsedCall) -> dict[str, Any]:
        return {
            "id": call.call_id or self.dialect.call_id(),
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }

    # -- shared with StreamConverter -----------------------------------------------------
    def check_arguments(self, request: ChatToolRequest, name: str, arguments: str) -> str | None:
        """Why the arguments do not fit the tool's schema, or None. Logged and counted either way."""
        tool = _find(request.offered, name)
        if tool is None:
            return f"{name!r} was not offered"
        try:
            value = orjson.loads(arguments)
        except orjson.JSONDecodeError as error:
            return f"arguments are not JSON: {error}"
        found = tool.arguments.problem(value)
        if found is None:
            return None
        problem = f"arguments of {name} {found}"
        if not request.must_validate(name):
            self.count_failure("schema", problem, arguments, kept=True)
        return problem

    def count_failure(self, reason: str, error: str, raw: str, *, kept: bool = False) -> None:
        self.metrics.parse_failures.labels(self.dialect.name, reason).inc()
        action = "kept (tool is not strict)" if kept else "returned as content"
        log.warning("tool call %s: %s (%s): %.200r", action, error, reason, raw)


# The end of every chunk frame after its delta; the common deltas are spliced in as bytes.
_OPEN_FRAME_END = b',"logprobs":null,"finish_reason":null}]}\n\n'
_ARGUMENTS_END = b"}}]}" + _OPEN_FRAME_END
_CONTENT_END = b"}" + _OPEN_FRAME_END


class StreamConverter:
    """Turns parser events into OpenAI ``chat.completion.chunk`` SSE frames.

    Calls stream as they are parsed: the first frame of a call carries its id, type and name,
    then ``arguments`` fragments follow as generated. When calls must be validated first
    (forced ``tool_choice``, a strict tool, a tool not offered), the call is sent whole once it
    has been checked.
    An argument fragment or a piece of text is the frame of nearly every token, so those two
    frames are spliced from bytes made once per stream rather than serialized as dicts.
    """

    def __init__(
        self, tool_path: ToolPath, request: ChatToolRequest, model: str, index: int = 0, head: bytes = b""
    ) -> None:
        """``model`` is the name every chunk carries: the request's, or the engine's when the
        request names none (from its first chunk); ``index`` the choice's (``n`` above 1), and
        ``head`` the id and time its chunks share with the other choices' (``chunk_head()``)."""
        self._path = tool_path
        self._request = request
        self._buffered: set[int] = set()  # calls sent whole once checked (request.must_validate)
        self._max_calls = None if request.parallel else 1
        self._prefix = (
            (head or chunk_head())
            + b',"model":'
            + orjson.dumps(model)
            + b',"choices":[{"index":'
            + str(index).encode()
            + b',"delta":'
        )
        self._content_prefix = self._prefix + b'{"content":'
        self._argument_prefixes: dict[int, bytes] = {}  # parser index -> frame up to the fragment
        self._ids: dict[int, str] = {}
        self._names: dict[int, str] = {}
        self._arguments: dict[int, list[str]] = {}  # of the calls kept (not dropped)
        self._shown_calls = 0  # calls the client has seen: the next one's index in tool_calls

    @property
    def any_call(self) -> bool:
        return self._shown_calls > 0

    def frame(self, delta: Mapping[str, Any], finish_reason: str | None = None) -> bytes:
        return (
            self._prefix
            + orjson.dumps(delta)
            + b',"logprobs":null,"finish_reason":'
            + orjson.dumps(finish_reason)
            + b"}]}\n\n"
        )

    def start(self) -> bytes:
        return self.frame({"role": "assistant", "content": ""})

    def logprobs_frame(self, engine_logprobs: Any) -> bytes:
        """A frame of the log probabilities of the tokens that came in one read (its text went in
        the frames before it)."""
        assert self._request.top_logprobs is not None
        content = chat_logprobs(engine_logprobs, self._request.top_logprobs)
        logprobs = orjson.dumps({"content": content, "refusal": None})
        return self._prefix + b'{},"logprobs":' + logprobs + b',"finish_reason":null}]}\n\n'

    def events(self, events: list[Event], out: list[bytes]) -> None:
        """Appends the frames that ``events`` make to ``out``."""
        for event in events:
            if isinstance(event, ArgumentsDelta):
                arguments = self._arguments.get(event.index)
                if arguments is None:  # a dropped call
                    continue
                arguments.append(event.text)
                prefix = self._argument_prefixes.get(event.index)
                if prefix is not None:
                    out.append(prefix + orjson.dumps(event.text) + _ARGUMENTS_END)
            elif isinstance(event, TextDelta):
                out.append(self._content_prefix + orjson.dumps(event.text) + _CONTENT_END)
            elif isinstance(event, CallStarted):
                self._call_started(event, out)
            elif isinstance(event, CallEnded):
                if event.index in self._arguments:
                    self._call_ended(event, out)
            elif isinstance(event, ReasoningDelta):
                out.append(self.frame({"reasoning": event.text, "reasoning_content": event.text}))

    def _call_started(self, event: CallStarted, out: list[bytes]) -> None:
        if self._max_calls is not None and len(self._arguments) >= self._max_calls:
            log.info("dropped a second tool call (%s): parallel_tool_calls is false", event.name)
            return
        self._ids[event.index] = event.call_id or self._path.dialect.call_id()
        self._names[event.index] = event.name
        self._arguments[event.index] = []
        if self._request.must_validate(event.name):
            self._buffered.add(event.index)
            return
        self._argument_prefixes[event.index] = (
            self._prefix + b'{"tool_calls":[{"index":' + str(self._shown_calls).encode() + b',"function":{"arguments":'
        )
        out.append(self._call_frame(event.index, event.name, ""))

    def _call_ended(self, event: CallEnded, out: list[bytes]) -> None:
        path, index = self._path, event.index
        name, arguments = self._names[index], "".join(self._arguments[index])
        if event.error:
            path.count_failure("syntax", event.error, event.raw)
            out.append(self.frame({"content": event.raw}))
            return
        problem = path.check_arguments(self._request, name, arguments)
        if index not in self._buffered:
            path.metrics.tool_calls.labels(path.dialect.name).inc()
            return
        if problem:
            path.count_failure("schema", problem, arguments)
            out.append(self.frame({"content": path.dialect.write_calls([(name, _loads_or_text(arguments))])}))
            return
        path.metrics.tool_calls.labels(path.dialect.name).inc()
        out.append(self._call_frame(index, name, arguments))

    def finish(self, finish_reason: str | None, out: list[bytes]) -> None:
        """Appends the choice's last frame, with its finish reason."""
        if self.any_call and finish_reason != "length":
            finish_reason = "tool_calls"
        out.append(self.frame({}, finish_reason or "stop"))

    def close(self, usage: Mapping[str, Any] | None, out: list[bytes]) -> None:
        """Appends the stream's closing frames: the usage if asked for, ``[DONE]``."""
        if usage is not None and self._request.include_usage:
            head = self._prefix.split(b',"choices"')[0]
            out.append(head + b',"choices":[],"usage":' + orjson.dumps(contract.usage(usage)) + b"}\n\n")
        out.append(b"data: [DONE]\n\n")

    def _call_frame(self, index: int, name: str, arguments: str) -> bytes:
        """A call's first frame: it takes the next index the client sees."""
        function = {"name": name, "arguments": arguments}
        call = {"index": self._shown_calls, "id": self._ids[index], "type": "function", "function": function}
        self._shown_calls += 1
        return self.frame({"tool_calls": [call]})


def chat_logprobs(completions: Any, top: int) -> list[dict[str, Any]]:
    """vLLM's completions ``logprobs`` ({tokens, token_logprobs, top_logprobs}) as chat's
    ``logprobs.content``: each token with its logprob, bytes and ``top`` likeliest."""
    if not isinstance(completions, Mapping):
        return []
    tokens, values = completions.get("tokens") or [], completions.get("token_logprobs") or []
    alternatives = completions.get("top_logprobs") or [None] * len(tokens)
    content = []
    for token, value, likeliest in zip(tokens, values, alternatives, strict=False):
        ranked = sorted((likeliest or {}).items(), key=lambda item: -item[1])[:top]
        content.append(
            {
                "token": str(token),
                "logprob": float(value if value is not None else -9999.0),
                "bytes": list(str(token).encode()),
                "top_logprobs": [{"token": t, "logprob": float(v), "bytes": list(t.encode())} for t, v in ranked],
            }
        )
    return content


def chunk_head() -> bytes:
    """The start of a stream's every chunk: its id and time, the same for all its choices."""
    return (
        b'data: {"id":"'
        + new_id("chatcmpl-").encode()
        + b'","object":"chat.completion.chunk","created":'
        + str(int(time.time())).encode()
    )


def add_usage(total: Mapping[str, Any] | None, more: Any) -> dict[str, Any] | None:
    """Two engine calls' token counts as one (a retry's included), as OpenAI reports a request's."""
    if not isinstance(more, Mapping):
        return dict(total) if total is not None else None
    if total is None:
        return dict(more)
    summed = dict(total)
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        if isinstance(more.get(key), int):
            summed[key] = int(summed.get(key) or 0) + more[key]
    return summed


def _find(tools: list[Tool], name: str) -> Tool | None:
    return next((tool for tool in tools if tool.name == name), None)


def _stop_list(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if isinstance(s, str)]


def _loads_or_text(arguments: str) -> Any:
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"arguments": arguments}
