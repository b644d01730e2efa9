"""LoRA adapters through the proxy: the simulated engine serves two adapters beside the base model
(``--enable-lora --lora-modules``, as the operator renders them), and a client that names an
adapter as its ``model`` gets tool calls in the family's own format, whole and streamed.

One proxy serves one family (``TOOLMODEL_DIALECT``), and an adapter is trained on its base
model's format, so the proxy needs nothing per adapter: it prompts as for the base model and
passes the name on. Each of the ways the proxy prompts is here: token ids (chatglm3), text
without the tokenizer's prefix (glm4), text (hermes), the engine's own chat template (generic).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import sim_stack
from openai import AsyncOpenAI, NotFoundError

from toolcall_proxy.demo import QUESTION, WEATHER_TOOL
from toolcall_proxy.sim.server import LoraModule, SimApp

ADAPTERS = (LoraModule("sql-lora", "jeeejeee/llama32-3b-text2sql-spider"), LoraModule("support", "/adapters/support"))
LORA = {"enable_lora": True, "lora_modules": ADAPTERS, "max_loras": 2}  # as the operator renders two adapters


@pytest.fixture
def running_stack(chatglm3_tokenizer_dir: Path) -> Any:
    return functools.partial(sim_stack.running_stack, tokenizer=chatglm3_tokenizer_dir, **LORA)


@pytest.fixture
def engine_requests(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """What reached the engine: each request's path and body."""
    seen: list[tuple[str, dict[str, Any]]] = []
    route = SimApp._route

    async def recording(self: SimApp, scope: Any, receive: Any, send: Any) -> None:
        async def recorded() -> Any:
            message = await receive()
            if message.get("body"):
                seen.append((scope["path"], json.loads(message["body"])))
            return message

        await route(self, scope, recorded, send)

    monkeypatch.setattr(SimApp, "_route", recording)
    return seen


async def ask(client: AsyncOpenAI, model: str, stream: bool) -> tuple[set[str], list[tuple[str, Any]]]:
    """The models the answer says it came from, and its calls (name and arguments)."""
    messages: Any = [{"role": "user", "content": QUESTION}]
    if not stream:
        answer = await client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
        calls = answer.choices[0].message.tool_calls or []
        return {answer.model}, [(call.function.name, json.loads(call.function.arguments)) for call in calls]
    models: set[str] = set()
    parts: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    async for chunk in await client.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER_TOOL], stream=True
    ):
        models.add(chunk.model)
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                names[delta.index] = names.get(delta.index, "") + (delta.function.name or "")
                parts.setdefault(delta.index, []).append(delta.function.arguments or "")
    return models, [(names[i], json.loads("".join(parts[i]))) for i in sorted(parts)]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("dialect", ["chatglm3", "glm4", "hermes", "generic"])
async def test_a_request_by_an_adapters_name_gets_the_familys_tool_calls(
    dialect, stream, running_stack, engine_requests
):
    async for client, _ in running_stack(dialect):
        base_models, base_calls = await ask(client, "demo", stream)
        adapter_models, adapter_calls = await ask(client, "sql-lora", stream)
        other_models, other_calls = await ask(client, "support", stream)
    assert (base_models, adapter_models, other_models) == ({"demo"}, {"sql-lora"}, {"support"})
    assert base_calls and adapter_calls == other_calls == base_calls  # the adapter writes its base model's format
    assert {name for name, _ in adapter_calls} == {"get_current_weather"}
    assert "location" in adapter_calls[0][1]
    generations = [body for path, body in engine_requests if path in ("/v1/completions", "/v1/chat/completions")]
    assert [body["model"] for body in generations] == ["demo", "sql-lora", "support"]
    if dialect == "chatglm3":  # prompted in token ids, as for the base model
        assert all(
            isinstance(body["prompt"], list) and all(isinstance(i, int) for i in body["prompt"]) for body in generations
        )


async def test_v1_models_through_the_proxy_lists_the_adapters(running_stack):
    async for client, _ in running_stack("hermes"):
        models = await client.models.list()
    cards = [(model.id, getattr(model, "root", None), getattr(model, "parent", None)) for model in models.data]
    assert cards == [
        ("demo", "demo/model", None),
        ("sql-lora", "jeeejeee/llama32-3b-text2sql-spider", "demo"),
        ("support", "/adapters/support", "demo"),
    ]


async def test_an_unknown_model_name_is_the_engines_404_through_the_proxy(running_stack):
    async for client, _ in running_stack("hermes"):
        with pytest.raises(NotFoundError, match="The model `no-such-adapter` does not exist"):
            await client.chat.completions.create(
                model="no-such-adapter", messages=[{"role": "user", "content": QUESTION}], tools=[WEATHER_TOOL]
            )
