"""Real clients with a ``developer`` message, on every dialect: openai-agents and LangChain's
``ChatOpenAI``, unmodified, through the proxy to the simulated engine.

Each client sends a ``developer`` message (checked on the wire: the JSON body the client posts)
besides the user's question; the proxy must take it (a family without a developer turn reads it
as its system text, and the engine's prompt must carry it), the model calls get_current_weather
for Paris, and after the tool's result answers with text quoting it. openai-agents sends an
agent's ``instructions`` as a ``system`` message, so its conversation also carries an explicit
developer item: the run holds both. Its function tools are strict (the SDK's default), so the
proxy has the engine decode under the call grammar, which must let the final text answer through;
LangChain's tools are not strict. ChatGLM3 runs on its real tokenizer at both ends.

No test touches tiktoken (only LangChain's token counting uses it, and it would download its
encodings), nor LangSmith (tracing is off unless its environment asks for it).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import sim_stack
import tiktoken.load
from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool as langchain_tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from toolcall_proxy.demo import get_current_weather
from toolcall_proxy.dialects import DIALECTS
from toolcall_proxy.sim import engine as sim_engine

QUESTION = "What's the weather like in Paris?"
# What only the developer says: the engine's prompt must carry it. No capitalized names, no
# weather words: the simulated model reads neither as part of the question.
DEVELOPER = "answer briefly and plainly, quoting the tool results"
INSTRUCTIONS = "you are a helpful assistant"
RESULT = json.dumps(get_current_weather("Paris"))
ANSWER = f"Here is what I found: Paris: {RESULT}."


@pytest.fixture
def stack(chatglm3_tokenizer_dir: Path) -> Any:
    return functools.partial(sim_stack.running_stack, tokenizer=chatglm3_tokenizer_dir)


@pytest.fixture(autouse=True)
def no_tiktoken_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """tiktoken fetches an encoding from the internet on its first use: nothing here may need one."""

    def refuse(blobpath: str) -> bytes:
        raise AssertionError(f"tiktoken would download {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)


@pytest.fixture
def prompts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The prompts the simulated engine generated for, in order."""
    seen: list[str] = []
    original = sim_engine.generate

    def watched(prompt: str, **kwargs: Any) -> sim_engine.Generation:
        seen.append(prompt)
        return original(prompt, **kwargs)

    monkeypatch.setattr(sim_engine, "generate", watched)
    yield seen


class Wire:
    """The chat-completion request bodies a client posts, read off its HTTP client."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def _record(self, request: Any) -> None:
        if request.url.path.endswith("/chat/completions"):
            self.bodies.append(json.loads(request.content))

    def http_client(self) -> Any:
        return openai.DefaultAsyncHttpxClient(event_hooks={"request": [self._record]})

    def roles(self) -> list[list[str]]:
        return [[message["role"] for message in body["messages"]] for body in self.bodies]


def _assert_developer_reached_the_engine(wire: Wire, prompts: list[str], requests: int) -> None:
    assert len(wire.bodies) == requests
    for body in wire.bodies:
        [developer] = [m for m in body["messages"] if m["role"] == "developer"]
        assert developer["content"] == DEVELOPER
    assert prompts, "the engine generated"
    assert all(DEVELOPER in prompt for prompt in prompts), "the developer's text is in each prompt"


# -- openai-agents -----------------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_an_agent_with_a_developer_message_calls_the_tool_and_quotes_it(
    dialect: str, streamed: bool, stack: Any, prompts: list[str]
) -> None:
    set_tracing_disabled(True)
    called: list[str] = []

    @function_tool
    def get_current_weather(location: str) -> str:
        """Get the current weather in a given location."""
        called.append(location)
        return RESULT

    wire = Wire()
    conversation: list[Any] = [
        {"role": "developer", "content": DEVELOPER},
        {"role": "user", "content": QUESTION},
    ]
    async for stack_client, _ in stack(dialect):
        client = openai.AsyncOpenAI(
            base_url=stack_client.base_url, api_key="unused", max_retries=0, http_client=wire.http_client()
        )
        agent: Agent[Any] = Agent(
            name="weather agent",
            instructions=INSTRUCTIONS,
            model=OpenAIChatCompletionsModel(model="demo", openai_client=client),
            tools=[get_current_weather],
        )
        if streamed:
            result: Any = Runner.run_streamed(agent, conversation, max_turns=3)
            async for _ in result.stream_events():
                pass
        else:
            result = await Runner.run(agent, conversation, max_turns=3)
        await client.close()
    # on the wire: the instructions as system, then the developer item, then the question
    assert wire.roles() == [
        ["system", "developer", "user"],
        ["system", "developer", "user", "assistant", "tool"],
    ]
    assert all(body.get("stream", False) is streamed for body in wire.bodies)
    _assert_developer_reached_the_engine(wire, prompts, 2)
    assert called == ["Paris"]
    assert result.final_output == ANSWER


# -- LangChain -------------------------------------------------------------------------------------


@langchain_tool("get_current_weather")
def weather(location: str) -> str:
    """Get the current weather in a given location."""
    return RESULT


def _chat(base_url: Any, wire: Wire) -> Any:
    model = ChatOpenAI(
        base_url=str(base_url),
        api_key=SecretStr("unused"),
        model="demo",
        max_retries=0,
        http_async_client=wire.http_client(),
    )
    return model.bind_tools([weather])


def _first_turn() -> list[Any]:
    developer = SystemMessage(DEVELOPER, additional_kwargs={"__openai_role__": "developer"})
    return [developer, HumanMessage(QUESTION)]


def _assert_called_for_paris(message: AIMessage) -> str:
    [call] = message.tool_calls
    assert call["name"] == "get_current_weather"
    assert call["args"] == {"location": "Paris"}
    assert call["id"]
    return str(call["id"])


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_langchain_with_a_developer_message_calls_the_tool_and_answers(
    dialect: str, stack: Any, prompts: list[str]
) -> None:
    wire = Wire()
    async for client, _ in stack(dialect):
        chat = _chat(client.base_url, wire)
        messages = _first_turn()
        first = await chat.ainvoke(messages)
        assert isinstance(first, AIMessage)
        call_id = _assert_called_for_paris(first)
        result = await weather.ainvoke(first.tool_calls[0])  # a ToolMessage, as an agent loop makes it
        assert isinstance(result, ToolMessage) and result.tool_call_id == call_id
        messages += [first, result]
        final = await chat.ainvoke(messages)
    assert wire.roles() == [["developer", "user"], ["developer", "user", "assistant", "tool"]]
    _assert_developer_reached_the_engine(wire, prompts, 2)
    assert isinstance(final, AIMessage)
    assert not final.tool_calls
    assert final.content == ANSWER


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
async def test_langchain_streams_the_call_with_a_developer_message(
    dialect: str, stack: Any, prompts: list[str]
) -> None:
    wire = Wire()
    async for client, _ in stack(dialect):
        chat = _chat(client.base_url, wire)
        chunks = [chunk async for chunk in chat.astream(_first_turn())]
    assert wire.roles() == [["developer", "user"]]
    assert wire.bodies[0]["stream"] is True
    _assert_developer_reached_the_engine(wire, prompts, 1)
    assert chunks and all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    message = functools.reduce(lambda a, b: a + b, chunks)
    _assert_called_for_paris(message)
