"""InternLM2 / 2.5 outputs through the ``internlm`` dialect: whole, at every 2-chunk split, in random
token chunkings and one character at a time, all folding into the same response.

REAL: taken from /work/shared/oracle/cases.jsonl (the source named per case: InternLM's
chat/chat_format.md, vLLM's internlm2 parser tests, ollama issue #5761). CONSTRUCTED: written for
this test in the format of FORMATS.md §12.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _fold import assert_arguments_stream, assert_parses, assert_written_calls_parse_back

START, PLUGIN, END, IM_END = "<|action_start|>", "<|plugin|>", "<|action_end|>", "<|im_end|>"


def action(body: str) -> str:
    return f"{START}{PLUGIN}\n{body}{END}"


CASES = [
    pytest.param(
        "Sure, I will search for the weather of Shanghai."
        + action('{"name": "get_current_weather", "parameters": {"location": "Shanghai"}}')
        + IM_END,
        {"get_current_weather"},
        "Sure, I will search for the weather of Shanghai.",
        [("get_current_weather", {"location": "Shanghai"})],
        id="REAL-chat-format-md-speak-then-call-im-end-hidden",
    ),
    pytest.param(
        START + PLUGIN + '{\n  "name": "test_function",\n  "parameters": {\n    "quoted": "He said \\"hello\\"",\n'
        '    "path": "C:\\\\Users\\\\file.txt",\n    "newline": "line1\\nline2",\n    "unicode": "emoji: 🎉"\n  }\n}'
        + END,
        None,
        None,
        [
            (
                "test_function",
                {
                    "quoted": 'He said "hello"',
                    "path": "C:\\Users\\file.txt",
                    "newline": "line1\nline2",
                    "unicode": "emoji: 🎉",
                },
            )
        ],
        id="REAL-vllm-escapes-and-emoji-pretty-printed",
    ),
    pytest.param(
        "I need to use the duckduckgo-search plugin to find the latest test news today."
        "[UNUSED_TOKEN_144][UNUSED_TOKEN_141]\n"
        '{"name":"duckduckgo-search","parameters":{"input":"latest test news today"}}[UNUSED_TOKEN_143]',
        None,
        "I need to use the duckduckgo-search plugin to find the latest test news today.",
        [("duckduckgo-search", {"input": "latest test news today"})],
        id="REAL-ollama-gguf-placeholder-token-names",
    ),
    pytest.param(
        "Let me search.\n"
        + action('{"name": "search", "parameters": {"q": "hotels", "filters": {"stars": [4, 5], "geo": {"lat": 1.5}}}}')
        + "\nOne moment."
        + IM_END,
        {"search"},
        "Let me search.\nOne moment.",
        [("search", {"q": "hotels", "filters": {"stars": [4, 5], "geo": {"lat": 1.5}}})],
        id="CONSTRUCTED-text-before-and-after-nested-arguments",
    ),
    pytest.param(
        action('{"parameters": {"text": "Grüße 😀 \\u00e9 ' + END + IM_END + '"}, "name": "write"}'),
        {"write"},
        None,
        [("write", {"text": "Grüße 😀 é " + END + IM_END})],
        id="CONSTRUCTED-closing-markers-in-a-string-and-parameters-before-name",
    ),
    pytest.param(
        action('{"name": "get_weather", "arguments": {"city": "Paris"}}'),
        {"get_weather"},
        None,
        [("get_weather", {"city": "Paris"})],
        id="CONSTRUCTED-arguments-key-as-vllm-template-writes-history",
    ),
    pytest.param(
        action('{"name": "get_weather", "parameters": {"city": "Paris"}}')
        + action('{"name": "get_weather", "parameters": {"city": "Rome"}}'),
        {"get_weather"},
        None,
        [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})],
        id="CONSTRUCTED-two-actions-in-one-turn-tolerated",
    ),
    pytest.param(
        "This is a regular response without any tool calls.",
        None,
        "This is a regular response without any tool calls.",
        [],
        id="REAL-vllm-plain-answer",
    ),
    pytest.param(
        "Let me compute." + START + "<|interpreter|>\nprint(2 ** 10)" + END,
        {"get_weather"},
        "Let me compute." + START + "<|interpreter|>\nprint(2 ** 10)" + END,
        [],
        id="CONSTRUCTED-code-interpreter-action-is-not-a-function-call",
    ),
    pytest.param(
        action('{"name": "rm", "parameters": {"path": "/"}}'),
        {"get_weather"},
        action('{"name": "rm", "parameters": {"path": "/"}}'),
        [],
        id="CONSTRUCTED-not-an-offered-tool",
    ),
    pytest.param(
        "Hmm." + START + PLUGIN + '\n{"name": "get_weather"',
        {"get_weather"},
        "Hmm." + START + PLUGIN + '\n{"name": "get_weather"',
        [],
        id="CONSTRUCTED-cut-off-before-the-arguments",
    ),
]


@pytest.mark.parametrize(("raw", "tools", "content", "calls"), CASES)
def test_output_parses_the_same_however_it_is_chunked(
    raw: str, tools: set[str] | None, content: str | None, calls: list[Any]
) -> None:
    assert_parses("internlm", raw, content, calls, tools)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(START + PLUGIN + '{"name": "func", "parameters": {', id="REAL-vllm-truncated-json"),
        pytest.param(
            START + PLUGIN + '\n{"name": "func", "parameters": {"q": "unfinished', id="CONSTRUCTED-cut-off-mid-string"
        ),
        pytest.param(action('{"name": "func", "parameters": {"q": 1,, }}'), id="CONSTRUCTED-malformed-json"),
    ],
)
def test_a_broken_call_is_content_as_written_never_a_crash(raw: str) -> None:
    assert_parses("internlm", raw, raw, [], {"func"}, failed=1)


def test_long_arguments_arrive_incrementally() -> None:
    text = "ünïcödé " + END + " and more " * 40
    raw = action(json.dumps({"name": "write", "parameters": {"text": text}}, ensure_ascii=False))

    assert_arguments_stream("internlm", raw, {"text": text}, {"write"})


def test_write_call_parses_back_and_prefills_start_it() -> None:
    arguments = {"city": "Zürich", "days": [1, 2]}

    raw = assert_written_calls_parse_back(
        "internlm", [("get_weather", arguments)], {"get_weather"}, prefill_ends_at_arguments=True
    )

    assert raw == action('{"name": "get_weather", "parameters": {"city": "Zürich", "days": [1, 2]}}')
