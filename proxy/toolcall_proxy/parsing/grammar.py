"""The declarative shape of a model family's tool calls.

A dialect does not get a parser class of its own. It describes where a call starts, the steps
that read it, and what may close it; the one shared :class:`~toolcall_proxy.parsing.parser.
CallParser` runs every description in linear time. Examples::

    Hermes:   <tool_call> {"name": ..., "arguments": {...}} </tool_call>
              CallFormat("<tool_call>", (JsonCall(),), closer="</tool_call>")
    ChatGLM3: <|assistant|>get_weather\\n```python\\ntool_call(city='Paris')\\n```
              CallFormat("<|assistant|>", (Name("\\n"), Literal("```"), Literal("python", optional=True),
                         Literal("tool_call("), Arguments(kwargs=True), Literal("```", optional=True)))
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Arguments",
    "Branch",
    "CallFormat",
    "CallGrammar",
    "CallId",
    "CallList",
    "JsonCall",
    "KeyValueArguments",
    "Literal",
    "Name",
    "Skip",
    "Step",
]


@dataclass(frozen=True, slots=True)
class Literal:
    """Fixed text, after optional whitespace. An optional literal that is absent consumes nothing."""

    text: str
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Name:
    """The function name, read up to ``terminator`` (which is consumed).

    ``ends_before`` are other texts that end the name but are left for the next step to read:
    Mistral v11 writes ``NAME[ARGS]{...}`` or ``NAME[CALL_ID]id[ARGS]{...}``, and the same
    decoded without its control tokens reads ``NAME{...}``. The name ends at whichever comes
    first, so no text may occur inside another past its first character (else a cut output
    could end the name elsewhere than the whole one does).
    """

    terminator: str
    ends_before: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        texts = (self.terminator, *self.ends_before)
        if any(not text for text in texts):
            raise ValueError("a name must end at some text")
        if any(b[0] in a[1:] for i, a in enumerate(texts) for j, b in enumerate(texts) if i != j):
            raise ValueError("the texts ending a name must not overlap")


@dataclass(frozen=True, slots=True)
class Arguments:
    """The arguments: one JSON/Python literal, or Python keyword arguments up to ``)``.

    ``object_only`` accepts only an object (``{`` after optional whitespace): where nothing but
    the arguments tells a call from prose (GLM-4's ``NAME\\n{...}`` first lines), a line that goes
    on with anything else is text, not a call whose arguments are a number or a word.

    ``unwrap_string`` reads arguments written as a string holding JSON (Kimi-K2 sometimes writes
    ``"{\\"city\\": \\"Paris\\"}"``) as the object it holds, as ``JsonCall`` does; such a call
    starts only once the whole string is read.
    """

    kwargs: bool = False
    object_only: bool = False
    unwrap_string: bool = False


@dataclass(frozen=True, slots=True)
class JsonCall:
    """One object holding the name and the arguments under any of these keys, in any order. The
    first of each is the key the family writes (and the decode-time constraint asks for)."""

    name_keys: tuple[str, ...] = ("name",)
    argument_keys: tuple[str, ...] = ("arguments", "parameters")
    id_keys: tuple[str, ...] = ("id",)


@dataclass(frozen=True, slots=True)
class CallId:
    """The model's own id for the call (Mistral's ``[CALL_ID]abc123XYZ``), up to ``terminator``.

    Whitespace may surround the id. ``name_within`` = (``before``, ``after``) says the id also
    names the function: the name is the id's text up to the first ``after`` (which must be
    there), from the last ``before`` on (Kimi-K2's ``functions.get_weather:0``, as vLLM reads it).
    """

    terminator: str
    name_within: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    """Text of no interest up to and including ``terminator`` (Kimi-K2's ``:0`` call index)."""

    terminator: str
    limit: int = 64


@dataclass(frozen=True, slots=True)
class KeyValueArguments:
    """Arguments as tagged pairs whose values are raw text, typed by the tool's JSON Schema.

    Qwen3-Coder: ``<parameter=city>\nParis\n</parameter>``; GLM-4.5:
    ``<arg_key>city</arg_key><arg_value>Paris</arg_value>``. The arguments end where ``end``
    begins (left for the closer), or where one of ``also_end`` does (Qwen3-Coder's ``</tool_call>``
    after a forgotten ``</function>``). String values stream as they are generated.

    Values are raw text, so ``value_close`` may be part of one (a file that holds
    ``</parameter>``): it closes the value only where the next tag follows it (after whitespace) —
    ``key_open``, ``end``, one of ``also_end`` — or the output ends; elsewhere it is value text.
    A value whose ``value_close`` is missing ends where one of those tags begins, as vLLM reads
    Qwen3-Coder (so a value cannot hold them). With ``layout_newlines`` one line break after the
    value's opening tag and one before its end are layout, not value (Qwen3-Coder puts each value
    on lines of its own; GLM-4.5 writes them inline).
    """

    key_open: str
    key_close: str
    value_open: str
    value_close: str
    end: str
    also_end: tuple[str, ...] = ()
    layout_newlines: bool = True


@dataclass(frozen=True, slots=True)
class CallList:
    """Several calls in one bracketed list, ``[call, call]``: each element is read by ``element``.

    Mistral before v11 and Granite write a JSON array of call objects; the pythonic format
    (Llama 3.2 small, Llama 4) writes ``[get_weather(city='Paris'), get_time()]``.
    """

    element: tuple[Step, ...]
    open: str = "["
    separator: str = ","
    close: str = "]"


@dataclass(frozen=True, slots=True)
class Branch:
    """Chooses the following steps by what comes next (after whitespace), without consuming it.

    ``cases`` pairs a prefix with its steps; ``otherwise`` is taken when none matches (``None``:
    not a call).
    """

    cases: tuple[tuple[str, tuple[Step, ...]], ...]
    otherwise: tuple[Step, ...] | None = None


Step = Literal | Name | Arguments | JsonCall | CallId | Skip | KeyValueArguments | CallList | Branch


@dataclass(frozen=True, slots=True)
class CallFormat:
    """One way a call appears in the output.

    ``opener`` is the text that starts it; ``""`` means "at the very start of the output" (ChatGLM3
    begins every assistant turn with its metadata line). ``opener_is_token`` marks a control token
    that must never show up in ``content``, even when what follows is not a call. ``separator`` is
    optional text consumed after a call (Llama's ``;`` between parallel calls).
    ``opener_starts_body`` leaves the opener in place for the steps to read (Llama's bare ``{``
    both announces a call and begins its JSON object).
    """

    opener: str
    steps: tuple[Step, ...]
    closer: str = ""
    separator: str = ""
    opener_is_token: bool = False
    opener_starts_body: bool = False


@dataclass(frozen=True, slots=True)
class CallGrammar:
    """All the ways a family writes calls, plus tokens to hide from ``content``."""

    formats: tuple[CallFormat, ...]
    hidden_tokens: tuple[str, ...] = field(default=())
    # (open, close) around the model's reasoning (``<think>``, ``</think>``): reported apart from
    # content and never searched for calls
    reasoning: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        openers = [f.opener for f in self.formats]
        if len(set(openers)) != len(openers):
            raise ValueError("two call formats share an opener; the parser could not tell them apart")
        if any(f.opener == "" for f in self.formats[1:]):
            raise ValueError("the start-of-output format (opener '') must come first")
