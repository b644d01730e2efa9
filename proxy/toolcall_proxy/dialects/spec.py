"""What a dialect is: everything the proxy needs to speak one model family's tool-call format."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any, Literal

from ..parsing.grammar import CallGrammar
from ..parsing.parser import CallParser
from ..rendering import normalize_messages, render
from ..tokens import TokenLayout

__all__ = ["Dialect", "PromptForm", "ToolCall", "openai_call_id"]

# How the engine must be given a rendered prompt so the model receives the ids it was trained on:
# "text": the engine's tokenizer maps every marker to its id and adds the family's prefix (BOS)
#   itself, so the template leaves the prefix out (``bos_token`` is empty);
# "text_without_prefix": markers map, but the template writes the prefix: the engine is told
#   ``add_special_tokens: false``, or the prefix would be there twice;
# "token_ids": no text reaches the right ids through the engine's tokenizer: the proxy encodes
#   the prompt with ``token_layout`` and sends ids.
PromptForm = Literal["text", "text_without_prefix", "token_ids"]

# A call as the model would write it: (function name, arguments object).
ToolCall = tuple[str, Mapping[str, Any]]

_ID_ALPHABET = string.ascii_letters + string.digits


def openai_call_id() -> str:
    """A tool-call id as OpenAI writes them: ``call_`` and 24 letters and digits."""
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class Dialect:
    """One model family's tool-calling format, described as data.

    ``transport`` says how the proxy reaches the model for a request with tools:
    ``"completions"`` renders the whole prompt with ``template`` and calls ``/v1/completions``
    (works on every vLLM, including those that reject ``tools``); ``"chat"`` keeps the model's
    own chat template and rewrites only the messages (for models the project has no template
    for).
    """

    name: str
    summary: str
    models: tuple[str, ...]
    grammar: CallGrammar
    stop: tuple[str, ...]
    template_file: str
    write_call: Callable[[str, Mapping[str, Any]], str]
    call_separator: str
    prefill: Callable[[str | None], str]
    parallel_calls: bool = True
    # written once around all the calls of a turn (DeepSeek's <｜tool▁calls▁begin｜> block);
    # prefill(...) starts with calls_open, as the model's own output does
    calls_open: str = ""
    calls_close: str = ""
    # prefill(name) ends exactly where the arguments' JSON value begins, so the engine's guided
    # decoding can constrain the rest of the answer to the tool's schema
    prefill_ends_at_arguments: bool = False
    transport: Literal["completions", "chat"] = "completions"
    special_tokens: tuple[str, ...] = ()
    vllm_parser: str | None = None
    # (messages, tools, forced) -> messages, for the chat transport; forced is "required", a
    # function name, or None
    rewrite_messages: (
        Callable[[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]], str | None], list[dict[str, Any]]] | None
    ) = field(default=None)
    # a new id for a call the model wrote without one (Mistral's are 9 letters and digits)
    call_id: Callable[[], str] = field(default=openai_call_id)
    # writes the calls of a turn when a call's text depends on its place among them (Kimi-K2
    # numbers its calls: functions.NAME:0, functions.NAME:1); write_call, call_separator and
    # calls_open/close are then not used by write_calls
    write_turn: Callable[[Sequence[ToolCall]], str] | None = None
    prompt_form: PromptForm = "text"
    # what the engine's tokenizer puts before a text prompt when it adds special tokens
    tokenizer_prefix: str = ""
    token_layout: TokenLayout | None = None

    @cached_property
    def template(self) -> str:
        """The chat template text: what the operator mounts into vLLM with ``--chat-template``."""
        return resources.files("toolcall_proxy.templates").joinpath(self.template_file).read_text(encoding="utf-8")

    @cached_property
    def takes_developer_role(self) -> bool:
        """Whether the family's template has a turn for OpenAI's ``developer`` role (gpt-oss's)."""
        return "'developer'" in self.template or '"developer"' in self.template

    def render_prompt(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        *,
        add_generation_prompt: bool = True,
        control_token: Callable[[str], str] | None = None,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> str:
        """The prompt for ``/v1/completions``, as vLLM would render it for ``/v1/chat/completions``.

        ``control_token`` is what the template's ``control(...)`` writes (token-id dialects): by
        default the token's own text. ``template_kwargs`` are a request's ``chat_template_kwargs``
        (``enable_thinking``...), as vLLM passes them to the template.
        """
        context: dict[str, Any] = dict(template_kwargs or {})
        if control_token is not None:
            context["control_token"] = control_token
        normalized = normalize_messages(messages)
        if not self.takes_developer_role:
            # as OpenAI does for its models without a developer role: the developer speaks as system
            normalized = [{**m, "role": "system"} if m.get("role") == "developer" else m for m in normalized]
        return render(
            self.template,
            messages=normalized,
            tools=list(tools) if tools else None,
            add_generation_prompt=add_generation_prompt,
            bos_token="",
            eos_token="",
            **context,
        )

    def write_calls(self, calls: Sequence[ToolCall]) -> str:
        """The raw text a model of this family generates for these calls: each written by
        ``write_call``, joined by ``call_separator``, all inside ``calls_open``/``calls_close``."""
        if not calls:
            return ""
        if self.write_turn is not None:
            return self.write_turn(calls)
        body = self.call_separator.join(self.write_call(name, arguments) for name, arguments in calls)
        return f"{self.calls_open}{body}{self.calls_close}"

    def parser(
        self, tools: Collection[str] | Mapping[str, Mapping[str, Any]] | None, *, prompt: str = ""
    ) -> CallParser:
        """A parser for one response; ``tools`` are the offered names, or names -> parameter schemas.

        A ``prompt`` that ends by opening the reasoning block (QwQ and DeepSeek-R1 templates write
        ``<think>`` themselves) means the output starts inside it.
        """
        reasoning = self.grammar.reasoning
        in_reasoning = reasoning is not None and prompt.rstrip().endswith(reasoning[0])
        return CallParser(self.grammar, tools, in_reasoning=in_reasoning)
