"""Nested pydantic models as tools, end to end: the unmodified OpenAI SDK's ``.parse()`` and
openai-agents, through the proxy, to the simulated engine, on Qwen3-Coder, GLM-4.5 and Hermes.

Both send a nested model's schema as pydantic writes it: the nested parts are references into
``$defs``, an optional field is ``anyOf`` with null, and the tool is strict, so the proxy has the
engine decode under the call grammar (the default: it asks the engine's ``/version``). Qwen3-Coder
and GLM-4.5 write each argument as raw text that the parser types by the schema: the budget, a
``$ref``, must come back an object, and the SDK must hand back a ``Budget``, not a string.

The engine's constrained decoding is watched: each answer must have been decoded under a grammar,
and the grammar must have let the model write the call it meant to, unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, Literal

import openai
import pytest
import sim_stack
from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from pydantic import BaseModel

from toolcall_proxy.sim import constrained

DIALECTS = ["qwen3_coder", "glm45", "hermes"]
# What the simulated model reads from the request: the destination and the traveller by their
# capitalized names, the age and the amount by the numbers next to "age" and "budget", the
# currency as the enum value it names; the return date is not mentioned, so it is left null.
QUESTION = "Book a trip to Lisbon for Ana, age 34, with a budget of 1500 EUR"


class Budget(BaseModel):
    amount: float
    currency: Literal["EUR", "USD"]


class Traveller(BaseModel):
    name: str
    age: int


class BookTrip(BaseModel):
    """Book a trip to a destination within a budget."""

    destination: str
    budget: Budget
    travellers: list[Traveller]
    return_date: str | None = None


EXPECTED = BookTrip(
    destination="Lisbon",
    budget=Budget(amount=1500, currency="EUR"),
    travellers=[Traveller(name="Ana", age=34)],
    return_date=None,
)


@pytest.fixture
def stack() -> Any:
    return functools.partial(sim_stack.running_stack, tokenizer=None)


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[constrained.Constraint, str, str]]]:
    """(constraint, what the model meant to write, what it wrote under it) of each answer the
    engine decoded under a constraint."""
    seen: list[tuple[constrained.Constraint, str, str]] = []
    original = constrained.constrained_text

    def watched(constraint: constrained.Constraint, scripts: Any, vocabulary: constrained.Vocabulary) -> str:
        written = original(constraint, scripts, vocabulary)
        seen.append((constraint, scripts[0], written))
        return written

    monkeypatch.setattr(constrained, "constrained_text", watched)
    yield seen


def _assert_decoded_under_the_grammar(decoded: list[tuple[constrained.Constraint, str, str]], answers: int) -> None:
    assert len(decoded) == answers, "each answer is decoded under the call grammar"
    for constraint, meant, written in decoded:
        assert constraint.kind == "grammar"
        assert written == meant, "the grammar let the model write the call it meant, unchanged"


def _assert_booked(trip: Any) -> None:
    assert isinstance(trip, BookTrip)
    assert isinstance(trip.budget, Budget)  # an object, not the string '{"amount": ...}'
    assert all(isinstance(traveller, Traveller) for traveller in trip.travellers)
    assert trip == EXPECTED


# -- the OpenAI SDK: chat.completions.parse and its streamed twin ----------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_sdks_parse_returns_the_nested_model(dialect: str, stack: Any, decoded: Any) -> None:
    tool = openai.pydantic_function_tool(BookTrip)
    assert tool["function"].get("strict") is True
    assert tool["function"]["parameters"]["properties"]["budget"] == {"$ref": "#/$defs/Budget"}
    async for client, _ in stack(dialect):
        completion = await client.chat.completions.parse(
            model="demo", messages=[{"role": "user", "content": QUESTION}], tools=[tool]
        )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "tool_calls"
    [call] = message.tool_calls or []
    assert call.function.name == "BookTrip"
    _assert_booked(call.function.parsed_arguments)
    _assert_decoded_under_the_grammar(decoded, 1)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_sdks_stream_returns_the_nested_model(dialect: str, stack: Any, decoded: Any) -> None:
    async for client, _ in stack(dialect):
        async with client.chat.completions.stream(
            model="demo",
            messages=[{"role": "user", "content": QUESTION}],
            tools=[openai.pydantic_function_tool(BookTrip)],
        ) as stream:
            done = [event async for event in stream if event.type == "tool_calls.function.arguments.done"]
            completion = await stream.get_final_completion()
    assert [event.name for event in done] == ["BookTrip"]
    _assert_booked(done[0].parsed_arguments)
    [call] = completion.choices[0].message.tool_calls or []
    _assert_booked(call.function.parsed_arguments)
    _assert_decoded_under_the_grammar(decoded, 1)


# -- openai-agents: a function tool taking the nested model ----------------------------------------


def _agent(client: openai.AsyncOpenAI, booked: list[tuple[str, Budget, list[Traveller]]]) -> Agent[Any]:
    @function_tool
    def book_trip(destination: str, budget: Budget, travellers: list[Traveller]) -> str:
        """Book a trip to a destination within a budget."""  # no per-argument docs: they would inline the $ref
        booked.append((destination, budget, travellers))
        return f"booked {destination} for {len(travellers)} at {budget.amount:g} {budget.currency}"

    return Agent(
        name="travel agent",
        model=OpenAIChatCompletionsModel(model="demo", openai_client=client),
        tools=[book_trip],
    )


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_an_agents_tool_gets_the_nested_model_and_the_run_ends_with_the_answer(
    dialect: str, streamed: bool, stack: Any, decoded: Any
) -> None:
    set_tracing_disabled(True)
    booked: list[tuple[str, Budget, list[Traveller]]] = []
    async for client, _ in stack(dialect):
        agent = _agent(client, booked)
        if streamed:
            result: Any = Runner.run_streamed(agent, QUESTION)
            async for _ in result.stream_events():
                pass
        else:
            result = await Runner.run(agent, QUESTION)
    [(destination, budget, travellers)] = booked
    assert destination == "Lisbon"
    assert isinstance(budget, Budget) and budget == Budget(amount=1500, currency="EUR")
    assert travellers == [Traveller(name="Ana", age=34)] and isinstance(travellers[0], Traveller)
    # the second turn, after the tool's result, is the model's text quoting it
    assert result.final_output == "Here is what I found: Lisbon: booked Lisbon for 1 at 1500 EUR."
    # the tools are strict: both turns decoded under the grammar (the second may call, but did not)
    _assert_decoded_under_the_grammar(decoded, 2)


def test_the_tools_schemas_are_the_nested_ones() -> None:
    # what the tests above rely on: pydantic writes the nested models as references
    booked: list[Any] = []
    agent = _agent(openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="x"), booked)
    [tool] = agent.tools
    assert getattr(tool, "strict_json_schema", False) is True
    schema = getattr(tool, "params_json_schema", {})
    assert schema["properties"]["budget"] == {"$ref": "#/$defs/Budget"}
    assert schema["properties"]["travellers"]["items"] == {"$ref": "#/$defs/Traveller"}
