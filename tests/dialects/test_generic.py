"""The generic dialect's message rewrite: tools taught in the system prompt, calls and results as text."""

from __future__ import annotations

import json
from typing import Any

from _conversations import call

from toolcall_proxy.dialects.generic import PROTOCOL, rewrite_messages

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Météo d'une ville",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}


def expected_protocol(*tools: dict[str, Any]) -> str:
    return PROTOCOL.format(
        tools="\n".join(json.dumps(tool, ensure_ascii=False, separators=(",", ":")) for tool in tools)
    )


def test_protocol_lists_each_tool_as_one_json_line_inside_tools_tags() -> None:
    system = rewrite_messages([{"role": "user", "content": "hi"}], [WEATHER_TOOL, TIME_TOOL])[0]["content"]

    listed = system.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0].split("\n")
    assert [json.loads(line) for line in listed] == [WEATHER_TOOL, TIME_TOOL]
    assert "Météo d'une ville" in system  # non-ASCII kept as is


def test_protocol_is_appended_to_the_callers_system_message() -> None:
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Weather in Paris?"}]

    rewritten = rewrite_messages(messages, [WEATHER_TOOL])

    assert rewritten == [
        {"role": "system", "content": "You are terse.\n\n" + expected_protocol(WEATHER_TOOL)},
        {"role": "user", "content": "Weather in Paris?"},
    ]


def test_protocol_becomes_a_new_first_system_message_when_there_is_none() -> None:
    rewritten = rewrite_messages([{"role": "user", "content": "Weather in Paris?"}], [WEATHER_TOOL])

    assert rewritten == [
        {"role": "system", "content": expected_protocol(WEATHER_TOOL)},
        {"role": "user", "content": "Weather in Paris?"},
    ]


def test_assistant_tool_calls_become_tool_call_lines_after_the_assistant_text() -> None:
    messages = [
        {"role": "user", "content": "Paris and Zürich?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                call("c1", "get_weather", '{"city": "Paris"}'),  # JSON string, as OpenAI clients send it
                call("c2", "get_weather", {"city": "Zürich"}),  # already an object
            ],
        },
    ]

    rewritten = rewrite_messages(messages, [WEATHER_TOOL])

    assert rewritten[-1] == {
        "role": "assistant",
        "content": "Checking.\n"
        '<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>\n'
        '<tool_call>{"name":"get_weather","arguments":{"city":"Zürich"}}</tool_call>',
    }


def test_assistant_message_with_only_calls_has_only_tool_call_lines() -> None:
    messages = [{"role": "assistant", "content": None, "tool_calls": [call("c1", "get_time", "")]}]

    rewritten = rewrite_messages(messages, [TIME_TOOL])

    assert rewritten[-1] == {
        "role": "assistant",
        "content": '<tool_call>{"name":"get_time","arguments":{}}</tool_call>',
    }


def test_consecutive_tool_results_are_merged_into_one_user_turn_of_tool_response_blocks() -> None:
    messages = [
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 22}'},
        {"role": "tool", "tool_call_id": "c2", "content": '{"temp": 18}'},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "tool", "tool_call_id": "c3", "content": "rain"},
    ]

    rewritten = rewrite_messages(messages, [WEATHER_TOOL])[1:]

    assert rewritten == [
        {
            "role": "user",
            "content": '<tool_response>\n{"temp": 22}\n</tool_response>\n'
            '<tool_response>\n{"temp": 18}\n</tool_response>',
        },
        {"role": "user", "content": "And tomorrow?"},
        {"role": "user", "content": "<tool_response>\nrain\n</tool_response>"},
    ]


def test_multi_part_content_is_joined_into_text() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]}]

    assert rewrite_messages(messages, [])[0] == {"role": "user", "content": "Hello there"}


def test_without_tools_text_messages_pass_through_and_no_system_message_is_added() -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ]

    assert rewrite_messages(messages, []) == messages


def test_a_forced_choice_is_stated_in_the_protocol_since_a_chat_upstream_cannot_be_prefilled():
    named = rewrite_messages([{"role": "user", "content": "hi"}], [WEATHER_TOOL], "get_weather")[0]["content"]
    assert named.endswith("In this reply you must call the tool get_weather.")
    anything = rewrite_messages([{"role": "user", "content": "hi"}], [WEATHER_TOOL], "required")[0]["content"]
    assert anything.endswith("In this reply you must call at least one of the tools.")
