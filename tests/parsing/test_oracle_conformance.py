"""The public conformance set: ``/work/shared/oracle/cases.jsonl`` (raw model outputs and the parse
their source — vLLM, SGLang, llama.cpp, the model's own docs — expects).

Every case of a family we have a dialect for is parsed whole, split in two at every character
boundary, and cut into random token-like chunks: all of them must fold into the same response,
and that response must be the oracle's.

Where the oracle's sources disagree with each other, or with this project's response policy,
``POLICY`` below says what we return instead and why. The policy (see ``parsing/parser.py`` and
``parsing/result.py``):

* Nothing the model wrote is lost: text before, between and after calls is content (vLLM drops
  it for llama3_json and hermes; SGLang and llama.cpp keep some of it).
* Leading whitespace of the output and whitespace directly before a call are dropped.
* A call truncated before its arguments begin is not a call: its text is content.
* A call whose arguments are complete is a call, even when its closing brace or marker is
  missing (vLLM's hermes parser does the same for a missing ``</tool_call>``).
* A call that breaks off inside its arguments fails: its raw text is content.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _fold import assert_same_however_chunked, parse_in_chunks

from toolcall_proxy.dialects import get_dialect
from toolcall_proxy.parsing import ParseResult

ORACLE = Path("/work/shared/oracle/cases.jsonl")

# The oracle families each dialect answers for. Adding a family is one line here.
FAMILY_DIALECTS = {
    "chatglm3": "chatglm3",
    "hermes": "hermes",
    "qwen25_hermes": "hermes",
    "llama3_json": "llama3_json",
    "glm4_9b": "glm4",
    "deepseek_v3": "deepseek_v3",
    "deepseek_v31": "deepseek_v31",
    "internlm2": "internlm",
    "qwen3_coder": "qwen3_coder",
    "kimi_k2": "kimi_k2",
    "gpt_oss": "openai",
    "mistral_v3": "mistral",
    "mistral_v11": "mistral",
    "pythonic": "pythonic",
    "pythonic_llama4": "llama4_pythonic",
    "granite": "granite",
}


@dataclass(frozen=True)
class Policy:
    """What the project returns for a case instead of the oracle's expectation, and why."""

    reason: str
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None  # None: the oracle's tool calls stand


_BEFORE_CALL = "policy: whitespace directly before a call is dropped"
_KEEP_TEXT = "policy: text around calls is content (nothing the model wrote is lost); vLLM llama3_json drops it all"

# Keyed by case id: "<family>-<first 10 hex digits of sha1(raw)>".
POLICY: dict[str, Policy] = {
    "hermes-876159fa16": Policy(
        "policy: the arguments are complete, only the call object's '}' and </tool_call> are missing, so the call "
        "is accepted (vLLM takes a call without </tool_call> too, but its json.loads needs the brace)",
        content=None,
        tool_calls=[{"name": "final_answer", "arguments": {"trigger": True}}],
    ),
    "qwen25_hermes-46b3c1374b": Policy(
        "policy: complete call without </tool_call> is accepted, as vLLM hermes does (the SGLang router rejects it)",
        content=None,
        tool_calls=[{"name": "test", "arguments": {}}],
    ),
    "hermes-fce6ffd672": Policy(
        "policy: a call truncated before its arguments begin is content, kept whole (llama.cpp's partial parse "
        "drops the unfinished tag)",
        content='Let\'s call something\n<tool_call>{"name"',
    ),
    "qwen25_hermes-a809a6efdf": Policy(
        "policy: text between and after calls is content (SGLang and vLLM keep only the text before the first "
        "call); whitespace before each call is dropped",
        content="I'll help you search for information and perform calculations.\n\n"
        "Let me also calculate something for you:\n\n"
        "These tools will provide the information you need.",
    ),
    "llama3_json-5223746310": Policy(_KEEP_TEXT, content="Here is the result: Would you like to know more?"),
    "llama3_json-9d83bc8f17": Policy(_KEEP_TEXT, content="Here are the results: Would you like to know more?"),
    "llama3_json-8faa8c8809": Policy(_KEEP_TEXT, content="I used {searchTool} for this."),
    "llama3_json-67e15cd90f": Policy(_KEEP_TEXT, content='The arguments I passed were {"query": "test"}'),
    "llama3_json-0bf1095492": Policy(
        "policy: leading whitespace of the content is dropped (SGLang keeps the space that followed the call)",
        content="Some follow-up text",
    ),
    "llama3_json-3cd75b6fe8": Policy(
        "policy: whitespace directly before a call is dropped (SGLang keeps it)",
        content="Some intro.",
    ),
    "llama3_json-be95ca0ac3": Policy(
        "policy: the broken first call fails and its raw text is content; the valid call after it is still "
        "parsed, as SGLang does (SGLang drops the broken text)",
        content='{"name": "get_weather", "parameters": {',
    ),
    "glm4_9b-f2cc68f56d": Policy(
        "policy: GLM-4's built-in simple_browser is never offered through the OpenAI API and its body is not JSON, "
        "so the text is content (THUDM's API server maps search(...) to {query, recency_days} itself)",
        content='simple_browser\nsearch("GLM-4 release date", recency_days=30)',
        tool_calls=[],
    ),
    "deepseek_v3-20d96b5e25": Policy(
        "policy: a call whose arguments break off (here a missing '}') fails and its raw text is content "
        "(vLLM, xfail there, reports tools_called with no call and drops the text)",
        content="<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
        '```json\n{"city": "Tokyo"\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
    ),
    "deepseek_v3-82bea007a6": Policy(
        "policy: a block without <｜tool▁call▁begin｜> holds no call, and its text is content as written, as "
        "vLLM's deepseek_v31 tests expect for the same broken block (vLLM deepseek_v3, xfail there, drops it)",
        content='<｜tool▁calls▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Tokyo"}\n```'
        "<｜tool▁calls▁end｜>",
    ),
    "deepseek_v31-4cad944a55": Policy(
        "policy: text after the calls is content (vLLM deepseek_v31 drops it)",
        content="some prefix text some suffix text",
    ),
    "internlm2-c1165d60b5": Policy(
        "policy: whitespace directly before a call is dropped (vLLM internlm keeps it)",
        content="Let me check the weather for you.",
    ),
    "internlm2-10210c2f30": Policy(
        "policy: a call that breaks off inside its arguments fails and its raw text is content (vLLM internlm "
        "raises JSONDecodeError, xfail there)",
        content='<|action_start|><|plugin|>{"name": "func", "parameters": {',
    ),
    "qwen3_coder-f0734ac9b7": Policy(
        _BEFORE_CALL + " (vLLM qwen3_coder keeps it)", content="Let me check the weather for you:"
    ),
    "qwen3_coder-4ac1591937": Policy(
        _BEFORE_CALL + " (vLLM qwen3_coder keeps it)",
        content="Let me check if there might be a base.py file that's not showing up. Since we know it's being "
        "imported, let me try to grep for the implementation of BaseService.",
    ),
    "kimi_k2-fbcbf3996e": Policy(_BEFORE_CALL + " (vLLM kimi_k2 keeps it)", content="I'll check."),
    "kimi_k2-90f3e05523": Policy(_BEFORE_CALL + " (vLLM kimi_k2 keeps it)", content="Multiple tasks."),
    "kimi_k2-5cb453c842": Policy(_BEFORE_CALL + " (vLLM kimi_k2 keeps it)", content="Process HTML."),
    "kimi_k2-dac1df4f03": Policy(_BEFORE_CALL + " (vLLM kimi_k2 keeps it)", content="Formatted."),
    "kimi_k2-4c93195923": Policy(_BEFORE_CALL + " (vLLM kimi_k2 keeps it)", content="No prefix."),
    "kimi_k2-e2fbc87ce9": Policy(
        "policy: a call whose id names no function (no ':') is not a call, and its text is content, without the "
        "special tokens (vLLM drops it); the valid call after it is still parsed",
        content='Help. functions.invalid.0 {"city": "Beijing"}',
    ),
    "kimi_k2-192e92476b": Policy(
        "policy: a call whose arguments are not valid JSON fails and its raw text is content, where the call "
        "stood (vLLM passes the broken text on as the call's arguments); the valid call after it is parsed",
        content="Help.<|tool_calls_section_begin|><|tool_call_begin|>functions.bad:0 <|tool_call_argument_begin|>"
        '{"city": "Beijing"',
        tool_calls=[{"name": "good", "arguments": {"city": "Shanghai"}}],
    ),
    "gpt_oss-7a2515c4bb": Policy(
        "policy: a call that breaks off inside its arguments fails and its raw text, header included, is "
        "content (llama.cpp's partial parse of an unfinished stream returns the cut-off arguments)",
        content='<|channel|>commentary to=functions.special_function<|message|>{"arg1',
        tool_calls=[],
    ),
    "gpt_oss-a20d22cf39": Policy(
        "policy: a call whose arguments miss their last '}' fails and its raw text, header included, is "
        "content, so the model's output is not lost (the oracle drops it; LM Studio reports the error)",
        content="<|channel|>commentary to=functions.get_ecs_instructions<|constrain|>json<|message|>"
        '{"data":{"envs":{"sd":{"namespaces":{"main":{"resources":{"requests":{"cpu":"100m","memory":"128Mi"},'
        '"limits":{"cpu":"200m","memory":"256Mi"}}}}},"pr":{"namespaces":{"main":{"resources":{"requests":'
        '{"cpu":"500m","memory":"512Mi"},"limits":{"cpu":"1","memory":"1Gi"}}}}}}}',
    ),
    "mistral_v3-193d0752c9": Policy(
        "policy: text after the calls is content (non-streaming vLLM drops it, streaming vLLM sends it); the "
        "line break that starts it is leading whitespace of the content",
        content="extra trailing data",
    ),
    "mistral_v3-71646fb8f3": Policy(
        "policy: [TOOL_CALLS] must be followed by the call array or a function name; other text after it is "
        "content as written, minus the control token (vLLM falls back to a regex for any [{...}] in the rest)",
        content='junk [{"name": "add", "arguments":{"a": 1, "b": 2}}] trail',
        tool_calls=[],
    ),
    "mistral_v11-8531d4a91a": Policy(
        "policy: a call that breaks off inside its arguments fails and its raw text is content (vLLM passes the "
        "cut-off JSON on as the call's arguments)",
        content='hi{hi[TOOL_CALLS]bash{"command": "print(\\"hello world!\\")\\nre.compile(r\'{}\')',
        tool_calls=[],
    ),
    "mistral_v11-f95e68fa9c": Policy(
        "policy: a name without arguments is not a call; its text is content, minus the [TOOL_CALLS] control "
        "token (vLLM reports tools_called with no call and drops the text)",
        content="toolname_no_args",
    ),
    "granite-a5ee9cfb0d": Policy(
        "policy: a call that breaks off inside its arguments fails and its raw text is content (the case is "
        "llama.cpp's partial parse of an unfinished stream, which returns the cut-off arguments)",
        content='<|tool_call|>[{"name": "special_function", "arguments": {"arg',
        tool_calls=[],
    ),
    "granite-5b3139a030": Policy(
        "policy: text around calls is content, and whitespace directly before a call is dropped (vLLM's granite "
        "parser, xfail there, wants the call at the start; the oracle keeps the text before it only)",
        content="Let me check the weather for you.\nI'll get that information.",
    ),
    "granite-46a9c399f8": Policy(
        "policy: one call object after <|tool_call|>, without the array, is a call (vLLM's granite parser "
        "requires the array and returns the text)",
        content=None,
        tool_calls=[{"name": "func", "arguments": {}}],
    ),
}

REASONING_XFAIL = pytest.mark.xfail(
    strict=True, reason="this dialect does not separate reasoning yet (a later dialect: gpt-oss's channels, Granite's)"
)


def case_id(case: dict[str, Any]) -> str:
    return f"{case['family']}-{hashlib.sha1(case['raw'].encode()).hexdigest()[:10]}"


def _load_cases() -> list[dict[str, Any]]:
    with ORACLE.open(encoding="utf-8") as lines:
        cases = [json.loads(line) for line in lines if line.strip()]
    return [case for case in cases if case["family"] in FAMILY_DIALECTS]


CASES = _load_cases()
CASES_BY_ID = {case_id(case): case for case in CASES}
assert len(CASES_BY_ID) == len(CASES), "two oracle cases share an id"


def _params(*, reasoning_xfails: bool) -> list[Any]:
    params = []
    for case in CASES:
        thinks = get_dialect(FAMILY_DIALECTS[case["family"]]).grammar.reasoning is not None
        marks = [REASONING_XFAIL] if reasoning_xfails and "expected_reasoning" in case and not thinks else []
        params.append(pytest.param(case, id=case_id(case), marks=marks))
    return params


def _tool_names(case: dict[str, Any]) -> dict[str, Any] | None:
    """The offered tools, names -> parameter schemas (which type raw-text values: Qwen3-Coder's)."""
    if "tools" not in case:
        return None
    functions = [tool.get("function", tool) for tool in case["tools"]]
    return {function["name"]: function.get("parameters") or {} for function in functions}


def _prompt_end(case: dict[str, Any]) -> str:
    """The end of the prompt the case's output answered: QwQ's and R1's templates open <think>."""
    reasoning = get_dialect(FAMILY_DIALECTS[case["family"]]).grammar.reasoning
    if reasoning and "expected_reasoning" in case and reasoning[0] not in case["raw"]:
        return reasoning[0]
    return ""


def _parse(case: dict[str, Any], cuts: list[int] | None = None) -> ParseResult:
    dialect = FAMILY_DIALECTS[case["family"]]
    return parse_in_chunks(dialect, case["raw"], cuts or [], _tool_names(case), prompt=_prompt_end(case))


def _calls(result: ParseResult) -> list[dict[str, Any]]:
    return [{"name": call.name, "arguments": json.loads(call.arguments)} for call in result.calls]


@pytest.mark.parametrize("case", _params(reasoning_xfails=True))
def test_case_parses_as_expected(case: dict[str, Any]) -> None:
    expected_content, expected_calls = _expected(case)

    result = _parse(case)

    assert _calls(result) == expected_calls
    assert result.content == expected_content
    assert result.reasoning == case.get("expected_reasoning")


# The families whose dialect returns the model's own call ids (as vLLM does): Kimi-K2's functions.NAME:N.
NATIVE_ID_FAMILIES = {"kimi_k2"}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, id=case_id(case))
        for case in CASES
        if "expected_ids" in case and case["family"] in NATIVE_ID_FAMILIES
    ],
)
def test_case_keeps_the_models_own_call_ids(case: dict[str, Any]) -> None:
    assert [call.call_id for call in _parse(case).calls] == case["expected_ids"]


@pytest.mark.parametrize("case", _params(reasoning_xfails=False))
def test_case_parses_the_same_however_it_is_chunked(case: dict[str, Any]) -> None:
    assert_same_however_chunked(lambda cuts: _parse(case, cuts), case["raw"], seed=case_id(case))


def _expected(case: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """The (content, tool calls) we return for a case: the oracle's, unless ``POLICY`` says otherwise."""
    expected = case["expected"]
    policy = POLICY.get(case_id(case))
    if policy is None:
        return expected["content"], expected["tool_calls"]
    return policy.content, expected["tool_calls"] if policy.tool_calls is None else policy.tool_calls


def test_every_policy_entry_names_a_case_and_changes_its_expectation() -> None:
    for key, policy in POLICY.items():
        assert key in CASES_BY_ID, f"{key}: no such oracle case"
        case = CASES_BY_ID[key]
        oracle = (case["expected"]["content"], case["expected"]["tool_calls"])
        assert _expected(case) != oracle, f"{key}: the policy entry repeats the oracle's expectation"
        assert policy.reason.startswith("policy:"), key
