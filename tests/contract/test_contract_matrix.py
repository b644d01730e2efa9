"""The OpenAI contract, whole: every answer the proxy writes for chat completions, checked against
OpenAI's published OpenAPI document and the ``openai`` SDK's strict types (``openapi_contract``).

For every dialect, one stack (the real proxy in front of the simulated engine, in this process)
answers a matrix of requests, streamed and not: plain questions, the demo weather tool under each
``tool_choice``, a tool round trip, ``parallel_tool_calls: false``, no ``model``, usage in the
stream, ``max_tokens`` reached, system / developer messages, content parts, the fields the tool
path honours (logprobs, response_format, chat_template_kwargs, reasoning_effort, vLLM's sampling
fields, n), and bad inputs that must get a 400 with an error body (never a 500). The answers are
read as raw HTTP, the JSON body and each SSE line as sent, so nothing is normalised away by the SDK.

Every violation is collected rather than stopping at the first: a dialect's test fails with all
of its violations grouped by kind and request, and the session ends with the same summary across
the dialects (``conftest.py``).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import openapi_contract
import pytest
from contract_report import DIALECTS_RUN, FINDINGS, Finding, summary
from openapi_contract import Violation

from toolcall_proxy.demo import QUESTION, WEATHER_TOOL
from toolcall_proxy.dialects import DIALECTS

sim_stack = importlib.import_module("sim_stack")  # tests/e2e, put on the path by conftest.py

WEATHER = "get_current_weather"
PARIS = "What's the weather like in Paris?"
NAMED = {"type": "function", "function": {"name": WEATHER}}
LONG_QUESTION = "Tell me everything you know about the history of Paris, in as much detail as you can."


# -- what one request got back -------------------------------------------------------------------


@dataclass
class Answer:
    """A response as it came over the wire: the JSON body, or the stream's chunks and error frames."""

    status: int
    content_type: str
    text: str
    body: Any = None  # the JSON of a body that is JSON
    chunks: list[Any] = field(default_factory=list)
    error_frames: list[Any] = field(default_factory=list)
    problems: list[Violation] = field(default_factory=list)  # framing: not JSON, not SSE, no [DONE]

    @property
    def choices(self) -> list[dict[str, Any]]:
        """The choices, whole or assembled from the chunks: index, content, tool calls, finish."""
        if self.body is not None and not self.chunks:
            choices = self.body.get("choices") if isinstance(self.body, dict) else None
            return [_whole_choice(c) for c in choices or [] if isinstance(c, dict)]
        assembled: dict[int, dict[str, Any]] = {}
        for chunk in self.chunks:
            for c in chunk.get("choices") or [] if isinstance(chunk, dict) else []:
                if not isinstance(c, dict):
                    continue
                choice = assembled.setdefault(
                    c.get("index", 0), {"index": c.get("index", 0), "content": "", "calls": {}, "finish": None}
                )
                delta = c.get("delta") or {}
                choice["content"] += delta.get("content") or ""
                for call in delta.get("tool_calls") or []:
                    into = choice["calls"].setdefault(call.get("index", 0), {"name": "", "arguments": ""})
                    function = call.get("function") or {}
                    into["name"] += function.get("name") or ""
                    into["arguments"] += function.get("arguments") or ""
                choice["finish"] = c.get("finish_reason") or choice["finish"]
        return [{**c, "calls": [c["calls"][i] for i in sorted(c["calls"])]} for _, c in sorted(assembled.items())]


def _whole_choice(choice: dict[str, Any]) -> dict[str, Any]:
    message = choice.get("message") or {}
    calls = [call.get("function") or {} for call in message.get("tool_calls") or []]
    return {
        "index": choice.get("index"),
        "content": message.get("content") or "",
        "calls": [{"name": f.get("name", ""), "arguments": f.get("arguments", "")} for f in calls],
        "finish": choice.get("finish_reason"),
    }


def _framing(message: str, path: str = "$") -> Violation:
    return Violation("sse", path, message, f"sse: {message}")


def _read_sse(answer: Answer) -> None:
    """The chunks of an SSE body, each ``data:`` line as sent; anything out of shape is noted."""
    events = [e for e in answer.text.replace("\r\n", "\n").split("\n\n") if e.strip()]
    done_at = None
    for number, event in enumerate(events):
        data = []
        for line in event.split("\n"):
            if line.startswith(":"):
                continue  # an SSE comment
            if line.startswith("data:"):
                data.append(line.removeprefix("data:").removeprefix(" "))
            else:
                answer.problems.append(_framing(f"a line that is not 'data: ...': {line[:80]!r}"))
        payload = "\n".join(data)
        if payload == "[DONE]":
            done_at = number
            continue
        if done_at is not None:
            answer.problems.append(_framing("an event after data: [DONE]"))
        try:
            chunk = json.loads(payload)
        except ValueError:
            answer.problems.append(_framing(f"a data line that is not JSON: {payload[:80]!r}"))
            continue
        if isinstance(chunk, dict) and "error" in chunk:
            answer.error_frames.append(chunk)
        else:
            answer.chunks.append(chunk)
    if done_at is None:
        answer.problems.append(_framing("the stream does not end with data: [DONE]"))


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Answer:
    async with session.post(url, json=body) as response:
        text = (await response.read()).decode("utf-8", errors="replace")
        answer = Answer(response.status, response.headers.get("Content-Type", ""), text)
    if answer.status == 200 and body.get("stream"):
        if not answer.content_type.startswith("text/event-stream"):
            answer.problems.append(
                Violation("http", "$", f"Content-Type {answer.content_type!r}", "http: a stream not text/event-stream")
            )
        _read_sse(answer)
        return answer
    try:
        answer.body = json.loads(text)
    except ValueError:
        answer.problems.append(Violation("http", "$", f"not JSON: {text[:120]!r}", "http: a body that is not JSON"))
        return answer
    if not answer.content_type.startswith("application/json"):
        answer.problems.append(
            Violation("http", "$", f"Content-Type {answer.content_type!r}", "http: JSON not sent as application/json")
        )
    return answer


# -- the matrix -----------------------------------------------------------------------------------

Check = Callable[[Answer], Iterator[str]]  # what the answer to a valid request should hold beyond the schema


@dataclass(frozen=True)
class Case:
    """A request of the matrix. ``expect``: ``ok`` (a 200), ``400`` (a bad input), or ``n`` (a 200
    with both choices or a 400 naming ``n``)."""

    name: str
    body: dict[str, Any]
    streams: tuple[bool, ...] = (False, True)
    expect: str = "ok"
    check: Check | None = None


def _user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _finishes(reason: str) -> Check:
    def check(answer: Answer) -> Iterator[str]:
        for choice in answer.choices:
            if choice["finish"] != reason:
                yield f"finish_reason {choice['finish']!r}, expected {reason!r}"

    return check


def _calls_weather(answer: Answer) -> Iterator[str]:
    for choice in answer.choices:
        if not choice["calls"] or any(call["name"] != WEATHER for call in choice["calls"]):
            yield f"expected {WEATHER} calls, got {[c['name'] for c in choice['calls']]}"
        if choice["finish"] != "tool_calls":
            yield f"finish_reason {choice['finish']!r} after forced calls, expected 'tool_calls'"


def _no_calls(answer: Answer) -> Iterator[str]:
    for choice in answer.choices:
        if choice["calls"]:
            yield f"tool_calls under tool_choice none: {[c['name'] for c in choice['calls']]}"


def _at_most_one_call(answer: Answer) -> Iterator[str]:
    for choice in answer.choices:
        if len(choice["calls"]) > 1:
            yield f"{len(choice['calls'])} calls with parallel_tool_calls false"


def _answers_in_text(answer: Answer) -> Iterator[str]:
    for choice in answer.choices:
        if choice["calls"] or not choice["content"]:
            calls = [c["name"] for c in choice["calls"]]
            yield f"expected a text answer, got calls {calls} and content {choice['content'][:40]!r}"


def _usage_last(answer: Answer) -> Iterator[str]:
    with_usage = [i for i, chunk in enumerate(answer.chunks) if isinstance(chunk, dict) and chunk.get("usage")]
    if with_usage != [len(answer.chunks) - 1]:
        yield f"include_usage: usage in chunks {with_usage} of {len(answer.chunks)}, expected in the last alone"
    elif answer.chunks[-1].get("choices") != []:
        yield "include_usage: the usage chunk has choices, expected []"


def _round_trip(call_id: str) -> dict[str, Any]:
    arguments = json.dumps({"location": "Paris"})
    return {
        "messages": [
            _user(PARIS),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": WEATHER, "arguments": arguments}}
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"temperature": 11, "unit": "celsius"})},
        ],
        "tools": [WEATHER_TOOL],
    }


def cases(call_id: str) -> list[Case]:
    """The matrix; ``call_id`` is a call this dialect's proxy returned, for the round trip."""
    model = {"model": "demo"}
    weather = {"messages": [_user(QUESTION)], "tools": [WEATHER_TOOL]}
    plain = {"messages": [_user("Hello! Who are you?")]}
    system = {"role": "system", "content": "Be brief."}
    developer = {"role": "developer", "content": "Be brief."}
    usage = {"stream_options": {"include_usage": True}}
    number_part = {"messages": [_user([{"type": "text", "text": 42}])]}
    # refused by the tool path, which prompts these families with text only
    image_part = {"messages": [_user([{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])]}
    no_id = {
        "tools": [WEATHER_TOOL],
        "messages": [*_round_trip(call_id)["messages"][:2], {"role": "tool", "content": "11"}],
    }
    orphan = {"role": "tool", "tool_call_id": "call_nowhere", "content": "11"}
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    answer = {"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}}
    matrix = [
        Case("plain", {**model, **plain}),
        Case("tools auto", {**model, **weather, "tool_choice": "auto"}),
        Case("tools required", {**model, **weather, "tool_choice": "required"}, check=_calls_weather),
        Case("tools named", {**model, **weather, "tool_choice": NAMED}, check=_calls_weather),
        Case("tools none", {**model, **weather, "tool_choice": "none"}, check=_no_calls),
        Case("tool round trip", {**model, **_round_trip(call_id)}, check=_answers_in_text),
        Case("parallel_tool_calls false", {**model, **weather, "parallel_tool_calls": False}, check=_at_most_one_call),
        Case("model omitted", plain),
        Case("model omitted, tools", weather),
        Case("include_usage", {**model, **weather, **usage}, streams=(True,), check=_usage_last),
        Case("max_tokens 5", {**model, "messages": [_user(LONG_QUESTION)], "max_tokens": 5}, check=_finishes("length")),
        Case("system message", {**model, **weather, "messages": [system, _user(QUESTION)]}),
        Case("developer message", {**model, "messages": [developer, _user("Hello!")]}),
        Case("developer message, tools", {**model, **weather, "messages": [developer, _user(QUESTION)]}),
        Case("content parts", {**model, **weather, "messages": [_user([{"type": "text", "text": QUESTION}])]}),
        # the fields the tool path honours (tests/proxy/test_request_fields.py shows each reaching the engine)
        Case("logprobs, tools", {**model, **weather, "logprobs": True, "top_logprobs": 2}),
        Case("response_format, tools none", {**model, **weather, "tool_choice": "none", **answer}, check=_no_calls),
        Case("response_format, tools auto", {**model, **weather, **answer}),
        Case("chat_template_kwargs, tools", {**model, **weather, "chat_template_kwargs": {"enable_thinking": False}}),
        Case("reasoning_effort, tools", {**model, **weather, "reasoning_effort": "low"}),
        Case("vLLM sampling fields, tools", {**model, **weather, "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.05}),
        # bad inputs: a 400 with an error body, never a 500
        Case("bad: tool message without tool_call_id", {**model, **no_id}, expect="400"),
        Case("bad: image part, tools", {**model, "tools": [WEATHER_TOOL], **image_part}, expect="400"),
        Case(
            "bad: tool message answering no call",
            {**model, **weather, "messages": [_user(PARIS), orphan]},
            expect="400",
        ),
    ]
    # each without tools (what the proxy may relay to the engine) and with them (what it prompts itself)
    for tools, label in (({}, ""), ({"tools": [WEATHER_TOOL]}, ", tools")):
        matrix += [
            Case(f"bad: stop 123{label}", {**model, **plain, **tools, "stop": 123}, expect="400"),
            Case(f"bad: text part a number{label}", {**model, **tools, **number_part}, expect="400"),
            Case(f"bad: max_tokens 0{label}", {**model, **plain, **tools, "max_tokens": 0}, expect="400"),
            Case(
                f"bad: stream_options without stream{label}",
                {**model, **plain, **tools, **usage},
                streams=(False,),
                expect="400",
            ),
            Case(f"n 2{label}", {**model, **plain, **tools, "n": 2}, expect="n"),
        ]
    return matrix


# -- judging one answer ---------------------------------------------------------------------------


def _error_message(answer: Answer) -> str:
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message if message is not None else answer.text)[:200]


def _names_n(answer: Answer) -> bool:
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    if not isinstance(error, dict):
        return False
    return error.get("param") == "n" or re.search(r"\bn\b", str(error.get("message"))) is not None


def _judge_status(case: Case, request: dict[str, Any], answer: Answer) -> Iterator[tuple[str, str]]:
    if answer.status >= 500:
        kind = f"HTTP {answer.status}: {re.sub(r'[0-9]+', 'N', _error_message(answer))[:100]}"
        yield kind, f"{_error_message(answer)}, for {json.dumps(request)[:300]}"
    elif answer.status != 200 and case.expect == "ok":
        yield f"HTTP {answer.status} to a valid request", _error_message(answer)
    elif answer.status == 200 and case.expect == "400":
        yield "HTTP 200 to a bad input, expected 400", json.dumps(request)[:300]
    elif answer.status not in (200, 400) and case.expect != "ok":
        yield f"HTTP {answer.status} to a bad input, expected 400", _error_message(answer)
    if case.expect == "n":
        if answer.status == 200 and sorted(c["index"] for c in answer.choices) != [0, 1]:
            yield "n: 2 neither honoured nor refused", f"choices {[c['index'] for c in answer.choices]}"
        if answer.status == 400 and not _names_n(answer):
            yield "n: 2 refused without naming n", _error_message(answer)


def _judge_stream(answer: Answer) -> Iterator[tuple[str, str]]:
    for chunk in answer.chunks:
        for violation in openapi_contract.chat_completion_chunk_violations(chunk):
            yield violation.kind, str(violation)
    for frame in answer.error_frames:
        yield "stream: an error frame in a 200", json.dumps(frame)[:300]
        for violation in openapi_contract.error_violations(frame):
            yield violation.kind, str(violation)
    chunks = [c for c in answer.chunks if isinstance(c, dict)]
    for member in ("id", "created", "model"):  # "Each chunk has the same ID / timestamp."
        values = {json.dumps(c.get(member)) for c in chunks}
        if len(values) > 1:
            yield f"stream: chunks differ in {member!r}", ", ".join(sorted(values))[:200]
    if not chunks and not answer.error_frames:
        yield "stream: no chunks", answer.text[:200]


def judge(case: Case, stream: bool, answer: Answer) -> Iterator[tuple[str, str]]:
    """(kind, detail) for each way the answer breaks the contract or the request's expectation."""
    request = {**case.body, **({"stream": True} if stream else {})}
    for problem in answer.problems:
        yield problem.kind, str(problem)
    yield from _judge_status(case, request, answer)
    if answer.status != 200:
        if answer.body is not None:
            for violation in openapi_contract.error_violations(answer.body):
                yield violation.kind, str(violation)
        return
    if stream:
        yield from _judge_stream(answer)
    elif answer.body is not None:
        for violation in openapi_contract.chat_completion_violations(answer.body):
            yield violation.kind, str(violation)
    if case.check is not None and not answer.error_frames:
        for detail in case.check(answer):
            yield f"expectation ({case.name})", detail


# -- the test -------------------------------------------------------------------------------------


async def _a_call_id(session: aiohttp.ClientSession, url: str) -> str:
    """A call id as this dialect's proxy makes them (Mistral's 9 characters, Kimi's own, ...)."""
    answer = await _post(
        session, url, {"model": "demo", "messages": [_user(PARIS)], "tools": [WEATHER_TOOL], "tool_choice": NAMED}
    )
    try:
        return str(answer.body["choices"][0]["message"]["tool_calls"][0]["id"])
    except (KeyError, IndexError, TypeError):
        return "abcDEF123"  # nine alphanumerics: an id every family's template takes


@pytest.fixture(scope="module", autouse=True)
def openai_contract() -> None:
    """The contract must be there: a run without it would not have checked anything."""
    try:
        openapi_contract.load()
    except openapi_contract.ContractMissing as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_every_answer_keeps_the_openai_contract(dialect: str, chatglm3_tokenizer_dir: Path) -> None:
    DIALECTS_RUN.add(dialect)
    findings: list[Finding] = []
    timeout = aiohttp.ClientTimeout(total=60)
    async for client, _ in sim_stack.running_stack(dialect, tokenizer=chatglm3_tokenizer_dir):
        url = f"{str(client.base_url).rstrip('/')}/chat/completions"
        async with aiohttp.ClientSession(timeout=timeout) as session:
            call_id = await _a_call_id(session, url)
            for case in cases(call_id):
                for stream in case.streams:
                    body = {**case.body, **({"stream": True} if stream else {})}
                    answer = await _post(session, url, body)
                    request = f"{case.name} ({'streamed' if stream else 'whole'})"
                    seen = set()
                    for kind, detail in judge(case, stream, answer):
                        if kind not in seen:  # the same fault in every chunk of one stream counts once
                            seen.add(kind)
                            findings.append(Finding(kind, dialect, request, detail))
    FINDINGS.extend(findings)
    if findings:
        pytest.fail(summary(findings, [dialect]), pytrace=False)
