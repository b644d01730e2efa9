"""The CRD's CEL rules for multi-node parallelism, autoscaling and adapters, on the real control plane's
CRD-only API server (v1.36, which keeps x-kubernetes-validations; backend ``real``, see real.py): each
rule refuses what the operator's own checks refuse, and the examples are admitted. Dry runs only."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from emulated import Cluster

from toolmodel_operator.kube import TOOLMODELS, KubeClient, KubeError

EXAMPLES = Path(__file__).parents[2] / "examples"
BASE: dict[str, Any] = {
    "apiVersion": "toolmodel.dev/v1alpha1",
    "kind": "ToolModel",
    "metadata": {"name": "scale-out", "namespace": "default"},
    "spec": {"model": "deepseek-ai/DeepSeek-V3", "toolCalling": {"dialect": "deepseek_v3"}},
}

CASES: dict[str, tuple[dict[str, Any], str]] = {
    "nodes": (
        {"parallelism": {"tensorParallelSize": 8, "nodes": 3}},
        "nodes must divide tensorParallelSize × pipelineParallelSize",
    ),
    "gpusPerNode": (
        {"parallelism": {"tensorParallelSize": 8, "gpusPerNode": 3}},
        "gpusPerNode must divide tensorParallelSize × pipelineParallelSize",
    ),
    "nodes-by-gpus": (
        {"parallelism": {"tensorParallelSize": 8, "nodes": 2, "gpusPerNode": 2}},
        "nodes × gpusPerNode must equal tensorParallelSize × pipelineParallelSize",
    ),
    "replicas": (
        {"serving": {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}},
        "maxReplicas must be at least minReplicas",
    ),
    "kv-cache-target": (
        {"serving": {"autoscaling": {"maxReplicas": 2, "signal": "kvCacheUsage", "target": 1.5}}},
        "a kvCacheUsage target is the fraction of the KV cache in use: at most 1",
    ),
    "adapter-source": (
        {"adapters": [{"name": "a"}]},
        "set exactly one of huggingFace or persistentVolumeClaim",
    ),
    "max-loras": ({"maxLoras": 2}, "maxLoras and maxLoraRank are for adapters"),
    "adapter-names": (
        {"adapters": [{"name": "a", "huggingFace": "o/a"}, {"name": "a", "huggingFace": "o/b"}]},
        "Duplicate value",
    ),
}


def toolmodel(changes: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    obj["spec"].update(changes)
    return obj


@pytest.mark.parametrize("case", sorted(CASES))
async def test_each_new_rule_refuses_at_admission(real: Cluster, case: str):
    changes, message = CASES[case]
    assert real.plane is not None
    path = TOOLMODELS.path("default")
    async with KubeClient(real.plane.admin(real.plane.cel_server)) as cel:
        with pytest.raises(KubeError) as refused:
            await cel._request("POST", path, toolmodel(changes), params={"dryRun": "All"})
        assert refused.value.status == 422 and message in refused.value.message


@pytest.mark.parametrize("name", ["deepseek-v3-2node.yaml", "autoscaled-qwen2.5-7b.yaml", "lora-llama-3.2-3b.yaml"])
async def test_the_new_examples_pass_every_rule(real: Cluster, name: str):
    example = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    example["metadata"]["namespace"] = "default"
    assert real.plane is not None
    async with KubeClient(real.plane.admin(real.plane.cel_server)) as cel:
        admitted = await cel._request("POST", TOOLMODELS.path("default"), example, params={"dryRun": "All"})
    assert admitted["spec"]["model"] == example["spec"]["model"]
