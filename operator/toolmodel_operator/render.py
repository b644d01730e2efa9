"""A ToolModel's desired objects: a pure function from the object to Kubernetes manifests.

No I/O and no clock: the same ToolModel always gives the same manifests, in the same order
(ConfigMap, Deployment or LeaderWorkerSet, Service, ScaledObject or HorizontalPodAutoscaler,
InferencePool), so the handlers can apply them and tests can compare them. ``InvalidSpec`` is raised
for what the CRD schema cannot check: names from the dialect registry, a vLLM parser for native mode,
GPUs per node, an inferable dialect. ``scale_out`` holds the parts beyond one pod and a fixed count.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import ValidationError

from toolcall_proxy import hub
from toolcall_proxy.dialects import DIALECTS, Dialect
from toolcall_proxy.dialects.detect import detect

from .api import (
    API_VERSION,
    DEFAULT_ENGINE_IMAGE,
    DEFAULT_PROXY_IMAGE,
    KIND,
    LoraAdapter,
    ResourceRequirements,
    ToolModel,
    ToolModelSpec,
    default_served_model_name,
)
from .scale_out import (
    LWS_API_VERSION,
    LWS_WORKER_INDEX_LABEL,
    MAX_MULTI_NODE_NAME,
    RAY_HEAD_PORT,
    AutoscalingDefaults,
    InvalidLayout,
    Layout,
    autoscaler,
    compute_layout,
    inference_pool,
    leader_worker_set_name,
)

__all__ = [
    "ADAPTERS_PATH",
    "CHAT_TEMPLATE_HASH_ANNOTATION",
    "CHAT_TEMPLATE_KEY",
    "CHAT_TEMPLATE_PATH",
    "ENGINE_PORT",
    "PROXY_PORT",
    "AutoscalingDefaults",
    "ChatTemplateSource",
    "ImageDefaults",
    "InvalidSpec",
    "Layout",
    "Reference",
    "ResolvedSpec",
    "chat_template_config_map_name",
    "default_shm_size",
    "endpoint",
    "engine_arguments",
    "infer_dialect",
    "instance_labels",
    "layout",
    "parse_tool_model",
    "render",
    "resolve_dialect",
    "resolved",
    "workload",
]

ENGINE_PORT = 8001  # the engine listens here; only the proxy talks to it
PROXY_PORT = 8000  # the proxy's port, the one the Service exposes
MODEL_CACHE_PATH = "/models"
CHAT_TEMPLATE_DIR = "/etc/toolmodel/chat-template"
CHAT_TEMPLATE_KEY = "chat-template.jinja"
CHAT_TEMPLATE_PATH = f"{CHAT_TEMPLATE_DIR}/{CHAT_TEMPLATE_KEY}"
CHAT_TEMPLATE_HASH_ANNOTATION = "toolmodel.dev/chat-template-hash"
ADAPTERS_PATH = "/adapters"  # a LoRA adapter from a PersistentVolumeClaim is mounted at /adapters/NAME
DEFAULT_MAX_GPUS_PER_NODE = 8

# The engine runs the OpenAI server module rather than the image's ENTRYPOINT: the entrypoint
# changed between vLLM tags (python3 -m vllm.entrypoints.openai.api_server, later `vllm serve`,
# which wants the model as a positional argument and warns about --model). The module takes
# --model in every release, and `toolmodel sim` takes the very same argument list.
VLLM_COMMAND = ("python3", "-m", "vllm.entrypoints.openai.api_server")
SIM_COMMAND = ("toolmodel", "sim")

# A replica on several nodes: the leader starts the Ray head, waits until every node of its group has
# joined (vLLM refuses to start with fewer GPUs than TP x PP), then runs the same server as one node
# does, with the engine's arguments ("$@"). TOOLMODEL_RAY_NODES is the group's size. Were a worker not
# to come, the startup probe's budget runs out and the group is recreated.
RAY_LEADER_SCRIPT = f"""set -e
ray start --head --port={RAY_HEAD_PORT} --disable-usage-stats
until python3 -c 'import os, ray
ray.init(address="auto", logging_level="ERROR")
alive, size = sum(1 for node in ray.nodes() if node["Alive"]), int(os.environ["TOOLMODEL_RAY_NODES"])
print(f"Ray: {{alive}} of {{size}} nodes have joined", flush=True)
raise SystemExit(alive < size)'; do
  sleep 5
done
exec {" ".join(VLLM_COMMAND)} "$@"
"""
# A worker joins its leader's Ray head (LWS_LEADER_ADDRESS, set by LeaderWorkerSet) and stays with it;
# vLLM's workers run in it as Ray actors. When its Ray node ends, so does the container, and
# LeaderWorkerSet recreates the group (restartPolicy RecreateGroupOnPodRestart).
RAY_WORKER_SCRIPT = f"""\
until ray start --address="$LWS_LEADER_ADDRESS:{RAY_HEAD_PORT}" --disable-usage-stats --block; do
  echo "Ray: waiting for the head at $LWS_LEADER_ADDRESS:{RAY_HEAD_PORT}"
  sleep 5
done
"""
# The simulated engine needs no workers: a worker pod holds a node's place and waits, ending on SIGTERM.
SIM_WORKER_COMMAND = (
    "python3",
    "-c",
    "import signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); signal.pause()",
)

_NAME = "toolmodel"
_MANAGED_BY = "toolmodel-operator"
_SERVER_COMPONENT = "server"
_TEMPLATE_COMPONENT = "chat-template"
_AUTOSCALER_COMPONENT = "autoscaler"
_POOL_COMPONENT = "inference-pool"
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")

# Small: the proxy only relays and parses text. Also the sim engine's default.
_SMALL_RESOURCES: dict[str, Any] = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}

_RESTRICTED_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

# engineArgs flags the operator sets itself -> the field to use instead (None: not settable).
_MANAGED_ENGINE_FLAGS: dict[str, str | None] = {
    "--model": "spec.model",
    "--served-model-name": "spec.servedModelName",
    "--host": None,
    "--port": None,
    "--tensor-parallel-size": "spec.parallelism.tensorParallelSize",
    "-tp": "spec.parallelism.tensorParallelSize",
    "--pipeline-parallel-size": "spec.parallelism.pipelineParallelSize",
    "-pp": "spec.parallelism.pipelineParallelSize",
    "--max-model-len": "spec.maxModelLen",
    "--dtype": "spec.dtype",
    "--gpu-memory-utilization": "spec.gpuMemoryUtilization",
    "--trust-remote-code": "spec.trustRemoteCode",
    "--revision": "spec.revision",
    "--tokenizer": "spec.tokenizer",
    "--chat-template": "spec.toolCalling.chatTemplate",
    "--enable-auto-tool-choice": "spec.toolCalling.mode",
    "--tool-call-parser": "spec.toolCalling.mode",
}
# Also the operator's, with adapters: they set them.
_LORA_ENGINE_FLAGS: dict[str, str | None] = {
    "--enable-lora": "spec.adapters",
    "--lora-modules": "spec.adapters",
    "--max-loras": "spec.maxLoras",
    "--max-lora-rank": "spec.maxLoraRank",
}
# Also the operator's, on several nodes: the leader runs vLLM on Ray.
_MULTI_NODE_ENGINE_FLAGS: dict[str, str | None] = {"--distributed-executor-backend": "spec.parallelism.nodes"}


class InvalidSpec(ValueError):
    """A ToolModel the operator cannot serve. ``field`` is the path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        # Schema errors' messages start with their field already.
        return self.message if self.message.startswith(self.field) else f"{self.field}: {self.message}"


# -- reading and checking the object --------------------------------------------------------------


def parse_tool_model(obj: Mapping[str, Any]) -> ToolModel:
    """The object's metadata and spec as the typed model (its status is not read)."""
    document = {key: obj[key] for key in ("apiVersion", "kind", "metadata", "spec") if key in obj}
    try:
        tool_model = ToolModel.model_validate(document)
    except ValidationError as error:
        raise _invalid_from(error) from None
    name = tool_model.metadata.name
    if len(name) > 63 or not _DNS_1035_LABEL.fullmatch(name):
        raise InvalidSpec(
            "metadata.name",
            f"metadata.name {name!r} must be a DNS-1035 label (at most 63 lowercase letters, digits and '-', "
            "starting with a letter): it names the Service",
        )
    return tool_model


def _invalid_from(error: ValidationError) -> InvalidSpec:
    problems = []
    for detail in error.errors():
        path = _error_path(detail["loc"])
        if detail["type"] == "extra_forbidden":
            message = "unknown field; field names are camelCase (see `kubectl explain toolmodel.spec`)"
        elif detail["type"] == "missing":
            message = "required field is missing"
        else:
            message = detail["msg"].removeprefix("Value error, ")
        problems.append((path, message))
    field, message = problems[0]
    message = f"{field}: {message}"
    if len(problems) > 1:
        message += "; also " + "; ".join(f"{path}: {text}" for path, text in problems[1:])
    return InvalidSpec(field, message)


def _error_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "spec"


def infer_dialect(model_id: str) -> str | None:
    """The dialect a model's name suggests (THUDM/chatglm3-6b -> chatglm3), or None if it suggests none."""
    return detect(model_id=model_id).dialect


def resolve_dialect(spec: ToolModelSpec) -> Dialect:
    """The dialect given in toolCalling.dialect, or the one ``dialects.detect`` finds."""
    return _resolve_dialect(spec)[0]


def _resolve_dialect(spec: ToolModelSpec) -> tuple[Dialect, str]:
    """(dialect, where it comes from): toolCalling.dialect, or what ``dialects.detect`` finds in
    the model's name and the inline chat template."""
    known = ", ".join(sorted(DIALECTS))
    name = spec.tool_calling.dialect
    if name is not None:
        if name not in DIALECTS:
            raise InvalidSpec(
                "spec.toolCalling.dialect", f"unknown toolCalling.dialect {name!r}; choose one of: {known}"
            )
        return DIALECTS[name], "spec.toolCalling.dialect"
    inline = spec.tool_calling.chat_template.inline if spec.tool_calling.chat_template is not None else None
    found = detect(model_id=spec.model, chat_template=inline)
    if found.dialect is None:
        evidence = "its name" if inline is None else "its name and toolCalling.chatTemplate.inline"
        raise InvalidSpec(
            "spec.toolCalling.dialect",
            f"cannot detect the tool-call dialect of model {spec.model!r} from {evidence}: {found.reason}; "
            f"set toolCalling.dialect to one of: {known} (generic works with any instruction-tuned model)",
        )
    return DIALECTS[found.dialect], found.reason


@dataclass(frozen=True)
class ChatTemplateSource:
    """Where the engine's chat template comes from: our ConfigMap (text) or the user's (ref)."""

    config_map: str
    key: str
    text: str | None  # None: the user's ConfigMap, not written by the operator
    fingerprint: str  # what the pod-template hash covers


def _chat_template(name: str, spec: ToolModelSpec, dialect: Dialect) -> ChatTemplateSource | None:
    """The template to mount, or None when vLLM should keep the model's own template."""
    chosen = spec.tool_calling.chat_template
    ours = chat_template_config_map_name(name)
    if chosen is not None and chosen.config_map_ref is not None:
        if chosen.inline is not None or chosen.preset is not None:
            raise InvalidSpec(
                "spec.toolCalling.chatTemplate",
                "toolCalling.chatTemplate: set only one of preset, inline or configMapRef",
            )
        ref = chosen.config_map_ref
        # The hash covers the reference only: the handlers watch the user's ConfigMap and roll
        # the pods when its content changes (the renderer does no I/O, so cannot read it).
        return ChatTemplateSource(ref.name, ref.key, None, f"configMapRef:{ref.name}/{ref.key}")
    if chosen is not None and chosen.inline is not None:
        if chosen.preset is not None:
            raise InvalidSpec(
                "spec.toolCalling.chatTemplate", "toolCalling.chatTemplate: set only one of preset or inline"
            )
        return ChatTemplateSource(ours, CHAT_TEMPLATE_KEY, chosen.inline, chosen.inline)
    if chosen is not None and chosen.preset is not None:
        preset = DIALECTS.get(chosen.preset)
        if preset is None:
            raise InvalidSpec(
                "spec.toolCalling.chatTemplate.preset",
                f"unknown toolCalling.chatTemplate.preset {chosen.preset!r}; choose one of: "
                f"{', '.join(sorted(DIALECTS))}",
            )
        return ChatTemplateSource(ours, CHAT_TEMPLATE_KEY, preset.template, preset.template)
    if dialect.transport == "chat":
        # Such a dialect (generic) works through the model's own chat template; its template
        # file is only for models that ship none, so it is used when asked for as a preset.
        return None
    return ChatTemplateSource(ours, CHAT_TEMPLATE_KEY, dialect.template, dialect.template)


def layout(obj: Mapping[str, Any], max_gpus_per_node: int = DEFAULT_MAX_GPUS_PER_NODE) -> Layout:
    """The nodes each replica of this ToolModel spans (one: a Deployment; more: a LeaderWorkerSet)."""
    return _layout(resolved(obj), max_gpus_per_node)


def _layout(resolution: ResolvedSpec, max_gpus_per_node: int) -> Layout:
    try:
        found = compute_layout(resolution.spec, max_gpus_per_node)
    except InvalidLayout as error:
        raise InvalidSpec(error.field, error.message) from None
    if found.multi_node:
        name = resolution.name
        if len(name) > MAX_MULTI_NODE_NAME:
            raise InvalidSpec(
                "metadata.name",
                f"metadata.name {name!r} is too long for a ToolModel on several nodes: at most {MAX_MULTI_NODE_NAME} "
                f"characters, as its LeaderWorkerSet ({leader_worker_set_name(name)}) names StatefulSets and pods "
                "after it, whose names Kubernetes limits",
            )
        _check_engine_args(resolution.spec, _MULTI_NODE_ENGINE_FLAGS, only=True)
    return found


def _check_native_mode(spec: ToolModelSpec, dialect: Dialect) -> None:
    if spec.tool_calling.mode == "native" and dialect.vllm_parser is None:
        with_parser = ", ".join(sorted(name for name, known in DIALECTS.items() if known.vllm_parser))
        raise InvalidSpec(
            "spec.toolCalling.mode",
            f"toolCalling.mode native needs a vLLM tool-call parser, and dialect {dialect.name!r} has none; use "
            f"mode: proxy (the default) or a dialect with one: {with_parser}",
        )


def _check_engine_args(
    spec: ToolModelSpec, managed: Mapping[str, str | None] = _MANAGED_ENGINE_FLAGS, *, only: bool = False
) -> None:
    """engineArgs may not set what the operator sets: ``managed`` (flag -> the field to use instead), and the
    adapters' flags when the spec has adapters (unless ``only``)."""
    if not only and spec.adapters:
        managed = {**managed, **_LORA_ENGINE_FLAGS}
    for index, argument in enumerate(spec.engine_args):
        flag = argument.split("=", 1)[0]
        flag = "-" * (len(flag) - len(flag.lstrip("-"))) + flag.lstrip("-").replace("_", "-")
        if flag not in managed:
            continue
        instead = managed[flag]
        fix = f"set {instead} instead" if instead else "the operator sets it to wire the engine to the proxy"
        raise InvalidSpec(f"spec.engineArgs[{index}]", f"engineArgs may not contain {flag}: {fix}")


def _check_adapters(spec: ToolModelSpec) -> None:
    served = spec.served_model_name or default_served_model_name(spec.model)
    seen: dict[str, int] = {}
    for index, adapter in enumerate(spec.adapters):
        if adapter.name == served:
            raise InvalidSpec(
                f"spec.adapters[{index}].name",
                f"adapters[{index}].name {adapter.name!r} is the served model's own name; give the adapter another",
            )
        if adapter.name in seen:
            raise InvalidSpec(
                f"spec.adapters[{index}].name",
                f"adapters[{index}].name {adapter.name!r} is also adapters[{seen[adapter.name]}]'s; names must be "
                "unique",
            )
        seen[adapter.name] = index
    if not spec.adapters:
        for field, value in (("maxLoras", spec.max_loras), ("maxLoraRank", spec.max_lora_rank)):
            if value is not None:
                raise InvalidSpec(f"spec.{field}", f"{field} is for LoRA adapters: set spec.adapters, or leave it out")


def _check_tokenizer_mode(spec: ToolModelSpec, dialect: Dialect) -> None:
    """A proxy that sends text needs vLLM's Hugging Face tokenizer: mistral-common's (``--tokenizer-mode
    mistral``) encodes a text prompt's control tokens as plain text."""
    if spec.tool_calling.mode != "proxy" or dialect.prompt_form == "token_ids":
        return
    arguments = list(spec.engine_args)
    for index, argument in enumerate(arguments):
        flag, _, value = argument.partition("=")
        if flag != "--tokenizer-mode":
            continue
        value = value or (arguments[index + 1] if index + 1 < len(arguments) else "")
        if value == "mistral":
            raise InvalidSpec(
                f"spec.engineArgs[{index}]",
                "--tokenizer-mode mistral spells out the control tokens of the text prompt the proxy sends "
                f"for dialect {dialect.name!r}: leave it out (vLLM's default, auto, uses the Hugging Face "
                "tokenizer), or use toolCalling.mode native",
            )


# -- the resolved spec ---------------------------------------------------------------------------


class Reference(NamedTuple):
    """An object in the ToolModel's namespace that the spec names, for the handlers to check."""

    field: str  # the spec field naming it
    kind: str  # Secret or ConfigMap
    api_version: str
    name: str
    key: str | None  # the key it must hold


@dataclass(frozen=True)
class ResolvedSpec:
    """A checked ToolModel with its defaults and inferences worked out."""

    tool_model: ToolModel
    dialect_definition: Dialect
    chat_template: ChatTemplateSource | None  # None: vLLM keeps the model's own template
    # Where the dialect comes from: "spec.toolCalling.dialect", or the detection's evidence
    # ("name matches qwen2.5", "template writes <tool_call> and <tools>").
    dialect_reason: str = "spec.toolCalling.dialect"

    @property
    def spec(self) -> ToolModelSpec:
        return self.tool_model.spec

    @property
    def name(self) -> str:
        return self.tool_model.metadata.name

    @property
    def namespace(self) -> str:
        return self.tool_model.metadata.namespace or "default"

    @property
    def dialect(self) -> str:
        return self.dialect_definition.name

    @property
    def served_model_name(self) -> str:
        return self.spec.served_model_name or default_served_model_name(self.spec.model)

    @property
    def endpoint(self) -> str:
        return f"http://{self.name}.{self.namespace}.svc:{self.spec.serving.service.port}/v1"

    @property
    def references(self) -> tuple[Reference, ...]:
        """The Secrets and ConfigMaps the spec names (a missing one leaves the pods stuck)."""
        found: list[Reference] = []
        token = self.spec.storage.hf_token_secret_ref
        if token is not None:
            found.append(Reference("spec.storage.hfTokenSecretRef", "Secret", "v1", token.name, token.key))
        api_key = self.spec.serving.api_key_secret_ref
        if api_key is not None:
            found.append(Reference("spec.serving.apiKeySecretRef", "Secret", "v1", api_key.name, api_key.key))
        template = self.chat_template
        if template is not None and template.text is None:
            found.append(
                Reference(
                    "spec.toolCalling.chatTemplate.configMapRef", "ConfigMap", "v1", template.config_map, template.key
                )
            )
        return tuple(found)


def resolved(obj: Mapping[str, Any]) -> ResolvedSpec:
    """The ToolModel checked (all but the GPUs per node, a setting of the operator) and resolved."""
    tool_model = parse_tool_model(obj)
    spec = tool_model.spec
    dialect, dialect_reason = _resolve_dialect(spec)
    template = _chat_template(tool_model.metadata.name, spec, dialect)
    _check_native_mode(spec, dialect)
    _check_engine_args(spec)
    _check_tokenizer_mode(spec, dialect)
    _check_adapters(spec)
    return ResolvedSpec(tool_model, dialect, template, dialect_reason)


# -- the objects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageDefaults:
    """The images a ToolModel gets when its spec names none: the operator's settings (the Helm
    chart's values), so that upgrading the operator moves those ToolModels along."""

    engine: str = DEFAULT_ENGINE_IMAGE
    proxy: str = DEFAULT_PROXY_IMAGE


def _with_default_images(tool_model: ToolModel, images: ImageDefaults) -> ToolModel:
    serving = tool_model.spec.serving
    update = {}
    if "engine_image" not in serving.model_fields_set:
        update["engine_image"] = images.engine
    if "proxy_image" not in serving.model_fields_set:
        update["proxy_image"] = images.proxy
    spec = tool_model.spec.model_copy(update={"serving": serving.model_copy(update=update)})
    return tool_model.model_copy(update={"spec": spec})


_AUTOSCALING_DEFAULTS = AutoscalingDefaults()


def render(
    obj: Mapping[str, Any],
    *,
    max_gpus_per_node: int = DEFAULT_MAX_GPUS_PER_NODE,
    referenced_template: str | None = None,
    images: ImageDefaults = ImageDefaults(),
    autoscaling: AutoscalingDefaults = _AUTOSCALING_DEFAULTS,
) -> list[dict[str, Any]]:
    """The objects serving this ToolModel: [ConfigMap (unless configMapRef or none), Deployment (one node) or
    LeaderWorkerSet (several), Service, then ScaledObject or HorizontalPodAutoscaler (serving.autoscaling),
    InferencePool (serving.inferencePool)].

    ``referenced_template`` is the text of the user's configMapRef template when the caller has
    read it: the pods' template hash then covers the text, so they roll when it changes.
    ``autoscaling``: the backend for a spec that names none, and KEDA's Prometheus. An autoscaled
    workload has no ``spec.replicas``: the autoscaler owns it.
    """
    resolution = resolved(obj)
    spread = _layout(resolution, max_gpus_per_node)
    template = resolution.chat_template
    if template is not None and template.text is None and referenced_template is not None:
        template = replace(template, fingerprint=f"{template.fingerprint}\n{referenced_template}")
    tool_model = _with_default_images(resolution.tool_model, images)
    dialect = resolution.dialect_definition

    manifests: list[dict[str, Any]] = []
    if template is not None and template.text is not None:
        manifests.append(_config_map(tool_model, template))
    if spread.multi_node:
        manifests.append(_leader_worker_set(tool_model, dialect, template, spread))
    else:
        manifests.append(_deployment(tool_model, dialect, template))
    manifests.append(_service(tool_model, spread))
    serving = tool_model.spec.serving
    if serving.autoscaling is not None:
        target = workload(manifests)
        scaler = autoscaler(
            serving.autoscaling,
            metadata=_metadata(tool_model, tool_model.metadata.name, _AUTOSCALER_COMPONENT),
            namespace=_namespace(tool_model),
            name=tool_model.metadata.name,
            target={"apiVersion": target["apiVersion"], "kind": target["kind"], "name": target["metadata"]["name"]},
            defaults=autoscaling,
        )
        manifests.append(scaler)
    if serving.inference_pool is not None:
        pool = inference_pool(
            serving.inference_pool,
            metadata=_metadata(tool_model, tool_model.metadata.name, _POOL_COMPONENT),
            selector=_serving_selector(tool_model.metadata.name, spread),
            port=PROXY_PORT,
        )
        manifests.append(pool)
    return [_unshared(manifest) for manifest in manifests]


def workload(manifests: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The Deployment or LeaderWorkerSet among ``render``'s manifests."""
    (found,) = [m for m in manifests if (m["apiVersion"], m["kind"]) in _WORKLOADS]
    return dict(found)


_WORKLOADS = {("apps/v1", "Deployment"), (LWS_API_VERSION, "LeaderWorkerSet")}


def _unshared(node: Any) -> Any:
    """A copy in which no dict or list appears twice: safe to mutate, and YAML without aliases."""
    if isinstance(node, Mapping):
        return {key: _unshared(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [_unshared(value) for value in node]
    return node


def endpoint(obj: Mapping[str, Any]) -> str:
    """The OpenAI base URL of the ToolModel's Service inside the cluster."""
    return resolved(obj).endpoint


def chat_template_config_map_name(name: str) -> str:
    return f"{name}-chat-template"


def instance_labels(name: str) -> dict[str, str]:
    """The labels selecting one ToolModel's pods (the Deployment's and Service's selector)."""
    return {"app.kubernetes.io/name": _NAME, "app.kubernetes.io/instance": name}


def default_shm_size(gpus_per_pod: int) -> str:
    """/dev/shm for vLLM: 1Gi for one GPU; 2Gi per GPU when workers exchange tensors through it."""
    return "1Gi" if gpus_per_pod <= 1 else f"{2 * gpus_per_pod}Gi"


def _namespace(tool_model: ToolModel) -> str:
    return tool_model.metadata.namespace or "default"


def _labels(name: str, component: str) -> dict[str, str]:
    return {
        **instance_labels(name),
        "app.kubernetes.io/managed-by": _MANAGED_BY,
        "app.kubernetes.io/component": component,
    }


def _metadata(tool_model: ToolModel, name: str, component: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": _namespace(tool_model),
        "labels": _labels(tool_model.metadata.name, component),
    }
    if tool_model.metadata.uid:
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": tool_model.metadata.name,
                "uid": tool_model.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return metadata


def _config_map(tool_model: ToolModel, template: ChatTemplateSource) -> dict[str, Any]:
    assert template.text is not None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(tool_model, template.config_map, _TEMPLATE_COMPONENT),
        "data": {CHAT_TEMPLATE_KEY: template.text},
    }


def _service(tool_model: ToolModel, spread: Layout) -> dict[str, Any]:
    service = tool_model.spec.serving.service
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(tool_model, tool_model.metadata.name, _SERVER_COMPONENT),
        "spec": {
            "type": service.type,
            "selector": _serving_selector(tool_model.metadata.name, spread),
            "ports": [
                {"name": "http", "port": service.port, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}
            ],
        },
    }


def _serving_selector(name: str, spread: Layout) -> dict[str, str]:
    """The pods that answer requests: all of a Deployment's; of a LeaderWorkerSet, the leaders (the proxy
    and vLLM's API server run there)."""
    if spread.multi_node:
        return {**instance_labels(name), LWS_WORKER_INDEX_LABEL: "0"}
    return instance_labels(name)


def engine_arguments(
    spec: ToolModelSpec, dialect: Dialect, chat_template_mounted: bool, *, distributed: bool = False
) -> list[str]:
    """The engine's arguments: vLLM's OpenAI server flags, taken as they are by `toolmodel sim` too.
    ``distributed``: the leader of a replica on several nodes (vLLM on Ray)."""
    arguments = [
        "--model",
        spec.model,
        "--served-model-name",
        spec.served_model_name or default_served_model_name(spec.model),
        "--host",
        "0.0.0.0",
        "--port",
        str(ENGINE_PORT),
        "--tensor-parallel-size",
        str(spec.parallelism.tensor_parallel_size),
    ]
    if spec.parallelism.pipeline_parallel_size > 1:
        arguments += ["--pipeline-parallel-size", str(spec.parallelism.pipeline_parallel_size)]
    if distributed:
        arguments += ["--distributed-executor-backend", "ray"]
    if spec.max_model_len is not None:
        arguments += ["--max-model-len", str(spec.max_model_len)]
    if spec.dtype is not None:
        arguments += ["--dtype", spec.dtype]
    if spec.gpu_memory_utilization is not None:
        arguments += ["--gpu-memory-utilization", repr(spec.gpu_memory_utilization)]
    if spec.trust_remote_code:
        arguments.append("--trust-remote-code")
    if spec.revision is not None:
        arguments += ["--revision", spec.revision]
    if spec.tokenizer is not None:
        arguments += ["--tokenizer", spec.tokenizer]
    if chat_template_mounted:
        arguments += ["--chat-template", CHAT_TEMPLATE_PATH]
    if spec.tool_calling.mode == "native" and dialect.vllm_parser is not None:
        arguments += ["--enable-auto-tool-choice", "--tool-call-parser", dialect.vllm_parser]
    if spec.adapters:
        modules = [f"{adapter.name}={_adapter_source(adapter)}" for adapter in spec.adapters]
        arguments += ["--enable-lora", "--lora-modules", *modules]
        arguments += ["--max-loras", str(spec.max_loras or len(spec.adapters))]
        if spec.max_lora_rank is not None:
            arguments += ["--max-lora-rank", str(spec.max_lora_rank)]
    return arguments + list(spec.engine_args)


def _adapter_source(adapter: LoraAdapter) -> str:
    """A hub id vLLM downloads, or where the adapter's claim is mounted."""
    return adapter.hugging_face if adapter.hugging_face is not None else f"{ADAPTERS_PATH}/{adapter.name}"


def _deployment(tool_model: ToolModel, dialect: Dialect, template: ChatTemplateSource | None) -> dict[str, Any]:
    spec = tool_model.spec
    name = tool_model.metadata.name
    one_node = Layout(1, spec.parallelism.gpus_per_pod)
    deployment_spec: dict[str, Any] = {
        "replicas": spec.serving.replicas,
        "selector": {"matchLabels": instance_labels(name)},
        # Replace pods one at a time and never add one first: a surge pod would need GPUs
        # beyond those the ToolModel already holds.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
        # Past the startup probe's budget, with room for scheduling and pulling the image,
        # so a slow model download is not reported as a stalled rollout.
        "progressDeadlineSeconds": spec.serving.startup_timeout_seconds + 600,
        "template": _pod_template(tool_model, dialect, template, one_node, "server"),
    }
    if spec.serving.autoscaling is not None:
        del deployment_spec["replicas"]  # the autoscaler's
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(tool_model, name, _SERVER_COMPONENT),
        "spec": deployment_spec,
    }


def _leader_worker_set(
    tool_model: ToolModel, dialect: Dialect, template: ChatTemplateSource | None, spread: Layout
) -> dict[str, Any]:
    """A replica on ``spread.nodes`` nodes: a group of a leader (Ray head, vLLM's server, the proxy) and
    workers (Ray nodes), created, restarted and rolled as one."""
    spec = tool_model.spec
    lws_spec: dict[str, Any] = {
        "replicas": spec.serving.replicas,
        # Workers start with their leader and join its Ray head once it is up.
        "startupPolicy": "LeaderCreated",
        # As the Deployment: one group at a time, none added first (it would need a whole group's GPUs).
        "rolloutStrategy": {
            "type": "RollingUpdate",
            "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0},
        },
        "leaderWorkerTemplate": {
            "size": spread.nodes,
            # A Ray cluster does not survive losing a node: any pod's restart recreates the group.
            "restartPolicy": "RecreateGroupOnPodRestart",
            "leaderTemplate": _pod_template(tool_model, dialect, template, spread, "leader"),
            "workerTemplate": _pod_template(tool_model, dialect, template, spread, "worker"),
        },
    }
    if spec.serving.autoscaling is not None:
        del lws_spec["replicas"]  # the autoscaler's
    return {
        "apiVersion": LWS_API_VERSION,
        "kind": "LeaderWorkerSet",
        "metadata": _metadata(tool_model, leader_worker_set_name(tool_model.metadata.name), _SERVER_COMPONENT),
        "spec": lws_spec,
    }


def _pod_template(
    tool_model: ToolModel,
    dialect: Dialect,
    template: ChatTemplateSource | None,
    spread: Layout,
    role: Literal["server", "leader", "worker"],
) -> dict[str, Any]:
    """A serving pod: the engine and the proxy (a one-node ``server``, or a group's ``leader``), or a
    group's ``worker`` (the engine's Ray node alone)."""
    spec = tool_model.spec
    name = tool_model.metadata.name
    annotations = dict(spec.serving.pod_annotations)
    if role == "worker":
        containers = [_worker_container(spec, spread)]
        volumes = _volumes(spec, None, spread, worker=True)
    else:
        fingerprint = template.fingerprint if template is not None else "model's own chat template"
        annotations[CHAT_TEMPLATE_HASH_ANNOTATION] = hashlib.sha256(fingerprint.encode()).hexdigest()
        containers = [
            _engine_container(spec, dialect, template, spread, leader=role == "leader"),
            _proxy_container(spec, dialect),
        ]
        volumes = _volumes(spec, template, spread)
    annotations["kubectl.kubernetes.io/default-container"] = "engine"  # `kubectl logs` shows vLLM's log
    # The operator's labels win: the selector depends on them.
    pod_labels = {**spec.serving.pod_labels, **_labels(name, _SERVER_COMPONENT)}
    pod_spec: dict[str, Any] = {
        "containers": containers,
        "volumes": volumes,
        "terminationGracePeriodSeconds": 60,
        "enableServiceLinks": False,  # the engine's env stays free of other Services' variables
        "automountServiceAccountToken": False,  # neither container talks to the API server
        **_scheduling(spec),
    }
    return {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": pod_spec}


def _scheduling(spec: ToolModelSpec) -> dict[str, Any]:
    """The pod's placement fields, from spec.gpu. The simulator needs no GPU node, so gets none."""
    if spec.serving.engine == "sim":
        return {}
    gpu = spec.gpu
    fields: dict[str, Any] = {}
    node_selector = dict(gpu.node_selector)
    if gpu.product is not None:
        node_selector[gpu.product_label] = gpu.product
    if node_selector:
        fields["nodeSelector"] = node_selector
    if gpu.tolerations:
        fields["tolerations"] = [dict(toleration) for toleration in gpu.tolerations]
    if gpu.affinity is not None:
        fields["affinity"] = dict(gpu.affinity)
    if gpu.runtime_class_name is not None:
        fields["runtimeClassName"] = gpu.runtime_class_name
    if gpu.priority_class_name is not None:
        fields["priorityClassName"] = gpu.priority_class_name
    return fields


def _volumes(
    spec: ToolModelSpec, template: ChatTemplateSource | None, spread: Layout, *, worker: bool = False
) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = []
    if template is not None:
        volumes.append(
            {
                "name": "chat-template",
                "configMap": {
                    "name": template.config_map,
                    "items": [{"key": template.key, "path": CHAT_TEMPLATE_KEY}],
                },
            }
        )
    shm_size = spec.serving.shm_size or default_shm_size(spread.gpus_per_node)
    volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}})
    cache = spec.storage.cache
    if cache.persistent_volume_claim is not None:
        volumes.append(
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": cache.persistent_volume_claim.claim_name}}
        )
    else:
        empty_dir: dict[str, Any] = {}
        if cache.empty_dir is not None and cache.empty_dir.size_limit is not None:
            empty_dir["sizeLimit"] = cache.empty_dir.size_limit
        volumes.append({"name": "model-cache", "emptyDir": empty_dir})
    if not worker:
        # A writable /tmp for the containers running the proxy image with a read-only root.
        volumes.append({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}})
    for claim, volume in _adapter_claim_volumes(spec).items():
        if volume != "model-cache":
            volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
    return volumes


def _adapter_claim_volumes(spec: ToolModelSpec) -> dict[str, str]:
    """The adapters' claims, each a volume once (claim -> volume name): adapters-0, adapters-1, ...; the
    model cache's own claim is the volume model-cache already."""
    cache_claim = spec.storage.cache.persistent_volume_claim
    found: dict[str, str] = {}
    for adapter in spec.adapters:
        claim = adapter.persistent_volume_claim
        if claim is None or claim.claim_name in found:
            continue
        if cache_claim is not None and claim.claim_name == cache_claim.claim_name:
            found[claim.claim_name] = "model-cache"
        else:
            found[claim.claim_name] = f"adapters-{sum(volume != 'model-cache' for volume in found.values())}"
    return found


def _adapter_mounts(spec: ToolModelSpec) -> list[dict[str, Any]]:
    """Each claim-held adapter, read-only at /adapters/NAME."""
    volumes = _adapter_claim_volumes(spec)
    mounts: list[dict[str, Any]] = []
    for adapter in spec.adapters:
        claim = adapter.persistent_volume_claim
        if claim is None:
            continue
        mount: dict[str, Any] = {
            "name": volumes[claim.claim_name],
            "mountPath": f"{ADAPTERS_PATH}/{adapter.name}",
            "readOnly": True,
        }
        if claim.path is not None:
            mount["subPath"] = claim.path
        mounts.append(mount)
    return mounts


def _engine_container(
    spec: ToolModelSpec,
    dialect: Dialect,
    template: ChatTemplateSource | None,
    spread: Layout,
    *,
    leader: bool = False,
) -> dict[str, Any]:
    """The engine of a one-node pod, or of a multi-node group's leader (``leader``: vLLM on Ray)."""
    simulated = spec.serving.engine == "sim"
    mounts: list[dict[str, Any]] = []
    if template is not None:
        mounts.append({"name": "chat-template", "mountPath": CHAT_TEMPLATE_DIR, "readOnly": True})
    mounts += [{"name": "shm", "mountPath": "/dev/shm"}, _cache_mount(spec)]
    if simulated:
        mounts.append({"name": "tmp", "mountPath": "/tmp"})
    mounts += _adapter_mounts(spec)

    health = {"httpGet": {"path": "/health", "port": ENGINE_PORT}}
    command = list(SIM_COMMAND if simulated else VLLM_COMMAND)
    ports = [{"name": "engine", "containerPort": ENGINE_PORT, "protocol": "TCP"}]
    env = _engine_env(spec)
    if leader and not simulated:
        command = ["/bin/sh", "-c", RAY_LEADER_SCRIPT, "ray-leader"]  # then "$@": the engine's arguments
        ports.append({"name": "ray", "containerPort": RAY_HEAD_PORT, "protocol": "TCP"})
        env = [*env, {"name": "TOOLMODEL_RAY_NODES", "value": str(spread.nodes)}]
    container: dict[str, Any] = {
        "name": "engine",
        "image": spec.serving.proxy_image if simulated else spec.serving.engine_image,
        "command": command,
        "args": engine_arguments(spec, dialect, chat_template_mounted=template is not None, distributed=leader),
        "ports": ports,
        "env": env,
        "resources": _engine_resources(spec, spread.gpus_per_node),
        "volumeMounts": mounts,
        # Downloading and loading a model takes minutes: the startup probe holds the other two
        # back for up to startupTimeoutSeconds (on several nodes, also while the workers join).
        "startupProbe": {
            **health,
            "periodSeconds": 10,
            "failureThreshold": max(1, math.ceil(spec.serving.startup_timeout_seconds / 10)),
        },
        "readinessProbe": {**health, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        # A busy engine answers /health late: allow 10 s before counting a failure.
        "livenessProbe": {**health, "periodSeconds": 15, "timeoutSeconds": 10, "failureThreshold": 3},
    }
    if simulated:
        # Our own image: it runs as the restricted user. vLLM's image expects root.
        container["securityContext"] = dict(_RESTRICTED_SECURITY_CONTEXT)
    return container


def _worker_container(spec: ToolModelSpec, spread: Layout) -> dict[str, Any]:
    """A multi-node group's worker: a Ray node of the leader's cluster, where vLLM's workers for this
    node's GPUs run. Its health is the leader's: no probes here (vLLM's /health on the leader fails when
    a worker does, and the group is recreated); the container ends when its Ray node does."""
    if spec.serving.engine == "sim":
        given = spec.serving.resources.engine
        return {
            "name": "engine",
            "image": spec.serving.proxy_image,
            "command": list(SIM_WORKER_COMMAND),
            "resources": _resources_dict(given) if given is not None else _copy_resources(_SMALL_RESOURCES),
            "securityContext": dict(_RESTRICTED_SECURITY_CONTEXT),
        }
    mounts = [{"name": "shm", "mountPath": "/dev/shm"}, _cache_mount(spec), *_adapter_mounts(spec)]
    return {
        "name": "engine",
        "image": spec.serving.engine_image,
        "command": ["/bin/sh", "-c", RAY_WORKER_SCRIPT],
        # The model's files are read on every node: the same cache, token and environment as the leader.
        "env": _engine_env(spec),
        "resources": _engine_resources(spec, spread.gpus_per_node),
        "volumeMounts": mounts,
    }


def _cache_mount(spec: ToolModelSpec, *, read_only: bool = False) -> dict[str, Any]:
    """The model cache's mount: the engine's, and the same path and subPath read-only in the proxy."""
    mount: dict[str, Any] = {"name": "model-cache", "mountPath": MODEL_CACHE_PATH}
    claim = spec.storage.cache.persistent_volume_claim
    if claim is not None and claim.sub_path:
        mount["subPath"] = claim.sub_path
    if read_only:
        mount["readOnly"] = True
    return mount


def _engine_env(spec: ToolModelSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "HF_HOME", "value": MODEL_CACHE_PATH}]
    token = spec.storage.hf_token_secret_ref
    if token is not None:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}}})
    user_env = [variable.model_dump(by_alias=True, exclude_none=True) for variable in spec.env]
    # A variable the user sets replaces the operator's (Kubernetes would keep the last of duplicates).
    overridden = {variable["name"] for variable in user_env}
    return [variable for variable in env if variable["name"] not in overridden] + user_env


def _engine_resources(spec: ToolModelSpec, gpus_per_pod: int) -> dict[str, Any]:
    given = spec.serving.resources.engine
    if spec.serving.engine == "sim":
        return _resources_dict(given) if given is not None else _copy_resources(_SMALL_RESOURCES)
    resources = _resources_dict(given or ResourceRequirements())
    gpus = str(gpus_per_pod)
    # GPUs cannot be overcommitted: request and limit are the same, one per tensor × pipeline rank.
    resources.setdefault("requests", {})[spec.gpu.resource_name] = gpus
    resources.setdefault("limits", {})[spec.gpu.resource_name] = gpus
    return resources


def _resources_dict(resources: ResourceRequirements) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if resources.requests:
        result["requests"] = dict(resources.requests)
    if resources.limits:
        result["limits"] = dict(resources.limits)
    return result


def _copy_resources(resources: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {kind: dict(amounts) for kind, amounts in resources.items()}


def _proxy_container(spec: ToolModelSpec, dialect: Dialect) -> dict[str, Any]:
    # The names are the proxy's settings.ENVIRONMENT (a test keeps them in step); not imported
    # from there because that module's package pulls in the whole server.
    env: list[dict[str, Any]] = [
        {"name": "TOOLMODEL_UPSTREAM", "value": f"http://127.0.0.1:{ENGINE_PORT}"},
        {"name": "TOOLMODEL_DIALECT", "value": dialect.name},
        {"name": "TOOLMODEL_HOST", "value": "0.0.0.0"},
        {"name": "TOOLMODEL_PORT", "value": str(PROXY_PORT)},
        {"name": "TOOLMODEL_MODE", "value": spec.tool_calling.mode},
    ]
    api_key = spec.serving.api_key_secret_ref
    if api_key is not None:
        env.append(
            {"name": "TOOLMODEL_API_KEY", "valueFrom": {"secretKeyRef": {"name": api_key.name, "key": api_key.key}}}
        )
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    tokenizing = _proxy_tokenizes(spec, dialect)
    if tokenizing:
        env += _tokenizer_env(spec)
        mounts.append(_cache_mount(spec, read_only=True))
    given = spec.serving.resources.proxy
    container: dict[str, Any] = {
        "name": "proxy",
        "image": spec.serving.proxy_image,
        "args": ["proxy"],
        "ports": [{"name": "http", "containerPort": PROXY_PORT, "protocol": "TCP"}],
        "env": env,
        "resources": _resources_dict(given) if given is not None else _copy_resources(_SMALL_RESOURCES),
        "volumeMounts": mounts,
        # The proxy's /health asks the engine's: ready means the whole pod can answer. A proxy
        # that tokenizes is also unready until it has the tokenizer, which may come with the
        # model's download; it listens meanwhile, so the TCP liveness probe leaves it alone.
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 15, "failureThreshold": 3},
        "securityContext": dict(_RESTRICTED_SECURITY_CONTEXT),
    }
    if tokenizing:
        # The proxy writes why it cannot serve (no usable tokenizer) to /dev/termination-log;
        # other failures leave the end of its log there. The ToolModel's status shows it.
        container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return container


def _proxy_tokenizes(spec: ToolModelSpec, dialect: Dialect) -> bool:
    """The proxy prompts the engine in token ids, built with the model's own tokenizer (ChatGLM3),
    as it does in proxy mode; native mode relays."""
    return dialect.prompt_form == "token_ids" and spec.tool_calling.mode == "proxy"


# The engine's Hugging Face settings the proxy reads (the proxy's hub module) to find the
# tokenizer where the engine downloads it, or to fetch it as the engine would.
_HF_SETTINGS = ("HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE")


def _tokenizer_env(spec: ToolModelSpec) -> list[dict[str, Any]]:
    """Where the proxy finds the model's tokenizer: the model id (or directory) vLLM loads its
    tokenizer from, at its revision, in the cache the engine downloads into (HF_HOME as the engine
    has it, the volume mounted read-only at the same path), waiting as long as the engine's startup
    probe lets the engine download; HF_TOKEN and the other Hugging Face settings as the engine has
    them, for the proxy's own download. A simulated engine publishes the tokenizer it serves with
    in a directory of its own beside the cache, and the proxy reads that one."""
    settings = [dict(variable) for variable in _engine_env(spec) if variable["name"] in _HF_SETTINGS]
    source = spec.tokenizer or spec.model
    if spec.serving.engine == "sim":
        home = next((v.get("value") for v in settings if v["name"] == "HF_HOME"), None) or MODEL_CACHE_PATH
        source = str(hub.simulated_tokenizer_dir(spec.model, Path(home)))
    env: list[dict[str, Any]] = [{"name": "TOOLMODEL_TOKENIZER", "value": source}]
    if spec.revision is not None:
        # vLLM's --tokenizer-revision defaults to --revision, also for another --tokenizer.
        env.append({"name": "TOOLMODEL_TOKENIZER_REVISION", "value": spec.revision})
    env.append({"name": "TOOLMODEL_TOKENIZER_WAIT", "value": str(spec.serving.startup_timeout_seconds)})
    return env + settings
