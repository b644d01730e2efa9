"""A vLLM-compatible OpenAI server backed by the simulated engine: no GPU, no weights.

It takes ``vllm serve``'s command line, renders chat requests with the chat template the way vLLM
does, and answers in vLLM's response shapes: ``/health``, ``/v1/models``, ``/v1/completions``,
``/v1/chat/completions`` (with vLLM's tool-choice rules and, with ``--enable-auto-tool-choice``,
its tool-call parsing) and ``/metrics``. ``--reject-tools`` turns it into a vLLM 0.4, which refused
``tools`` on the chat endpoint. Plain ASGI served by uvicorn: no framework on the request path.

Requests are batched as vLLM batches them (``scheduler``: ``--max-num-seqs``, the KV cache,
``--max-loras``), so /metrics counts what runs and what waits as vLLM's does. LoRA adapters
(``--enable-lora --lora-modules``) are served as vLLM serves them, by name beside the base model;
the simulated model answers through one as it does without.

For a token-layout family (ChatGLM3) the server works on ids as vLLM does, with the tokenizer of
``--tokenizer`` (a directory or a cached model id), else ``--model``'s, else a demo tokenizer, and
publishes it for the proxy beside it (``hub.simulated_tokenizer_dir``): text prompts are
tokenized, id prompts taken as given, ``stop_token_ids``, ``ignore_eos``,
``spaces_between_special_tokens`` and ``return_token_ids`` are honoured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import re
import socket
import sys
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import uvicorn

from ..dialects import DIALECTS, get_dialect
from ..parsing.parser import ArgumentsDelta, CallEnded, CallParser, CallStarted, Event, TextDelta
from ..rendering import TemplateRenderError, normalize_messages, render
from ..server.constraints import version_tuple
from ..tokens import TokenizerError
from . import constrained, engine, tokenization
from .scheduler import Scheduler
from .scheduler import Sequence as BatchSequence
from .token_model import TokenModel

__all__ = ["ConfigError", "SimApp", "SimConfig", "build_parser", "main", "parse_args", "run", "serve"]

log = logging.getLogger("toolcall_proxy.sim")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_MODEL_LEN = 8192
# The vLLM release whose API the simulator speaks unless told (--vllm-version): it decides which
# constraint fields a request may use (`structured_outputs` from 0.11, `guided_*` until 0.11).
DEFAULT_VLLM_VERSION = "0.12.0"
STRUCTURED_OUTPUTS_BACKENDS = ("auto", "xgrammar", "guidance", "outlines", "lm-format-enforcer")
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # vLLM's (and OpenAI's) default for /v1/completions
# vLLM's --max-num-seqs for its OpenAI server on a GPU under 70 GiB or an A100 (EngineArgs'
# get_batch_defaults; an H100-class GPU gets 1024, a CPU 128): the simulator has no GPU to ask.
DEFAULT_MAX_NUM_SEQS = 256
BLOCK_SIZES = (1, 8, 16, 32, 64, 128, 256)  # vLLM's --block-size choices
DEFAULT_BLOCK_SIZE = 16  # vLLM's on CUDA
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's --max-lora-rank choices
DEFAULT_MAX_LORA_RANK = 16


# -- command line ---------------------------------------------------------------------------------

# vLLM flags that change nothing in a simulation, accepted so that a vLLM command line runs as is.
_IGNORED_VALUE_FLAGS = (
    "--allowed-local-media-path",
    "--api-server-count",
    "--chat-template-content-format",
    "--code-revision",
    "--collect-detailed-traces",
    "--config-format",
    "--convert",
    "--cpu-offload-gb",
    "--data-parallel-address",
    "--data-parallel-rpc-port",
    "--data-parallel-size-local",
    "--device",
    "--distributed-executor-backend",
    "--generation-config",
    "--hf-config-path",
    "--hf-overrides",
    "--kv-cache-dtype",
    "--kv-events-config",
    "--kv-transfer-config",
    "--limit-mm-per-prompt",
    "--load-format",
    "--log-config-file",
    "--logprobs-mode",
    "--long-prefill-token-threshold",
    "--lora-dtype",
    "--max-cpu-loras",
    "--max-log-len",
    "--max-logprobs",
    "--max-long-partial-prefills",
    "--max-num-batched-tokens",
    "--max-num-partial-prefills",
    "--max-parallel-loading-workers",
    "--max-seq-len-to-capture",
    "--mm-processor-cache-gb",
    "--mm-processor-kwargs",
    "--model-impl",
    "--num-scheduler-steps",
    "--otlp-traces-endpoint",
    "--override-generation-config",
    "--override-pooler-config",
    "--pooler-config",
    "--preemption-mode",
    "--reasoning-parser",
    "--response-role",
    "--rope-scaling",
    "--rope-theta",
    "--root-path",
    "--runner",
    "--scheduling-policy",
    "--seed",
    "--speculative-config",
    "--ssl-ca-certs",
    "--ssl-cert-reqs",
    "--ssl-certfile",
    "--ssl-keyfile",
    "--swap-space",
    "--task",
    "--tokenizer-mode",
    "--tokenizer-pool-size",
    "--tool-parser-plugin",
    "--tool-server",
    "--worker-cls",
)
_IGNORED_SHORT_VALUE_FLAGS = {"--quantization": "-q", "--data-parallel-size": "-dp", "--compilation-config": "-O"}
_IGNORED_LIST_FLAGS = (
    "--allowed-headers",
    "--allowed-methods",
    "--allowed-origins",
    "--middleware",
    "--prompt-adapters",
)
_IGNORED_BOOL_FLAGS = (
    "--async-scheduling",
    "--calculate-kv-scales",
    "--disable-async-output-proc",
    "--disable-cascade-attn",
    "--disable-chunked-mm-input",
    "--disable-custom-all-reduce",
    "--disable-fastapi-docs",
    "--disable-frontend-multiprocessing",
    "--disable-log-stats",
    "--disable-mm-preprocessor-cache",
    "--disable-sliding-window",
    "--enable-chunked-prefill",
    "--enable-eplb",
    "--enable-expert-parallel",
    "--enable-force-include-usage",
    "--enable-log-outputs",
    "--enable-lora-bias",
    "--enable-prefix-caching",
    "--enable-prompt-embeds",
    "--enable-prompt-tokens-details",
    "--enable-reasoning",
    "--enable-request-id-headers",
    "--enable-server-load-tracking",
    "--enable-sleep-mode",
    "--enable-tokenizer-info-endpoint",
    "--enforce-eager",
    "--exclude-tools-when-tool-choice-none",
    "--fully-sharded-loras",
    "--headless",
    "--multi-step-stream-outputs",
    "--return-tokens-as-token-ids",
    "--skip-tokenizer-init",
    "--use-v2-block-manager",
)


class ConfigError(ValueError):
    """The command line asks for something the simulator cannot do."""


def _model_len(value: str) -> int:
    """vLLM's ``--max-model-len``: an integer, or 32k (x1000) / 32K (x1024) / 1m / 1M."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", value)
    if match is None:
        if value.strip().lower() in ("-1", "auto"):
            return DEFAULT_MAX_MODEL_LEN
        raise argparse.ArgumentTypeError(f"invalid length {value!r}: use a number of tokens such as 4096 or 32k")
    number, suffix = float(match.group(1)), match.group(2)
    scale = {"": 1, "k": 1000, "K": 1024, "m": 10**6, "M": 2**20, "g": 10**9, "G": 2**30}[suffix]
    length = int(number * scale)
    if length < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return length


def _vllm_version(value: str) -> str:
    if not version_tuple(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a vLLM version such as 0.12.0")
    return value


def _at_least_one(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


@dataclass(frozen=True, slots=True)
class LoraModule:
    """An adapter of ``--lora-modules``: the name requests use, where its files are, and the base
    model it belongs to (vLLM's ``LoRAModulePath``)."""

    name: str
    path: str
    base_model_name: str | None = None


_LORA_FIELDS = ("name", "path", "base_model_name", "is_3d_lora_weight")


class _LoraModules(argparse.Action):
    """vLLM's ``LoRAParserAction``: each value is ``name=path`` or a JSON object with ``name``,
    ``path`` and optionally ``base_model_name``; a later ``--lora-modules`` replaces an earlier one."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        items = [values] if isinstance(values, str) else list(values or ())
        setattr(namespace, self.dest, tuple(_lora_module(parser, item) for item in items if item))


def _lora_module(parser: argparse.ArgumentParser, item: str) -> LoraModule:
    if "=" in item and "," not in item:  # vLLM's test for its old form, name=path
        name, _, path = item.partition("=")
        if "=" in path or not name or not path:
            parser.error(f"Invalid format for --lora-modules: {item} - use name=path or a JSON object")
        return LoraModule(name, path)
    try:
        fields = orjson.loads(item)
    except orjson.JSONDecodeError:
        parser.error(f"Invalid JSON format for --lora-modules: {item}")
    problem = _lora_fields_problem(fields)
    if problem:
        parser.error(f"Invalid fields for --lora-modules: {item} - {problem}")
    return LoraModule(fields["name"], fields["path"], fields.get("base_model_name"))


def _lora_fields_problem(fields: Any) -> str | None:
    """What vLLM's ``LoRAModulePath(**fields)`` would fail on, in its words; None if nothing."""
    if not isinstance(fields, dict):
        return f"LoRAModulePath() argument after ** must be a mapping, not {type(fields).__name__}"
    unexpected = [key for key in fields if key not in _LORA_FIELDS]
    if unexpected:
        return f"LoRAModulePath.__init__() got an unexpected keyword argument {unexpected[0]!r}"
    missing = [key for key in ("name", "path") if key not in fields]
    if missing:
        return f"LoRAModulePath.__init__() missing required argument {missing[0]!r}"
    if not all(isinstance(fields.get(key, ""), str) for key in ("name", "path")):
        return "name and path must be strings"
    return None


def _milliseconds(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def build_parser(prog: str = "toolmodel sim") -> argparse.ArgumentParser:
    """``vllm serve``'s flags plus the simulator's own (``--ttft-ms``, ``--itl-ms``,
    ``--reject-tools``, ``--dialect``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A vLLM-compatible OpenAI server that simulates a model: no GPU, no weights. "
        "Takes vLLM's own command line (`vllm serve MODEL ...`).",
        allow_abbrev=False,  # a misspelt vLLM flag must fail, not match a longer one
    )
    parser.add_argument("model_tag", nargs="?", metavar="MODEL", help="the model, as in `vllm serve MODEL`")

    model = parser.add_argument_group("model (as vLLM)")
    model.add_argument("--model", help="model name or path (only reported back; nothing is loaded)")
    model.add_argument("--served-model-name", nargs="+", metavar="NAME", help="names the API answers to")
    model.add_argument("--max-model-len", type=_model_len, default=DEFAULT_MAX_MODEL_LEN, metavar="TOKENS")
    model.add_argument(
        "--tokenizer",
        metavar="DIR_OR_ID",
        help="the tokenizer's files, a directory or a model id in the Hugging Face cache (default: --model's; "
        "for a token-id family without one, a demo tokenizer); published in $HF_HOME/toolmodel-sim for the proxy",
    )
    model.add_argument("--tokenizer-revision", metavar="REVISION")
    model.add_argument("--revision")
    model.add_argument("--download-dir")
    model.add_argument("--dtype", default="auto")
    model.add_argument("--trust-remote-code", action=argparse.BooleanOptionalAction, default=False)
    model.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    model.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1)
    model.add_argument("--gpu-memory-utilization", type=float, default=0.9)

    batch = parser.add_argument_group("batching (as vLLM)")
    batch.add_argument(
        "--max-num-seqs",
        type=_at_least_one,
        default=DEFAULT_MAX_NUM_SEQS,
        metavar="N",
        help=f"sequences running at once; the others wait (default {DEFAULT_MAX_NUM_SEQS}, vLLM's on most GPUs)",
    )
    batch.add_argument("--block-size", type=int, choices=BLOCK_SIZES, default=DEFAULT_BLOCK_SIZE, metavar="TOKENS")
    batch.add_argument(
        "--num-gpu-blocks-override",
        type=_at_least_one,
        metavar="BLOCKS",
        help="the KV cache's size in blocks (default: room for --max-num-seqs sequences of --max-model-len)",
    )

    lora = parser.add_argument_group("LoRA adapters (as vLLM)")
    lora.add_argument("--enable-lora", action=argparse.BooleanOptionalAction, default=False)
    lora.add_argument(
        "--lora-modules",
        nargs="+",
        action=_LoraModules,
        default=(),
        metavar="NAME=PATH",
        help='adapters served by name: name=path, or {"name": ..., "path": ..., "base_model_name": ...}',
    )
    lora.add_argument("--max-loras", type=_at_least_one, default=1, metavar="N", help="adapters in one batch")
    lora.add_argument("--max-lora-rank", type=int, choices=LORA_RANKS, default=DEFAULT_MAX_LORA_RANK)

    frontend = parser.add_argument_group("server (as vLLM)")
    frontend.add_argument("--host", default=None, help="address to bind (default: all interfaces, like vLLM)")
    frontend.add_argument("--port", type=int, default=8000)
    frontend.add_argument("--api-key", help="require `Authorization: Bearer KEY` on /v1 endpoints")
    frontend.add_argument("--chat-template", metavar="PATH", help="Jinja chat template file (or the template text)")
    frontend.add_argument("--enable-auto-tool-choice", action=argparse.BooleanOptionalAction, default=False)
    frontend.add_argument("--tool-call-parser", metavar="NAME")
    frontend.add_argument("--disable-log-requests", action=argparse.BooleanOptionalAction, default=False)
    frontend.add_argument("--enable-log-requests", action=argparse.BooleanOptionalAction, default=False)
    frontend.add_argument("--disable-uvicorn-access-log", action=argparse.BooleanOptionalAction, default=False)
    frontend.add_argument(
        "--structured-outputs-config.backend",
        "--guided-decoding-backend",
        dest="structured_outputs_backend",
        choices=STRUCTURED_OUTPUTS_BACKENDS,
        default="auto",
        help="constrained decoding's backend (vLLM 0.11 spells it --structured-outputs-config.backend); "
        "the simulator runs llguidance, and with xgrammar refuses Lark grammars as vLLM before 0.34 does",
    )
    frontend.add_argument(
        "--uvicorn-log-level", default="info", choices=("critical", "error", "warning", "info", "debug", "trace")
    )

    sim = parser.add_argument_group("simulation")
    sim.add_argument("--ttft-ms", type=_milliseconds, default=0.0, help="time to first token (default 0)")
    sim.add_argument("--itl-ms", type=_milliseconds, default=0.0, help="delay between tokens (default 0)")
    sim.add_argument(
        "--reject-tools",
        action="store_true",
        help="behave like vLLM 0.4: /v1/chat/completions answers 400 to a request with tools or tool_choice",
    )
    sim.add_argument(
        "--vllm-version",
        type=_vllm_version,
        default=DEFAULT_VLLM_VERSION,
        metavar="X.Y.Z",
        help="the vLLM release to behave as: /version, and which constraint fields count "
        f"(default {DEFAULT_VLLM_VERSION})",
    )
    sim.add_argument(
        "--misbehave",
        action="append",
        choices=engine.MISBEHAVIOURS,
        default=[],
        help="write calls wrong this way (repeatable), to show what decode-time constraints fix",
    )
    sim.add_argument(
        "--dialect",
        choices=sorted(DIALECTS),
        help="tool-call format the model writes (default: --tool-call-parser if it names one, "
        "else detected from the chat template)",
    )

    ignored = parser.add_argument_group("accepted for compatibility with vLLM; no effect in the simulator")
    for flag in _IGNORED_VALUE_FLAGS:
        ignored.add_argument(flag, metavar="VALUE")
    for flag, short in _IGNORED_SHORT_VALUE_FLAGS.items():
        ignored.add_argument(flag, short, metavar="VALUE")
    for flag in _IGNORED_LIST_FLAGS:
        ignored.add_argument(flag, nargs="+", action="extend", metavar="VALUE")
    for flag in _IGNORED_BOOL_FLAGS:
        ignored.add_argument(flag, action=argparse.BooleanOptionalAction)
    return parser


def _normalize_flag(arg: str) -> str:
    # vLLM accepts --max_model_len as well as --max-model-len.
    if not arg.startswith("--"):
        return arg
    name, equals, value = arg.partition("=")
    return name.replace("_", "-") + equals + value


def parse_args(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parses a vLLM command line; an unknown flag is an error that names it."""
    parser = parser or build_parser()
    arguments = [_normalize_flag(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    args, extra = parser.parse_known_args(arguments)
    for arg in extra:
        if arg.startswith("-"):
            parser.error(
                f"unknown flag {arg.split('=', 1)[0]}: neither a vLLM flag the simulator knows nor one of its own"
            )
    if extra:
        parser.error(f"unexpected argument {extra[0]!r}")
    if args.model and args.model_tag and args.model != args.model_tag:
        parser.error(f"two models given: {args.model_tag!r} and --model {args.model!r}")
    args.model = args.model or args.model_tag
    if not args.model:
        parser.error("a model is required: `MODEL` or --model MODEL")
    return args


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimConfig:
    model: str
    chat_template: str
    dialect: str
    served_model_names: tuple[str, ...] = ()
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    ttft: float = 0.0  # seconds
    itl: float = 0.0  # seconds
    reject_tools: bool = False
    enable_auto_tool_choice: bool = False
    tool_call_parser: str | None = None
    api_key: str | None = None
    log_requests: bool = False
    vllm_version: str = DEFAULT_VLLM_VERSION
    structured_outputs_backend: str = "auto"
    misbehave: tuple[str, ...] = ()
    # The tokenizer's directory, for a dialect with a token layout: the simulator then works on
    # ids as vLLM does. None: prompts are read as text (always, for the other dialects).
    tokenizer: Path | None = None
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    block_size: int = DEFAULT_BLOCK_SIZE
    kv_cache_blocks: int | None = None  # None: room for max_num_seqs sequences of max_model_len
    enable_lora: bool = False
    lora_modules: tuple[LoraModule, ...] = ()
    max_loras: int = 1
    max_lora_rank: int = DEFAULT_MAX_LORA_RANK

    def __post_init__(self) -> None:
        if not self.served_model_names:
            object.__setattr__(self, "served_model_names", (self.model,))
        if self.kv_cache_blocks is None:
            object.__setattr__(self, "kv_cache_blocks", self.max_num_seqs * self._blocks(self.max_model_len))
        elif self.kv_cache_blocks < self._blocks(self.max_model_len):
            # vLLM takes such an override, and a request that long then waits for ever: say so at start.
            needed = self._blocks(self.max_model_len)
            raise ConfigError(
                f"--num-gpu-blocks-override {self.kv_cache_blocks}: {self.kv_cache_blocks} blocks of "
                f"{self.block_size} tokens cannot hold one sequence of --max-model-len {self.max_model_len}, "
                f"which would wait for ever; give at least {needed} blocks or a smaller --max-model-len"
            )
        _check_adapters(self)

    def _blocks(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SimConfig:
        if args.enable_auto_tool_choice and not args.tool_call_parser:
            raise ConfigError("--enable-auto-tool-choice requires --tool-call-parser")
        template = _read_template(args.chat_template) if args.chat_template else None
        if args.dialect:
            dialect = args.dialect
        elif args.tool_call_parser in DIALECTS:
            dialect = args.tool_call_parser
        elif template is not None:
            dialect = engine.detect_dialect(template)
        else:
            dialect = "generic"
        if template is None:
            template = get_dialect(dialect).template  # what the operator would mount
        return cls(
            model=args.model,
            chat_template=template,
            dialect=dialect,
            max_num_seqs=args.max_num_seqs,
            block_size=args.block_size,
            kv_cache_blocks=args.num_gpu_blocks_override,
            enable_lora=args.enable_lora,
            lora_modules=tuple(args.lora_modules),
            max_loras=args.max_loras,
            max_lora_rank=args.max_lora_rank,
            served_model_names=tuple(args.served_model_name or ()),
            max_model_len=args.max_model_len,
            ttft=args.ttft_ms / 1000,
            itl=args.itl_ms / 1000,
            reject_tools=args.reject_tools,
            enable_auto_tool_choice=args.enable_auto_tool_choice,
            tool_call_parser=args.tool_call_parser,
            api_key=args.api_key,
            # Current vLLM logs requests only when asked; --disable-log-requests is its old spelling of the default.
            log_requests=args.enable_log_requests and not args.disable_log_requests,
            tokenizer=_tokenizer(args, dialect),
            vllm_version=args.vllm_version,
            structured_outputs_backend=args.structured_outputs_backend,
            misbehave=tuple(args.misbehave),
        )


def _check_adapters(config: SimConfig) -> None:
    """What vLLM refuses of ``--lora-modules`` as it loads them at start-up, in its words. The
    adapters' weights are not loaded; a local adapter's rank is read from its adapter_config.json."""
    if config.lora_modules and not config.enable_lora:
        raise ConfigError("LoRA is not enabled. Use --enable-lora to enable LoRA.")
    seen: set[str] = set()
    for module in config.lora_modules:
        if module.name in seen:
            raise ConfigError(
                f"The lora adapter '{module.name}' has already been loaded. If you want to load the adapter "
                "in place, set 'load_inplace' to True."
            )
        seen.add(module.name)
        rank = _adapter_rank(Path(module.path))
        if rank is not None and rank > config.max_lora_rank:
            raise ConfigError(f"LoRA rank {rank} is greater than max_lora_rank {config.max_lora_rank}.")


def _adapter_rank(folder: Path) -> int | None:
    """The rank (``r``) in a local adapter's adapter_config.json; None for a Hugging Face id, which
    the simulator does not download, or a folder without one."""
    try:
        adapter = orjson.loads((folder / "adapter_config.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    rank = adapter.get("r") if isinstance(adapter, dict) else None
    return rank if isinstance(rank, int) else None


def _tokenizer(args: argparse.Namespace, dialect: str) -> Path | None:
    """The tokenizer's directory for a token-layout dialect, found as vLLM finds the model's files
    (or the demo one), published for the proxy and checked by loading it."""
    spec = get_dialect(dialect)
    if spec.token_layout is None:
        return None
    revision = args.tokenizer_revision or args.revision or "main"
    try:
        folder = tokenization.locate_tokenizer(args.tokenizer, args.model, spec.token_layout, revision)
        tokenization.VllmTokenizer.load(folder, spec.token_layout, spec.tokenizer_prefix)
    except TokenizerError as error:
        raise ConfigError(str(error)) from None
    return folder


def _read_template(value: str) -> str:
    try:
        return Path(value).read_text(encoding="utf-8")
    except OSError as error:
        # Like vLLM: what cannot be opened but looks like a template is the template itself.
        if any(char in value for char in "{}\n"):
            return value
        raise ConfigError(
            f"--chat-template {value}: looks like a file path, but it cannot be read ({error.strerror})"
        ) from None


# -- errors ---------------------------------------------------------------------------------------


class SimError(Exception):
    """An error answered in vLLM's current shape ``{"error": {message, type, param, code}}``."""

    def __init__(self, status: int, message: str, type: str = "BadRequestError", param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.status}}


class LegacyError(SimError):
    """vLLM 0.4's flat error shape, for ``--reject-tools``."""

    def body(self) -> dict[str, Any]:
        return {"object": "error", "message": self.message, "type": self.type, "param": self.param, "code": self.status}


_TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls", "functions", "function_call")


def _legacy_tools_error(body: Mapping[str, Any]) -> LegacyError:
    # vLLM 0.4 forbade unknown request fields: pydantic's errors, printed as FastAPI's list.
    errors = [
        {"type": "extra_forbidden", "loc": ("body", key), "msg": "Extra inputs are not permitted", "input": body[key]}
        for key in _TOOL_FIELDS
        if key in body
    ]
    return LegacyError(400, str(errors))


# -- metrics --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Metrics:
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0, "abort": 0})

    def render(self, model: str, batch: Scheduler, max_loras: int | None) -> bytes:
        """vLLM's series; ``max_loras`` with LoRA enabled, else None."""
        label = "{" + _labels(model_name=model) + "}"
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{label} {batch.running}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{label} {batch.waiting}",
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{label} {batch.kv_cache_usage!r}",
            "# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.",
            "# TYPE vllm:num_preemptions_total counter",
            f"vllm:num_preemptions_total{label} {batch.preemptions}",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{label} {self.prompt_tokens}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{label} {self.generation_tokens}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
        ]
        for reason, count in self.finished.items():
            lines.append(f'vllm:request_success_total{label[:-1]},finished_reason="{reason}"}} {count}')
        if max_loras is not None:
            running, waiting = batch.adapters()
            adapters = _labels(
                max_lora=str(max_loras),
                waiting_lora_adapters=",".join(waiting),
                running_lora_adapters=",".join(running),
            )
            lines += [
                "# HELP vllm:lora_requests_info Running stats on lora requests.",
                "# TYPE vllm:lora_requests_info gauge",
                f"vllm:lora_requests_info{{{adapters}}} {time.time()!r}",  # vLLM's: the time it was set
            ]
        return ("\n".join(lines) + "\n").encode()


def _labels(**values: str) -> str:
    return ",".join(f'{name}="{_label_value(value)}"' for name, value in values.items())


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# -- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sampling:
    max_tokens: int | None
    stop: tuple[str, ...]
    skip_special_tokens: bool
    include_stop_str_in_output: bool
    stream: bool
    include_usage: bool
    continuous_usage: bool
    # read when the simulator works on ids
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    spaces_between_special_tokens: bool = True
    return_token_ids: bool = False

    def rules(self, *, skip_special_tokens: bool | None = None) -> tokenization.OutputRules:
        return tokenization.OutputRules(
            max_tokens=self.max_tokens,
            stop=self.stop,
            stop_token_ids=self.stop_token_ids,
            ignore_eos=self.ignore_eos,
            include_stop_str_in_output=self.include_stop_str_in_output,
            skip_special_tokens=self.skip_special_tokens if skip_special_tokens is None else skip_special_tokens,
            spaces_between_special_tokens=self.spaces_between_special_tokens,
        )


def _optional_bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SimError(400, f"{key} must be a boolean", param=key)
    return value


def _positive_int(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise SimError(400, f"{key} must be an integer", param=key)
    if value < 1:
        raise SimError(400, f"{key} must be at least 1, got {value}.", param=key)
    return value


def _sampling(
    body: Mapping[str, Any], prompt_tokens: int, max_model_len: int, default_max_tokens: int | None
) -> _Sampling:
    requested = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    if prompt_tokens >= max_model_len:
        raise SimError(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, your request has "
            f"{prompt_tokens} input tokens. Please reduce the length of the input messages.",
        )
    room = max_model_len - prompt_tokens
    if requested is not None and requested > room:
        raise SimError(
            400,
            f"'max_tokens' or 'max_completion_tokens' is too large: {requested}. This model's maximum context "
            f"length is {max_model_len} tokens and your request has {prompt_tokens} input tokens "
            f"({requested} > {max_model_len} - {prompt_tokens}).",
            param="max_tokens",
        )
    max_tokens = requested if requested is not None else min(default_max_tokens or room, room)
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise SimError(400, "stop must be a string or a list of strings", param="stop")
    stream = _optional_bool(body, "stream", False)
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise SimError(400, "Stream options can only be defined when `stream=True`.", param="stream_options")
        if not isinstance(options, Mapping):
            raise SimError(400, "stream_options must be an object", param="stream_options")
    options = options or {}
    return _Sampling(
        max_tokens=max_tokens,
        stop=stops,
        skip_special_tokens=_optional_bool(body, "skip_special_tokens", True),
        include_stop_str_in_output=_optional_bool(body, "include_stop_str_in_output", False),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        continuous_usage=bool(options.get("include_usage")) and bool(options.get("continuous_usage_stats")),
        stop_token_ids=_token_ids(body, "stop_token_ids"),
        ignore_eos=_optional_bool(body, "ignore_eos", False),
        spaces_between_special_tokens=_optional_bool(body, "spaces_between_special_tokens", True),
        return_token_ids=_optional_bool(body, "return_token_ids", False),
    )


def _logprobs(body: Mapping[str, Any], tokens: Sequence[str], first: int = 0) -> dict[str, Any] | None:
    """vLLM's completions ``logprobs`` of generated tokens, made up but shaped as vLLM's: each
    token's, and its ``logprobs`` most likely (the token itself first)."""
    top = body.get("logprobs")
    if top is None or isinstance(top, bool) or not isinstance(top, int):
        return None
    chosen = [-0.01 * (1 + (first + i) % 7) for i in range(len(tokens))]
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    return {
        "text_offset": offsets,
        "token_logprobs": chosen,
        "tokens": list(tokens),
        "top_logprobs": [
            {token: lp, **{f"{token}~{j}": lp - 1.0 - j for j in range(max(top - 1, 0))}}
            for token, lp in zip(tokens, chosen, strict=True)
        ],
    }


def _choices_asked(body: Mapping[str, Any]) -> int:
    """``n``: the choices of each prompt (the simulated model, deterministic, writes the same)."""
    n = body.get("n", 1)
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 128:
        raise SimError(400, "n must be an integer from 1 to 128", param="n")
    return n


def _completions_default(body: Mapping[str, Any]) -> int | None:
    """/v1/completions stops at 16 tokens when max_tokens is left out; an explicit null is what
    remains of the context, as vLLM reads it."""
    return None if "max_tokens" in body and body["max_tokens"] is None else COMPLETIONS_DEFAULT_MAX_TOKENS


def _token_ids(body: Mapping[str, Any], key: str) -> tuple[int, ...]:
    value = body.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise SimError(400, f"{key} must be a list of integers", param=key)
    return tuple(value)


@dataclass(frozen=True, slots=True)
class _Job:
    """One prompt of a completions request and what it gets."""

    prompt_tokens: int
    decoded: engine.Decoded
    sampling: _Sampling
    prompt_ids: Sequence[int] | None = None  # when the simulator works on ids


def _prompt_ids(prompt: Any, vllm: tokenization.VllmTokenizer, add_special_tokens: bool) -> list[list[int]]:
    """The ids of each prompt, as vLLM takes ``prompt``: text is tokenized, ids are used as given."""
    if isinstance(prompt, str):
        batch: list[Any] = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
        batch = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str | list) for p in prompt):
        batch = prompt
    else:
        raise SimError(400, "prompt must be a string, a list of strings, or token ids", param="prompt")
    prompts: list[list[int]] = []
    for item in batch:
        if isinstance(item, str):
            ids = vllm.encode(item, add_special_tokens=add_special_tokens)
        elif all(isinstance(p, int) and not isinstance(p, bool) for p in item):
            ids = list(item)
        else:
            raise SimError(400, "prompt must be a string, a list of strings, or token ids", param="prompt")
        if not ids:
            raise SimError(400, "The decoder prompt cannot be empty", param="prompt")
        wrong = next((token for token in ids if not 0 <= token <= vllm.max_token_id), None)
        if wrong is not None:
            raise SimError(400, f"Token id {wrong} is out of vocabulary", param="prompt")
        prompts.append(ids)
    return prompts


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": None,
    }


def _sse(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


_DONE = b"data: [DONE]\n\n"

ToolMode = Literal["none", "auto", "required", "named"]


@dataclass(frozen=True, slots=True)
class _ToolChoice:
    mode: ToolMode
    name: str | None = None


def _tool_choice(body: Mapping[str, Any], config: SimConfig) -> _ToolChoice:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, Mapping) for t in tools)):
        raise SimError(400, "tools must be a list of tool objects", param="tools")
    if not tools:
        if choice not in (None, "none"):
            raise SimError(400, "When using `tool_choice`, `tools` must be set.", param="tool_choice")
        return _ToolChoice("none")
    if choice is None:
        choice = "auto"  # what OpenAI and vLLM default to when tools are given
    if choice == "none":
        return _ToolChoice("none")
    if choice == "auto":
        if not (config.enable_auto_tool_choice and config.tool_call_parser):
            raise SimError(
                400, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
            )
        return _ToolChoice("auto")
    if choice == "required":
        return _ToolChoice("required")
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name")
        names = [(t.get("function") or {}).get("name") for t in tools]
        if name not in names:
            raise SimError(400, f"Tool '{name}' has not been passed in `tools`.", param="tool_choice")
        return _ToolChoice("named", str(name))
    raise SimError(
        400,
        "Invalid value for `tool_choice`: must be 'none', 'auto', 'required' or a named tool "
        '({"type": "function", "function": {"name": ...}}).',
        param="tool_choice",
    )


@dataclass(frozen=True, slots=True)
class _Run:
    """A chat prompt's answer: its calls, and ``decode(guided_text, skip_special_tokens)``, the
    output as the request sees it (guided decoding's text instead of the answer when given);
    ``scripts`` are its text and the well-behaved one, ``written(text, skip)`` the output when
    a grammar made the model write ``text`` (control tokens as tokens)."""

    calls: tuple[tuple[str, dict[str, Any]], ...]
    decode: Callable[[str | None, bool | None], engine.Decoded]
    scripts: tuple[str, ...]
    written: Callable[[str, bool | None], engine.Decoded]


class _ChatOutput:
    """Turns decoded text into chat message deltas for the request's tool mode."""

    def __init__(self, choice: _ToolChoice, parser: CallParser | None) -> None:
        self.choice = choice
        self.parser = parser
        self.called = False
        self._required_text: list[str] = []

    def step(self, text: str, final: bool) -> dict[str, Any]:
        if self.choice.mode == "named":
            # Guided decoding writes just the arguments; the first delta also names the call.
            if not text:
                return {}
            call: dict[str, Any] = {"index": 0, "function": {"arguments": text}}
            if not self.called:
                call.update(id=_tool_id(), type="function", function={"name": self.choice.name, "arguments": text})
            self.called = True
            return {"tool_calls": [call]}
        if self.choice.mode == "required":
            # Guided decoding writes a JSON list; the calls are known once it is complete.
            self._required_text.append(text)
            if not final:
                return {}
            calls, content = _required_calls("".join(self._required_text))
            self.called = bool(calls)
            if calls:
                return {"tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]}
            return {"content": content} if content else {}
        if self.parser is None:
            return {"content": text} if text else {}
        events = self.parser.feed(text) if text else []
        if final:
            events += self.parser.finish()
        return self._delta(events)

    def finish_reason(self, decoded: engine.Decoded) -> str:
        return "tool_calls" if self.choice.mode == "auto" and self.called else decoded.finish_reason

    def _delta(self, events: Iterable[Event]) -> dict[str, Any]:
        content: list[str] = []
        calls: list[dict[str, Any]] = []
        for event in events:
            if isinstance(event, TextDelta):
                content.append(event.text)
            elif isinstance(event, CallStarted):
                self.called = True
                calls.append(
                    {
                        "index": event.index,
                        "id": event.call_id or _tool_id(),
                        "type": "function",
                        "function": {"name": event.name, "arguments": ""},
                    }
                )
            elif isinstance(event, ArgumentsDelta):
                if calls and calls[-1]["index"] == event.index:
                    calls[-1]["function"]["arguments"] += event.text
                else:
                    calls.append({"index": event.index, "function": {"arguments": event.text}})
            elif isinstance(event, CallEnded) and event.error:
                content.append(event.raw)  # what could not be parsed stays visible as text
        delta: dict[str, Any] = {}
        if content:
            delta["content"] = "".join(content)
        if calls:
            delta["tool_calls"] = calls
        return delta


def _check_parts(messages: Sequence[Mapping[str, Any]]) -> None:
    """Content parts as vLLM's request model takes them (its pydantic validation answers 400)."""
    for index, message in enumerate(messages):
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise SimError(400, f"messages[{index}].content must be a string or a list of parts", param="messages")
        for number, part in enumerate(content):
            if not isinstance(part, Mapping) or (part.get("type") == "text" and not isinstance(part.get("text"), str)):
                where = f"messages[{index}].content[{number}]"
                raise SimError(400, f"{where} is not a valid content part", param="messages")


def _tool_names(body: Mapping[str, Any]) -> list[str]:
    return [str((t.get("function") or {}).get("name")) for t in body.get("tools") or ()]


def _tool_id() -> str:
    return f"chatcmpl-tool-{uuid.uuid4().hex}"


def _required_calls(text: str) -> tuple[list[dict[str, Any]], str]:
    try:
        items = orjson.loads(text)
    except orjson.JSONDecodeError:
        return [], text
    if not isinstance(items, list) or not all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in items):
        return [], text
    calls = [
        {
            "id": _tool_id(),
            "type": "function",
            "function": {"name": item["name"], "arguments": orjson.dumps(item.get("parameters") or {}).decode()},
        }
        for item in items
    ]
    return calls, ""


def _merge_message(message: dict[str, Any], delta: Mapping[str, Any]) -> None:
    if "content" in delta:
        message["content"] = (message["content"] or "") + delta["content"]
    for call in delta.get("tool_calls", ()):
        calls = message["tool_calls"]
        if call["index"] < len(calls):
            calls[call["index"]]["function"]["arguments"] += call["function"].get("arguments", "")
        else:
            calls.append({key: value for key, value in call.items() if key != "index"})


# -- the ASGI application -------------------------------------------------------------------------


_ROUTES = {
    "/health": "GET",
    "/version": "GET",
    "/tokenize": "POST",
    "/metrics": "GET",
    "/v1/models": "GET",
    "/v1/completions": "POST",
    "/v1/chat/completions": "POST",
}


class SimApp:
    """The ASGI application. One instance serves one simulated model."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.special = engine.special_tokens(config.dialect)
        spec = get_dialect(config.dialect)
        # what a grammar runs over: bytes and the family's control tokens (each a token of its own;
        # gpt-oss's hidden "<|channel|>final<|message|>" is three)
        self.vocabulary = constrained.Vocabulary(
            sorted(token for token in {*self.special, *spec.stop} if constrained.is_single_token(token)),
            stops=[stop for stop in spec.stop if constrained.is_single_token(stop)],
        )
        self.metrics = _Metrics()
        self.batch = Scheduler(
            max_num_seqs=config.max_num_seqs,
            kv_blocks=config.kv_cache_blocks or 1,  # set by SimConfig
            block_size=config.block_size,
            max_loras=config.max_loras,
        )
        self.adapters = {module.name: module for module in config.lora_modules}
        self.created = int(time.time())
        parser_dialect = config.tool_call_parser if config.tool_call_parser in DIALECTS else config.dialect
        self.parser_dialect = get_dialect(parser_dialect)
        # A token-layout family with its tokenizer: prompts become ids and the model reads ids.
        self.token_model: TokenModel | None = None
        if config.tokenizer is not None and spec.token_layout is not None:
            vllm = tokenization.VllmTokenizer.load(config.tokenizer, spec.token_layout, spec.tokenizer_prefix)
            self.token_model = TokenModel(vllm, config.dialect)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        try:
            await self._route(scope, receive, send)
        except SimError as error:
            await _send_json(send, error.status, error.body())
        except Exception:
            log.exception("request failed")
            failure = SimError(500, "internal error in the simulator", type="InternalServerError")
            await _send_json(send, 500, failure.body())

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path not in _ROUTES:
            await _send_json(send, 404, {"detail": "Not Found"})
            return
        if method != _ROUTES[path]:
            await _send_json(send, 405, {"detail": "Method Not Allowed"})
            return
        if path.startswith("/v1") and self.config.api_key and not self._authorized(scope):
            await _send_json(send, 401, {"error": "Unauthorized"})
            return
        if path == "/health":
            await _send(send, 200, b"", b"application/json")
        elif path == "/metrics":
            max_loras = self.config.max_loras if self.config.enable_lora else None
            metrics = self.metrics.render(self.config.served_model_names[0], self.batch, max_loras)
            await _send(send, 200, metrics, b"text/plain; version=0.0.4")
        elif path == "/v1/models":
            await _send_json(send, 200, self._models())
        elif path == "/version":
            await _send_json(send, 200, {"version": self.config.vllm_version})
        elif path == "/tokenize":
            await _send_json(send, 200, self._tokenize(await _read_json(receive)))
        else:
            body = await _read_json(receive)
            model = self._model_name(body)
            if path == "/v1/completions":
                await self._completions(body, model, receive, send)
            else:
                await self._chat(body, model, receive, send)

    def _tokenize(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """vLLM's ``POST /tokenize`` of a text prompt: the ids of the model's tokenizer, or for a
        family simulated on text, of the vocabulary its constraints run over (bytes and the
        family's control tokens)."""
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise SimError(400, "prompt must be a string", param="prompt")
        add_special_tokens = _optional_bool(body, "add_special_tokens", True)
        if self.token_model is not None:
            tokens = self.token_model.vllm.encode(prompt, add_special_tokens=add_special_tokens)
        else:
            tokens = self.vocabulary.ids(prompt)
        return {"count": len(tokens), "max_model_len": self.config.max_model_len, "tokens": tokens, "token_strs": None}

    def _authorized(self, scope: Scope) -> bool:
        expected = f"Bearer {self.config.api_key}".encode()
        return any(name == b"authorization" and value == expected for name, value in scope["headers"])

    def _models(self) -> dict[str, Any]:
        """The served names, then each adapter as vLLM lists it: its path as ``root``, its base
        model as ``parent`` (``base_model_name`` if that is a served name, else the first)."""
        base = self.config.served_model_names
        cards = [self._card(name, self.config.model, None, self.config.max_model_len) for name in base]
        for adapter in self.adapters.values():
            parent = adapter.base_model_name if adapter.base_model_name in base else base[0]
            cards.append(self._card(adapter.name, adapter.path, parent, None))
        return {"object": "list", "data": cards}

    def _card(self, name: str, root: str, parent: str | None, max_model_len: int | None) -> dict[str, Any]:
        permission = {
            "id": f"modelperm-{uuid.uuid4().hex}",
            "object": "model_permission",
            "created": self.created,
            "allow_create_engine": False,
            "allow_sampling": True,
            "allow_logprobs": True,
            "allow_search_indices": False,
            "allow_view": True,
            "allow_fine_tuning": False,
            "organization": "*",
            "group": None,
            "is_blocking": False,
        }
        return {
            "id": name,
            "object": "model",
            "created": self.created,
            "owned_by": "vllm",
            "root": root,
            "parent": parent,
            "max_model_len": max_model_len,
            "permission": [permission],
        }

    def _model_name(self, body: Mapping[str, Any]) -> str:
        """The name the request is served under: a served name or an adapter's (a base name first,
        as vLLM looks them up); the answer carries it."""
        model = body.get("model")
        if model is None or model == "":
            return self.config.served_model_names[0]
        if model not in self.config.served_model_names and model not in self.adapters:
            raise SimError(404, f"The model `{model}` does not exist.", type="NotFoundError", param="model")
        return str(model)

    def _sequence(self, prompt_tokens: int, model: str) -> BatchSequence:
        adapter = model if model in self.adapters and model not in self.config.served_model_names else None
        return BatchSequence(prompt_tokens, adapter)

    @contextlib.asynccontextmanager
    async def _batched(self, sequence: BatchSequence, disconnected: asyncio.Event | None) -> AsyncIterator[bool]:
        """``sequence`` in the engine's batch for the ``with`` body: True once it runs, False if its
        client went away while it waited (an abort)."""
        try:
            running = await self.batch.admit(sequence, disconnected)
            if not running:
                self.metrics.finished["abort"] += 1
            yield running
        finally:
            self.batch.leave(sequence)

    async def _pace(
        self, sequence: BatchSequence, count: int, disconnected: asyncio.Event | None
    ) -> AsyncIterator[int]:
        """Yields token positions at the simulated pace, each token taking its room in the KV
        cache; stops if the client went away."""
        for index in range(count):
            delay = self.config.ttft if index == 0 else self.config.itl
            if delay > 0:
                await _pause(delay, disconnected)
            written = await self.batch.grow(sequence, disconnected)
            if not written or (disconnected is not None and disconnected.is_set()):
                self.metrics.finished["abort"] += 1
                return
            yield index

    async def _generate_whole(self, receive: Receive, work: Sequence[tuple[BatchSequence, int]]) -> bool:
        """Runs whole answers' sequences (each with its token count) through the batch at the
        simulated pace. A client that goes away first aborts them, as vLLM aborts a request whose
        client left: False then."""

        async def run(sequence: BatchSequence, count: int) -> None:
            async with self._batched(sequence, None):
                async for _ in self._pace(sequence, count, None):
                    pass

        finished = await _unless_disconnected(receive, asyncio.gather(*(run(*item) for item in work)))
        if not finished:
            self.metrics.finished["abort"] += len(work)
        return finished

    def _record(self, prompt_tokens: int, decoded: engine.Decoded) -> None:
        self.metrics.prompt_tokens += prompt_tokens
        self.metrics.generation_tokens += decoded.completion_tokens
        self.metrics.finished[decoded.finish_reason] += 1

    def _decode(
        self, tokens: Sequence[str], sampling: _Sampling, *, skip_special_tokens: bool | None = None
    ) -> engine.Decoded:
        return engine.decode(
            tokens,
            special=self.special,
            skip_special_tokens=sampling.skip_special_tokens if skip_special_tokens is None else skip_special_tokens,
            stop=sampling.stop,
            max_tokens=sampling.max_tokens,
            include_stop_str_in_output=sampling.include_stop_str_in_output,
        )

    # -- /v1/completions ------------------------------------------------------------------------

    async def _completions(self, body: Mapping[str, Any], model: str, receive: Receive, send: Send) -> None:
        jobs = self._token_jobs(body, model) if self.token_model is not None else self._text_jobs(body, model)
        sampling = jobs[-1].sampling
        head = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
        }
        if sampling.stream:
            await _stream(receive, send, lambda gone: self._completion_chunks(body, head, sampling, jobs, gone))
            return
        work = [(self._sequence(job.prompt_tokens, model), max(len(job.decoded.deltas), 1)) for job in jobs]
        if not await self._generate_whole(receive, work):
            return
        choices = []
        for index, job in enumerate(jobs):
            decoded = job.decoded
            choice: dict[str, Any] = {
                "index": index,
                "text": decoded.text,
                "logprobs": _logprobs(body, decoded.deltas),
                "finish_reason": decoded.finish_reason,
                "stop_reason": decoded.stop_reason,
            }
            if sampling.return_token_ids and job.prompt_ids is not None:
                choice["token_ids"] = list(decoded.token_ids)
            choice["prompt_logprobs"] = None
            if sampling.return_token_ids and job.prompt_ids is not None:
                choice["prompt_token_ids"] = list(job.prompt_ids)
            choices.append(choice)
        for job in jobs:
            self._record(job.prompt_tokens, job.decoded)
        usage = _usage(sum(job.prompt_tokens for job in jobs), sum(job.decoded.completion_tokens for job in jobs))
        await _send_json(send, 200, {**head, "choices": choices, "usage": usage})

    def _text_jobs(self, body: Mapping[str, Any], model: str) -> list[_Job]:
        """Prompts as text, read by the engine as they are (dialects without a token layout)."""
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = list(prompt)
        elif isinstance(prompt, list) and prompt and all(isinstance(p, int | list) for p in prompt):
            message = "token-id prompts are not supported by the simulator: send the prompt text"
            raise SimError(400, message, param="prompt")
        else:
            raise SimError(400, "prompt must be a string or a list of strings", param="prompt")
        constraint = self._constraint(body)
        jobs: list[_Job] = []
        for text in [prompt for prompt in prompts for _ in range(_choices_asked(body))]:
            prompt_tokens = engine.count_tokens(text)
            sampling = _sampling(body, prompt_tokens, self.config.max_model_len, _completions_default(body))
            generation = engine.generate(
                text, dialect=self.config.dialect, model=model, misbehave=self.config.misbehave
            )
            tokens = generation.tokens
            if constraint is not None:
                forced = engine.generate(text, dialect=self.config.dialect, model=model, force="required")
                written = self._constrained(constraint, generation.text, generation.intended, forced.text)
                tokens = tuple(engine.tokenize(written, self.special))
            jobs.append(_Job(prompt_tokens, self._decode(tokens, sampling), sampling))
            if self.config.log_requests:
                log.info("completion request: %d prompt tokens, max_tokens=%s", prompt_tokens, sampling.max_tokens)
        return jobs

    def _token_jobs(self, body: Mapping[str, Any], model: str) -> list[_Job]:
        """Prompts as ids, as vLLM makes them of text or takes them as given; the model reads ids."""
        assert self.token_model is not None
        vllm = self.token_model.vllm
        add_special_tokens = _optional_bool(body, "add_special_tokens", True)
        constraint = self._constraint(body)
        n = _choices_asked(body)
        jobs: list[_Job] = []
        for ids in [ids for ids in _prompt_ids(body.get("prompt"), vllm, add_special_tokens) for _ in range(n)]:
            sampling = _sampling(body, len(ids), self.config.max_model_len, _completions_default(body))
            answer = self.token_model.answer(ids, model=model, misbehave=self.config.misbehave)
            self._log_confusion(answer.problems)
            output = answer.ids
            if constraint is not None:
                forced = self.token_model.answer(ids, model=model, force="required")
                output = self.token_model.write(self._constrained(constraint, *answer.scripts, *forced.scripts), ids)
            jobs.append(_Job(len(ids), vllm.output(ids, output, sampling.rules()), sampling, ids))
            if self.config.log_requests:
                log.info("completion request: %d prompt tokens, max_tokens=%s", len(ids), sampling.max_tokens)
        return jobs

    def _constraint(self, body: Mapping[str, Any]) -> constrained.Constraint | None:
        """The request's constraint as the simulated vLLM version reads it, refused as vLLM
        refuses it; None without one."""
        config = self.config
        try:
            constraint, ignored = constrained.request_constraint(
                body, version=config.vllm_version, backend=config.structured_outputs_backend
            )
            if constraint is not None:
                constrained.check(constraint, self.vocabulary)
        except constrained.ConstraintError as error:
            raise SimError(400, str(error), param=error.param) from None
        if ignored:
            log.warning("The following fields were present in the request but ignored: %s", set(ignored))
        return constraint

    def _constrained(self, constraint: constrained.Constraint, *scripts: str) -> str:
        return constrained.constrained_text(constraint, scripts, self.vocabulary)

    def _log_confusion(self, problems: Sequence[str]) -> None:
        if problems:
            log.warning(
                "%s got prompt ids it was not trained on (%s): it answers confused, with no call",
                self.config.dialect,
                "; ".join(problems),
            )

    async def _completion_chunks(
        self,
        body: Mapping[str, Any],
        head: Mapping[str, Any],
        sampling: _Sampling,
        jobs: Sequence[_Job],
        disconnected: asyncio.Event,
    ) -> AsyncGenerator[bytes, None]:
        # The choices are written one after another, each a sequence of the batch in its turn.
        for index, job in enumerate(jobs):
            decoded = job.decoded
            with_ids = sampling.return_token_ids and job.prompt_ids is not None
            last = len(decoded.deltas) - 1
            sequence = self._sequence(job.prompt_tokens, head["model"])
            async with self._batched(sequence, disconnected) as running:
                if not running:
                    return
                async for position in self._pace(sequence, max(len(decoded.deltas), 1), disconnected):
                    delta = decoded.deltas[position] if decoded.deltas else ""
                    final = position >= last
                    if not delta and not final and not decoded.token_ids:  # vLLM sends every id's chunk
                        continue
                    choice: dict[str, Any] = {
                        "index": index,
                        "text": delta,
                        "logprobs": _logprobs(body, (delta,), position),
                        "finish_reason": decoded.finish_reason if final else None,
                        "stop_reason": decoded.stop_reason if final else None,
                    }
                    if with_ids:
                        if position == 0:
                            choice["prompt_token_ids"] = list(job.prompt_ids or ())
                        choice["token_ids"] = list(decoded.token_ids[position : position + 1])
                    chunk: dict[str, Any] = {**head, "choices": [choice]}
                    if sampling.continuous_usage:
                        chunk["usage"] = _usage(job.prompt_tokens, position + 1)
                    yield _sse(chunk)
            if disconnected.is_set():
                return
            self._record(job.prompt_tokens, decoded)
        if sampling.include_usage:
            usage = _usage(sum(job.prompt_tokens for job in jobs), sum(job.decoded.completion_tokens for job in jobs))
            yield _sse({**head, "choices": [], "usage": usage})
        yield _DONE

    # -- /v1/chat/completions -------------------------------------------------------------------

    def _render(self, body: Mapping[str, Any], messages: list[Any]) -> str:
        kwargs = body.get("chat_template_kwargs") or {}
        if not isinstance(kwargs, Mapping):
            raise SimError(400, "chat_template_kwargs must be an object", param="chat_template_kwargs")
        template = body.get("chat_template") or self.config.chat_template
        context: dict[str, Any] = {
            "bos_token": "",
            "eos_token": "",
            **kwargs,
            "messages": normalize_messages(messages),
            "tools": body.get("tools") or None,
            "add_generation_prompt": _optional_bool(body, "add_generation_prompt", True),
        }
        try:
            return render(str(template), **context)
        except TemplateRenderError as error:
            raise SimError(400, str(error), param="messages") from None

    async def _chat(self, body: Mapping[str, Any], model: str, receive: Receive, send: Send) -> None:
        if self.config.reject_tools and any(key in body for key in _TOOL_FIELDS):
            raise _legacy_tools_error(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, Mapping) for m in messages):
            raise SimError(400, "messages must be a non-empty list of message objects", param="messages")
        _check_parts(messages)
        if body.get("n") not in (None, 1):
            raise SimError(400, "n must be 1: the simulator's chat endpoint answers one choice", param="n")
        choice = _tool_choice(body, self.config)
        prompt = self._render(body, messages)
        prompt_ids: list[int] | None = None
        if self.token_model is not None:
            # vLLM tokenizes the rendered template without the tokenizer's prefix
            add_special_tokens = _optional_bool(body, "add_special_tokens", False)
            prompt_ids = self.token_model.vllm.encode(prompt, add_special_tokens=add_special_tokens)
        prompt_tokens = engine.count_tokens(prompt) if prompt_ids is None else len(prompt_ids)
        sampling = _sampling(body, prompt_tokens, self.config.max_model_len, None)
        if self.config.log_requests:
            log.info("chat request: %d prompt tokens, max_tokens=%s", prompt_tokens, sampling.max_tokens)
        decoded, output = self._chat_output(body, prompt, prompt_ids, model, choice, sampling)
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
        }
        sequence = self._sequence(prompt_tokens, model)
        if sampling.stream:
            head["object"] = "chat.completion.chunk"
            chunks = functools.partial(self._chat_chunks, head, sequence, sampling, decoded, output)
            await _stream(receive, send, chunks)
            return
        if not await self._generate_whole(receive, [(sequence, max(len(decoded.deltas), 1))]):
            return
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "annotations": None,
            "audio": None,
            "function_call": None,
            "tool_calls": [],
            "reasoning_content": None,
        }
        _merge_message(message, output.step(decoded.text, final=True))
        if choice.mode in ("named", "required") and output.called:
            message["content"] = ""  # as vLLM answers a guided call
        result = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": output.finish_reason(decoded),
            "stop_reason": decoded.stop_reason,
        }
        self._record(prompt_tokens, decoded)
        usage = _usage(prompt_tokens, decoded.completion_tokens)
        await _send_json(send, 200, {**head, "choices": [result], "usage": usage, "prompt_logprobs": None})

    def _chat_output(
        self,
        body: Mapping[str, Any],
        prompt: str,
        prompt_ids: list[int] | None,
        model: str,
        choice: _ToolChoice,
        sampling: _Sampling,
    ) -> tuple[engine.Decoded, _ChatOutput]:
        force: engine.Force = "required" if choice.mode == "required" else choice.name
        run = self._generate(prompt, prompt_ids, model, force, sampling)
        constraint = self._constraint(body)
        if constraint is not None and choice.mode in ("none", "auto"):
            forced = self._generate(prompt, prompt_ids, model, "required", sampling)
            text = self._constrained(constraint, *run.scripts, *forced.scripts)
            parser = self.parser_dialect.parser(_tool_names(body)) if choice.mode == "auto" else None
            return run.written(text, False if parser else None), _ChatOutput(choice, parser)
        if choice.mode in ("named", "required"):
            # Guided decoding: the model writes the arguments (named) or a JSON list of calls.
            calls = run.calls
            if choice.mode == "named":
                guided: Any = calls[0][1] if calls else {}
            else:
                guided = [{"name": name, "parameters": arguments} for name, arguments in calls]
            return run.decode(orjson.dumps(guided).decode(), None), _ChatOutput(choice, None)
        if choice.mode == "auto":
            parser = self.parser_dialect.parser(_tool_names(body))
            # vLLM's tool parsers turn skip_special_tokens off: call markers are special tokens.
            return run.decode(None, False), _ChatOutput(choice, parser)
        return run.decode(None, None), _ChatOutput(choice, None)

    def _generate(
        self, prompt: str, prompt_ids: list[int] | None, model: str, force: engine.Force, sampling: _Sampling
    ) -> _Run:
        """The model's answer to a chat prompt, read as text or, with a tokenizer, as ids."""
        dialect = self.config.dialect
        misbehave = self.config.misbehave
        if prompt_ids is None or self.token_model is None:
            generation = engine.generate(prompt, dialect=dialect, model=model, force=force, misbehave=misbehave)

            def decode_text(guided: str | None, skip: bool | None) -> engine.Decoded:
                tokens = generation.tokens if guided is None else engine.tokenize(guided)
                return self._decode(tokens, sampling, skip_special_tokens=skip)

            def written_text(text: str, skip: bool | None) -> engine.Decoded:
                return self._decode(engine.tokenize(text, self.special), sampling, skip_special_tokens=skip)

            return _Run(generation.calls, decode_text, (generation.text, generation.intended), written_text)
        token_model, ids = self.token_model, prompt_ids
        answer = token_model.answer(ids, model=model, force=force, misbehave=misbehave)
        self._log_confusion(answer.problems)

        def decode_ids(guided: str | None, skip: bool | None) -> engine.Decoded:
            output = answer.ids if guided is None else token_model.plain(guided)
            return token_model.vllm.output(ids, output, sampling.rules(skip_special_tokens=skip))

        def written_ids(text: str, skip: bool | None) -> engine.Decoded:
            output = token_model.write(text, ids)
            return token_model.vllm.output(ids, output, sampling.rules(skip_special_tokens=skip))

        return _Run(answer.calls, decode_ids, answer.scripts, written_ids)

    async def _chat_chunks(
        self,
        head: Mapping[str, Any],
        sequence: BatchSequence,
        sampling: _Sampling,
        decoded: engine.Decoded,
        output: _ChatOutput,
        disconnected: asyncio.Event,
    ) -> AsyncGenerator[bytes, None]:
        prompt_tokens = sequence.prompt_tokens

        def frame(delta: Mapping[str, Any], used: int, finish: str | None = None) -> bytes:
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            if finish is not None:
                choice["stop_reason"] = decoded.stop_reason
            chunk: dict[str, Any] = {**head, "choices": [choice]}
            if sampling.continuous_usage:
                chunk["usage"] = _usage(prompt_tokens, used)
            return _sse(chunk)

        async with self._batched(sequence, disconnected) as running:
            if not running:
                return
            # vLLM's first frame comes with the engine's first output: once the sequence runs
            yield frame({"role": "assistant", "content": ""}, 0)
            last = len(decoded.deltas) - 1
            async for position in self._pace(sequence, max(len(decoded.deltas), 1), disconnected):
                final = position >= last
                delta = output.step(decoded.deltas[position] if decoded.deltas else "", final)
                if final:
                    yield frame(delta, position + 1, output.finish_reason(decoded))
                    self._record(prompt_tokens, decoded)
                elif delta:
                    yield frame(delta, position + 1)
        if sampling.include_usage:
            yield _sse({**head, "choices": [], "usage": _usage(prompt_tokens, decoded.completion_tokens)})
        yield _DONE


# -- ASGI plumbing --------------------------------------------------------------------------------


async def _read_json(receive: Receive) -> dict[str, Any]:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise SimError(400, "the client disconnected before sending the request body")
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    try:
        body = orjson.loads(b"".join(parts))
    except orjson.JSONDecodeError as error:
        raise SimError(400, f"the request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise SimError(400, "the request body must be a JSON object")
    return body


async def _send(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, payload: Any) -> None:
    await _send(send, status, orjson.dumps(payload), b"application/json")


async def _pause(seconds: float, disconnected: asyncio.Event | None) -> None:
    """The simulated time a token takes, cut short when the client goes away: vLLM aborts the
    request then, and its place in the batch is free at once."""
    if disconnected is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(disconnected.wait(), seconds)


async def _unless_disconnected(receive: Receive, work: Awaitable[Any]) -> bool:
    """Awaits ``work``; a client that goes away first cancels it. True if it finished."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if not task.done():  # the client went away first: its cancelled work unwinds (leaves the batch)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()  # its failure, if it failed
    return True


async def _stream(receive: Receive, send: Send, chunks: Callable[[asyncio.Event], AsyncGenerator[bytes, None]]) -> None:
    """Sends server-sent events; generation stops when the client disconnects."""
    disconnected = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()

    watcher = asyncio.create_task(watch())
    try:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async with contextlib.aclosing(chunks(disconnected)) as frames:
            async for chunk in frames:
                # Once the client is gone nothing is sent; the generator winds down by itself
                # (its pacing notices and records the abort).
                if not disconnected.is_set():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not disconnected.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        pass  # the connection broke mid-stream: nobody is left to answer
    finally:
        watcher.cancel()


# -- running --------------------------------------------------------------------------------------


def _uvicorn_config(app: SimApp, args: argparse.Namespace | None, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {"lifespan": "on", "log_level": "info", "access_log": True}
    if args is not None:
        options.update(
            host=args.host or "0.0.0.0",
            port=args.port,
            log_level=args.uvicorn_log_level,
            access_log=not args.disable_uvicorn_access_log,
        )
    options.update(overrides)
    return uvicorn.Config(app, **options)


async def serve(config: SimConfig, *, sock: socket.socket, log_level: str = "warning") -> None:
    """Serves on an already bound socket until cancelled: for running the simulator in-process.

    A listening socket queues connections made before the server is up, so callers need not
    wait for startup.
    """
    server = uvicorn.Server(_uvicorn_config(SimApp(config), None, log_level=log_level, access_log=False))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True  # shut down cleanly: close connections and the socket
        await task
        raise


def run(args: argparse.Namespace) -> None:
    """Serves with the parsed command line until interrupted."""
    config = SimConfig.from_args(args)
    log.info(
        "simulating %s (served as %s, dialect %s, max_model_len %d, max_num_seqs %d) on %s:%d",
        config.model,
        ", ".join(config.served_model_names),
        config.dialect,
        config.max_model_len,
        config.max_num_seqs,
        args.host or "0.0.0.0",
        args.port,
    )
    for module in config.lora_modules:
        log.info("LoRA adapter %s served from %s (its weights are not loaded)", module.name, module.path)
    uvicorn.Server(_uvicorn_config(SimApp(config), args)).run()


def main(argv: Sequence[str] | None = None, prog: str = "toolmodel sim") -> int:
    """``toolmodel sim [vllm serve arguments]``."""
    parser = build_parser(prog)
    args = parse_args(argv, parser)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(asctime)s [sim] %(message)s")
    try:
        run(args)
    except ConfigError as error:
        parser.error(str(error))
    return 0
