"""Pieces of ``toolmodel demo``: the seed question, its tool, processes, and the printed conversation.

The demo itself (emulated cluster, operator, the pod run locally) is in ``toolmodel_operator.demo``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .dialects import get_dialect
from .tokens import ControlMarkers, PromptTokenizer

__all__ = [
    "QUESTION",
    "WEATHER_TOOL",
    "conversation",
    "free_port",
    "get_current_weather",
    "process",
    "prompt_tokenizer",
    "show_raw_output",
    "step",
    "wait_healthy",
]

QUESTION = "What's the weather like in San Francisco, Tokyo, and Paris?"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city, e.g. San Francisco"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
_FORECASTS = {"san francisco": 14, "tokyo": 19, "paris": 11}


def get_current_weather(location: str, unit: str = "celsius") -> dict[str, Any]:
    """The demo's tool: a fixed forecast, so every run prints the same."""
    celsius = _FORECASTS.get(location.lower(), 20)
    temperature = celsius if unit == "celsius" else round(celsius * 9 / 5 + 32)
    return {"location": location, "temperature": temperature, "unit": unit, "forecast": "partly cloudy"}


def step(number: int, text: str) -> None:
    print(f"\n\033[1m[{number}] {text}\033[0m", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, child: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            errors = child.stderr.read().decode(errors="replace")[-2000:] if child.stderr else ""
            raise RuntimeError(f"{' '.join(map(str, child.args))} exited with {child.returncode}:\n{errors}")  # type: ignore[arg-type]
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy in {seconds:.0f} s")


@contextmanager
def process(
    command: list[str], environment: Mapping[str, str] | None = None, *, unset: Collection[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process for the block's duration; ``environment`` adds to this process's own,
    less the variables ``unset`` names."""
    inherited = {name: value for name, value in os.environ.items() if name not in unset}
    child = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**inherited, **(environment or {})} if environment or unset else None,
    )
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def prompt_tokenizer(dialect_name: str, environment: Mapping[str, str]) -> PromptTokenizer | None:
    """For a token-id dialect, the tokenizer a proxy with this environment has loaded (in the demo
    always a directory: the one the simulated engine publishes); None for the other dialects."""
    layout = get_dialect(dialect_name).token_layout
    source = environment.get("TOOLMODEL_TOKENIZER")
    if layout is None or not source:
        return None
    return PromptTokenizer.load(source, layout)


def show_raw_output(
    number: int, dialect_name: str, engine_port: int, served_name: str, tokenizer: PromptTokenizer | None = None
) -> None:
    """The model's own answer to the question with the tool, asked as the proxy asks: in the
    dialect's template, as token ids built with ``tokenizer`` for a token-id dialect."""
    dialect = get_dialect(dialect_name)
    messages = [{"role": "user", "content": QUESTION}]
    step(number, "What the model itself writes for the question (asked directly, without the proxy):")
    if dialect.transport == "chat":
        assert dialect.rewrite_messages is not None
        rewritten = dialect.rewrite_messages(messages, [WEATHER_TOOL], None)
        body: dict[str, Any] = {"model": served_name, "messages": rewritten}
        path = "/v1/chat/completions"
    elif dialect.prompt_form == "token_ids" and tokenizer is not None:
        # The ids the model was trained on: control tokens as their ids, each span on its own.
        markers = ControlMarkers()
        parts = markers.split(dialect.render_prompt(messages, [WEATHER_TOOL], control_token=markers))
        body = {
            "model": served_name,
            "prompt": tokenizer.prompt_ids(parts),
            "max_tokens": 512,
            "skip_special_tokens": False,
            "stop_token_ids": list(tokenizer.stop_ids),
            "return_token_ids": True,
        }
        path = "/v1/completions"
    else:
        prompt = dialect.render_prompt(messages, [WEATHER_TOOL])
        body = {"model": served_name, "prompt": prompt, "max_tokens": 512, "skip_special_tokens": False}
        path = "/v1/completions"
    request = urllib.request.Request(
        f"http://127.0.0.1:{engine_port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    choice = answer["choices"][0]
    if tokenizer is not None and choice.get("token_ids") is not None:
        raw = tokenizer.text(choice["token_ids"])  # control ids as their markers
    else:
        raw = choice.get("text") if "text" in choice else choice["message"]["content"]
    for line in raw.splitlines() or [""]:
        print(f"    | {line}")


def conversation(client: Any, model: str, first_step: int) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    number = first_step
    step(number, f'OpenAI SDK -> proxy: "{QUESTION}" with tools=[get_current_weather]')
    for _ in range(6):  # a call-result loop; sequential models need a round per city
        stream = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL], stream=True)
        content, calls, chunks, finish = _collect(stream)
        number += 1
        if not calls:
            step(number, f"Final answer (streamed in {chunks} chunks, finish_reason={finish}):")
            print(f"    {content}")
            return
        step(number, f"Streamed tool calls (finish_reason={finish}, {chunks} chunks):")
        assistant: dict[str, Any] = {"role": "assistant", "content": content or None, "tool_calls": []}
        results = []
        for call in calls:
            print(f"    {call['id']}  {call['name']}({call['arguments']})")
            assistant["tool_calls"].append(
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            )
            result = get_current_weather(**json.loads(call["arguments"]))
            results.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)})
        messages.append(assistant)
        messages.extend(results)
        number += 1
        step(number, "Ran the tools locally; sending their results back:")
        for result in results:
            print(f"    {result['tool_call_id']} -> {result['content']}")
    raise RuntimeError("the conversation did not reach a final answer in 6 rounds")


def _collect(stream: Any) -> tuple[str, list[dict[str, str]], int, str | None]:
    content: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    chunks = 0
    finish = None
    for chunk in stream:
        chunks += 1
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            if choice.delta.content:
                content.append(choice.delta.content)
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                if delta.function:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    return "".join(content), [calls[index] for index in sorted(calls)], chunks, finish
