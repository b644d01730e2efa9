"""The simulator batches requests as vLLM does, and /metrics counts them as vLLM's does: what an
autoscaler on vllm:num_requests_running, vllm:num_requests_waiting or vllm:kv_cache_usage_perc sees."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from toolcall_proxy.sim.server import DEFAULT_MAX_NUM_SEQS, ConfigError, SimConfig, build_parser, parse_args

from .load import HOLD, chat, eventually, held, settled
from .test_server import post

Sim = Callable[..., contextlib.AbstractAsyncContextManager[str]]
MODEL = "Qwen/Qwen2.5-7B-Instruct"


async def test_max_num_seqs_run_and_the_others_wait_first_come_first_served(sim: Sim) -> None:
    async with sim(MODEL, "--max-num-seqs", "2", *HOLD) as url, held(url) as requests:
        assert await settled(url, running=0, waiting=0, kv=0)
        for count, name in enumerate("abcde", start=1):
            await requests.send(name, "/v1/chat/completions", chat(name))
            await settled(url, running=min(count, 2), waiting=max(count - 2, 0))  # arrival order is this order
        await eventually(lambda: requests.began == ["a", "b"])
        await requests.leave("a")  # a's client goes away: the first to wait takes its place
        await settled(url, running=2, waiting=2)
        await eventually(lambda: requests.began == ["a", "b", "c"])
        await requests.leave("d")  # one that waits leaves the queue
        await settled(url, running=2, waiting=1)
        await requests.leave("b")
        await eventually(lambda: requests.began == ["a", "b", "c", "e"])
        await requests.leave("c", "e")
        await settled(url, running=0, waiting=0, kv=0, aborted=5)


async def test_whole_answers_wait_and_leave_as_streams_do(sim: Sim) -> None:
    async with sim(MODEL, "--max-num-seqs", "1", *HOLD) as url, held(url) as requests:
        await requests.send("first", "/v1/completions", {"prompt": "first", "max_tokens": 5})
        await settled(url, running=1, waiting=0)
        await requests.send("second", "/v1/chat/completions", chat("second", stream=False))
        await settled(url, running=1, waiting=1)
        await requests.leave("first")  # vLLM aborts a whole request whose client left, too
        await settled(url, running=1, waiting=0)
        await requests.leave("second")
        await settled(url, running=0, waiting=0, aborted=2)


async def test_a_full_kv_cache_holds_the_queue_and_its_usage_is_reported(sim: Sim) -> None:
    # 16 blocks of 16 tokens; a 600-character prompt is 150 tokens, 10 blocks: one fits, not two
    flags = ("--num-gpu-blocks-override", "16", "--block-size", "16", "--max-model-len", "256", *HOLD)
    prompt = {"prompt": "x" * 600, "max_tokens": 50}
    async with sim(MODEL, *flags) as url, held(url) as requests:
        await requests.send("first", "/v1/completions", prompt)
        await settled(url, running=1, waiting=0, kv=10 / 16)
        await requests.send("second", "/v1/completions", prompt)
        await settled(url, running=1, waiting=1, kv=10 / 16)  # far from --max-num-seqs: the cache is full
        await requests.leave("first")
        await settled(url, running=1, waiting=0, kv=10 / 16)
        await requests.leave("second")
        await settled(url, running=0, waiting=0, kv=0)


async def test_a_sequence_that_outgrows_the_cache_preempts_another_which_resumes(sim: Sim) -> None:
    # Two 100-token prompts take 14 of 16 blocks; their answers (some 60 tokens each) need more
    flags = ("--num-gpu-blocks-override", "16", "--block-size", "16", "--max-model-len", "256", "--itl-ms", "10")
    bodies = [{"prompt": f"{word} " * 100, "max_tokens": 150} for word in ("tea", "sea")]
    async with sim(MODEL, *flags) as url:
        answers: list[Any] = await asyncio.gather(*(post(f"{url}/v1/completions", body) for body in bodies))
        values = await settled(url, running=0, waiting=0, kv=0)
        assert values["preemptions"] >= 1
        alone = [await post(f"{url}/v1/completions", body) for body in bodies]  # one at a time: no preemption
    assert [status for status, _ in answers] == [200, 200]
    assert [answer["choices"][0]["text"] for _, answer in answers] == [a["choices"][0]["text"] for _, a in alone]
    assert all(answer["choices"][0]["finish_reason"] == "stop" for _, answer in answers)


def test_the_batch_flags_are_vllms() -> None:
    config = SimConfig.from_args(parse_args([MODEL]))
    assert (config.max_num_seqs, config.block_size) == (DEFAULT_MAX_NUM_SEQS, 16) == (256, 16)
    assert config.kv_cache_blocks == 256 * 8192 // 16  # by default the cache never holds anything back
    config = SimConfig.from_args(
        parse_args([MODEL, "--max-num-seqs", "8", "--block-size", "32", "--num-gpu-blocks-override", "300"])
    )
    assert (config.max_num_seqs, config.block_size, config.kv_cache_blocks) == (8, 32, 300)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-num-seqs", "0"], "argument --max-num-seqs: must be at least 1"),
        (["--block-size", "7"], "argument --block-size: invalid choice: 7"),
        (["--num-gpu-blocks-override", "0"], "argument --num-gpu-blocks-override: must be at least 1"),
    ],
)
def test_bad_batch_flags_are_refused_by_name(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args([MODEL, *argv], build_parser())
    assert message in capsys.readouterr().err


def test_a_cache_too_small_for_one_sequence_is_refused() -> None:
    args = parse_args([MODEL, "--num-gpu-blocks-override", "15", "--max-model-len", "256"])
    with pytest.raises(ConfigError, match=r"cannot hold one sequence of --max-model-len 256.*at least 16 blocks"):
        SimConfig.from_args(args)
