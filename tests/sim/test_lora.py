"""LoRA adapters as vLLM serves them: its flags and its refusals, /v1/models, requests by an
adapter's name, and --max-loras in the batch."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from toolcall_proxy.sim.server import ConfigError, LoraModule, SimConfig, build_parser, parse_args

from .conftest import SEED_QUESTION, WEATHER_TOOL
from .load import HOLD, chat, eventually, held, settled
from .test_server import function_calls, get, post

Sim = Callable[..., contextlib.AbstractAsyncContextManager[str]]
MODEL = "meta-llama/Llama-3.2-3B-Instruct"
SQL_LORA = "sql-lora=jeeejeee/llama32-3b-text2sql-spider"  # a Hugging Face adapter, as examples/ has it
ADAPTERS = ("--enable-lora", "--lora-modules", SQL_LORA, "support=/adapters/support")


def config(*argv: str) -> SimConfig:
    return SimConfig.from_args(parse_args([MODEL, *argv]))


# -- the command line -----------------------------------------------------------------------------


def test_lora_modules_in_both_of_vllms_forms() -> None:
    json_form = '{"name": "support", "path": "/adapters/support", "base_model_name": "llama"}'
    modules = config("--enable-lora", "--lora-modules", "sql-lora=org/sql", json_form).lora_modules
    assert modules == (LoraModule("sql-lora", "org/sql"), LoraModule("support", "/adapters/support", "llama"))


def test_a_later_lora_modules_replaces_an_earlier_one_as_in_vllm() -> None:
    modules = config("--enable-lora", "--lora-modules", "a=/a", "--lora-modules", "b=/b").lora_modules
    assert [module.name for module in modules] == ["b"]


def test_the_lora_flags_and_their_defaults() -> None:
    assert (config().enable_lora, config().max_loras, config().max_lora_rank) == (False, 1, 16)
    chosen = config("--enable-lora", "--max-loras", "4", "--max-lora-rank", "64")
    assert (chosen.enable_lora, chosen.max_loras, chosen.max_lora_rank) == (True, 4, 64)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lora-modules", "{not json"], "Invalid JSON format for --lora-modules: {not json"),
        (["--lora-modules", '{"name": "a"}'], 'Invalid fields for --lora-modules: {"name": "a"} - '),
        (["--lora-modules", '{"name": "a", "path": "/a", "rank": 8}'], "unexpected keyword argument 'rank'"),
        (["--lora-modules", "a=/b=c"], "Invalid format for --lora-modules: a=/b=c"),
        (["--max-lora-rank", "12"], "argument --max-lora-rank: invalid choice: 12"),
        (["--max-loras", "0"], "argument --max-loras: must be at least 1"),
    ],
)
def test_bad_lora_flags_are_refused_in_vllms_words(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args([MODEL, "--enable-lora", *argv], build_parser())
    assert message in capsys.readouterr().err


def test_adapters_without_enable_lora_are_refused_as_vllm_refuses_them() -> None:
    with pytest.raises(ConfigError, match=r"^LoRA is not enabled\. Use --enable-lora to enable LoRA\.$"):
        config("--lora-modules", "a=/a")


def test_an_adapter_named_twice_is_refused_as_vllm_refuses_it() -> None:
    with pytest.raises(ConfigError, match="The lora adapter 'a' has already been loaded"):
        config("--enable-lora", "--lora-modules", "a=/a", "a=/b")


def test_a_local_adapter_of_a_higher_rank_than_max_lora_rank_is_refused(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text('{"r": 32, "lora_alpha": 16}')
    with pytest.raises(ConfigError, match=r"LoRA rank 32 is greater than max_lora_rank 16\."):
        config("--enable-lora", "--lora-modules", f"a={tmp_path}")
    assert config("--enable-lora", "--lora-modules", f"a={tmp_path}", "--max-lora-rank", "32").lora_modules


# -- serving --------------------------------------------------------------------------------------


async def test_v1_models_lists_the_adapters_after_the_base_model_as_vllm_does(sim: Sim) -> None:
    json_form = '{"name": "tagged", "path": "/adapters/t", "base_model_name": "other"}'
    async with sim(MODEL, "--served-model-name", "llama", *ADAPTERS, json_form, "--max-model-len", "4096") as url:
        _, body = await get(f"{url}/v1/models")
    cards = orjson.loads(body)["data"]
    assert [(c["id"], c["root"], c["parent"], c["max_model_len"]) for c in cards] == [
        ("llama", MODEL, None, 4096),
        ("sql-lora", "jeeejeee/llama32-3b-text2sql-spider", "llama", None),
        ("support", "/adapters/support", "llama", None),
        ("tagged", "/adapters/t", "llama", None),  # a base_model_name not served: the first served name
    ]
    assert all(card["object"] == "model" and card["owned_by"] == "vllm" for card in cards)


async def test_a_request_by_an_adapters_name_is_answered_as_the_base_model_answers(sim: Sim) -> None:
    parser = ("--enable-auto-tool-choice", "--tool-call-parser", "llama3_json")
    async with sim(MODEL, *ADAPTERS, *parser) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        messages: Any = [{"role": "user", "content": SEED_QUESTION}]
        answers = {
            model: await client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
            for model in (MODEL, "sql-lora", "support")
        }
        status, completion = await post(f"{url}/v1/completions", {"model": "support", "prompt": "Hi"})
        with pytest.raises(openai.NotFoundError, match=r"The model `nope` does not exist\."):
            await client.chat.completions.create(model="nope", messages=messages)
        await client.close()
    assert {model: answer.model for model, answer in answers.items()} == {m: m for m in answers}
    calls = {model: function_calls(answer.choices[0].message) for model, answer in answers.items()}
    assert calls["sql-lora"] == calls["support"] == calls[MODEL] != []
    assert (status, completion["model"]) == (200, "support")


async def test_the_batch_holds_max_loras_adapters_and_passes_the_others_over(sim: Sim) -> None:
    async with sim(MODEL, *ADAPTERS, "--max-loras", "1", *HOLD) as url, held(url) as requests:
        await requests.send("sql", "/v1/chat/completions", chat("sql", "sql-lora"))
        await settled(url, running=1, waiting=0)
        await requests.send("support", "/v1/chat/completions", chat("support", "support"))
        await settled(url, running=1, waiting=1)  # room in the batch, none for a second adapter
        await requests.send("base", "/v1/chat/completions", chat("base"))
        await requests.send("sql again", "/v1/chat/completions", chat("sql again", "sql-lora"))
        values = await settled(url, running=3, waiting=1)  # those behind it went ahead
        lora = {"max_lora": "1", "running_lora_adapters": "sql-lora", "waiting_lora_adapters": "support"}
        assert values["lora"] == lora
        await eventually(lambda: sorted(requests.began) == ["base", "sql", "sql again"])
        await requests.leave("sql", "sql again")
        await eventually(lambda: "support" in requests.began)
        values = await settled(url, running=2, waiting=0)
        assert values["lora"]["running_lora_adapters"] == "support"


async def test_without_lora_there_is_no_lora_series(sim: Sim) -> None:
    async with sim(MODEL) as url:
        _, metrics = await get(f"{url}/metrics")
    assert b"vllm:lora_requests_info" not in metrics
