"""The ``toolmodel`` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from .dialects import DIALECTS, UnknownDialectError, get_dialect

__all__ = ["main"]


def _proxy_arguments(parser: argparse.ArgumentParser) -> None:
    from .server.settings import ENVIRONMENT, GUIDED_DECODING

    def env(name: str) -> str:
        return f"(env {ENVIRONMENT[name]})"

    parser.add_argument("--upstream", help=f"the engine's base URL, e.g. http://127.0.0.1:8001 {env('upstream')}")
    parser.add_argument("--dialect", help=f"the model family's tool-call dialect {env('dialect')}")
    parser.add_argument("--host", help=f"address to listen on, default 0.0.0.0 {env('host')}")
    parser.add_argument("--port", type=int, help=f"port to listen on, default 8000 {env('port')}")
    parser.add_argument("--api-key", help=f"require this bearer key from clients {env('api_key')}")
    parser.add_argument("--upstream-api-key", help=f"bearer key to send to the engine {env('upstream_api_key')}")
    parser.add_argument(
        "--max-body-bytes", type=int, help=f"largest request body, default 8 MiB {env('max_body_bytes')}"
    )
    parser.add_argument(
        "--max-header-bytes", type=int, help=f"request line and headers, default 32 KiB {env('max_header_bytes')}"
    )
    parser.add_argument(
        "--header-timeout", type=float, help=f"seconds a request's headers may take, default 10 {env('header_timeout')}"
    )
    parser.add_argument(
        "--body-timeout", type=float, help=f"seconds a request's body may take, default 60 {env('body_timeout')}"
    )
    parser.add_argument(
        "--max-connections", type=int, help=f"client connections open at once, default 4096 {env('max_connections')}"
    )
    parser.add_argument(
        "--upstream-timeout",
        type=float,
        help=f"seconds to wait for engine output, default 600 {env('upstream_timeout')}",
    )
    parser.add_argument(
        "--mode",
        choices=("proxy", "native"),
        help=f"proxy: parse tool calls here; native: vLLM parses, relay only {env('mode')}",
    )
    parser.add_argument(
        "--guided-decoding",
        choices=GUIDED_DECODING,
        help="how the engine takes the grammar that holds required, named and strict tool calls to the tools: "
        "structured_outputs (vLLM >= 0.11), guided (guided_grammar, vLLM 0.4 to 0.11) or off; "
        f"default auto, from the engine's GET /version {env('guided_decoding')}",
    )
    parser.add_argument(
        "--tokenizer",
        help="token-id dialects (chatglm3): the model's tokenizer, a directory or a Hugging Face model id "
        f"looked up in $HF_HOME's hub cache and else downloaded {env('tokenizer')}",
    )
    parser.add_argument("--tokenizer-revision", help=f"the model revision, default main {env('tokenizer_revision')}")
    parser.add_argument(
        "--tokenizer-wait",
        type=float,
        help=f"seconds to wait for the tokenizer files before failing, default 1800 {env('tokenizer_wait')}",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help=f"default info {env('log_level')}"
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolmodel", description="OpenAI tool calling for LLMs served by vLLM.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    proxy = commands.add_parser("proxy", help="run the tool-call proxy in front of an engine")
    _proxy_arguments(proxy)

    # Listed for --help only: main() hands these their arguments untouched.
    commands.add_parser("sim", help="run the simulated vLLM engine (takes vLLM's flags; see `toolmodel sim --help`)")
    commands.add_parser("render", help="print the manifests the operator would create for ToolModel files")
    commands.add_parser("crd", help="print the ToolModel CustomResourceDefinition")
    commands.add_parser("operator", help="run the ToolModel operator against the cluster in reach")

    dialects = commands.add_parser("dialects", help="list the dialects, or show one")
    dialects.add_argument("name", nargs="?", help="a dialect name")
    dialects.add_argument("--template", action="store_true", help="print the dialect's chat template")
    commands.add_parser(
        "detect", help="tell a model's dialect from its chat template, config.json and name (see `--help`)"
    )
    commands.add_parser("demo", help="run the whole flow here (emulated cluster, operator, pod, SDK) step by step")
    return parser


# Commands with parsers of their own, handed their arguments untouched.
_DELEGATED = {
    "sim": ("toolcall_proxy.sim.server", "main"),
    "detect": ("toolcall_proxy.dialects.detect", "detect_main"),
    "render": ("toolmodel_operator.commands", "render_main"),
    "crd": ("toolmodel_operator.commands", "crd_main"),
    "operator": ("toolmodel_operator.run", "operator_main"),
    "demo": ("toolmodel_operator.demo", "demo_main"),
}


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] and arguments[0] in _DELEGATED:
        module, function = _DELEGATED[arguments[0]]
        try:
            command: Callable[[list[str]], int] = getattr(importlib.import_module(module), function)
        except ModuleNotFoundError as error:
            print(f"toolmodel {arguments[0]}: needs {error.name}: pip install 'toolmodel[demo]'", file=sys.stderr)
            return 2
        return command(arguments[1:])
    options = _build_parser().parse_args(arguments)
    try:
        if options.command == "proxy":
            return _run_proxy(options)
        if options.command == "dialects":
            return _dialects(options.name, options.template)
    except UnknownDialectError as error:
        print(f"toolmodel: {error}", file=sys.stderr)
        return 2
    return 2


def _run_proxy(options: argparse.Namespace) -> int:
    import uvloop

    from .server import SettingsError, serve
    from .server.settings import ENVIRONMENT, from_environment

    try:
        settings = from_environment({name: getattr(options, name, None) for name in ENVIRONMENT})
        get_dialect(settings.dialect)
    except SettingsError as error:
        print(f"toolmodel proxy: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return uvloop.run(serve(settings))


def _dialects(name: str | None, template: bool) -> int:
    if name is None:
        if template:
            print("toolmodel dialects: --template needs a dialect name", file=sys.stderr)
            return 2
        width = max(map(len, DIALECTS))
        for dialect in DIALECTS.values():
            print(f"{dialect.name:<{width}}  {dialect.summary}")
            print(f"{'':<{width}}  models: {', '.join(dialect.models)}")
        return 0
    dialect = get_dialect(name)
    if template:
        sys.stdout.write(dialect.template)
        return 0
    print(f"name:            {dialect.name}")
    print(f"summary:         {dialect.summary}")
    print(f"models:          {', '.join(dialect.models)}")
    print(f"vLLM parser:     {dialect.vllm_parser or '(none: vLLM cannot parse this family)'}")
    print(f"transport:       {dialect.transport}")
    print(f"parallel calls:  {'yes' if dialect.parallel_calls else 'no (one call per turn)'}")
    print(f"stop:            {', '.join(dialect.stop) or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
