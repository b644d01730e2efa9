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
    "ApiKeySecretRef",
    "ChatTemplate",
    "ChatTemplateConfigMapRef",
    "Condition",
    "EmptyDirCache",
    "EnvVar",
    "GpuSpec",
    "HfTokenSecretRef",
    "ModelCache",
    "ObjectMeta",
    "ParallelismSpec",
    "PersistentVolumeClaimCache",
    "Quantity",
    "ResourceRequirements",
    "ServiceSpec",
    "ServingResources",
    "ServingSpec",
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
    """How the model is split across GPUs. One pod gets tensorParallelSize × pipelineParallelSize GPUs."""

    tensor_parallel_size: int = Field(
        default=1, ge=1, le=64, description="GPUs each layer is split across (vLLM --tensor-parallel-size)."
    )
    pipeline_parallel_size: int = Field(
        default=1, ge=1, le=64, description="Pipeline stages the layers are split into (vLLM --pipeline-parallel-size)."
    )

    @property
    def gpus_per_pod(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


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


class ApiKeySecretRef(_ApiModel):
    """A key of a Secret in the ToolModel's namespace holding the API key clients must send."""

    name: str = Field(min_length=1, description="The Secret's name.")
    key: str = Field(default="api-key", min_length=1, description="The key in the Secret.")


class ServingSpec(_ApiModel):
    """The Deployment and Service serving the model."""

    replicas: int = Field(
        default=1, ge=0, le=1000, description="Pods serving the model; each gets its own GPUs (at most 1000)."
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


# -- the spec and the object ----------------------------------------------------------------------


class ToolModelSpec(_ApiModel):
    """A model served by vLLM with working OpenAI tool calling."""

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
    storage: StorageSpec = Field(
        default_factory=StorageSpec,
        description="The model cache volume and the Hugging Face token.",
        json_schema_extra={"default": {}},
    )
    parallelism: ParallelismSpec = Field(
        default_factory=ParallelismSpec,
        description="Tensor and pipeline parallelism.",
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
        description="Replicas, engine, images, resources and the Service.",
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
