"""The simulated model: what it reads from a prompt and what it writes back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pytest

from toolcall_proxy.dialects import DIALECTS, get_dialect
from toolcall_proxy.parsing.parser import ArgumentsDelta, CallEnded, CallStarted, TextDelta
from toolcall_proxy.sim import engine

from .conftest import SEED_QUESTION, STOCK_TOOL, WEATHER_TOOL

Call = tuple[str, dict[str, Any]]


def prompt_for(dialect: str, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None) -> str:
    """The prompt a model of this family sees, as the proxy (or vLLM with the template) renders it."""
    spec = get_dialect(dialect)
    if spec.rewrite_messages is not None:
        return spec.render_prompt(spec.rewrite_messages(messages, tools or []), None)
    return spec.render_prompt(messages, tools)


def parse(
    dialect: str, text: str, tools: Sequence[str] = ("get_current_weather", "get_stock_price")
) -> tuple[str, list[Call]]:
    """Reads the output back with the project's own parser, as the proxy will."""
    parser = get_dialect(dialect).parser(tools)
    content: list[str] = []
    calls: list[tuple[str, list[str]]] = []
    for event in [*parser.feed(text), *parser.finish()]:
        if isinstance(event, TextDelta):
            content.append(event.text)
        elif isinstance(event, CallStarted):
            calls.append((event.name, []))
        elif isinstance(event, ArgumentsDelta):
            calls[event.index][1].append(event.text)
        elif isinstance(event, CallEnded):
            assert event.error is None, event
    return "".join(content), [(name, orjson.loads("".join(parts))) for name, parts in calls]


def conversation(dialect: str, rounds: int) -> tuple[list[dict[str, Any]], list[Call]]:
    """Plays the seed question against the simulator for up to ``rounds`` model turns; the tool
    answers each call with the temperature of its city."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": SEED_QUESTION}]
    made: list[Call] = []
    for _ in range(rounds):
        generation = engine.generate(prompt_for(dialect, messages, [WEATHER_TOOL]), dialect=dialect, model="sim")
        if not generation.calls:
            break
        calls = [
            {"id": f"call_{len(made) + i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(generation.calls)
        ]
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        for call, (_, arguments) in zip(calls, generation.calls, strict=True):
            result = orjson.dumps({"city": arguments["location"], "temperature": 20 + len(made)}).decode()
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        made.extend(generation.calls)
    return messages, made


# -- tools in the prompt --------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_finds_the_tools_in_each_dialects_prompt(dialect: str) -> None:
    prompt = prompt_for(dialect, [{"role": "user", "content": "hi"}], [WEATHER_TOOL, STOCK_TOOL])
    tools, spans = engine.find_tools(prompt)
    assert [t.name for t in tools] == ["get_current_weather", "get_stock_price"]
    assert tools[0].description == "Get the current weather in a given location"
    assert tools[0].parameters["required"] == ["location"]
    if dialect == "qwen3_coder":  # its template lists the tools as XML elements, not JSON
        assert tools[0].parameters["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]
        assert spans and all(prompt.startswith("<function>", start) for start, _ in spans)
        return
    assert spans and all(prompt[start] in "{[" for start, _ in spans)


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_earlier_calls_and_results_in_the_prompt_are_not_tools(dialect: str) -> None:
    messages, made = conversation(dialect, rounds=1)
    assert made
    prompt = prompt_for(dialect, messages, [WEATHER_TOOL])
    tools, _ = engine.find_tools(prompt)
    assert [t.name for t in tools] == ["get_current_weather"]
    assert "properties" in tools[0].parameters  # the definition, not the call's arguments


def test_tool_definitions_in_hand_written_prompts() -> None:
    bare = '{"name": "lookup", "description": "Look up a word", "parameters": {"type": "object", "properties": {}}}'
    prompt = (
        "[gMASK]sop{not json here} Functions: "
        + orjson.dumps([WEATHER_TOOL]).decode()
        + " and also "
        + bare
        + " again: "
        + orjson.dumps(WEATHER_TOOL["function"]).decode()
        + '\nA call: {"name": "get_current_weather", "parameters": {"location": "Paris"}}'
    )
    tools, spans = engine.find_tools(prompt)
    assert [t.name for t in tools] == ["get_current_weather", "lookup"]
    assert len(spans) == 3
    assert engine.find_tools('{"name": "f", "parameters": {"location": "Paris"}} [1, 2] {"a": [}')[0] == []
    assert engine.find_tools('{"a": ' * 1500 + "1")[0] == []  # too deep for the decoder: not a tool


def test_a_bare_schema_is_a_tool_under_a_line_naming_it() -> None:
    schema = orjson.dumps(WEATHER_TOOL["function"]["parameters"]).decode()
    word = '{"type": "object", "properties": {"word": {"type": "string"}}}'
    prompt = (
        "# Instructions\nBe brief.\n\n## Tools\n"  # section headings name no function
        "\n### get_current_weather\nDescription: Get the current weather\nin a given location\n\n"
        f"Parameters: {schema}\n"
        f"\nFunction: `lookup_word`\nLooks a word up.\nParameters:\n{word}\n"
        f"\nsearch_web:\n{word}\n"
        f"- name: getStockPrice\n{word}\n"
    )
    tools, spans = engine.find_tools(prompt)
    assert [(t.name, t.description) for t in tools] == [
        ("get_current_weather", "Get the current weather in a given location"),
        ("lookup_word", "Looks a word up."),
        ("search_web", ""),
        ("getStockPrice", ""),
    ]
    assert tools[0].parameters == WEATHER_TOOL["function"]["parameters"]
    assert [prompt[start:end] for start, end in spans] == [schema, word, word, word]


@pytest.mark.parametrize(
    "prompt",
    [
        '{"type": "object", "properties": {"word": {"type": "string"}}}',  # no heading at all
        '## Tools\nParameters: {"type": "object", "properties": {}}',  # only section words
        'Raises:\n{"type": "object", "properties": {}}',  # a capitalized word heads prose
        'get_weather\n{"type": "object", "properties": {}}',  # a lone word is no heading
        '### get_weather\n{"a": 1}\n{"type": "object", "properties": {}}',  # the heading went to {"a": 1}
        '### get_weather\n{"type": "object", "properties": {"location": "Paris"}}',  # arguments, not a schema
        '### get_weather\n{"type": "string"}',
    ],
)
def test_a_bare_schema_without_its_own_heading_is_not_a_tool(prompt: str) -> None:
    assert engine.find_tools(prompt) == ([], [])


def test_a_definition_beats_a_heading() -> None:
    definition = orjson.dumps(WEATHER_TOOL["function"]).decode()
    tools, _ = engine.find_tools(f"### other_name\n{definition}")
    assert [t.name for t in tools] == ["get_current_weather"]


def test_finding_headed_schemas_stays_linear() -> None:
    schema = '{"type": "object", "properties": {}}'
    prompt = "".join(f"\n### tool_{i}\n{'Describes it. ' * 20}\nParameters: {schema}" for i in range(2000))
    assert len(engine.find_tools(prompt)[0]) == 2000
    assert engine.find_tools("### f\n" + "x" * 100_000 + schema) == ([], [])  # heading too far away


# -- reading the conversation ---------------------------------------------------------------------


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_reads_the_latest_request_and_the_results_since(dialect: str) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "An older question about Rome?"},
        {"role": "assistant", "content": "An older answer."},
        {"role": "user", "content": SEED_QUESTION},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "a",
                    "type": "function",
                    "function": {"name": "get_current_weather", "arguments": '{"location": "San Francisco"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": '{"temperature": 18}'},
    ]
    prompt = prompt_for(dialect, messages, [WEATHER_TOOL])
    read = engine.read_conversation(prompt, dialect, engine.find_tools(prompt)[1])
    assert read.request == SEED_QUESTION
    assert read.results == ('{"temperature": 18}',)
    fresh = engine.read_conversation(
        prompt_for(dialect, messages[:4], [WEATHER_TOOL]), dialect, engine.find_tools(prompt)[1]
    )
    assert fresh == engine.Conversation(SEED_QUESTION, ())


def test_a_prompt_without_turn_markers_is_the_request() -> None:
    assert engine.read_conversation("Once upon a time", "hermes").request == "Once upon a time"


# -- the seed example -------------------------------------------------------------------------------


def test_hermes_calls_three_cities_at_once() -> None:
    prompt = prompt_for("hermes", [{"role": "user", "content": SEED_QUESTION}], [WEATHER_TOOL])
    generation = engine.generate(prompt, dialect="hermes", model="sim")
    assert generation.text.count("<tool_call>") == 3
    content, calls = parse("hermes", generation.text)
    assert content == ""
    assert calls == [
        ("get_current_weather", {"location": "San Francisco"}),
        ("get_current_weather", {"location": "Tokyo"}),
        ("get_current_weather", {"location": "Paris"}),
    ]
    assert list(generation.calls) == calls


@pytest.mark.parametrize("dialect", ["deepseek_v3", "deepseek_v31"])
def test_deepseek_writes_parallel_calls_in_one_block(dialect: str) -> None:
    prompt = prompt_for(dialect, [{"role": "user", "content": SEED_QUESTION}], [WEATHER_TOOL])
    text = engine.generate(prompt, dialect=dialect, model="sim").text
    assert text.startswith("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>")
    assert text.endswith("<｜tool▁call▁end｜><｜tool▁calls▁end｜>")
    assert text.count("<｜tool▁calls▁begin｜>") == 1 and text.count("<｜tool▁call▁begin｜>") == 3
    assert [arguments["location"] for _, arguments in parse(dialect, text)[1]] == ["San Francisco", "Tokyo", "Paris"]


@pytest.mark.parametrize("dialect", ["chatglm3", "llama3_json", "glm4", "internlm"])
def test_one_call_per_round_families_take_three_rounds(dialect: str) -> None:
    assert not get_dialect(dialect).parallel_calls
    messages, made = conversation(dialect, rounds=5)
    assert [arguments["location"] for _, arguments in made] == ["San Francisco", "Tokyo", "Paris"]
    assert [m["role"] for m in messages].count("assistant") == 3
    final = engine.generate(prompt_for(dialect, messages, [WEATHER_TOOL]), dialect=dialect, model="sim")
    assert not final.calls
    content, calls = parse(dialect, final.text)
    assert calls == []
    assert content.startswith("Here is what I found: San Francisco: ")
    assert 'Tokyo: {"city":"Tokyo","temperature":21}; Paris: ' in content


def test_chatglm3_rounds_are_written_in_its_raw_format() -> None:
    prompt = prompt_for("chatglm3", [{"role": "user", "content": SEED_QUESTION}], [WEATHER_TOOL])
    text = engine.generate(prompt, dialect="chatglm3", model="sim").text
    # metadata line, Python call, then the turn switch that is not an end-of-sequence token
    assert text == "get_current_weather\n```python\ntool_call(location='San Francisco')\n```<|observation|>"
    assert parse("chatglm3", text)[1] == [("get_current_weather", {"location": "San Francisco"})]


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_every_dialect_round_trips_through_the_proxys_parser(dialect: str) -> None:
    messages, made = conversation(dialect, rounds=5)
    assert len(made) == 3
    final = engine.generate(prompt_for(dialect, messages, [WEATHER_TOOL]), dialect=dialect, model="sim")
    content, calls = parse(dialect, final.text)
    assert calls == [] and content.startswith("Here is what I found")


# -- choosing a tool and its arguments ------------------------------------------------------------


def test_the_tool_sharing_most_words_with_the_request_is_called() -> None:
    messages = [{"role": "user", "content": "What is the stock price of NVDA in EUR?"}]
    generation = engine.generate(
        prompt_for("hermes", messages, [WEATHER_TOOL, STOCK_TOOL]), dialect="hermes", model="sim"
    )
    assert generation.calls == (("get_stock_price", {"symbol": "NVDA", "currency": "EUR"}),)


def test_a_request_no_tool_fits_gets_a_text_answer() -> None:
    messages = [{"role": "user", "content": "Write me a haiku about autumn leaves"}]
    generation = engine.generate(prompt_for("hermes", messages, [WEATHER_TOOL]), dialect="hermes", model="m")
    assert generation.calls == ()
    assert generation.text == "You asked: 'Write me a haiku about autumn leaves'. This is a simulated answer from m."


def test_a_mentioned_enum_value_and_number_are_used() -> None:
    tool = engine.ToolSpec(
        "get_forecast",
        "Weather forecast for a city",
        {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 10},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "detailed": {"type": "boolean"},
                "options": {
                    "type": "object",
                    "properties": {"language": {"type": "string", "default": "en"}, "extra": {"type": "number"}},
                    "required": ["language"],
                },
            },
            "required": ["city", "days", "detailed", "options"],
        },
    )
    [arguments] = engine.plan_calls(tool, "Give me the 5 days forecast for Berlin in Fahrenheit")
    assert arguments == {
        "city": "Berlin",
        "days": 5,
        "unit": "fahrenheit",
        "detailed": False,
        "options": {"language": "en"},
    }


def test_a_list_parameter_takes_every_entity_in_one_call() -> None:
    tool = engine.ToolSpec(
        "compare_cities",
        "",
        {"type": "object", "properties": {"cities": {"type": "array", "items": {"type": "string"}}}},
    )
    assert engine.plan_calls(tool, "Compare New York and Boston") == [{"cities": ["New York", "Boston"]}]


def test_two_place_parameters_take_the_entities_in_order() -> None:
    tool = engine.ToolSpec(
        "find_flights",
        "",
        {
            "type": "object",
            "properties": {
                "origin": {"type": "string"},
                "destination": {"type": "string"},
                "date": {"type": "string", "format": "date"},
            },
            "required": ["origin", "destination"],
        },
    )
    assert engine.plan_calls(tool, "Book a flight from Paris to Tokyo") == [{"origin": "Paris", "destination": "Tokyo"}]


@pytest.mark.parametrize(
    ("request_text", "entities"),
    [
        (SEED_QUESTION, ["San Francisco", "Tokyo", "Paris"]),
        ("Compare New York and Boston", ["New York", "Boston"]),
        ("what's the weather in paris and london today", ["paris", "london"]),
        ('Search the web for "blue whales"', ["blue whales"]),
        ("Paris weather please", ["Paris"]),
        ("Is it raining in Rio de Janeiro?", ["Rio de Janeiro"]),
    ],
)
def test_entities(request_text: str, entities: list[str]) -> None:
    assert engine.extract_entities(request_text) == entities


def test_a_query_parameter_without_names_gets_a_phrase_of_the_request() -> None:
    tool = engine.ToolSpec(
        "web_search", "Search the web", {"type": "object", "properties": {"query": {"type": "string"}}}
    )
    assert engine.plan_calls(tool, "please search recipes with lentils?") == [{"query": "recipes with lentils"}]


# -- forced calls -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_a_prefilled_call_is_continued(dialect: str) -> None:
    spec = get_dialect(dialect)
    messages = [{"role": "user", "content": "Tell me a joke about Paris"}]  # no tool would be chosen
    prompt = prompt_for(dialect, messages, [WEATHER_TOOL, STOCK_TOOL])
    prefill = spec.prefill("get_current_weather")
    output = engine.generate(prompt + prefill, dialect=dialect, model="sim").text
    calls = parse(dialect, prefill + output)[1]
    assert calls[0] == ("get_current_weather", {"location": "Paris"})
    if spec.prefill(None):
        output = engine.generate(prompt + spec.prefill(None), dialect=dialect, model="sim").text
        assert parse(dialect, spec.prefill(None) + output)[1][0][0] in ("get_current_weather", "get_stock_price")


def test_forcing_a_tool_calls_it_even_when_the_request_does_not_fit() -> None:
    prompt = prompt_for("hermes", [{"role": "user", "content": "Hello there"}], [WEATHER_TOOL, STOCK_TOOL])
    assert engine.generate(prompt, dialect="hermes", model="sim").calls == ()
    forced = engine.generate(prompt, dialect="hermes", model="sim", force="get_stock_price")
    assert [name for name, _ in forced.calls] == ["get_stock_price"]
    assert engine.generate(prompt, dialect="hermes", model="sim", force="required").calls


# -- determinism, tokens and decoding -------------------------------------------------------------


def test_the_same_prompt_gives_the_same_output() -> None:
    prompt = prompt_for("llama3_json", [{"role": "user", "content": SEED_QUESTION}], [WEATHER_TOOL])
    assert engine.generate(prompt, dialect="llama3_json", model="x") == engine.generate(
        prompt, dialect="llama3_json", model="x"
    )


def test_tokens_rebuild_the_text_and_keep_special_tokens_whole() -> None:
    text = "get_current_weather\n```python\ntool_call(location='San Francisco')\n```<|observation|>"
    tokens = engine.tokenize(text, engine.special_tokens("chatglm3"))
    assert "".join(tokens) == text
    assert tokens[-1] == "<|observation|>"
    assert max(len(t) for t in tokens[:-1]) <= 5
    assert engine.tokenize("<tool_call>\n{}</tool_call>")[0] == "<tool_call>"
    assert engine.count_tokens("x" * 400) == 100


def test_special_tokens() -> None:
    assert {"<|observation|>", "<|user|>", "<|assistant|>", "[gMASK]"} <= engine.special_tokens("chatglm3")
    assert "sop" not in engine.special_tokens("chatglm3")
    assert {"<|im_end|>", "<tool_call>", "</tool_call>"} <= engine.special_tokens("hermes")


def test_detects_the_dialect_from_each_template() -> None:
    for name, spec in DIALECTS.items():
        assert engine.detect_dialect(spec.template) == name
    assert engine.detect_dialect("{{ messages }}") == "generic"


TEXT = "<tool_call>\n" + '{"name":"f","arguments":{}}' + "\n</tool_call>"


def test_decode_skips_special_tokens_by_default() -> None:
    special = engine.special_tokens("hermes")
    tokens = engine.tokenize(TEXT, special)
    assert engine.decode(tokens, special=special).text == '\n{"name":"f","arguments":{}}\n'
    kept = engine.decode(tokens, special=special, skip_special_tokens=False)
    assert kept.text == TEXT
    assert kept.finish_reason == "stop" and kept.stop_reason is None
    assert kept.completion_tokens == len(tokens) + 1  # and the end-of-sequence token


def test_a_stop_string_is_only_found_when_special_tokens_are_kept() -> None:
    special = engine.special_tokens("chatglm3")
    tokens = engine.tokenize("f\n```python\ntool_call(a=1)\n```<|observation|>", special)
    stopped = engine.decode(tokens, special=special, skip_special_tokens=False, stop=["<|observation|>"])
    assert (stopped.text, stopped.finish_reason, stopped.stop_reason) == (
        "f\n```python\ntool_call(a=1)\n```",
        "stop",
        "<|observation|>",
    )
    stripped = engine.decode(tokens, special=special, stop=["<|observation|>"])
    assert stripped.stop_reason is None and "<|" not in stripped.text


def test_max_tokens_truncates() -> None:
    tokens = engine.tokenize("one two three four five")
    decoded = engine.decode(tokens, max_tokens=3)
    assert decoded.text == "".join(tokens[:3])
    assert (decoded.finish_reason, decoded.completion_tokens) == ("length", 3)
    exact = engine.decode(tokens, max_tokens=len(tokens))
    assert exact.finish_reason == "length"  # no room left for the end-of-sequence token


def test_stop_strings_are_cut_and_never_streamed() -> None:
    text = "alpha beta STOP gamma and more text after it"
    tokens = engine.tokenize(text)
    decoded = engine.decode(tokens, stop=["nothing", "STOP"])
    assert (decoded.text, decoded.stop_reason) == ("alpha beta ", "STOP")
    assert "".join(decoded.deltas) == decoded.text
    shown = ""
    for delta in decoded.deltas:
        shown += delta
        assert "S" not in shown
    kept = engine.decode(tokens, stop=["STOP"], include_stop_str_in_output=True)
    assert kept.text == "alpha beta STOP"


def test_stream_deltas_add_up_to_the_text() -> None:
    prompt = prompt_for("generic", [{"role": "user", "content": SEED_QUESTION}], [WEATHER_TOOL])
    generation = engine.generate(prompt, dialect="generic", model="sim")
    decoded = engine.decode(generation.tokens, special=engine.special_tokens("generic"))
    assert len(decoded.deltas) == len(generation.tokens) > 10
    assert "".join(decoded.deltas) == decoded.text == generation.text


def test_gpt_oss_calls_once_per_round_in_harmony_and_answers_on_the_final_channel() -> None:
    assert not get_dialect("openai").parallel_calls
    messages, made = conversation("openai", rounds=5)
    assert [arguments["location"] for _, arguments in made] == ["San Francisco", "Tokyo", "Paris"]
    first = engine.generate(prompt_for("openai", messages[:1], [WEATHER_TOOL]), dialect="openai", model="sim").text
    assert first == (
        "<|channel|>commentary to=functions.get_current_weather <|constrain|>json<|message|>"
        '{"location":"San Francisco"}'
    )
    final = engine.generate(prompt_for("openai", messages, [WEATHER_TOOL]), dialect="openai", model="sim").text
    assert final.startswith("<|channel|>final<|message|>Here is what I found: San Francisco: ")


def test_harmony_typescript_tool_definitions_read_back_as_schemas() -> None:
    prompt = (
        "## functions\n\nnamespace functions {\n\n// Look things up.\n// Two lines.\ntype lookup = (_: {\n"
        '// What to find\nquery: string,\nlimit?: number, // default: 10\nunit?: "c" | "f", // default: c\n'
        "tags?: string[],\nfilters?: {\n    min?: number | null,\n    },\n}) => any;\n\n"
        "type ping = () => any;\n\ntype broken = (_: {\nquery string,\n}) => any;\n\n} // namespace functions"
    )
    tools, spans = engine.find_tools(prompt)
    assert [(t.name, t.description) for t in tools] == [("lookup", "Look things up.\nTwo lines."), ("ping", "")]
    assert tools[0].parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What to find"},
            "limit": {"type": "number", "default": 10},
            "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "filters": {
                "type": "object",
                "properties": {"min": {"type": ["number", "null"]}},
                "required": [],
            },
        },
        "required": ["query"],
    }
    assert [prompt[start] for start, _ in spans] == ["{"]


# -- nested models: "$ref" into "$defs", allOf, anyOf, nullable ------------------------------------

# BookTrip(destination: str, budget: Budget, travellers: list[Traveller], return_date: str | None)
# as the OpenAI SDK's pydantic_function_tool sends it: strict, every field required.
BOOK_TRIP = {
    "type": "function",
    "function": {
        "name": "BookTrip",
        "description": "Book a trip to a destination within a budget.",
        "strict": True,
        "parameters": {
            "$defs": {
                "Budget": {
                    "properties": {
                        "amount": {"title": "Amount", "type": "number"},
                        "currency": {"enum": ["EUR", "USD"], "title": "Currency", "type": "string"},
                    },
                    "required": ["amount", "currency"],
                    "title": "Budget",
                    "type": "object",
                    "additionalProperties": False,
                },
                "Traveller": {
                    "properties": {
                        "name": {"title": "Name", "type": "string"},
                        "age": {"title": "Age", "type": "integer"},
                    },
                    "required": ["name", "age"],
                    "title": "Traveller",
                    "type": "object",
                    "additionalProperties": False,
                },
            },
            "properties": {
                "destination": {"title": "Destination", "type": "string"},
                "budget": {"$ref": "#/$defs/Budget"},
                "travellers": {"items": {"$ref": "#/$defs/Traveller"}, "title": "Travellers", "type": "array"},
                "return_date": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Return Date"},
                "notes": {"type": ["string", "null"]},  # not required: left out unless mentioned
            },
            "required": ["destination", "budget", "travellers", "return_date"],
            "title": "BookTrip",
            "type": "object",
            "additionalProperties": False,
        },
    },
}
TRIP_QUESTION = "Book a trip to Lisbon for Ana, age 34, with a budget of 1500 EUR"
TRIP_ARGUMENTS = {
    "destination": "Lisbon",
    "budget": {"amount": 1500, "currency": "EUR"},
    "travellers": [{"name": "Ana", "age": 34}],
    "return_date": None,
}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_finds_a_tool_whose_schema_has_definitions_in_each_dialects_prompt(dialect: str) -> None:
    prompt = prompt_for(dialect, [{"role": "user", "content": "hi"}], [BOOK_TRIP])
    [tool], _ = engine.find_tools(prompt)
    assert tool.name == "BookTrip"
    if dialect == "openai":  # harmony's TypeScript has no references: the schema is written out
        return
    parameters = tool.parameters
    assert parameters["properties"]["budget"] == {"$ref": "#/$defs/Budget"}
    assert parameters["$defs"]["Budget"]["properties"]["currency"]["enum"] == ["EUR", "USD"]
    assert parameters["additionalProperties"] is False
    assert parameters["properties"]["notes"]["type"] == ["string", "null"]


@pytest.mark.parametrize("dialect", ["hermes", "qwen3_coder", "glm45"])
def test_a_nested_model_behind_a_ref_is_written_as_an_object_and_parses_back(dialect: str) -> None:
    prompt = prompt_for(dialect, [{"role": "user", "content": TRIP_QUESTION}], [BOOK_TRIP])
    generation = engine.generate(prompt, dialect=dialect, model="sim")
    assert generation.calls == (("BookTrip", TRIP_ARGUMENTS),)
    # raw-text families type the values by the schema: the budget is an object, not a string
    parser = get_dialect(dialect).parser({"BookTrip": BOOK_TRIP["function"]["parameters"]})
    text = "".join(e.text for e in [*parser.feed(generation.text), *parser.finish()] if isinstance(e, ArgumentsDelta))
    assert orjson.loads(text) == TRIP_ARGUMENTS


def test_refs_allof_anyof_and_enums_are_followed_when_values_are_made() -> None:
    tool = engine.ToolSpec(
        "plan_route",
        "",
        {
            "type": "object",
            "properties": {
                "start": {"allOf": [{"$ref": "#/definitions/Place"}], "description": "where it starts"},
                "mode": {"$ref": "#/$defs/Mode"},
                "stops": {"anyOf": [{"type": "null"}, {"type": "array", "items": {"$ref": "#/definitions/Place"}}]},
                "limit": {"oneOf": [{"$ref": "#/$defs/Count"}, {"type": "string"}]},
                "avoid": {"type": ["string", "null"]},
                "route": {"$ref": "#/$defs/Leg"},
            },
            "required": ["start", "mode", "stops", "limit", "avoid", "route"],
            "$defs": {
                "Mode": {"enum": ["car", "bike", "train"]},
                "Count": {"type": "integer", "maximum": 5},
                # recursive: each leg holds the next one
                "Leg": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Leg"}}, "required": ["next"]},
            },
            "definitions": {
                "Place": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
            },
        },
    )
    [arguments] = engine.plan_calls(tool, "Plan a route from Porto by train with 3 stops")

    leg = arguments.pop("route")
    depth = 0
    while leg:
        leg, depth = leg["next"], depth + 1
    assert 0 < depth <= 20  # a recursive schema is cut at a depth bound
    assert arguments == {
        "start": {"city": "Porto"},
        "mode": "train",
        "stops": [{"city": "Porto"}],  # mentioned: not left null
        "limit": 3,
        "avoid": None,  # nullable and not mentioned: left null
    }


def test_enum_values_in_definitions_are_not_entities() -> None:
    tool = engine.ToolSpec(
        "pay",
        "",
        {
            "type": "object",
            "properties": {"person": {"type": "string"}, "money": {"$ref": "#/$defs/Money"}},
            "required": ["person", "money"],
            "$defs": {"Money": {"type": "object", "properties": {"currency": {"enum": ["EUR", "USD"]}}}},
        },
    )
    # "EUR" is a choice, not a second person: one call, not one per entity
    assert engine.plan_calls(tool, "Pay 20 EUR to the person named Ana") == [
        {"person": "Ana", "money": {"currency": "EUR"}}
    ]


def test_a_number_is_taken_from_next_to_its_name_or_its_objects_name() -> None:
    tool = engine.ToolSpec(
        "book",
        "",
        {
            "type": "object",
            "properties": {"guests": {"type": "integer"}, "budget": {"$ref": "#/$defs/Budget"}},
            "required": ["guests", "budget"],
            "$defs": {"Budget": {"type": "object", "properties": {"amount": {"type": "number"}}}},
        },
    )
    assert engine.plan_calls(tool, "Book for 4 guests with a budget of 99.5") == [
        {"guests": 4, "budget": {"amount": 99.5}}
    ]
