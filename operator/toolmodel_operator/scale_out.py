"""Beyond one pod and one replica count: where a replica's GPUs go, and the objects of other projects the
operator writes for a ToolModel (pure, like ``render``, which uses this module).

* ``Layout``: the nodes a replica spans. One node: the Deployment of old. Several: a LeaderWorkerSet
  (leaderworkerset.x-k8s.io/v1), whose pod templates ``render`` builds.
* Autoscaling: a KEDA ScaledObject (keda.sh/v1alpha1, a Prometheus query of the chosen signal) or a
  HorizontalPodAutoscaler (autoscaling/v2, a Pods metric) scaling the Deployment or LeaderWorkerSet.
* An InferencePool (inference.networking.k8s.io/v1) of the serving pods, for the Gateway API Inference
  Extension.
* ``REQUIRED_APIS`` / ``missing_api``: the APIs these need, and the ``InvalidSpec`` words the handlers
  report when the cluster does not serve one or the operator is not permitted it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from .api import AutoscalingSpec, InferencePoolSpec, Signal, ToolModelSpec

__all__ = [
    "DEFAULT_PROMETHEUS_ADDRESS",
    "DEFAULT_TARGETS",
    "HPA_API_VERSION",
    "INFERENCE_POOL_API_VERSION",
    "KEDA_API_VERSION",
    "LWS_API_VERSION",
    "LWS_WORKER_INDEX_LABEL",
    "MAX_MULTI_NODE_NAME",
    "RAY_HEAD_PORT",
    "REQUIRED_APIS",
    "SCALE_OUT_KINDS",
    "SIGNAL_METRICS",
    "AutoscalingDefaults",
    "InvalidLayout",
    "Layout",
    "RequiredApi",
    "autoscaler",
    "compute_layout",
    "inference_pool",
    "leader_worker_set_name",
    "missing_api",
    "prometheus_query",
    "required_api",
]

LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
KEDA_API_VERSION = "keda.sh/v1alpha1"
HPA_API_VERSION = "autoscaling/v2"
INFERENCE_POOL_API_VERSION = "inference.networking.k8s.io/v1"

# LeaderWorkerSet labels every pod of a group with its index in the group; the leader's is "0".
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
RAY_HEAD_PORT = 6379
# The longest ToolModel name that can run on several nodes: the LeaderWorkerSet (NAME-lws) names a
# StatefulSet per group (NAME-lws-G, G up to 999) whose revision label (NAME-lws-G-<10-character hash>)
# Kubernetes limits to 63 characters.
MAX_MULTI_NODE_NAME = 44

# Where KEDA asks Prometheus, unless the operator is told (--prometheus-address, the chart's value): the
# Service the Prometheus Operator makes for the Prometheus instances of the monitoring namespace.
DEFAULT_PROMETHEUS_ADDRESS = "http://prometheus-operated.monitoring.svc:9090"

# Each signal's Prometheus series, per pod: the engine's on its port "engine", the proxy's on "http".
SIGNAL_METRICS: dict[str, str] = {
    "queueDepth": "vllm:num_requests_waiting",
    "runningRequests": "vllm:num_requests_running",
    "kvCacheUsage": "vllm:kv_cache_usage_perc",
    "proxyInFlight": "toolmodel_proxy_requests_in_flight",
}
DEFAULT_TARGETS: dict[str, float] = {
    "queueDepth": 5,
    "runningRequests": 32,
    "kvCacheUsage": 0.8,
    "proxyInFlight": 32,
}


class InvalidLayout(ValueError):
    """Raised by ``compute_layout``: (field, message), which ``render`` turns into InvalidSpec."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Layout:
    """A replica's pods: ``nodes`` of them, each with ``gpus_per_node`` GPUs."""

    nodes: int
    gpus_per_node: int

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1


def compute_layout(spec: ToolModelSpec, max_gpus_per_node: int) -> Layout:
    """The nodes each replica spans: ``parallelism.nodes``/``gpusPerNode`` as given, else one node when
    TP × PP fit ``max_gpus_per_node``, else as many full nodes as they need. The simulator (no GPUs) stays
    on one pod unless nodes or gpusPerNode are given. Raises InvalidLayout."""
    parallelism = spec.parallelism
    gpus = parallelism.gpus_per_pod  # validated: nodes and gpusPerNode divide it
    product = f"tensorParallelSize × pipelineParallelSize = {gpus} GPUs"
    if parallelism.nodes is not None:
        layout = Layout(parallelism.nodes, gpus // parallelism.nodes)
    elif parallelism.gpus_per_node is not None:
        layout = Layout(gpus // parallelism.gpus_per_node, parallelism.gpus_per_node)
    elif spec.serving.engine == "sim" or gpus <= max_gpus_per_node:
        layout = Layout(1, gpus)
    elif gpus % max_gpus_per_node == 0:
        layout = Layout(gpus // max_gpus_per_node, max_gpus_per_node)
    else:
        fits = max(d for d in range(1, max_gpus_per_node + 1) if gpus % d == 0)
        raise InvalidLayout(
            "spec.parallelism",
            f"parallelism: {product} do not split evenly over nodes of {max_gpus_per_node} GPUs (the operator's "
            f"--max-gpus-per-node); set parallelism.nodes (e.g. {gpus // fits}, of {fits} GPUs each), or change "
            "tensorParallelSize or pipelineParallelSize",
        )
    if spec.serving.engine == "vllm" and layout.gpus_per_node > max_gpus_per_node:
        if layout.nodes == 1:
            raise InvalidLayout(
                "spec.parallelism",
                f"parallelism.tensorParallelSize × pipelineParallelSize = {gpus} GPUs in one pod, more than the "
                f"{max_gpus_per_node} GPUs of a node; lower tensorParallelSize or pipelineParallelSize, or spread "
                "them over parallelism.nodes",
            )
        raise InvalidLayout(
            "spec.parallelism",
            f"parallelism: {layout.gpus_per_node} GPUs on each of {layout.nodes} nodes, more than the "
            f"{max_gpus_per_node} GPUs of a node; use more parallelism.nodes",
        )
    return layout


def leader_worker_set_name(name: str) -> str:
    """The LeaderWorkerSet of a multi-node ToolModel. Not the ToolModel's own name: LeaderWorkerSet makes a
    headless Service of its own name for its pods' DNS, and the ToolModel's Service has that name."""
    return f"{name}-lws"


# -- autoscaling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoscalingDefaults:
    """The operator's settings for autoscaled ToolModels: the backend when the spec names none (the
    handlers pass ``hpa`` where KEDA is not installed) and the Prometheus KEDA queries."""

    via: Literal["keda", "hpa"] = "keda"
    prometheus_address: str = DEFAULT_PROMETHEUS_ADDRESS


def prometheus_query(signal: Signal, namespace: str, name: str) -> str:
    """The signal summed over the ToolModel's serving pods. The series are the ones the chart's PodMonitor
    scrapes: ``job`` is the pods' app.kubernetes.io/instance label, the ToolModel's name."""
    return f'sum({SIGNAL_METRICS[signal]}{{namespace="{namespace}",job="{name}"}})'


def _decimal(value: float) -> str:
    """A plain decimal (5, 0.8): KEDA's threshold, and a Kubernetes quantity."""
    text = format(Decimal(repr(value)).normalize(), "f")
    return text


def autoscaler(
    spec: AutoscalingSpec,
    *,
    metadata: Mapping[str, Any],
    namespace: str,
    name: str,
    target: Mapping[str, str],
    defaults: AutoscalingDefaults,
) -> dict[str, Any]:
    """The ScaledObject or HorizontalPodAutoscaler scaling ``target`` ({apiVersion, kind, name}) on the
    spec's signal, per replica (AverageValue). ``name`` is the ToolModel's."""
    value = _decimal(spec.target if spec.target is not None else DEFAULT_TARGETS[spec.signal])
    scale_down = {"stabilizationWindowSeconds": spec.scale_down_delay_seconds}
    via = spec.via or defaults.via
    if via == "keda":
        return {
            "apiVersion": KEDA_API_VERSION,
            "kind": "ScaledObject",
            "metadata": dict(metadata),
            "spec": {
                "scaleTargetRef": dict(target),
                "minReplicaCount": spec.min_replicas,
                "maxReplicaCount": spec.max_replicas,
                "pollingInterval": 15,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": scale_down}}},
                "triggers": [
                    {
                        "type": "prometheus",
                        "metricType": "AverageValue",
                        "metadata": {
                            "serverAddress": defaults.prometheus_address,
                            "query": prometheus_query(spec.signal, namespace, name),
                            "threshold": value,
                        },
                    }
                ],
            },
        }
    return {
        "apiVersion": HPA_API_VERSION,
        "kind": "HorizontalPodAutoscaler",
        "metadata": dict(metadata),
        "spec": {
            "scaleTargetRef": dict(target),
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            # Pods metrics of the target's pods (a LeaderWorkerSet's scale selector picks the leaders), named
            # as Prometheus names them; a metrics adapter (prometheus-adapter) serves them.
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": SIGNAL_METRICS[spec.signal]},
                        "target": {"type": "AverageValue", "averageValue": value},
                    },
                }
            ],
            "behavior": {"scaleDown": scale_down},
        },
    }


# -- InferencePool --------------------------------------------------------------------------------


def inference_pool(
    spec: InferencePoolSpec, *, metadata: Mapping[str, Any], selector: Mapping[str, str], port: int
) -> dict[str, Any]:
    """The pool of the pods ``selector`` picks, reached on ``port`` (the proxy's)."""
    pool: dict[str, Any] = {
        "selector": {"matchLabels": dict(selector)},
        "targetPorts": [{"number": port}],
        "appProtocol": "http",
    }
    picker = spec.endpoint_picker_ref
    if picker is not None:
        reference: dict[str, Any] = {"kind": "Service", "name": picker.name, "port": {"number": picker.port}}
        if picker.failure_mode is not None:
            reference["failureMode"] = picker.failure_mode
        pool["endpointPickerRef"] = reference
    return {"apiVersion": INFERENCE_POOL_API_VERSION, "kind": "InferencePool", "metadata": dict(metadata), "spec": pool}


# -- what the cluster must have -------------------------------------------------------------------


class RequiredApi(NamedTuple):
    """An API a rendered object needs that a cluster may lack, and what to tell the user then."""

    api_version: str
    kind: str
    plural: str
    field: str  # the spec field that asks for it
    what: str  # the feature, for the message
    install: str  # how to get it, or what to change instead
    chart_value: str  # the chart's value granting the operator this kind (scaleOut.<chart_value>)


REQUIRED_APIS: dict[tuple[str, str], RequiredApi] = {
    (LWS_API_VERSION, "LeaderWorkerSet"): RequiredApi(
        LWS_API_VERSION,
        "LeaderWorkerSet",
        "leaderworkersets",
        "spec.parallelism",
        "a replica on several nodes is a LeaderWorkerSet",
        "install LeaderWorkerSet (https://lws.sigs.k8s.io/docs/installation/: its release manifests or its Helm "
        "chart), or fit the model on one node (tensorParallelSize × pipelineParallelSize within a node's GPUs)",
        "leaderWorkerSet",
    ),
    (KEDA_API_VERSION, "ScaledObject"): RequiredApi(
        KEDA_API_VERSION,
        "ScaledObject",
        "scaledobjects",
        "spec.serving.autoscaling.via",
        "serving.autoscaling via keda is a KEDA ScaledObject",
        "install KEDA (https://keda.sh/docs/latest/deploy/: helm install keda kedacore/keda --namespace keda "
        "--create-namespace), or set serving.autoscaling.via: hpa",
        "keda",
    ),
    (HPA_API_VERSION, "HorizontalPodAutoscaler"): RequiredApi(
        HPA_API_VERSION,
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "spec.serving.autoscaling",
        "serving.autoscaling through a HorizontalPodAutoscaler (via: hpa, or no KEDA in the cluster)",
        "autoscaling/v2 is served from Kubernetes 1.23 on: upgrade the cluster, or install KEDA "
        "(https://keda.sh/docs/latest/deploy/) and set serving.autoscaling.via: keda",
        "hpa",
    ),
    (INFERENCE_POOL_API_VERSION, "InferencePool"): RequiredApi(
        INFERENCE_POOL_API_VERSION,
        "InferencePool",
        "inferencepools",
        "spec.serving.inferencePool",
        "serving.inferencePool is an InferencePool",
        "install the Gateway API Inference Extension's CRDs "
        "(https://gateway-api-inference-extension.sigs.k8s.io/), or remove serving.inferencePool",
        "inferencePool",
    ),
}


# The kinds of REQUIRED_APIS: what the operator may be permitted (--scale-out-kinds; all by default).
SCALE_OUT_KINDS: tuple[str, ...] = tuple(kind for _, kind in REQUIRED_APIS)


def required_api(manifest: Mapping[str, Any]) -> RequiredApi | None:
    """The optional API ``manifest`` belongs to (None: one every cluster serves)."""
    return REQUIRED_APIS.get((str(manifest.get("apiVersion")), str(manifest.get("kind"))))


def missing_api(
    manifests: Sequence[Mapping[str, Any]],
    served: set[tuple[str, str]],
    permitted: Collection[str] | None = None,
) -> tuple[str, str] | None:
    """(field, message) for the first manifest whose API is not among ``served`` ({(apiVersion, kind)} the
    cluster has), or whose kind is not among ``permitted`` (the optional kinds the operator may manage,
    as its deployment grants them; None: all), for an InvalidSpec status that creates nothing; None when
    all are there."""
    for manifest in manifests:
        needed = required_api(manifest)
        if needed is None:
            continue
        group = needed.api_version.split("/")[0]
        if permitted is not None and needed.kind not in permitted:
            return (
                needed.field,
                f"{needed.field}: {needed.what} ({needed.api_version}), and this operator is not permitted to manage "
                f"{needed.plural}.{group}: set the chart's scaleOut.{needed.chart_value}: true, or keep it auto and "
                "`helm upgrade` once the cluster serves the API (the operator's --scale-out-kinds)",
            )
        if (needed.api_version, needed.kind) not in served:
            return (
                needed.field,
                f"{needed.field}: {needed.what} ({needed.api_version}), and this cluster does not serve "
                f"{needed.plural}.{group}: {needed.install}",
            )
    return None
