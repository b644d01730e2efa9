"""The simulator over HTTP: vLLM's command line, endpoints, response shapes and errors."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessage, ChatCompletionMessageFunctionToolCall

from toolcall_proxy.dialects import get_dialect
from toolcall_proxy.sim.server import SimConfig, build_parser, parse_args

from .conftest import SEED_QUESTION, WEATHER_TOOL
from .test_engine import parse

Sim = Callable[..., contextlib.AbstractAsyncContextManager[str]]
MODEL = "Qwen/Qwen2.5-7B-Instruct"
SEED_MESSAGES: Any = [{"role": "user", "content": SEED_QUESTION}]
TOOLS: Any = [WEATHER_TOOL]  # as the SDK's typed parameters


def function_calls(message: ChatCompletionMessage) -> list[tuple[str, Any]]:
    calls = []
    for call in message.tool_calls or []:
        assert isinstance(call, ChatCompletionMessageFunctionToolCall)
        calls.append((call.function.name, orjson.loads(call.function.arguments)))
    return calls


async def post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


async def events(url: str, body: dict[str, Any]) -> list[Any]:
    """The server-sent events of a streamed response, checking the framing; [DONE] included."""
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = (await response.read()).decode()
    assert raw.endswith("data: [DONE]\n\n")
    frames = raw.split("\n\n")[:-1]
    assert all(frame.startswith("data: ") for frame in frames)
    return [frame[6:] if frame == "data: [DONE]" else orjson.loads(frame[6:]) for frame in frames]


# -- command line ---------------------------------------------------------------------------------


def test_takes_vllms_command_line() -> None:
    args = parse_args(
        [
            "serve-me",
            "--served-model-name", "a", "b",
            "--max_model_len=32k",
            "-tp", "2",
            "--pipeline-parallel-size", "1",
            "--dtype", "bfloat16",
            "--gpu-memory-utilization", "0.95",
            "--trust-remote-code",
            "--revision", "main",
            "--tokenizer", "tok",
            "--download-dir", "/models",
            "--enable-auto-tool-choice",
            "--tool-call-parser", "llama3_json",
            "--disable-log-requests",
            "--enable-prefix-caching",
            "--no-enable-chunked-prefill",
            "--max-num-seqs", "64",
            "--quantization", "awq",
            "--enable-lora",
            "--lora-modules", "x=/a", "y=/b",
            "--max-loras", "2",
            "--max-lora-rank", "32",
            "--block-size", "32",
        ]
    )  # fmt: skip
    config = SimConfig.from_args(args)
    assert (config.model, config.served_model_names, config.max_model_len) == ("serve-me", ("a", "b"), 32000)
    assert [(m.name, m.path) for m in config.lora_modules] == [("x", "/a"), ("y", "/b")]
    assert (config.max_loras, config.max_lora_rank, config.max_num_seqs, config.block_size) == (2, 32, 64, 32)
    assert config.dialect == "llama3_json"
    assert config.chat_template == get_dialect("llama3_json").template
    assert not config.log_requests


def test_the_model_can_be_given_with_model() -> None:
    args = parse_args(["--model", "m", "--port", "9000"])
    assert (args.model, args.port, args.host) == ("m", 9000, None)
    assert parse_args(["m"]).port == 8000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["m", "--frobnicate", "3"], "unknown flag --frobnicate"),
        (["m", "--max-model=4096"], "unknown flag --max-model"),
        (["m", "extra"], "unexpected argument 'extra'"),
        ([], "a model is required"),
        (["a", "--model", "b"], "two models given"),
        (["m", "--max-model-len", "lots"], "invalid length"),
    ],
)
def test_bad_command_lines_are_refused_by_name(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv, build_parser("toolmodel sim"))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_dialect_comes_from_the_flag_the_parser_or_the_template(tmp_path: Path) -> None:
    template = tmp_path / "glm.jinja"
    template.write_text(get_dialect("chatglm3").template)
    assert SimConfig.from_args(parse_args(["m", "--chat-template", str(template)])).dialect == "chatglm3"
    assert SimConfig.from_args(parse_args(["m", "--tool-call-parser", "hermes"])).dialect == "hermes"
    assert SimConfig.from_args(parse_args(["m", "--tool-call-parser", "mistral"])).dialect == "mistral"
    assert SimConfig.from_args(parse_args(["m", "--tool-call-parser", "phi4_mini_json"])).dialect == "generic"
    assert (
        SimConfig.from_args(parse_args(["m", "--dialect", "llama3_json", "--chat-template", str(template)])).dialect
        == "llama3_json"
    )
    inline = SimConfig.from_args(parse_args(["m", "--chat-template", "{{ messages[-1].content }}"]))
    assert inline.chat_template == "{{ messages[-1].content }}"


def test_impossible_configurations_are_errors() -> None:
    from toolcall_proxy.sim.server import ConfigError

    with pytest.raises(ConfigError, match="requires --tool-call-parser"):
        SimConfig.from_args(parse_args(["m", "--enable-auto-tool-choice"]))
    with pytest.raises(ConfigError, match="cannot be read"):
        SimConfig.from_args(parse_args(["m", "--chat-template", "/no/such/template.jinja"]))


def test_starts_as_a_process_and_answers_health() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = "import sys; from toolcall_proxy.sim.server import main; sys.exit(main())"
    argv = [
        sys.executable,
        "-c",
        code,
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-uvicorn-access-log",
    ]
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert conn.recv(100).startswith(b"HTTP/1.1 200")
                break
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() - started < 20, "the simulator did not start"
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


# -- plain endpoints ------------------------------------------------------------------------------


async def test_health_and_models(sim: Sim) -> None:
    async with sim("/models/qwen", "--served-model-name", "qwen", "qwen-alias", "--max-model-len", "4096") as url:
        assert await get(f"{url}/health") == (200, b"")
        status, body = await get(f"{url}/v1/models")
        models = orjson.loads(body)
        assert status == 200 and models["object"] == "list"
        assert [m["id"] for m in models["data"]] == ["qwen", "qwen-alias"]
        card = models["data"][0]
        assert (card["object"], card["owned_by"], card["root"], card["max_model_len"]) == (
            "model",
            "vllm",
            "/models/qwen",
            4096,
        )
        assert card["permission"][0]["object"] == "model_permission"
        status, metrics = await get(f"{url}/metrics")
        assert status == 200 and b'vllm:num_requests_running{model_name="qwen"} 0' in metrics
        assert (await get(f"{url}/nope"))[0] == 404


async def test_completions_shape(sim: Sim) -> None:
    async with sim(MODEL) as url:
        status, body = await post(
            f"{url}/v1/completions", {"model": MODEL, "prompt": "Tell me about Rome", "max_tokens": 200}
        )
    assert status == 200
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion" and body["model"] == MODEL
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["text"] == f"You asked: 'Tell me about Rome'. This is a simulated answer from {MODEL}."
    assert (choice["index"], choice["finish_reason"], choice["stop_reason"], choice["logprobs"]) == (
        0,
        "stop",
        None,
        None,
    )
    usage = body["usage"]
    assert usage["prompt_tokens"] == 5 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_completions_default_to_sixteen_tokens_like_vllm(sim: Sim) -> None:
    async with sim(MODEL) as url:
        _, body = await post(f"{url}/v1/completions", {"prompt": "Tell me about Rome"})
    assert (body["choices"][0]["finish_reason"], body["usage"]["completion_tokens"]) == ("length", 16)


async def test_max_tokens_and_stop(sim: Sim) -> None:
    async with sim(MODEL) as url:
        _, cut = await post(f"{url}/v1/completions", {"prompt": "Tell me about Rome", "max_tokens": 3})
        _, stopped = await post(
            f"{url}/v1/completions", {"prompt": "Tell me about Rome", "max_tokens": 100, "stop": ["Rome", "simulated"]}
        )
        _, single = await post(
            f"{url}/v1/completions", {"prompt": "Tell me about Rome", "max_tokens": 100, "stop": "about"}
        )
    assert (cut["choices"][0]["text"], cut["choices"][0]["finish_reason"]) == ("You asked", "length")
    assert cut["usage"]["completion_tokens"] == 3
    assert stopped["choices"][0] == {
        "index": 0,
        "text": "You asked: 'Tell me about ",
        "logprobs": None,
        "finish_reason": "stop",
        "stop_reason": "Rome",
        "prompt_logprobs": None,
    }
    assert single["choices"][0]["text"] == "You asked: 'Tell me "


async def test_completions_stream_token_by_token(sim: Sim) -> None:
    async with sim(MODEL) as url:
        body = {
            "prompt": "Tell me about Rome",
            "max_tokens": 100,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        frames = await events(f"{url}/v1/completions", body)
    assert frames[-1] == "[DONE]"
    usage = frames[-2]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 10
    chunks = frames[:-2]
    assert len(chunks) > 10 and all(len(c["choices"][0]["text"]) <= 5 for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks).startswith("You asked: 'Tell me about Rome'.")
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert len({c["id"] for c in frames[:-1]}) == 1


async def test_a_stream_without_include_usage_has_no_usage(sim: Sim) -> None:
    async with sim(MODEL) as url:
        frames = await events(f"{url}/v1/completions", {"prompt": "Hi", "max_tokens": 5, "stream": True})
    assert all("usage" not in frame for frame in frames[:-1])
    assert frames[-2]["choices"][0]["finish_reason"] == "length"


# -- chat -----------------------------------------------------------------------------------------


async def test_chat_with_the_openai_sdk(sim: Sim) -> None:
    async with (
        sim(MODEL, "--tool-call-parser", "hermes") as url,
        openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none") as client,
    ):
        response = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "How tall is Mount Everest?"}]
        )
    assert response.id.startswith("chatcmpl-")
    assert response.choices[0].message.role == "assistant"
    assert (
        response.choices[0].message.content
        == f"You asked: 'How tall is Mount Everest?'. This is a simulated answer from {MODEL}."
    )
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.prompt_tokens > 5


async def test_chat_streaming_with_the_openai_sdk(sim: Sim) -> None:
    async with sim(MODEL) as url, openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none") as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "How tall is Mount Everest?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"You asked: 'How tall is Mount Everest?'. This is a simulated answer from {MODEL}."
    assert len(chunks) > 10
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(chunks) - 1  # one chunk per token, plus the first and EOS


async def test_chat_tool_calls_are_parsed_with_auto_tool_choice(sim: Sim) -> None:
    argv = (MODEL, "--enable-auto-tool-choice", "--tool-call-parser", "hermes")
    async with sim(*argv) as url, openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none") as client:
        response = await client.chat.completions.create(model=MODEL, messages=SEED_MESSAGES, tools=TOOLS)
        stream = await client.chat.completions.create(model=MODEL, messages=SEED_MESSAGES, tools=TOOLS, stream=True)
        chunks = [chunk async for chunk in stream]
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = function_calls(choice.message)
    assert calls == [("get_current_weather", {"location": city}) for city in ("San Francisco", "Tokyo", "Paris")]
    assert all(call.id.startswith("chatcmpl-tool-") for call in choice.message.tool_calls or [])
    streamed: dict[int, list[str]] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or []:
            streamed.setdefault(delta.index, []).append(delta.function.arguments or "" if delta.function else "")
    assert [orjson.loads("".join(parts)) for parts in streamed.values()] == [arguments for _, arguments in calls]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_chat_with_a_named_or_required_tool(sim: Sim) -> None:
    named_tool: Any = {"type": "function", "function": {"name": "get_current_weather"}}
    async with (
        sim(MODEL, "--tool-call-parser", "hermes") as url,
        openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none") as client,
    ):
        messages: Any = [{"role": "user", "content": "Hello in Oslo"}]
        named = await client.chat.completions.create(
            model=MODEL, messages=messages, tools=TOOLS, tool_choice=named_tool
        )
        required = await client.chat.completions.create(
            model=MODEL, messages=SEED_MESSAGES, tools=TOOLS, tool_choice="required"
        )
    assert function_calls(named.choices[0].message) == [("get_current_weather", {"location": "Oslo"})]
    assert named.choices[0].message.content == ""
    assert [arguments["location"] for _, arguments in function_calls(required.choices[0].message)] == [
        "San Francisco",
        "Tokyo",
        "Paris",
    ]


async def test_chat_tool_rules_are_vllms(sim: Sim) -> None:
    async with sim(MODEL, "--tool-call-parser", "hermes") as url:  # a parser, but no --enable-auto-tool-choice
        status, body = await post(f"{url}/v1/chat/completions", {"messages": SEED_MESSAGES, "tools": [WEATHER_TOOL]})
        assert status == 400
        assert body == {
            "error": {
                "message": '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        }
        status, body = await post(f"{url}/v1/chat/completions", {"messages": SEED_MESSAGES, "tool_choice": "required"})
        assert (status, body["error"]["message"]) == (400, "When using `tool_choice`, `tools` must be set.")
        # tool_choice "none": the template still shows the tools, and the raw output is content
        status, body = await post(
            f"{url}/v1/chat/completions",
            {"messages": SEED_MESSAGES, "tools": [WEATHER_TOOL], "tool_choice": "none", "skip_special_tokens": False},
        )
        assert status == 200 and body["choices"][0]["message"]["tool_calls"] == []
        assert body["choices"][0]["message"]["content"].count("<tool_call>") == 3


async def test_reject_tools_answers_like_vllm_0_4(sim: Sim) -> None:
    async with sim(MODEL, "--reject-tools") as url:
        status, body = await post(
            f"{url}/v1/chat/completions", {"model": MODEL, "messages": SEED_MESSAGES, "tools": [WEATHER_TOOL]}
        )
        assert status == 400
        assert body["object"] == "error" and body["type"] == "BadRequestError" and body["code"] == 400
        assert "'loc': ('body', 'tools')" in body["message"] and "Extra inputs are not permitted" in body["message"]
        status, body = await post(f"{url}/v1/chat/completions", {"messages": SEED_MESSAGES, "tool_choice": "none"})
        assert status == 400 and "tool_choice" in body["message"]
        status, body = await post(f"{url}/v1/chat/completions", {"messages": SEED_MESSAGES})
        assert status == 200
        # the proxy's way around it: render the prompt itself and use /v1/completions
        prompt = get_dialect("generic").render_prompt(SEED_MESSAGES, None)
        status, body = await post(f"{url}/v1/completions", {"prompt": prompt, "max_tokens": 100})
        assert status == 200


# -- special tokens, as the proxy meets them ------------------------------------------------------


async def test_skip_special_tokens_strips_hermes_markers(sim: Sim) -> None:
    prompt = get_dialect("hermes").render_prompt(SEED_MESSAGES, [WEATHER_TOOL])
    async with sim(MODEL, "--tool-call-parser", "hermes") as url:
        _, stripped = await post(f"{url}/v1/completions", {"prompt": prompt, "max_tokens": 200})
        _, kept = await post(
            f"{url}/v1/completions", {"prompt": prompt, "max_tokens": 200, "skip_special_tokens": False}
        )
    assert "<tool_call>" not in stripped["choices"][0]["text"]
    assert stripped["choices"][0]["text"].startswith('\n{"name":"get_current_weather"')
    assert kept["choices"][0]["text"].count("<tool_call>") == 3
    assert len(parse("hermes", kept["choices"][0]["text"])[1]) == 3


# -- errors and limits ----------------------------------------------------------------------------


async def test_request_errors(sim: Sim) -> None:
    async with sim(MODEL, "--max-model-len", "100") as url:
        status, body = await post(f"{url}/v1/completions", {"model": "other", "prompt": "x"})
        assert (status, body["error"]["type"], body["error"]["code"]) == (404, "NotFoundError", 404)
        assert body["error"]["message"] == "The model `other` does not exist."
        status, body = await post(f"{url}/v1/completions", {"prompt": "x", "n": 0})
        assert status == 400 and body["error"]["param"] == "n"
        status, body = await post(f"{url}/v1/completions", {"prompt": "x", "max_tokens": 500})
        assert status == 400 and "maximum context length is 100 tokens" in body["error"]["message"]
        status, body = await post(f"{url}/v1/completions", {"prompt": "x" * 1000})
        assert status == 400 and "your request has 250 input tokens" in body["error"]["message"]
        status, body = await post(f"{url}/v1/completions", {"prompt": "x", "stream_options": {"include_usage": True}})
        assert status == 400 and "stream=True" in body["error"]["message"]
        status, body = await post(f"{url}/v1/chat/completions", {"messages": []})
        assert status == 400 and body["error"]["param"] == "messages"
        status, body = await post(
            f"{url}/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stop": 3}
        )
        assert status == 400 and body["error"]["param"] == "stop"
        async with aiohttp.ClientSession() as session, session.post(f"{url}/v1/completions", data=b"{nope") as response:
            assert response.status == 400
            assert "not valid JSON" in (await response.json())["error"]["message"]


async def test_template_errors_are_bad_requests(sim: Sim) -> None:
    async with sim(MODEL, "--dialect", "chatglm3") as url:
        status, body = await post(f"{url}/v1/chat/completions", {"messages": [{"role": "critic", "content": "x"}]})
    assert status == 400 and "ChatGLM3 has no role critic" in body["error"]["message"]


async def test_api_key(sim: Sim) -> None:
    async with sim(MODEL, "--api-key", "sekret") as url:
        assert (await post(f"{url}/v1/completions", {"prompt": "x"}))[0] == 401
        status, _ = await post(f"{url}/v1/completions", {"prompt": "x"}, headers={"Authorization": "Bearer sekret"})
        assert status == 200
        assert (await get(f"{url}/health"))[0] == 200


async def test_time_to_first_token_and_between_tokens(sim: Sim) -> None:
    async with sim(MODEL, "--ttft-ms", "150", "--itl-ms", "10") as url:
        started = time.monotonic()
        frames = await events(f"{url}/v1/completions", {"prompt": "Hi", "max_tokens": 6, "stream": True})
        elapsed = time.monotonic() - started
    assert len(frames) >= 4
    assert 0.15 + 5 * 0.01 <= elapsed < 5


async def test_a_client_that_goes_away_stops_the_stream(sim: Sim) -> None:
    async with sim(MODEL, "--itl-ms", "20") as url:
        async with aiohttp.ClientSession() as session:
            body = {"prompt": "Tell me about Rome", "max_tokens": 100, "stream": True}
            async with session.post(f"{url}/v1/completions", json=body) as response:
                await response.content.readuntil(b"\n\n")
        for _ in range(100):
            _, metrics = await get(f"{url}/metrics")
            if b'finished_reason="abort"} 1' in metrics:
                break
            await asyncio.sleep(0.02)
        assert b'finished_reason="abort"} 1' in metrics
        assert b'vllm:num_requests_running{model_name="' + MODEL.encode() + b'"} 0' in metrics
