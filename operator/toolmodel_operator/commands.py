"""Offline commands: ``toolmodel render`` (manifests from ToolModel files) and ``toolmodel crd``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml

from .api import KIND
from .crd import crd_yaml
from .render import DEFAULT_MAX_GPUS_PER_NODE, InvalidSpec, render
from .scale_out import DEFAULT_PROMETHEUS_ADDRESS, AutoscalingDefaults

__all__ = ["crd_main", "dump_manifests", "render_main"]


class _ManifestDumper(yaml.SafeDumper):
    """Readable Kubernetes YAML: multi-line strings (chat templates) as blocks, never anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_ManifestDumper.add_representer(str, _represent_string)


def dump_manifests(manifests: Sequence[Mapping[str, Any]], sources: Sequence[str] | None = None) -> str:
    """A YAML multi-document stream, each document after ``---`` and its ``# Source:`` comment."""
    parts = []
    for index, manifest in enumerate(manifests):
        header = "---\n" if sources is None else f"---\n# Source: {sources[index]}\n"
        parts.append(header + yaml.dump(dict(manifest), Dumper=_ManifestDumper, sort_keys=False, width=120))
    return "".join(parts)


class _InputError(Exception):
    pass


def _documents(filename: str) -> Iterator[tuple[int, Any]]:
    try:
        if filename == "-":
            text = sys.stdin.read()
        else:
            with open(filename, encoding="utf-8") as file:
                text = file.read()
    except OSError as error:
        raise _InputError(f"{filename}: {error.strerror or error}") from None
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        raise _InputError(f"{filename}: not valid YAML: {error}") from None
    for number, document in enumerate(documents, start=1):
        if document is not None:
            yield number, document


def render_main(argv: Sequence[str]) -> int:
    """``toolmodel render -f toolmodel.yaml``: print the objects the operator would create."""
    parser = argparse.ArgumentParser(
        prog="toolmodel render",
        description="Print the Kubernetes objects the operator creates for ToolModel resources, "
        "as a YAML stream (like `helm template`). Nothing is sent to a cluster.",
    )
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="a YAML file of ToolModel documents, or - for standard input; repeatable",
    )
    parser.add_argument(
        "-n", "--namespace", help="the namespace to render into (default: each object's own, else default)"
    )
    parser.add_argument(
        "--max-gpus-per-node",
        type=int,
        default=DEFAULT_MAX_GPUS_PER_NODE,
        help=f"refuse pods needing more GPUs than this (default {DEFAULT_MAX_GPUS_PER_NODE})",
    )
    parser.add_argument(
        "--autoscaler",
        choices=("keda", "hpa"),
        default="keda",
        help="what serving.autoscaling without `via` becomes: a KEDA ScaledObject (the operator's choice where KEDA "
        "is installed) or a HorizontalPodAutoscaler (default keda)",
    )
    parser.add_argument(
        "--prometheus-address",
        default=DEFAULT_PROMETHEUS_ADDRESS,
        metavar="URL",
        help=f"the Prometheus a ScaledObject queries (default {DEFAULT_PROMETHEUS_ADDRESS})",
    )
    options = parser.parse_args(list(argv))
    autoscaling = AutoscalingDefaults(via=options.autoscaler, prometheus_address=options.prometheus_address)

    manifests: list[dict[str, Any]] = []
    sources: list[str] = []
    try:
        for filename in options.filename:
            for number, document in _documents(filename):
                where = f"{filename} (document {number})"
                if not isinstance(document, Mapping) or document.get("kind") != KIND:
                    kind = document.get("kind") if isinstance(document, Mapping) else type(document).__name__
                    raise _InputError(f"{where}: expected a {KIND}, got {kind!r}")
                if options.namespace:
                    metadata = document.get("metadata")
                    metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
                    document = {**document, "metadata": {**metadata, "namespace": options.namespace}}
                try:
                    rendered = render(document, max_gpus_per_node=options.max_gpus_per_node, autoscaling=autoscaling)
                except InvalidSpec as error:
                    raise _InputError(f"{where}: invalid {KIND}: {error}") from None
                manifests += rendered
                sources += [f"{filename} ({KIND} {_name(document)})"] * len(rendered)
    except _InputError as error:
        print(f"toolmodel render: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(dump_manifests(manifests, sources))
    return 0


def _name(document: Mapping[str, Any]) -> str:
    metadata = document.get("metadata")
    return str(metadata.get("name")) if isinstance(metadata, Mapping) else "?"


def crd_main(argv: Sequence[str]) -> int:
    """``toolmodel crd``: print the ToolModel CustomResourceDefinition."""
    argparse.ArgumentParser(
        prog="toolmodel crd",
        description="Print the ToolModel CustomResourceDefinition (kubectl apply -f - to install it).",
    ).parse_args(list(argv))
    sys.stdout.write(crd_yaml())
    return 0
