"""The simulator's constrained decoding: the request fields each vLLM version reads, grammars
refused as vLLM refuses them, a scripted misbehaving model, and what a grammar makes of it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from toolcall_proxy.dialects import get_dialect
from toolcall_proxy.parsing.constraint import ConstraintTool, call_constraint
from toolcall_proxy.sim import engine
from toolcall_proxy.sim.constrained import Constraint, Vocabulary, constrained_text

from .conftest import WEATHER_TOOL

Sim = Callable[..., contextlib.AbstractAsyncContextManager[str]]
HERMES = ("Qwen/Qwen2.5-7B-Instruct", "--dialect", "hermes")
WEATHER = ConstraintTool("get_current_weather", WEATHER_TOOL["function"]["parameters"])
PARIS = get_dialect("hermes").write_calls([("get_current_weather", {"location": "Paris"})])


def hermes_prompt(question: str = "What's the weather like in Paris?") -> str:
    return get_dialect("hermes").render_prompt([{"role": "user", "content": question}], [WEATHER_TOOL])


def grammar(mode: str = "required", parallel: bool = True) -> str:
    dialect = get_dialect("hermes")
    return call_constraint(
        dialect.grammar,
        [WEATHER],
        mode=mode,  # type: ignore[arg-type]
        parallel=parallel,
        special_tokens=("<tool_call>", "</tool_call>"),
        written=PARIS,
    )


async def complete(url: str, **body: Any) -> tuple[int, Any]:
    request = {"prompt": hermes_prompt(), "max_tokens": 300, "skip_special_tokens": False, **body}
    async with aiohttp.ClientSession() as session, session.post(f"{url}/v1/completions", json=request) as response:
        return response.status, await response.json()


async def test_the_version_is_vllms_answer(sim: Sim) -> None:
    async with sim(*HERMES, "--vllm-version", "0.10.2") as url, aiohttp.ClientSession() as session:
        async with session.get(f"{url}/version") as response:
            assert await response.json() == {"version": "0.10.2"}


async def test_tokenize_gives_a_control_token_one_id(sim: Sim) -> None:
    async with sim(*HERMES) as url, aiohttp.ClientSession() as session:
        for text, count in (("<tool_call>", 1), ("<|im_end|>", 1), ("</function>", 11)):
            body = {"prompt": text, "add_special_tokens": False}
            async with session.post(f"{url}/tokenize", json=body) as response:
                assert (await response.json())["count"] == count, text


@pytest.mark.parametrize(
    ("version", "field", "constrained"),
    [
        ("0.10.2", "guided_grammar", True),
        ("0.10.2", "structured_outputs", False),  # not a field yet: ignored
        ("0.11.0", "guided_grammar", True),  # both read
        ("0.11.0", "structured_outputs", True),
        ("0.12.0", "guided_grammar", False),  # removed: ignored, as vLLM ignores unknown fields
        ("0.12.0", "structured_outputs", True),
    ],
)
async def test_each_version_reads_its_own_fields(sim: Sim, version: str, field: str, constrained: bool) -> None:
    value = {"grammar": grammar()} if field == "structured_outputs" else grammar()
    async with sim(*HERMES, "--vllm-version", version, "--misbehave", "prose") as url:
        status, body = await complete(url, **{field: value})
    assert status == 200
    assert body["choices"][0]["text"].startswith("<tool_call>") == constrained


async def test_a_grammar_that_does_not_compile_is_a_400(sim: Sim) -> None:
    async with sim(*HERMES) as url:
        status, body = await complete(url, structured_outputs={"grammar": "start: nowhere"})
    assert status == 400 and "Grammar error" in body["error"]["message"]
    assert body["error"]["param"] == "structured_outputs.grammar"


async def test_two_kinds_of_constraint_are_a_400(sim: Sim) -> None:
    async with sim(*HERMES) as url:
        status, body = await complete(url, structured_outputs={"grammar": grammar(), "json": {"type": "object"}})
    assert status == 400 and "only use one kind" in body["error"]["message"]


async def test_the_xgrammar_backend_refuses_lark_before_vllm_0_34(sim: Sim) -> None:
    async with sim(*HERMES, "--structured-outputs-config.backend", "xgrammar") as url:
        status, body = await complete(url, structured_outputs={"grammar": grammar()})
        assert (status, body["error"]["message"]) == (400, "Invalid grammar specification.")
    async with sim(*HERMES, "--guided-decoding-backend", "xgrammar", "--vllm-version", "0.34.0") as url:
        assert (await complete(url, structured_outputs={"grammar": grammar()}))[0] == 200


async def test_a_json_schema_holds_the_whole_output(sim: Sim) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    async with sim(*HERMES) as url:
        status, body = await complete(url, structured_outputs={"json": schema})
    assert status == 200 and body["choices"][0]["text"].startswith('{"n":')


@pytest.mark.parametrize("fault", engine.MISBEHAVIOURS)
def test_a_misbehaving_model_writes_its_fault_and_knows_the_right_answer(fault: str) -> None:
    generation = engine.generate(hermes_prompt(), dialect="hermes", model="m", misbehave=(fault,))
    assert generation.intended == PARIS and generation.text != generation.intended
    wrong = {
        "wrong-name": '"get_current_weather_v2"',
        "bad-arguments": '"confidence":"high"',
        "prose": "You asked",
        "extra-call": "</tool_call>\n<tool_call>",
    }[fault]
    assert wrong in generation.text


def test_a_well_behaved_model_is_its_own_intention() -> None:
    generation = engine.generate(hermes_prompt(), dialect="hermes", model="m")
    assert generation.text == generation.intended


@pytest.mark.parametrize("fault", engine.MISBEHAVIOURS)
def test_under_a_grammar_the_model_goes_back_to_its_intention(fault: str) -> None:
    generation = engine.generate(hermes_prompt(), dialect="hermes", model="m", misbehave=(fault,))
    vocabulary = Vocabulary(["<tool_call>", "</tool_call>", "<|im_end|>"])
    one_call = Constraint("grammar", grammar(parallel=False))
    written = constrained_text(one_call, [generation.text, generation.intended], vocabulary)
    assert written == generation.intended.strip()


def test_free_text_is_left_alone_under_auto() -> None:
    vocabulary = Vocabulary(["<tool_call>", "</tool_call>"])
    text = "It is sunny in Paris, no tool needed."
    assert constrained_text(Constraint("grammar", grammar("auto")), [text], vocabulary) == text


def test_a_model_with_no_script_that_fits_still_ends() -> None:
    vocabulary = Vocabulary(["<tool_call>", "</tool_call>"])
    written = constrained_text(Constraint("grammar", grammar()), ["Prose only."], vocabulary)
    assert written.startswith("<tool_call>") and written.endswith("</tool_call>")


def test_the_command_line_takes_the_version_the_backend_and_the_faults() -> None:
    from toolcall_proxy.sim.server import SimConfig, parse_args

    argv = ["m", "--structured-outputs-config.backend", "guidance", "--vllm-version", "0.10.2"]
    config = SimConfig.from_args(parse_args([*argv, "--misbehave", "prose", "--misbehave", "wrong-name"]))
    assert (config.structured_outputs_backend, config.vllm_version) == ("guidance", "0.10.2")
    assert config.misbehave == ("prose", "wrong-name")
    with pytest.raises(SystemExit):
        parse_args(["m", "--vllm-version", "latest"])


async def test_max_tokens_null_is_what_remains_of_the_context_and_absent_is_sixteen(sim: Sim) -> None:
    answers = []
    async with sim(*HERMES, "--max-model-len", "4096") as url, aiohttp.ClientSession() as session:
        for request in ({"prompt": "Tell me about Rome"}, {"prompt": "Tell me about Rome", "max_tokens": None}):
            async with session.post(f"{url}/v1/completions", json=request) as response:
                answers.append(await response.json())
    left_out, null = answers
    assert (left_out["choices"][0]["finish_reason"], left_out["usage"]["completion_tokens"]) == ("length", 16)
    assert null["choices"][0]["finish_reason"] == "stop" and null["usage"]["completion_tokens"] > 16


async def test_n_gives_that_many_choices_of_each_prompt(sim: Sim) -> None:
    async with sim(*HERMES) as url:
        status, body = await complete(url, n=3)
        assert status == 200 and [choice["index"] for choice in body["choices"]] == [0, 1, 2]
        assert (await complete(url, n=0))[0] == 400
