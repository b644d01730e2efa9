"""``toolmodel operator``: runs the ToolModel operator against the cluster in reach."""

from __future__ import annotations

import argparse
import logging
import os
import random
from collections.abc import Sequence

import kopf

from .api import DEFAULT_ENGINE_IMAGE, DEFAULT_PROXY_IMAGE
from .handlers import OperatorConfig, build_registry
from .render import DEFAULT_MAX_GPUS_PER_NODE, ImageDefaults
from .scale_out import DEFAULT_PROMETHEUS_ADDRESS, SCALE_OUT_KINDS

__all__ = ["operator_main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolmodel operator", description="Run the ToolModel operator.")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        action="append",
        default=None,
        help="watch only this namespace (repeatable; env TOOLMODEL_NAMESPACES, comma-separated)",
    )
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument(
        "--max-gpus-per-node",
        type=int,
        default=int(os.environ.get("TOOLMODEL_MAX_GPUS_PER_NODE", DEFAULT_MAX_GPUS_PER_NODE)),
        help="reject ToolModels whose pods need more GPUs (env TOOLMODEL_MAX_GPUS_PER_NODE, default 8)",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=float(os.environ.get("TOOLMODEL_RESYNC_SECONDS", 60)),
        help="reconcile every ToolModel at least this often (env TOOLMODEL_RESYNC_SECONDS, default 60)",
    )
    parser.add_argument(
        "--liveness",
        default=os.environ.get("TOOLMODEL_LIVENESS", "http://0.0.0.0:8080/healthz"),
        help="liveness endpoint for the kubelet's probe (env TOOLMODEL_LIVENESS)",
    )
    parser.add_argument(
        "--peering",
        default=os.environ.get("TOOLMODEL_PEERING"),
        help="kopf peering name: replicas sharing it keep one active (env TOOLMODEL_PEERING); "
        "without it the operator runs standalone, which is right for one replica",
    )
    parser.add_argument(
        "--peering-priority",
        type=int,
        default=int(os.environ["TOOLMODEL_PEERING_PRIORITY"]) if os.environ.get("TOOLMODEL_PEERING_PRIORITY") else None,
        help="this replica's priority among peers (env TOOLMODEL_PEERING_PRIORITY); default: random, since "
        "kopf pauses every peer whose priority equals another's",
    )
    parser.add_argument(
        "--default-engine-image",
        default=os.environ.get("TOOLMODEL_DEFAULT_ENGINE_IMAGE", DEFAULT_ENGINE_IMAGE),
        help="engine image for ToolModels that name none (env TOOLMODEL_DEFAULT_ENGINE_IMAGE, "
        f"default {DEFAULT_ENGINE_IMAGE})",
    )
    parser.add_argument(
        "--default-proxy-image",
        default=os.environ.get("TOOLMODEL_DEFAULT_PROXY_IMAGE", DEFAULT_PROXY_IMAGE),
        help="proxy image for ToolModels that name none (env TOOLMODEL_DEFAULT_PROXY_IMAGE, "
        f"default {DEFAULT_PROXY_IMAGE})",
    )
    parser.add_argument(
        "--prometheus-address",
        default=os.environ.get("TOOLMODEL_PROMETHEUS_ADDRESS") or DEFAULT_PROMETHEUS_ADDRESS,
        help="the Prometheus that autoscaled ToolModels' KEDA ScaledObjects query (env TOOLMODEL_PROMETHEUS_ADDRESS, "
        f"default {DEFAULT_PROMETHEUS_ADDRESS})",
    )
    parser.add_argument(
        "--scale-out-kinds",
        default=os.environ.get("TOOLMODEL_SCALE_OUT_KINDS", ",".join(SCALE_OUT_KINDS)),
        help="the optional kinds the operator may manage, comma-separated, as its RBAC grants them (the chart "
        f"passes those it grants; env TOOLMODEL_SCALE_OUT_KINDS; default all: {','.join(SCALE_OUT_KINDS)}); "
        "a ToolModel needing another is reported InvalidSpec",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def operator_main(argv: Sequence[str]) -> int:
    options = _parser().parse_args(list(argv))
    if options.max_gpus_per_node < 1:
        print("toolmodel operator: --max-gpus-per-node must be at least 1")
        return 2
    scale_out_kinds = tuple(kind.strip() for kind in options.scale_out_kinds.split(",") if kind.strip())
    unknown = sorted(set(scale_out_kinds) - set(SCALE_OUT_KINDS))
    if unknown:
        print(
            f"toolmodel operator: --scale-out-kinds: no such kind {', '.join(unknown)}; the kinds: "
            + ", ".join(SCALE_OUT_KINDS)
        )
        return 2
    namespaces = tuple(options.namespace or [n for n in os.environ.get("TOOLMODEL_NAMESPACES", "").split(",") if n])
    if options.all_namespaces:
        namespaces = ()
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = OperatorConfig(
        max_gpus_per_node=options.max_gpus_per_node,
        resync_seconds=options.resync_seconds,
        namespaces=namespaces,
        images=ImageDefaults(engine=options.default_engine_image, proxy=options.default_proxy_image),
        prometheus_address=options.prometheus_address,
        scale_out_kinds=scale_out_kinds,
    )
    priority = options.peering_priority
    if options.peering is not None and priority is None:
        priority = random.randint(1, 32767)  # peers of equal priority all pause
    kopf.run(
        registry=build_registry(config),
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=options.peering is None,
        peering_name=options.peering,
        priority=priority or 0,
        liveness_endpoint=options.liveness or None,
    )
    return 0
