"""The contract's validators themselves: how they read OpenAPI's ``nullable``, references, open
objects and the SDK's strict types, on objects written by hand."""

from __future__ import annotations

import copy
from typing import Any

import openapi_contract
import pytest
from openapi_contract import chat_completion_chunk_violations, chat_completion_violations, error_violations

COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "demo",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}
CHUNK: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": "demo",
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "logprobs": None, "finish_reason": None}],
}
ERROR: dict[str, Any] = {
    "error": {"message": "n: set n to 1", "type": "invalid_request_error", "param": "n", "code": None}
}


@pytest.fixture(scope="module", autouse=True)
def openai_contract() -> None:
    try:
        openapi_contract.load()
    except openapi_contract.ContractMissing as missing:
        pytest.fail(str(missing), pytrace=False)


def _with(value: dict[str, Any], path: list[str | int], member: Any) -> dict[str, Any]:
    out = copy.deepcopy(value)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    if member is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = member
    return out


def _validators(violations: list[openapi_contract.Violation]) -> set[str]:
    return {violation.validator for violation in violations}


def test_well_formed_objects_keep_the_contract() -> None:
    assert chat_completion_violations(COMPLETION) == []
    assert chat_completion_chunk_violations(CHUNK) == []
    assert error_violations(ERROR) == []


def test_nullable_also_allows_null_beside_an_enum_and_a_ref() -> None:
    # finish_reason: {type: string, enum: [...], nullable: true}; usage: {$ref: CompletionUsage, nullable: true}
    assert chat_completion_chunk_violations(_with(CHUNK, ["usage"], None)) == []
    bad = chat_completion_chunk_violations(_with(CHUNK, ["choices", 0, "finish_reason"], "abort"))
    assert [v.path for v in bad if v.validator == "openapi"] == ["$.choices[0].finish_reason"]
    assert "is not one of" in str(bad[0])


def test_references_are_followed_into_the_schemas_they_name() -> None:
    usage = chat_completion_violations(_with(COMPLETION, ["usage"], {"prompt_tokens": 3}))
    assert {v.kind for v in usage if v.validator == "openapi"} == {
        "openapi $.usage: 'completion_tokens' is required",
        "openapi $.usage: 'total_tokens' is required",
    }
    call = chat_completion_violations(_with(COMPLETION, ["choices", 0, "message", "tool_calls", 0, "function"], {}))
    # the oneOf's closest branch (a function call), not the custom tool call it is not
    assert {(v.validator, v.kind) for v in call} == {
        ("openapi", "openapi $.choices[*].message.tool_calls[*].function: 'name' is required"),
        ("openapi", "openapi $.choices[*].message.tool_calls[*].function: 'arguments' is required"),
        ("pydantic", "pydantic $.choices[*].message.tool_calls[*].function.name: Field required [missing]"),
        ("pydantic", "pydantic $.choices[*].message.tool_calls[*].function.arguments: Field required [missing]"),
    }


def test_objects_are_open_as_the_document_writes_them() -> None:
    extra = _with(COMPLETION, ["choices", 0, "stop_reason"], None)
    extra = _with(extra, ["choices", 0, "message", "reasoning_content"], "thinking")
    assert chat_completion_violations(_with(extra, ["prompt_logprobs"], None)) == []


def test_what_the_document_requires_and_the_sdk_defaults_is_still_missed() -> None:
    violations = chat_completion_violations(_with(COMPLETION, ["choices", 0, "message", "refusal"], KeyError))
    assert [(v.validator, v.kind) for v in violations] == [
        ("openapi", "openapi $.choices[*].message: 'refusal' is required")
    ]


def test_a_null_model_is_refused_by_both() -> None:
    assert _validators(chat_completion_chunk_violations(_with(CHUNK, ["model"], None))) == {"openapi", "pydantic"}


def test_strict_pydantic_refuses_a_whole_float_where_json_schema_takes_it() -> None:
    violations = chat_completion_violations(_with(COMPLETION, ["created"], 1700000000.0))
    assert [(v.validator, v.path) for v in violations] == [("pydantic", "$.created")]


def test_an_error_code_must_be_a_string_or_null() -> None:
    violations = error_violations(_with(ERROR, ["error", "code"], 400))
    assert _validators(violations) == {"openapi", "pydantic"}
    assert error_violations({"detail": "Not Found"})[0].kind == "openapi $: 'error' is required"
