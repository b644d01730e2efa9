"""The ToolModel API (``toolmodel.dev/v1alpha1``): pydantic models, the single source of truth.

The CRD's schema is generated from these models (see ``crd.py``), the renderer validates a
ToolModel's spec with them, and the handlers write the status through ``ToolModelStatus``.
Field names are snake_case in Python and camelCase in YAML (``to_camel`` aliases); every field's
description becomes its ``kubectl explain`` text.

Checks that need the dialect registry or the cluster (a known dialect, a vLLM parser for native
mode, GPUs per node) live in the renderer; checks between fields of one object (one of two
sources, ...) are here, mirrored by CEL rules so the API server rejects them too.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

from toolcall_proxy.dialects import DIALECTS

__all__ = [
    "API_VERSION",
    "DEFAULT_ENGINE_IMAGE",
    "DEFAULT_PROXY_IMAGE",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "AdapterClaim",
    "ApiKeySecretRef",
    "AutoscalingSpec",
    "ChatTemplate",
    "ChatTemplateConfigMapRef",
    "Condition",
    "EmptyDirCache",
    "EndpointPickerRef",
    "EnvVar",
    "GpuSpec",
    "HfTokenSecretRef",
    "InferencePoolSpec",
    "LoraAdapter",
    "ModelCache",
    "ObjectMeta",
    "ParallelismSpec",
    "PersistentVolumeClaimCache",
    "Quantity",
    "ResourceRequirements",
    "ServiceSpec",
    "ServingResources",
    "ServingSpec",
    "Signal",
    "StorageSpec",
    "ToolCallingSpec",
    "ToolModel",
    "ToolModelSpec",
    "ToolModelStatus",
    "default_served_model_name",
]

GROUP = "toolmodel.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ToolModel"
PLURAL = "toolmodels"
SINGULAR = "toolmodel"
SHORT_NAMES = ("tm",)

# Pinned, tested versions. They are operator defaults, not CRD defaults (see _operator_default):
# an object that does not set an image follows the operator's upgrades.
DEFAULT_ENGINE_IMAGE = "vllm/vllm-openai:v0.11.0"
DEFAULT_PROXY_IMAGE = "ghcr.io/toolmodel/proxy:0.1.0"

_DIALECT_NAMES: list[JsonValue] = list(sorted(DIALECTS))

# Kubernetes' resource.Quantity syntax: 1, 0.5, 500m, 2Gi, 1e3.
_QUANTITY = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?")


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not _QUANTITY.fullmatch(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 2Gi or 4")
    return value


# Written like Kubernetes' own quantities in CRDs: an integer or a string (x-kubernetes-int-or-string).
Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}),
]


def _operator_default(schema: dict[str, Any]) -> None:
    """Keep a field's default out of the CRD: the operator applies it, so it moves with upgrades."""
    schema.pop("default", None)


def default_served_model_name(model: str) -> str:
    """The name clients use when ``servedModelName`` is not set: the model's last path segment."""
    return model.rstrip("/").rsplit("/", 1)[-1] or model


class _ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# -- spec.env -------------------------------------------------------------------------------------


class EnvVar(_ApiModel):
    """An environment variable for the engine container (a subset of Kubernetes' EnvVar)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "!(has(self.value) && has(self.valueFrom))", "message": "set value or valueFrom, not both"}
            ]
        }
    )

    name: str = Field(min_length=1, description="The variable's name.")
    value: str | None = Field(default=None, description="The variable's value.")
    value_from: dict[str, Any] | None = Field(
        default=None,
        description="Where the value comes from, as in a Pod's env[].valueFrom "
        "(secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name!r}: set value or valueFrom, not both")
        return self


# -- spec.storage ---------------------------------------------------------------------------------


class PersistentVolumeClaimCache(_ApiModel):
    """A PersistentVolumeClaim holding the model cache, so restarts skip the download."""

    claim_name: str = Field(
        min_length=1,
        description="The claim's name, in the ToolModel's namespace. With more than one replica, use a "
        "ReadWriteMany volume.",
    )
    sub_path: str | None = Field(default=None, description="A directory inside the volume to use as the cache.")


class EmptyDirCache(_ApiModel):
    """A pod-local emptyDir: the model is downloaded again whenever a pod starts."""

    size_limit: Quantity | None = Field(default=None, description="The most disk the cache may use, e.g. 50Gi.")


class ModelCache(_ApiModel):
    """Where downloaded model files live: exactly one of persistentVolumeClaim or emptyDir."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.persistentVolumeClaim) != has(self.emptyDir)",
                    "message": "set exactly one of persistentVolumeClaim or emptyDir",
                }
            ]
        }
    )

    persistent_volume_claim: PersistentVolumeClaimCache | None = Field(
        default=None, description="Keep the cache on this PersistentVolumeClaim."
    )
    empty_dir: EmptyDirCache | None = Field(default=None, description="Keep the cache in a pod-local emptyDir.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelCache:
        if (self.persistent_volume_claim is None) == (self.empty_dir is None):
            raise ValueError("set exactly one of persistentVolumeClaim or emptyDir")
        return self


class HfTokenSecretRef(_ApiModel):
    """A key of a Secret in the ToolModel's namespace holding a Hugging Face token."""

    name: str = Field(min_length=1, description="The Secret's name.")
    key: str = Field(default="token", min_length=1, description="The key in the Secret.")


class StorageSpec(_ApiModel):
    """Model files: the cache volume mounted at /models (HF_HOME) and the Hugging Face token."""

    cache: ModelCache = Field(
        default_factory=lambda: ModelCache(empty_dir=EmptyDirCache()),
        description="The volume mounted at /models, where the engine downloads the model "
        "(HF_HOME=/models); for a dialect the proxy prompts in token ids (chatglm3), also mounted read-only "
        "into the proxy, which reads the model's tokenizer there. Default: an emptyDir.",
        json_schema_extra={"default": {"emptyDir": {}}},
    )
    hf_token_secret_ref: HfTokenSecretRef | None = Field(
        default=None,
        description="Give the engine (and the proxy, for a token-id dialect) this Secret's key as HF_TOKEN, for "
        "gated or private models.",
    )


# -- spec.parallelism, spec.gpu -------------------------------------------------------------------


class ParallelismSpec(_ApiModel):
    """How the model is split across GPUs: tensorParallelSize × pipelineParallelSize GPUs per replica, in one
    pod, or over several nodes (a LeaderWorkerSet: a leader pod and nodes - 1 workers per replica, joined by Ray)
    when they are more than a node has."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.nodes) || "
                    "(self.tensorParallelSize * self.pipelineParallelSize) % self.nodes == 0",
                    "message": "nodes must divide tensorParallelSize × pipelineParallelSize: every node holds as many "
                    "GPUs as the others",
                },
                {
                    "rule": "!has(self.gpusPerNode) || "
                    "(self.tensorParallelSize * self.pipelineParallelSize) % self.gpusPerNode == 0",
                    "message": "gpusPerNode must divide tensorParallelSize × pipelineParallelSize",
                },
                {
                    "rule": "!has(self.nodes) || !has(self.gpusPerNode) || "
                    "self.nodes * self.gpusPerNode == self.tensorParallelSize * self.pipelineParallelSize",
                    "message": "nodes × gpusPerNode must equal tensorParallelSize × pipelineParallelSize",
                },
            ]
        }
    )

    tensor_parallel_size: int = Field(
        default=1, ge=1, le=64, description="GPUs each layer is split across (vLLM --tensor-parallel-size)."
    )
    pipeline_parallel_size: int = Field(
        default=1, ge=1, le=64, description="Pipeline stages the layers are split into (vLLM --pipeline-parallel-size)."
    )
    nodes: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Nodes (pods) each replica spans. More than 1: a LeaderWorkerSet whose leader runs the Ray head "
        "and vLLM (--distributed-executor-backend ray) and whose workers join it, each pod holding gpusPerNode GPUs; "
        "needs LeaderWorkerSet (leaderworkerset.x-k8s.io) in the cluster. Default: 1 when tensorParallelSize × "
        "pipelineParallelSize fit the operator's --max-gpus-per-node, else as many nodes of that many GPUs as they "
        "need (with serving.engine sim, which uses no GPUs: 1).",
    )
    gpus_per_node: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="GPUs of each pod of a replica split over nodes; nodes × gpusPerNode = tensorParallelSize × "
        "pipelineParallelSize. Default: worked out from nodes.",
    )

    @model_validator(mode="after")
    def _nodes_divide_the_gpus(self) -> ParallelismSpec:
        gpus = self.gpus_per_pod
        product = f"tensorParallelSize × pipelineParallelSize = {gpus} GPUs"
        if self.nodes is not None and gpus % self.nodes:
            raise ValueError(
                f"parallelism.nodes {self.nodes} does not divide {product}: every node holds as many GPUs as the "
                f"others; use {_divisors_text(gpus)} nodes"
            )
        if self.gpus_per_node is not None and gpus % self.gpus_per_node:
            raise ValueError(
                f"parallelism.gpusPerNode {self.gpus_per_node} does not divide {product}; use one of "
                f"{_divisors_text(gpus)}"
            )
        if self.nodes is not None and self.gpus_per_node is not None and self.nodes * self.gpus_per_node != gpus:
            raise ValueError(
                f"parallelism.nodes × gpusPerNode = {self.nodes * self.gpus_per_node} GPUs, but {product}; set one of "
                "nodes or gpusPerNode, and the other follows"
            )
        return self

    @property
    def gpus_per_pod(self) -> int:
        """tensorParallelSize × pipelineParallelSize: the GPUs of one replica (of its one pod, on one node)."""
        return self.tensor_parallel_size * self.pipeline_parallel_size


def _divisors_text(number: int) -> str:
    divisors = [str(d) for d in range(1, number + 1) if number % d == 0]
    return ", ".join(divisors[:-1]) + " or " + divisors[-1] if len(divisors) > 1 else divisors[0]


class GpuSpec(_ApiModel):
    """The GPUs the engine runs on and where its pods are scheduled. Ignored when serving.engine is sim."""

    resource_name: str = Field(
        default="nvidia.com/gpu",
        min_length=1,
        description="The extended resource the engine requests, e.g. amd.com/gpu.",
    )
    product: str | None = Field(
        default=None,
        description="Schedule only on nodes with this GPU product, e.g. NVIDIA-A100-SXM4-80GB "
        "(adds the nodeSelector productLabel: product).",
    )
    product_label: str = Field(
        default="nvidia.com/gpu.product",
        min_length=1,
        description="The node label holding the GPU product (set by NVIDIA GPU feature discovery).",
    )
    node_selector: dict[str, str] = Field(default_factory=dict, max_length=64, description="The pod's nodeSelector.")
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, max_length=64, description="The pod's tolerations, as in a Pod spec."
    )
    affinity: dict[str, Any] | None = Field(default=None, description="The pod's affinity, as in a Pod spec.")
    runtime_class_name: str | None = Field(default=None, description="The pod's runtimeClassName, e.g. nvidia.")
    priority_class_name: str | None = Field(default=None, description="The pod's priorityClassName.")


# -- spec.toolCalling -----------------------------------------------------------------------------


class ChatTemplateConfigMapRef(_ApiModel):
    """A key of your own ConfigMap, in the ToolModel's namespace, holding a chat template."""

    name: str = Field(min_length=1, description="The ConfigMap's name.")
    key: str = Field(default="chat-template.jinja", min_length=1, description="The key holding the template.")


class ChatTemplate(_ApiModel):
    """The chat template vLLM renders prompts with: at most one of preset, inline or configMapRef."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.preset) ? 1 : 0) + (has(self.inline) ? 1 : 0) "
                    "+ (has(self.configMapRef) ? 1 : 0) <= 1",
                    "message": "set at most one of preset, inline or configMapRef",
                }
            ]
        }
    )

    preset: str | None = Field(
        default=None,
        description="Use this dialect's built-in template (see `toolmodel dialects`). "
        "Default: the dialect's own template.",
        json_schema_extra={"enum": _DIALECT_NAMES},
    )
    inline: str | None = Field(
        default=None,
        min_length=1,
        max_length=262_144,
        description="The template's Jinja text (at most 256 Ki characters: it must fit a ConfigMap's 1 MiB).",
    )
    config_map_ref: ChatTemplateConfigMapRef | None = Field(
        default=None, description="Mount the template from your own ConfigMap instead of one the operator writes."
    )

    @model_validator(mode="after")
    def _at_most_one(self) -> ChatTemplate:
        given = [name for name, value in self._sources().items() if value is not None]
        if len(given) > 1:
            raise ValueError(f"set at most one of preset, inline or configMapRef (got {' and '.join(given)})")
        return self

    def _sources(self) -> dict[str, object]:
        return {"preset": self.preset, "inline": self.inline, "configMapRef": self.config_map_ref}


class ToolCallingSpec(_ApiModel):
    """How OpenAI tool calls are turned into the model's own format and back."""

    dialect: str | None = Field(
        default=None,
        description="The model family's tool-call format (see `toolmodel dialects`). Default: inferred "
        "from the model's name (chatglm3, Qwen2/2.5/3, QwQ, Hermes, Llama 3.1-3.3).",
        json_schema_extra={"enum": _DIALECT_NAMES},
    )
    mode: Literal["proxy", "native"] = Field(
        default="proxy",
        description="proxy: the sidecar renders and parses tool calls (works with every dialect). native: "
        "vLLM parses them (--enable-auto-tool-choice --tool-call-parser) and the sidecar only relays; "
        "needs a dialect with a vLLM parser.",
    )
    chat_template: ChatTemplate | None = Field(
        default=None,
        description="The chat template mounted into vLLM (--chat-template). Default: the dialect's own "
        "template; for a dialect that keeps the model's template (generic), the model's own.",
    )


# -- spec.adapters --------------------------------------------------------------------------------

_ADAPTER_NAME = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
_HUB_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"
_RELATIVE_PATH = r"^[^/]+(/[^/]+)*$"


class AdapterClaim(_ApiModel):
    """A PersistentVolumeClaim holding an adapter, mounted read-only into the engine's pods."""

    claim_name: str = Field(min_length=1, description="The claim's name, in the ToolModel's namespace.")
    path: str | None = Field(
        default=None,
        min_length=1,
        pattern=_RELATIVE_PATH,
        description="The adapter's directory inside the volume (adapter_config.json and the weights). Default: the "
        "volume's root.",
    )

    @model_validator(mode="after")
    def _inside_the_volume(self) -> AdapterClaim:
        if self.path is not None and ".." in self.path.split("/"):
            raise ValueError(f"path {self.path!r} must stay inside the volume: no '..'")
        return self


class LoraAdapter(_ApiModel):
    """A LoRA adapter vLLM serves beside the base model (--lora-modules NAME=SOURCE): clients send its name as
    "model", and the tool-call dialect stays the base model's."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.huggingFace) != has(self.persistentVolumeClaim)",
                    "message": "set exactly one of huggingFace or persistentVolumeClaim",
                }
            ]
        }
    )

    name: str = Field(
        pattern=_ADAPTER_NAME,
        description="The model name clients send for this adapter (letters, digits, '.', '_' and '-'; at most 63).",
    )
    hugging_face: str | None = Field(
        default=None,
        pattern=_HUB_ID,
        description="A Hugging Face repository holding the adapter (org/name), which vLLM downloads into the cache.",
    )
    persistent_volume_claim: AdapterClaim | None = Field(
        default=None, description="A PersistentVolumeClaim holding the adapter, mounted read-only at /adapters/NAME."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> LoraAdapter:
        if (self.hugging_face is None) == (self.persistent_volume_claim is None):
            raise ValueError(f"adapter {self.name!r}: set exactly one of huggingFace or persistentVolumeClaim")
        return self


# -- spec.serving ---------------------------------------------------------------------------------


class ResourceRequirements(_ApiModel):
    """Compute resources of one container, as in a Pod spec."""

    requests: dict[str, Quantity] = Field(default_factory=dict, description="Resources the container is given.")
    limits: dict[str, Quantity] = Field(default_factory=dict, description="The most the container may use.")


class ServingResources(_ApiModel):
    """Compute resources of the two containers."""

    engine: ResourceRequirements | None = Field(
        default=None,
        description="The engine container's resources. The GPU resource is always set to the GPUs per pod "
        "(tensorParallelSize × pipelineParallelSize) when serving.engine is vllm.",
    )
    proxy: ResourceRequirements | None = Field(
        default=None,
        description="The proxy sidecar's resources, replacing the default (requests cpu 100m, memory 128Mi; "
        "limits memory 512Mi).",
    )


class ServiceSpec(_ApiModel):
    """The Service clients reach the OpenAI API through."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="The Service's type."
    )
    port: int = Field(default=8000, ge=1, le=65535, description="The Service's port.")


Signal = Literal["queueDepth", "runningRequests", "kvCacheUsage", "proxyInFlight"]


class AutoscalingSpec(_ApiModel):
    """Replicas that follow the load: a KEDA ScaledObject (a Prometheus query) or a HorizontalPodAutoscaler
    (autoscaling/v2, a Pods metric through a metrics adapter) scales the Deployment or LeaderWorkerSet, and the
    operator leaves its replicas alone."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.maxReplicas >= self.minReplicas", "message": "maxReplicas must be at least minReplicas"},
                {
                    "rule": "!has(self.target) || self.signal != 'kvCacheUsage' || self.target <= 1.0",
                    "message": "a kvCacheUsage target is the fraction of the KV cache in use: at most 1",
                },
            ]
        }
    )

    min_replicas: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="The fewest replicas (at least 1: every signal comes from the serving pods themselves, so with "
        "none there would be nothing to scale up from).",
    )
    max_replicas: int = Field(ge=1, le=1000, description="The most replicas, each with its own GPUs.")
    signal: Signal = Field(
        default="queueDepth",
        description="What is held at the target, per replica: queueDepth (requests waiting in the engine, "
        "vllm:num_requests_waiting), runningRequests (vllm:num_requests_running), kvCacheUsage (the fraction of "
        "the KV cache in use, vllm:kv_cache_usage_perc) or proxyInFlight (requests the proxy is serving, "
        "toolmodel_proxy_requests_in_flight).",
    )
    target: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="The signal's value per replica the autoscaler aims for. Default: queueDepth 5, "
        "runningRequests 32, kvCacheUsage 0.8, proxyInFlight 32.",
    )
    scale_down_delay_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="How long the load must stay low before replicas are removed (the scale-down stabilization "
        "window): a replica takes minutes to load its model again.",
    )
    via: Literal["keda", "hpa"] | None = Field(
        default=None,
        description="keda: a KEDA ScaledObject querying the operator's Prometheus (its --prometheus-address). hpa: "
        "a HorizontalPodAutoscaler on a Pods metric of that name, served by a metrics adapter such as "
        "prometheus-adapter. Default: keda when KEDA is installed, else hpa.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AutoscalingSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"autoscaling.maxReplicas {self.max_replicas} is below minReplicas {self.min_replicas}: raise "
                "maxReplicas or lower minReplicas"
            )
        if self.signal == "kvCacheUsage" and self.target is not None and self.target > 1:
            raise ValueError(
                f"autoscaling.target {self.target} for kvCacheUsage: the signal is the fraction of the KV cache in "
                "use, so the target is at most 1 (e.g. 0.8)"
            )
        return self


class EndpointPickerRef(_ApiModel):
    """The Service of the Gateway API Inference Extension's endpoint picker (EPP) for the pool."""

    name: str = Field(min_length=1, max_length=253, description="The endpoint picker's Service.")
    port: int = Field(ge=1, le=65535, description="The Service's port.")
    failure_mode: Literal["FailOpen", "FailClose"] | None = Field(
        default=None,
        description="What the gateway does when the picker does not answer: FailOpen routes anyway, FailClose "
        "(the extension's default) refuses.",
    )


class InferencePoolSpec(_ApiModel):
    """An InferencePool (inference.networking.k8s.io/v1) holding the ToolModel's serving pods on the proxy's
    port, for a Gateway that routes through the Gateway API Inference Extension."""

    endpoint_picker_ref: EndpointPickerRef | None = Field(
        default=None, description="The endpoint picker that chooses a pod for each request."
    )


class ApiKeySecretRef(_ApiModel):
    """A key of a Secret in the ToolModel's namespace holding the API key clients must send."""

    name: str = Field(min_length=1, description="The Secret's name.")
    key: str = Field(default="api-key", min_length=1, description="The key in the Secret.")


class ServingSpec(_ApiModel):
    """The workload (a Deployment, or a LeaderWorkerSet across nodes) and the Service serving the model."""

    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Replicas serving the model (a pod each, or a group of pods on parallelism.nodes nodes); each "
        "gets its own GPUs (at most 1000). Not used under autoscaling.",
    )
    engine: Literal["vllm", "sim"] = Field(
        default="vllm",
        description="vllm: the real engine. sim: the simulated engine (`toolmodel sim` in the proxy image, same "
        "arguments) for clusters without GPUs: it requests no GPU and ignores the gpu section.",
    )
    engine_image: str = Field(
        default=DEFAULT_ENGINE_IMAGE,
        min_length=1,
        description=f"The vLLM image. Default: {DEFAULT_ENGINE_IMAGE}, the version this operator release is "
        "tested with (an object without engineImage follows operator upgrades).",
        json_schema_extra=_operator_default,
    )
    proxy_image: str = Field(
        default=DEFAULT_PROXY_IMAGE,
        min_length=1,
        description=f"The tool-call proxy image (also runs the sim engine). Default: {DEFAULT_PROXY_IMAGE}, "
        "matching this operator release.",
        json_schema_extra=_operator_default,
    )
    resources: ServingResources = Field(
        default_factory=ServingResources, description="Compute resources of the engine and proxy containers."
    )
    service: ServiceSpec = Field(
        default_factory=ServiceSpec,
        description="The Service in front of the pods.",
        json_schema_extra={"default": {}},
    )
    api_key_secret_ref: ApiKeySecretRef | None = Field(
        default=None,
        description="Require clients to send this Secret's key as a bearer token (proxy TOOLMODEL_API_KEY).",
    )
    pod_annotations: dict[str, str] = Field(
        default_factory=dict, max_length=64, description="Extra annotations on the pods."
    )
    pod_labels: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description="Extra labels on the pods (the app.kubernetes.io/ labels stay the operator's).",
    )
    shm_size: Quantity | None = Field(
        default=None,
        description="Size of /dev/shm (a memory-backed emptyDir) that vLLM's workers share tensors through. "
        "Default: 1Gi for one GPU per pod, else 2Gi per GPU (tensorParallelSize 4 → 8Gi).",
    )
    startup_timeout_seconds: int = Field(
        default=1800,
        ge=10,
        description="How long the engine may take to download and load the model before its pod is restarted "
        "(the startup probe's budget).",
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="Scale the replicas on a load signal instead of keeping serving.replicas."
    )
    inference_pool: InferencePoolSpec | None = Field(
        default=None,
        description="Also make an InferencePool (inference.networking.k8s.io/v1) of the serving pods, for the "
        "Gateway API Inference Extension; needs its CRDs in the cluster.",
    )


# -- the spec and the object ----------------------------------------------------------------------


class ToolModelSpec(_ApiModel):
    """A model served by vLLM with working OpenAI tool calling."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(!has(self.maxLoras) && !has(self.maxLoraRank)) || "
                    "(has(self.adapters) && size(self.adapters) > 0)",
                    "message": "maxLoras and maxLoraRank are for adapters: set adapters, or leave them out",
                }
            ]
        }
    )

    model: str = Field(
        min_length=1,
        description="The model: a Hugging Face id (THUDM/chatglm3-6b) or a path on the cache volume (/models/x).",
    )
    served_model_name: str | None = Field(
        default=None,
        min_length=1,
        description="The model name clients send. Default: the model's last path segment.",
    )
    tokenizer: str | None = Field(default=None, min_length=1, description="A different tokenizer (vLLM --tokenizer).")
    revision: str | None = Field(
        default=None, min_length=1, description="The model's branch, tag or commit on Hugging Face (vLLM --revision)."
    )
    trust_remote_code: bool = Field(
        default=False,
        description="Run the model repository's own Python code (vLLM --trust-remote-code); chatglm3 needs it.",
    )
    max_model_len: int | None = Field(
        default=None, ge=1, description="The context length in tokens (vLLM --max-model-len). Default: the model's."
    )
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] | None = Field(
        default=None, description="The weights' and activations' type (vLLM --dtype). Default: vLLM's (auto)."
    )
    gpu_memory_utilization: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="The fraction of each GPU's memory vLLM may use (vLLM --gpu-memory-utilization). Default: "
        "vLLM's (0.9).",
    )
    engine_args: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="More vLLM arguments, appended after the operator's, e.g. [--enable-prefix-caching]. "
        "Arguments the spec has fields for are refused.",
    )
    env: list[EnvVar] = Field(default_factory=list, max_length=256, description="More engine environment variables.")
    adapters: list[LoraAdapter] = Field(
        default_factory=list,
        max_length=64,
        description="LoRA adapters served beside the model (vLLM --enable-lora --lora-modules); clients send an "
        'adapter\'s name as "model".',
        # Unique names, as the API server checks a list keyed by a field (no CEL rule: its cost would be quadratic).
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    max_loras: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Adapters one batch may hold (vLLM --max-loras); each takes GPU memory. Default: the number of "
        "adapters.",
    )
    max_lora_rank: Literal[1, 8, 16, 32, 64, 128, 256, 320, 512] | None = Field(
        default=None,
        description="The highest rank of the adapters (vLLM --max-lora-rank). Default: vLLM's (16).",
    )
    storage: StorageSpec = Field(
        default_factory=StorageSpec,
        description="The model cache volume and the Hugging Face token.",
        json_schema_extra={"default": {}},
    )
    parallelism: ParallelismSpec = Field(
        default_factory=ParallelismSpec,
        description="Tensor and pipeline parallelism, and the nodes a replica spans.",
        json_schema_extra={"default": {}},
    )
    gpu: GpuSpec = Field(
        default_factory=GpuSpec,
        description="GPU resource and pod scheduling.",
        json_schema_extra={"default": {}},
    )
    tool_calling: ToolCallingSpec = Field(
        default_factory=ToolCallingSpec,
        description="The tool-call dialect, mode and chat template.",
        json_schema_extra={"default": {}},
    )
    serving: ServingSpec = Field(
        default_factory=ServingSpec,
        description="Replicas or autoscaling, engine, images, resources, the Service and an InferencePool.",
        json_schema_extra={"default": {}},
    )


class Condition(_ApiModel):
    """One aspect of the ToolModel's state, as in metav1.Condition."""

    type: str = Field(min_length=1, description="The condition's type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="Whether the condition holds.")
    reason: str | None = Field(default=None, description="A CamelCase word saying why.")
    message: str | None = Field(default=None, description="A sentence for people saying why.")
    last_transition_time: datetime | None = Field(default=None, description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the condition was computed from."
    )


class ToolModelStatus(_ApiModel):
    """What the operator observed. Other fields (kopf's own bookkeeping) are kept."""

    model_config = ConfigDict(extra="allow")

    phase: Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"] | None = Field(
        default=None, description="A one-word summary of the conditions."
    )
    conditions: list[Condition] = Field(default_factory=list, description="The ToolModel's conditions.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the operator last acted on."
    )
    ready_replicas: int | None = Field(default=None, ge=0, description="Pods ready to serve.")
    replicas: int | None = Field(default=None, ge=0, description="Pods of the current Deployment.")
    endpoint: str | None = Field(default=None, description="The OpenAI base URL inside the cluster.")
    served_model_name: str | None = Field(default=None, description="The model name clients send.")
    dialect: str | None = Field(default=None, description="The tool-call dialect in use (given or inferred).")


class ObjectMeta(BaseModel):
    """The parts of metadata the operator uses; the rest is kept as given."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str = Field(min_length=1)
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ToolModel(_ApiModel):
    """A whole ToolModel object."""

    api_version: Literal["toolmodel.dev/v1alpha1"] = "toolmodel.dev/v1alpha1"
    kind: Literal["ToolModel"] = "ToolModel"
    metadata: ObjectMeta
    spec: ToolModelSpec
    status: ToolModelStatus | None = None
