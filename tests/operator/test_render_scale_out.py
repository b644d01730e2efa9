"""Beyond one node and one replica count: multi-node replicas (LeaderWorkerSet), autoscaling (KEDA
ScaledObject or HPA), LoRA adapters and an InferencePool — rendered, checked against the published CRDs
in ../shared/crds (failing, not skipping, without them) and kubernetes-validate, and one-node models
rendered exactly as before these existed (golden/one_node.yaml)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from _crds import check, check_any
from _toolmodels import by_kind, flag_value, tool_model

from toolcall_proxy.sim.server import parse_args as sim_parse_args
from toolmodel_operator.commands import render_main
from toolmodel_operator.crd import openapi_schema
from toolmodel_operator.render import (
    CHAT_TEMPLATE_HASH_ANNOTATION,
    SIM_COMMAND,
    SIM_WORKER_COMMAND,
    VLLM_COMMAND,
    AutoscalingDefaults,
    InvalidSpec,
    Layout,
    layout,
    render,
    workload,
)
from toolmodel_operator.scale_out import DEFAULT_PROMETHEUS_ADDRESS, REQUIRED_APIS, missing_api

EXAMPLES = Path(__file__).parents[2] / "examples"
GOLDEN = Path(__file__).parent / "golden" / "one_node.yaml"
DEEPSEEK = {
    "model": "deepseek-ai/DeepSeek-V3",
    "toolCalling": {"dialect": "deepseek_v3"},
    "parallelism": {"tensorParallelSize": 8, "pipelineParallelSize": 2},
}
QWEN = {"model": "Qwen/Qwen2.5-7B-Instruct"}
LWS_KEY = "leaderworkerset.sigs.k8s.io/worker-index"


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    return document


def rendered_by_the_cli(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert render_main(list(args)) == 0, capsys.readouterr().err
    return [document for document in yaml.safe_load_all(capsys.readouterr().out) if document]


def invalid(spec: dict[str, Any], name: str = "demo", **options: Any) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as caught:
        render(tool_model(spec, name=name), **options)
    return caught.value


def templates(lws: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    group = lws["spec"]["leaderWorkerTemplate"]
    return group["leaderTemplate"]["spec"], group["workerTemplate"]["spec"]


def named(pod: dict[str, Any], container: str) -> dict[str, Any]:
    (found,) = [c for c in pod["containers"] if c["name"] == container]
    return dict(found)


# -- one node: exactly as before ------------------------------------------------------------------


def _normalized(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat templates and their hash belong to the dialects, which change on their own."""
    manifests = copy.deepcopy(manifests)
    for manifest in manifests:
        if manifest["kind"] == "ConfigMap":
            manifest["data"] = {key: "<chat template>" for key in manifest["data"]}
        if manifest["kind"] == "Deployment":
            manifest["spec"]["template"]["metadata"]["annotations"][CHAT_TEMPLATE_HASH_ANNOTATION] = "<hash>"
    return manifests


GOLDEN_CASES: dict[str, Any] = yaml.safe_load(GOLDEN.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_one_node_models_render_exactly_as_before(case: str):
    """The four examples of old and a few more one-node shapes (TP × PP, a whole node, sim with TP 16,
    a user's template with LoRA flags in engineArgs): every object, field for field."""
    golden = GOLDEN_CASES[case]
    assert _normalized(render(golden["toolmodel"])) == golden["manifests"]


def test_the_golden_cases_cover_every_example_of_old():
    assert {"chatglm3-6b.yaml", "llama-3.1-8b.yaml", "qwen2.5-7b-hermes.yaml", "sim.yaml"} <= GOLDEN_CASES.keys()
    for name in ("chatglm3-6b.yaml", "llama-3.1-8b.yaml", "qwen2.5-7b-hermes.yaml", "sim.yaml"):
        assert GOLDEN_CASES[name]["toolmodel"] == example(name)


# -- several nodes: a LeaderWorkerSet -------------------------------------------------------------


def test_toolmodel_render_of_the_deepseek_example_is_a_leader_worker_set_valid_for_its_crd(capsys):
    manifests = rendered_by_the_cli(capsys, "-f", str(EXAMPLES / "deepseek-v3-2node.yaml"))
    assert [(m["kind"], m["metadata"]["name"]) for m in manifests] == [
        ("ConfigMap", "deepseek-v3-chat-template"),
        ("LeaderWorkerSet", "deepseek-v3-lws"),
        ("Service", "deepseek-v3"),
    ]
    for manifest in manifests:
        check_any(manifest)
    lws = by_kind(manifests, "LeaderWorkerSet")
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    group = lws["spec"]["leaderWorkerTemplate"]
    assert (lws["spec"]["replicas"], group["size"], group["restartPolicy"]) == (1, 2, "RecreateGroupOnPodRestart")
    assert lws["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"] == {"maxUnavailable": 1, "maxSurge": 0}


def test_the_leader_runs_the_ray_head_and_vllm_with_tp_and_pp_on_ray():
    lws = by_kind(render(example("deepseek-v3-2node.yaml")), "LeaderWorkerSet")
    leader, _ = templates(lws)
    engine = named(leader, "engine")
    command, script = engine["command"], engine["command"][2]
    assert command[:2] == ["/bin/sh", "-c"] and len(command) == 4  # then "$@": the arguments
    assert "ray start --head --port=6379" in script
    assert f'exec {" ".join(VLLM_COMMAND)} "$@"' in script
    assert {"name": "TOOLMODEL_RAY_NODES", "value": "2"} in engine["env"]
    arguments = engine["args"]
    assert flag_value(arguments, "--tensor-parallel-size") == "8"
    assert flag_value(arguments, "--pipeline-parallel-size") == "2"
    assert flag_value(arguments, "--distributed-executor-backend") == "ray"
    assert {"name": "ray", "containerPort": 6379, "protocol": "TCP"} in engine["ports"]
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= engine.keys()
    assert engine["startupProbe"]["failureThreshold"] == 720  # startupTimeoutSeconds 7200: workers join within it


def test_workers_join_the_leader_and_only_the_leader_has_the_proxy():
    leader, worker = templates(by_kind(render(example("deepseek-v3-2node.yaml")), "LeaderWorkerSet"))
    assert [c["name"] for c in leader["containers"]] == ["engine", "proxy"]
    assert [c["name"] for c in worker["containers"]] == ["engine"]
    engine = named(worker, "engine")
    assert engine["command"][:2] == ["/bin/sh", "-c"]
    assert (
        'ray start --address="$LWS_LEADER_ADDRESS:6379"' in engine["command"][2] and "--block" in engine["command"][2]
    )
    assert "args" not in engine and "ports" not in engine
    # Per pod: each holds a node's share of the GPUs, a /dev/shm sized for them, the model cache.
    for pod in (leader, worker):
        resources = named(pod, "engine")["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "8"
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
        assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "deepseek-v3-cache"
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"chat-template", "tmp"}.isdisjoint(volume["name"] for volume in worker["volumes"])
    assert [variable["name"] for variable in named(worker, "engine")["env"]] == ["HF_HOME"]


def test_the_service_selects_the_leaders_and_every_pod_carries_the_instance_labels():
    manifests = render(example("deepseek-v3-2node.yaml"))
    selector = by_kind(manifests, "Service")["spec"]["selector"]
    assert selector == {
        "app.kubernetes.io/name": "toolmodel",
        "app.kubernetes.io/instance": "deepseek-v3",
        LWS_KEY: "0",
    }
    group = by_kind(manifests, "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    for role in ("leaderTemplate", "workerTemplate"):
        labels = group[role]["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "deepseek-v3"
        assert labels["app.kubernetes.io/managed-by"] == "toolmodel-operator"  # the handlers list pods by these


@pytest.mark.parametrize(
    ("parallelism", "max_gpus", "expected"),
    [
        ({"tensorParallelSize": 8, "pipelineParallelSize": 2}, 8, Layout(2, 8)),  # over a node: whole nodes
        ({"tensorParallelSize": 8, "pipelineParallelSize": 4}, 8, Layout(4, 8)),
        ({"tensorParallelSize": 16}, 16, Layout(1, 16)),  # a bigger node
        ({"tensorParallelSize": 8, "nodes": 2}, 8, Layout(2, 4)),  # as the spec says
        ({"tensorParallelSize": 8, "gpusPerNode": 2}, 8, Layout(4, 2)),
        ({"tensorParallelSize": 4, "pipelineParallelSize": 2, "nodes": 2, "gpusPerNode": 4}, 8, Layout(2, 4)),
        ({"tensorParallelSize": 4}, 8, Layout(1, 4)),
    ],
)
def test_the_layout(parallelism: dict[str, int], max_gpus: int, expected: Layout):
    obj = tool_model({**DEEPSEEK, "parallelism": parallelism})
    assert layout(obj, max_gpus) == expected
    manifests = render(obj, max_gpus_per_node=max_gpus)
    kind = "LeaderWorkerSet" if expected.nodes > 1 else "Deployment"
    assert workload(manifests)["kind"] == kind
    if expected.nodes > 1:
        assert workload(manifests)["spec"]["leaderWorkerTemplate"]["size"] == expected.nodes
        for pod in templates(workload(manifests)):
            assert named(pod, "engine")["resources"]["limits"]["nvidia.com/gpu"] == str(expected.gpus_per_node)


def test_the_simulated_engine_walks_the_same_path_and_takes_the_leader_s_arguments():
    spec = {**DEEPSEEK, "parallelism": {**DEEPSEEK["parallelism"], "nodes": 2}, "serving": {"engine": "sim"}}
    lws = workload(render(tool_model(spec)))
    leader, worker = templates(lws)
    engine = named(leader, "engine")
    assert engine["command"] == list(SIM_COMMAND)
    assert flag_value(engine["args"], "--distributed-executor-backend") == "ray"
    assert sim_parse_args(engine["args"]).tensor_parallel_size == 8  # `toolmodel sim` takes them all
    assert "nvidia.com/gpu" not in str(lws)
    assert named(worker, "engine")["command"] == list(SIM_WORKER_COMMAND)
    assert named(worker, "engine")["securityContext"]["readOnlyRootFilesystem"] is True
    check(lws)
    # Without parallelism.nodes the simulator, which uses no GPUs, stays on one pod (as it always did).
    assert layout(tool_model({**DEEPSEEK, "serving": {"engine": "sim"}})) == Layout(1, 16)


def test_several_replicas_of_several_nodes():
    lws = workload(render(tool_model({**DEEPSEEK, "serving": {"replicas": 3}})))
    assert lws["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("parallelism", "words"),
    [
        ({"tensorParallelSize": 8, "nodes": 3}, ["parallelism.nodes 3", "use 1, 2, 4 or 8 nodes"]),
        ({"tensorParallelSize": 8, "gpusPerNode": 3}, ["parallelism.gpusPerNode 3", "1, 2, 4 or 8"]),
        ({"tensorParallelSize": 8, "nodes": 2, "gpusPerNode": 2}, ["nodes × gpusPerNode = 4 GPUs", "8 GPUs"]),
        ({"tensorParallelSize": 12}, ["12 GPUs", "nodes of 8 GPUs", "set parallelism.nodes (e.g. 2, of 6 GPUs each)"]),
        ({"tensorParallelSize": 16, "gpusPerNode": 16}, ["16 GPUs in one pod", "more than the 8 GPUs"]),
        ({"tensorParallelSize": 16, "nodes": 1}, ["16 GPUs in one pod", "parallelism.nodes"]),
        ({"tensorParallelSize": 32, "nodes": 2}, ["16 GPUs on each of 2 nodes", "use more parallelism.nodes"]),
    ],
)
def test_a_replica_that_does_not_fit_the_nodes_is_refused_naming_the_field_and_the_fix(parallelism, words):
    error = invalid({**DEEPSEEK, "parallelism": parallelism})
    assert error.field == "spec.parallelism"
    for word in words:
        assert word in error.message


def test_a_multi_node_toolmodel_s_name_must_leave_room_for_its_pods():
    error = invalid(DEEPSEEK, name="d" * 45)
    assert error.field == "metadata.name" and "at most 44 characters" in error.message
    assert workload(render(tool_model(DEEPSEEK, name="d" * 44)))["metadata"]["name"] == "d" * 44 + "-lws"
    assert render(tool_model(QWEN, name="q" * 63))  # one node: as before


def test_the_executor_backend_is_the_operator_s_on_several_nodes_only():
    spec = {**DEEPSEEK, "engineArgs": ["--distributed-executor-backend=mp"]}
    error = invalid(spec)
    assert error.field == "spec.engineArgs[0]" and "spec.parallelism.nodes" in error.message
    assert render(tool_model({**spec, "parallelism": {"tensorParallelSize": 8}}))


# -- autoscaling ----------------------------------------------------------------------------------


def test_the_autoscaled_example_gives_a_scaled_object_valid_for_keda_s_crd(capsys):
    manifests = rendered_by_the_cli(
        capsys,
        "-f",
        str(EXAMPLES / "autoscaled-qwen2.5-7b.yaml"),
        "--prometheus-address",
        "http://prometheus.monitoring:9090",
    )
    assert [m["kind"] for m in manifests] == ["ConfigMap", "Deployment", "Service", "ScaledObject"]
    for manifest in manifests:
        check_any(manifest)
    scaled = by_kind(manifests, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "qwen2-5-7b-autoscaled",
    }
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 4)
    (trigger,) = scaled["spec"]["triggers"]
    assert (trigger["type"], trigger["metricType"]) == ("prometheus", "AverageValue")
    assert trigger["metadata"] == {
        "serverAddress": "http://prometheus.monitoring:9090",
        "query": 'sum(vllm:num_requests_waiting{namespace="default",job="qwen2-5-7b-autoscaled"})',
        "threshold": "5",
    }
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 600}}


def test_an_autoscaled_workload_leaves_replicas_to_the_autoscaler():
    deployment = by_kind(render(example("autoscaled-qwen2.5-7b.yaml")), "Deployment")
    assert "replicas" not in deployment["spec"]
    assert "replicas" in by_kind(render(tool_model(QWEN)), "Deployment")["spec"]
    spec = {**DEEPSEEK, "serving": {"replicas": 3, "autoscaling": {"maxReplicas": 2}}}
    manifests = render(tool_model(spec, name="ds"))
    assert "replicas" not in workload(manifests)["spec"]
    assert by_kind(manifests, "ScaledObject")["spec"]["scaleTargetRef"] == {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "name": "ds-lws",
    }
    check(workload(manifests))


def test_without_keda_the_autoscaler_is_an_hpa_kubernetes_accepts(capsys):
    manifests = rendered_by_the_cli(capsys, "-f", str(EXAMPLES / "autoscaled-qwen2.5-7b.yaml"), "--autoscaler", "hpa")
    hpa = by_kind(manifests, "HorizontalPodAutoscaler")
    assert not [m for m in manifests if m["kind"] == "ScaledObject"]
    kubernetes_validate.validate(hpa, kubernetes_validate.latest_version(), strict=True)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": hpa["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "vllm:num_requests_waiting"},
                "target": {"type": "AverageValue", "averageValue": "5"},
            },
        }
    ]
    assert hpa["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 600}}
    assert "replicas" not in by_kind(manifests, "Deployment")["spec"]


def test_the_spec_s_via_wins_over_the_operator_s_default():
    spec = {**QWEN, "serving": {"autoscaling": {"maxReplicas": 3, "via": "hpa"}}}
    assert by_kind(render(tool_model(spec)), "HorizontalPodAutoscaler")
    spec["serving"]["autoscaling"]["via"] = "keda"
    assert by_kind(render(tool_model(spec), autoscaling=AutoscalingDefaults(via="hpa")), "ScaledObject")


@pytest.mark.parametrize(
    ("signal", "target", "metric", "value"),
    [
        ("queueDepth", None, "vllm:num_requests_waiting", "5"),
        ("runningRequests", None, "vllm:num_requests_running", "32"),
        ("runningRequests", 48, "vllm:num_requests_running", "48"),
        ("kvCacheUsage", None, "vllm:kv_cache_usage_perc", "0.8"),
        ("kvCacheUsage", 0.75, "vllm:kv_cache_usage_perc", "0.75"),
        ("proxyInFlight", 2.5, "toolmodel_proxy_requests_in_flight", "2.5"),
    ],
)
def test_each_signal(signal: str, target: float | None, metric: str, value: str):
    autoscaling: dict[str, Any] = {"maxReplicas": 3, "signal": signal}
    if target is not None:
        autoscaling["target"] = target
    obj = tool_model({**QWEN, "serving": {"autoscaling": autoscaling}}, name="q")
    keda = by_kind(render(obj), "ScaledObject")
    check(keda)
    (trigger,) = keda["spec"]["triggers"]
    assert trigger["metadata"]["query"] == f'sum({metric}{{namespace="ml",job="q"}})'
    assert trigger["metadata"]["threshold"] == value
    assert trigger["metadata"]["serverAddress"] == DEFAULT_PROMETHEUS_ADDRESS
    hpa = by_kind(render(obj, autoscaling=AutoscalingDefaults(via="hpa")), "HorizontalPodAutoscaler")
    kubernetes_validate.validate(hpa, kubernetes_validate.latest_version(), strict=True)
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == metric
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == value


@pytest.mark.parametrize(
    ("autoscaling", "words"),
    [
        ({"minReplicas": 3, "maxReplicas": 2}, "maxReplicas 2 is below minReplicas 3"),
        ({"maxReplicas": 2, "signal": "kvCacheUsage", "target": 80}, "at most 1 (e.g. 0.8)"),
        ({"minReplicas": 0, "maxReplicas": 2}, "greater than or equal to 1"),
        ({"maxReplicas": 2, "target": 0}, "greater than 0"),
        ({"maxReplicas": 2, "scaleDownDelaySeconds": 7200}, "less than or equal to 3600"),
        ({"maxReplicas": 2, "signal": "cpu"}, "queueDepth"),
        ({"maxReplicas": 2, "via": "vpa"}, "keda"),
        ({}, "maxReplicas: required field is missing"),
    ],
)
def test_an_autoscaling_spec_that_cannot_work_is_refused_naming_the_field(autoscaling, words):
    error = invalid({**QWEN, "serving": {"autoscaling": autoscaling}})
    assert error.field.startswith("spec.serving.autoscaling")
    assert words in error.message


# -- LoRA adapters --------------------------------------------------------------------------------


def test_the_lora_example_serves_its_adapters():
    manifests = render(example("lora-llama-3.2-3b.yaml"))
    for manifest in manifests:
        check_any(manifest)
    pod = by_kind(manifests, "Deployment")["spec"]["template"]["spec"]
    engine = named(pod, "engine")
    arguments = engine["args"]
    start = arguments.index("--lora-modules")
    assert "--enable-lora" in arguments
    assert arguments[start + 1 : start + 3] == [
        "sql-lora=jeeejeee/llama32-3b-text2sql-spider",
        "support=/adapters/support",
    ]
    assert flag_value(arguments, "--max-loras") == "2" and flag_value(arguments, "--max-lora-rank") == "32"
    assert {
        "name": "adapters-0",
        "mountPath": "/adapters/support",
        "readOnly": True,
        "subPath": "support-v2",
    } in engine["volumeMounts"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["adapters-0"]["persistentVolumeClaim"] == {"claimName": "lora-adapters", "readOnly": True}
    assert not [m for m in named(pod, "proxy")["volumeMounts"] if m["name"].startswith("adapters")]


def test_adapters_share_a_claim_once_and_the_cache_s_claim_is_its_volume():
    spec = {
        **QWEN,
        "storage": {"cache": {"persistentVolumeClaim": {"claimName": "models", "subPath": "hf"}}},
        "adapters": [
            {"name": "a", "persistentVolumeClaim": {"claimName": "loras", "path": "a"}},
            {"name": "b", "persistentVolumeClaim": {"claimName": "loras", "path": "b/v2"}},
            {"name": "c", "persistentVolumeClaim": {"claimName": "models", "path": "loras/c"}},
            {"name": "d", "huggingFace": "org/d-lora"},
            {"name": "e", "persistentVolumeClaim": {"claimName": "more"}},
        ],
    }
    manifests = render(tool_model(spec))
    pod = workload(manifests)["spec"]["template"]["spec"]
    claims = [(v["name"], v["persistentVolumeClaim"]) for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [
        ("model-cache", {"claimName": "models"}),
        ("adapters-0", {"claimName": "loras", "readOnly": True}),
        ("adapters-1", {"claimName": "more", "readOnly": True}),
    ]
    mounts = [m for m in named(pod, "engine")["volumeMounts"] if m["mountPath"].startswith("/adapters")]
    assert mounts == [
        {"name": "adapters-0", "mountPath": "/adapters/a", "readOnly": True, "subPath": "a"},
        {"name": "adapters-0", "mountPath": "/adapters/b", "readOnly": True, "subPath": "b/v2"},
        {"name": "model-cache", "mountPath": "/adapters/c", "readOnly": True, "subPath": "loras/c"},
        {"name": "adapters-1", "mountPath": "/adapters/e", "readOnly": True},
    ]
    arguments = named(pod, "engine")["args"]
    assert flag_value(arguments, "--max-loras") == "5" and "--max-lora-rank" not in arguments
    kubernetes_validate.validate(workload(manifests), kubernetes_validate.latest_version(), strict=True)


def test_workers_of_several_nodes_mount_the_adapters_too():
    spec = {**DEEPSEEK, "adapters": [{"name": "a", "persistentVolumeClaim": {"claimName": "loras"}}]}
    lws = workload(render(tool_model(spec)))
    for pod in templates(lws):
        assert {"name": "adapters-0", "mountPath": "/adapters/a", "readOnly": True} in named(pod, "engine")[
            "volumeMounts"
        ]
    check(lws)


def test_the_simulator_takes_the_adapter_flags():
    manifests = render(example("lora-llama-3.2-3b.yaml"))
    arguments = named(by_kind(manifests, "Deployment")["spec"]["template"]["spec"], "engine")["args"]
    assert sim_parse_args(arguments).model == "meta-llama/Llama-3.2-3B-Instruct"


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        (
            {"adapters": [{"name": "Qwen2.5-7B-Instruct", "huggingFace": "o/a"}]},
            "spec.adapters[0].name",
            "served model",
        ),
        (
            {"adapters": [{"name": "a", "huggingFace": "o/a"}, {"name": "a", "huggingFace": "o/b"}]},
            "spec.adapters[1].name",
            "names must be unique",
        ),
        ({"adapters": [{"name": "a"}]}, "spec.adapters[0]", "exactly one of huggingFace or persistentVolumeClaim"),
        (
            {"adapters": [{"name": "a", "huggingFace": "o/a", "persistentVolumeClaim": {"claimName": "c"}}]},
            "spec.adapters[0]",
            "exactly one of",
        ),
        ({"adapters": [{"name": "a b", "huggingFace": "o/a"}]}, "spec.adapters[0].name", "pattern"),
        ({"adapters": [{"name": "a", "huggingFace": "https://hf.co/o/a"}]}, "spec.adapters[0].huggingFace", "pattern"),
        (
            {"adapters": [{"name": "a", "persistentVolumeClaim": {"claimName": "c", "path": "x/../../etc"}}]},
            "spec.adapters[0].persistentVolumeClaim",
            "no '..'",
        ),
        (
            {"adapters": [{"name": "a", "persistentVolumeClaim": {"claimName": "c", "path": "/abs"}}]},
            "spec.adapters[0].persistentVolumeClaim.path",
            "pattern",
        ),
        ({"maxLoras": 2}, "spec.maxLoras", "set spec.adapters, or leave it out"),
        ({"maxLoraRank": 64}, "spec.maxLoraRank", "set spec.adapters, or leave it out"),
        ({"adapters": [{"name": "a", "huggingFace": "o/a"}], "maxLoraRank": 48}, "spec.maxLoraRank", "64"),
        (
            {"adapters": [{"name": "a", "huggingFace": "o/a"}], "engineArgs": ["--x", "--lora-modules", "b=/b"]},
            "spec.engineArgs[1]",
            "set spec.adapters instead",
        ),
        (
            {"adapters": [{"name": "a", "huggingFace": "o/a"}], "engineArgs": ["--max_loras=4"]},
            "spec.engineArgs[0]",
            "set spec.maxLoras instead",
        ),
    ],
)
def test_adapters_that_cannot_be_served_are_refused_naming_the_field(changes, field, words):
    error = invalid({**QWEN, **changes})
    assert error.field == field, error
    assert words in error.message


# -- InferencePool --------------------------------------------------------------------------------


def test_the_inference_pool_validates_against_its_crd_and_holds_the_serving_pods_on_the_proxy_port(capsys):
    manifests = rendered_by_the_cli(capsys, "-f", str(EXAMPLES / "lora-llama-3.2-3b.yaml"))
    pool = by_kind(manifests, "InferencePool")
    check(pool)
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    assert pool["spec"]["selector"]["matchLabels"] == by_kind(manifests, "Service")["spec"]["selector"]
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    assert pool["spec"]["endpointPickerRef"] == {
        "kind": "Service",
        "name": "llama-3-2-3b-epp",
        "port": {"number": 9002},
    }


def test_an_inference_pool_of_several_nodes_holds_the_leaders():
    spec = {
        **DEEPSEEK,
        "serving": {"inferencePool": {"endpointPickerRef": {"name": "epp", "port": 9002, "failureMode": "FailOpen"}}},
    }
    pool = by_kind(render(tool_model(spec)), "InferencePool")
    check(pool)
    assert pool["spec"]["selector"]["matchLabels"][LWS_KEY] == "0"
    assert pool["spec"]["endpointPickerRef"]["failureMode"] == "FailOpen"
    bare = by_kind(render(tool_model({**QWEN, "serving": {"inferencePool": {}}})), "InferencePool")
    check(bare)
    assert "endpointPickerRef" not in bare["spec"]


# -- what the cluster must have -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "field", "words"),
    [
        (
            "deepseek-v3-2node.yaml",
            "spec.parallelism",
            [
                "LeaderWorkerSet",
                "leaderworkersets.leaderworkerset.x-k8s.io",
                "https://lws.sigs.k8s.io/docs/installation/",
            ],
        ),
        ("autoscaled-qwen2.5-7b.yaml", "spec.serving.autoscaling.via", ["ScaledObject", "install KEDA", "via: hpa"]),
        ("lora-llama-3.2-3b.yaml", "spec.serving.inferencePool", ["InferencePool", "remove serving.inferencePool"]),
    ],
)
def test_a_missing_crd_is_named_with_how_to_install_it(name: str, field: str, words: list[str]):
    manifests = render(example(name))
    found = missing_api(manifests, served=set())
    assert found is not None
    assert found[0] == field and found[1].startswith(field)
    for word in words:
        assert word in found[1]
    assert missing_api(manifests, served=set(REQUIRED_APIS)) is None


def test_an_hpa_needs_autoscaling_v2_and_the_one_node_objects_nothing_optional():
    manifests = render(example("autoscaled-qwen2.5-7b.yaml"), autoscaling=AutoscalingDefaults(via="hpa"))
    found = missing_api(manifests, served=set())
    assert found is not None and found[0] == "spec.serving.autoscaling"
    assert "Kubernetes 1.23" in found[1] and "via: keda" in found[1]
    assert missing_api(manifests, served={("autoscaling/v2", "HorizontalPodAutoscaler")}) is None
    assert missing_api(render(example("sim.yaml")), served=set()) is None


# -- the CRD ----------------------------------------------------------------------------------------


def test_the_crd_mirrors_the_new_cross_field_checks_as_cel_rules():
    spec = openapi_schema()["properties"]["spec"]
    fields = spec["properties"]

    def messages(node: dict[str, Any]) -> list[str]:
        return [rule["message"] for rule in node.get("x-kubernetes-validations", [])]

    assert len(messages(fields["parallelism"])) == 3
    assert messages(fields["serving"]["properties"]["autoscaling"]) == [
        "maxReplicas must be at least minReplicas",
        "a kvCacheUsage target is the fraction of the KV cache in use: at most 1",
    ]
    assert messages(fields["adapters"]["items"]) == ["set exactly one of huggingFace or persistentVolumeClaim"]
    assert messages(spec) == ["maxLoras and maxLoraRank are for adapters: set adapters, or leave them out"]
    # Unique adapter names: a list keyed by name, which the API server checks at no CEL cost.
    assert (fields["adapters"]["x-kubernetes-list-type"], fields["adapters"]["x-kubernetes-list-map-keys"]) == (
        "map",
        ["name"],
    )
    assert fields["maxLoraRank"]["enum"] == [1, 8, 16, 32, 64, 128, 256, 320, 512]
    autoscaling = fields["serving"]["properties"]["autoscaling"]
    assert autoscaling["required"] == ["maxReplicas"]
    assert autoscaling["properties"]["signal"]["enum"] == [
        "queueDepth",
        "runningRequests",
        "kvCacheUsage",
        "proxyInFlight",
    ]
    assert "default" not in autoscaling["properties"]["via"]  # the operator's choice: KEDA if installed


# -- the Ray scripts, run with stand-ins for ray and vLLM ----------------------------------------------

_FAKE_RAY_CLI = """#!/bin/sh
echo "ray $*" >> "$FAKE_LOG"
case "$*" in
  *--address*)
    tries=$(cat "$FAKE_DIR/joins" 2>/dev/null || echo 0); echo $((tries + 1)) > "$FAKE_DIR/joins"
    [ "$tries" -ge 2 ]  # the head answers from the third try on
    ;;
esac
"""
_FAKE_RAY_MODULE = """import os
def init(**kwargs): pass
def nodes():
    path = os.path.join(os.environ["FAKE_DIR"], "polls")
    polls = int(open(path).read()) if os.path.exists(path) else 0
    open(path, "w").write(str(polls + 1))
    return [{"Alive": True}] * min(1 + polls, 2) + [{"Alive": False}]
"""
_FAKE_VLLM = """import os, sys
open(os.environ["FAKE_LOG"], "a").write("vllm " + " ".join(sys.argv[1:]) + "\\n")
"""


@pytest.fixture
def stand_ins(tmp_path: Path) -> dict[str, str]:
    binaries = tmp_path / "bin"
    binaries.mkdir()
    (binaries / "ray").write_text(_FAKE_RAY_CLI)
    (binaries / "ray").chmod(0o755)
    (binaries / "sleep").write_text("#!/bin/sh\n")  # no waiting in tests
    (binaries / "sleep").chmod(0o755)
    (binaries / "python3").symlink_to(sys.executable)
    (tmp_path / "ray.py").write_text(_FAKE_RAY_MODULE)
    server = tmp_path / "vllm" / "entrypoints" / "openai"
    server.mkdir(parents=True)
    for package in (tmp_path / "vllm", tmp_path / "vllm" / "entrypoints", server):
        (package / "__init__.py").write_text("")
    (server / "api_server.py").write_text(_FAKE_VLLM)
    return {
        "PATH": f"{binaries}:/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path),
        "FAKE_DIR": str(tmp_path),
        "FAKE_LOG": str(tmp_path / "log"),
    }


def run_container(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    variables = {variable["name"]: variable["value"] for variable in container.get("env", []) if "value" in variable}
    done = subprocess.run(
        [*container["command"], *container.get("args", [])],
        env={**env, **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Path(env["FAKE_LOG"]).read_text().splitlines()


def test_the_leader_waits_for_every_node_then_runs_vllm_with_its_arguments(stand_ins: dict[str, str]):
    leader, _ = templates(workload(render(example("deepseek-v3-2node.yaml"))))
    engine = named(leader, "engine")
    log = run_container(engine, stand_ins)
    assert log == ["ray start --head --port=6379 --disable-usage-stats", "vllm " + " ".join(engine["args"])]
    assert Path(stand_ins["FAKE_DIR"], "polls").read_text() == "2"  # asked again until both nodes were up


def test_a_worker_joins_the_head_once_it_answers(stand_ins: dict[str, str]):
    _, worker = templates(workload(render(example("deepseek-v3-2node.yaml"))))
    log = run_container(named(worker, "engine"), {**stand_ins, "LWS_LEADER_ADDRESS": "ds-lws-0.ds-lws.ml"})
    assert log == ["ray start --address=ds-lws-0.ds-lws.ml:6379 --disable-usage-stats --block"] * 3
