"""The pure renderer: a ToolModel in, the ConfigMap, Deployment and Service it needs out."""

from __future__ import annotations

import copy
import hashlib

import kubernetes_validate
import pytest
import yaml
from _toolmodels import by_kind, container, env, flag_value, pod_spec, tool_model, volumes

from toolcall_proxy.dialects import DIALECTS
from toolcall_proxy.server.settings import ENVIRONMENT
from toolmodel_operator.api import DEFAULT_ENGINE_IMAGE, DEFAULT_PROXY_IMAGE
from toolmodel_operator.render import (
    CHAT_TEMPLATE_HASH_ANNOTATION,
    CHAT_TEMPLATE_PATH,
    SIM_COMMAND,
    VLLM_COMMAND,
    InvalidSpec,
    Reference,
    default_shm_size,
    endpoint,
    render,
    resolved,
)

CHATGLM3 = {"model": "THUDM/chatglm3-6b", "trustRemoteCode": True}
QWEN = {"model": "Qwen/Qwen2.5-7B-Instruct"}
MISTRAL = {"model": "mistralai/Mistral-7B-Instruct-v0.3", "toolCalling": {"dialect": "generic"}}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def template_hash(manifests: list[dict]) -> str:
    return by_kind(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"][
        CHAT_TEMPLATE_HASH_ANNOTATION
    ]


def invalid(spec: dict, **options: int) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as caught:
        render(tool_model(spec), **options)
    return caught.value


# -- the three objects ----------------------------------------------------------------------------


def test_the_seed_model_gives_a_configmap_a_deployment_and_a_service_in_that_order():
    manifests = render(tool_model(CHATGLM3, name="glm"))
    assert [(m["kind"], m["metadata"]["name"]) for m in manifests] == [
        ("ConfigMap", "glm-chat-template"),
        ("Deployment", "glm"),
        ("Service", "glm"),
    ]
    assert [m["apiVersion"] for m in manifests] == ["v1", "apps/v1", "v1"]
    assert {m["metadata"]["namespace"] for m in manifests} == {"ml"}


def test_every_object_carries_the_recommended_labels():
    manifests = render(tool_model(CHATGLM3, name="glm"))
    components = {}
    for manifest in manifests:
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "toolmodel"
        assert labels["app.kubernetes.io/instance"] == "glm"
        assert labels["app.kubernetes.io/managed-by"] == "toolmodel-operator"
        components[manifest["kind"]] = labels["app.kubernetes.io/component"]
    assert components == {"ConfigMap": "chat-template", "Deployment": "server", "Service": "server"}


def test_objects_are_owned_by_the_toolmodel_when_its_uid_is_known():
    obj = tool_model(CHATGLM3, name="glm", uid="abc-123")
    for manifest in render(obj):
        assert manifest["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "toolmodel.dev/v1alpha1",
                "kind": "ToolModel",
                "name": "glm",
                "uid": "abc-123",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_without_a_uid_there_are_no_owner_references():
    for manifest in render(tool_model(CHATGLM3, uid=None)):
        assert "ownerReferences" not in manifest["metadata"]


def test_the_namespace_defaults_to_default():
    manifests = render(tool_model(CHATGLM3, namespace=None))
    assert {m["metadata"]["namespace"] for m in manifests} == {"default"}
    assert endpoint(tool_model(CHATGLM3, name="glm", namespace=None)) == "http://glm.default.svc:8000/v1"


def test_endpoint_is_the_service_url_with_its_port():
    assert endpoint(tool_model(CHATGLM3, name="glm")) == "http://glm.ml.svc:8000/v1"
    spec = {**CHATGLM3, "serving": {"service": {"port": 80}}}
    assert endpoint(tool_model(spec, name="glm", namespace="ai")) == "http://glm.ai.svc:80/v1"


def test_render_is_deterministic_and_leaves_its_input_alone():
    obj = tool_model({**CHATGLM3, "gpu": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}})
    before = copy.deepcopy(obj)
    assert render(obj) == render(obj)
    assert obj == before


def test_rendered_objects_share_no_parts():
    manifests = render(tool_model({**CHATGLM3, "gpu": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}}))
    assert "&id" not in yaml.safe_dump_all(manifests)  # PyYAML anchors repeated objects
    engine, _proxy = pod_spec(manifests)["containers"]
    engine["readinessProbe"]["httpGet"]["path"] = "/changed"
    assert engine["livenessProbe"]["httpGet"]["path"] == "/health"


def test_the_status_is_not_read():
    obj = tool_model(CHATGLM3)
    obj["status"] = {"phase": "Sideways", "kopf": {"progress": {}}}
    assert render(obj) == render(tool_model(CHATGLM3))


# -- the resolved spec, for the handlers ----------------------------------------------------------


def test_resolved_gives_the_dialect_served_name_endpoint_and_references():
    spec = {
        **QWEN,
        "storage": {"hfTokenSecretRef": {"name": "hf"}},
        "serving": {"apiKeySecretRef": {"name": "keys", "key": "k"}},
        "toolCalling": {"chatTemplate": {"configMapRef": {"name": "mine"}}},
    }
    resolution = resolved(tool_model(spec, name="qwen"))
    assert resolution.dialect == "hermes"
    assert resolution.served_model_name == "Qwen2.5-7B-Instruct"
    assert resolution.endpoint == "http://qwen.ml.svc:8000/v1"
    assert resolution.references == (
        Reference("spec.storage.hfTokenSecretRef", "Secret", "v1", "hf", "token"),
        Reference("spec.serving.apiKeySecretRef", "Secret", "v1", "keys", "k"),
        Reference("spec.toolCalling.chatTemplate.configMapRef", "ConfigMap", "v1", "mine", "chat-template.jinja"),
    )
    assert resolved(tool_model(CHATGLM3)).references == ()


def test_resolved_leaves_the_gpus_per_node_to_render():
    spec = {**CHATGLM3, "parallelism": {"tensorParallelSize": 12}}
    assert resolved(tool_model(spec)).spec.parallelism.gpus_per_pod == 12
    with pytest.raises(InvalidSpec):
        render(tool_model(spec))  # 12 GPUs do not split over nodes of 8


# -- the chat template ----------------------------------------------------------------------------


def test_by_default_the_dialect_s_own_template_is_mounted_and_hashed():
    manifests = render(tool_model(CHATGLM3))
    template = DIALECTS["chatglm3"].template
    assert by_kind(manifests, "ConfigMap")["data"] == {"chat-template.jinja": template}
    assert template_hash(manifests) == sha256(template)
    engine = container(manifests, "engine")
    assert flag_value(engine["args"], "--chat-template") == CHAT_TEMPLATE_PATH
    assert {"name": "chat-template", "mountPath": "/etc/toolmodel/chat-template", "readOnly": True} in engine[
        "volumeMounts"
    ]
    assert volumes(manifests)["chat-template"]["configMap"] == {
        "name": "demo-chat-template",
        "items": [{"key": "chat-template.jinja", "path": "chat-template.jinja"}],
    }


def test_a_preset_mounts_another_dialect_s_template():
    spec = {**QWEN, "toolCalling": {"dialect": "hermes", "chatTemplate": {"preset": "generic"}}}
    manifests = render(tool_model(spec))
    assert by_kind(manifests, "ConfigMap")["data"]["chat-template.jinja"] == DIALECTS["generic"].template
    assert template_hash(manifests) == sha256(DIALECTS["generic"].template)
    assert env(container(manifests, "proxy"))["TOOLMODEL_DIALECT"]["value"] == "hermes"


def test_an_inline_template_is_written_to_the_configmap():
    spec = {**CHATGLM3, "toolCalling": {"chatTemplate": {"inline": "{{ messages }}"}}}
    manifests = render(tool_model(spec))
    assert by_kind(manifests, "ConfigMap")["data"] == {"chat-template.jinja": "{{ messages }}"}
    assert template_hash(manifests) == sha256("{{ messages }}")


def test_the_template_hash_changes_with_the_template_and_only_then():
    def rendered(text: str) -> list[dict]:
        return render(tool_model({**CHATGLM3, "toolCalling": {"chatTemplate": {"inline": text}}}))

    assert template_hash(rendered("a")) == template_hash(rendered("a"))
    assert template_hash(rendered("a")) != template_hash(rendered("b"))
    assert template_hash(render(tool_model(CHATGLM3))) != template_hash(rendered("a"))


def test_a_configmap_ref_mounts_the_user_s_configmap_and_writes_none():
    spec = {**CHATGLM3, "toolCalling": {"chatTemplate": {"configMapRef": {"name": "mine", "key": "glm.jinja"}}}}
    manifests = render(tool_model(spec))
    assert [m["kind"] for m in manifests] == ["Deployment", "Service"]
    assert volumes(manifests)["chat-template"]["configMap"] == {
        "name": "mine",
        "items": [{"key": "glm.jinja", "path": "chat-template.jinja"}],
    }
    assert flag_value(container(manifests, "engine")["args"], "--chat-template") == CHAT_TEMPLATE_PATH
    assert template_hash(manifests) == sha256("configMapRef:mine/glm.jinja")


def test_a_configmap_ref_hash_covers_the_text_when_the_caller_read_it():
    obj = tool_model({**CHATGLM3, "toolCalling": {"chatTemplate": {"configMapRef": {"name": "mine"}}}})
    first = template_hash(render(obj, referenced_template="one"))
    assert first == template_hash(render(obj, referenced_template="one"))
    assert first != template_hash(render(obj, referenced_template="two"))
    assert first != template_hash(render(obj))
    # For a template the operator writes itself, the text is already covered.
    assert template_hash(render(tool_model(CHATGLM3), referenced_template="x")) == template_hash(
        render(tool_model(CHATGLM3))
    )


def test_a_dialect_that_keeps_the_model_s_template_mounts_none():
    manifests = render(tool_model(MISTRAL))
    assert [m["kind"] for m in manifests] == ["Deployment", "Service"]
    engine = container(manifests, "engine")
    assert "--chat-template" not in engine["args"]
    assert "chat-template" not in volumes(manifests)
    assert all(mount["name"] != "chat-template" for mount in engine["volumeMounts"])
    assert env(container(manifests, "proxy"))["TOOLMODEL_DIALECT"]["value"] == "generic"


def test_the_generic_template_is_used_when_asked_for_as_a_preset():
    spec = {**MISTRAL, "toolCalling": {"dialect": "generic", "chatTemplate": {"preset": "generic"}}}
    manifests = render(tool_model(spec))
    assert by_kind(manifests, "ConfigMap")["data"]["chat-template.jinja"] == DIALECTS["generic"].template


@pytest.mark.parametrize(
    "chat_template",
    [
        {"inline": "x", "configMapRef": {"name": "mine"}},
        {"preset": "hermes", "inline": "x"},
        {"preset": "hermes", "configMapRef": {"name": "mine"}},
    ],
)
def test_two_template_sources_are_refused(chat_template):
    error = invalid({**CHATGLM3, "toolCalling": {"chatTemplate": chat_template}})
    assert error.field == "spec.toolCalling.chatTemplate"
    assert "at most one of preset, inline or configMapRef" in error.message


def test_an_unknown_preset_is_refused_with_the_known_ones():
    error = invalid({**CHATGLM3, "toolCalling": {"chatTemplate": {"preset": "gpt"}}})
    assert error.field == "spec.toolCalling.chatTemplate.preset"
    assert "toolCalling.chatTemplate.preset" in error.message and "'gpt'" in error.message
    assert all(name in error.message for name in DIALECTS)


# -- the dialect ----------------------------------------------------------------------------------


# Detection itself (templates, config.json, names) is tested in tests/dialects/test_detect.py.


def test_an_omitted_dialect_is_inferred():
    manifests = render(tool_model(QWEN))
    assert env(container(manifests, "proxy"))["TOOLMODEL_DIALECT"]["value"] == "hermes"
    assert by_kind(manifests, "ConfigMap")["data"]["chat-template.jinja"] == DIALECTS["hermes"].template


def test_a_given_dialect_wins_over_the_inferred_one():
    manifests = render(tool_model({**QWEN, "toolCalling": {"dialect": "generic"}}))
    assert env(container(manifests, "proxy"))["TOOLMODEL_DIALECT"]["value"] == "generic"


def test_a_dialect_that_cannot_be_inferred_must_be_given():
    error = invalid({"model": "acme/widget-7b-instruct"})
    assert error.field == "spec.toolCalling.dialect"
    assert "set toolCalling.dialect" in error.message and "acme/widget-7b-instruct" in error.message
    assert all(name in error.message for name in DIALECTS)


def test_an_unknown_dialect_is_refused_with_the_known_ones():
    error = invalid({**CHATGLM3, "toolCalling": {"dialect": "chatglm4"}})
    assert error.field == "spec.toolCalling.dialect"
    assert "toolCalling.dialect" in error.message and "'chatglm4'" in error.message
    assert all(name in error.message for name in DIALECTS)


# -- tool-call mode -------------------------------------------------------------------------------


def test_proxy_mode_leaves_vllm_without_a_tool_parser():
    manifests = render(tool_model(QWEN))
    arguments = container(manifests, "engine")["args"]
    assert "--enable-auto-tool-choice" not in arguments and "--tool-call-parser" not in arguments
    assert env(container(manifests, "proxy"))["TOOLMODEL_MODE"]["value"] == "proxy"


@pytest.mark.parametrize(("model", "parser"), [(QWEN, "hermes"), ({"model": "meta-llama/Llama-3.1-8B"}, "llama3_json")])
def test_native_mode_has_vllm_parse_with_the_dialect_s_parser(model, parser):
    manifests = render(tool_model({**model, "toolCalling": {"mode": "native"}}))
    arguments = container(manifests, "engine")["args"]
    assert "--enable-auto-tool-choice" in arguments
    assert flag_value(arguments, "--tool-call-parser") == parser
    assert env(container(manifests, "proxy"))["TOOLMODEL_MODE"]["value"] == "native"


def test_native_mode_needs_a_dialect_with_a_vllm_parser():
    error = invalid({**CHATGLM3, "toolCalling": {"mode": "native"}})
    assert error.field == "spec.toolCalling.mode"
    assert "'chatglm3' has none" in error.message and "mode: proxy" in error.message
    assert "hermes" in error.message and "llama3_json" in error.message


# -- engine arguments -----------------------------------------------------------------------------


def test_the_fewest_engine_arguments():
    arguments = container(render(tool_model({"model": "Qwen/Qwen2.5-7B-Instruct"})), "engine")["args"]
    assert arguments == [
        "--model",
        "Qwen/Qwen2.5-7B-Instruct",
        "--served-model-name",
        "Qwen2.5-7B-Instruct",
        "--host",
        "0.0.0.0",
        "--port",
        "8001",
        "--tensor-parallel-size",
        "1",
        "--chat-template",
        CHAT_TEMPLATE_PATH,
    ]


def test_every_engine_field_becomes_its_vllm_flag_in_a_fixed_order():
    spec = {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "servedModelName": "qwen",
        "tokenizer": "Qwen/Qwen2.5-7B-Instruct-tok",
        "revision": "v1",
        "trustRemoteCode": True,
        "maxModelLen": 4096,
        "dtype": "bfloat16",
        "gpuMemoryUtilization": 0.85,
        "engineArgs": ["--enable-prefix-caching", "--max-num-seqs", "64"],
        "parallelism": {"tensorParallelSize": 2, "pipelineParallelSize": 2},
        "toolCalling": {"mode": "native"},
    }
    assert container(render(tool_model(spec)), "engine")["args"] == [
        "--model",
        "Qwen/Qwen2.5-7B-Instruct",
        "--served-model-name",
        "qwen",
        "--host",
        "0.0.0.0",
        "--port",
        "8001",
        "--tensor-parallel-size",
        "2",
        "--pipeline-parallel-size",
        "2",
        "--max-model-len",
        "4096",
        "--dtype",
        "bfloat16",
        "--gpu-memory-utilization",
        "0.85",
        "--trust-remote-code",
        "--revision",
        "v1",
        "--tokenizer",
        "Qwen/Qwen2.5-7B-Instruct-tok",
        "--chat-template",
        CHAT_TEMPLATE_PATH,
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "hermes",
        "--enable-prefix-caching",
        "--max-num-seqs",
        "64",
    ]


def test_the_served_model_name_defaults_to_the_model_s_last_path_segment():
    arguments = container(render(tool_model({"model": "/models/chatglm3-6b/"})), "engine")["args"]
    assert flag_value(arguments, "--served-model-name") == "chatglm3-6b"


def test_the_engine_runs_vllm_s_openai_server_module_in_the_pinned_image():
    engine = container(render(tool_model(CHATGLM3)), "engine")
    assert engine["image"] == DEFAULT_ENGINE_IMAGE == "vllm/vllm-openai:v0.11.0"
    assert engine["command"] == list(VLLM_COMMAND) == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert engine["ports"] == [{"name": "engine", "containerPort": 8001, "protocol": "TCP"}]
    custom = render(tool_model({**CHATGLM3, "serving": {"engineImage": "registry.local/vllm:v0.10.2"}}))
    assert container(custom, "engine")["image"] == "registry.local/vllm:v0.10.2"


@pytest.mark.parametrize("arguments", [["--tokenizer-mode", "mistral"], ["--tokenizer-mode=mistral"]])
def test_a_proxied_text_prompt_may_not_meet_mistrals_own_tokenizer(arguments):
    mistral = {"model": "mistralai/Mistral-7B-Instruct-v0.3", "toolCalling": {"dialect": "mistral"}}
    error = invalid({**mistral, "engineArgs": ["--enable-prefix-caching", *arguments]})
    assert error.field == "spec.engineArgs[1]"
    assert "spells out the control tokens" in error.message and "leave it out" in error.message
    # native mode: vLLM's own mistral parser reads what its own tokenizer wrote
    native = {**mistral, "toolCalling": {"dialect": "mistral", "mode": "native"}, "engineArgs": arguments}
    assert render(tool_model(native))


@pytest.mark.parametrize(
    ("argument", "field"),
    [
        ("--port", None),
        ("--host=::", None),
        ("--model", "spec.model"),
        ("--max-model-len=4096", "spec.maxModelLen"),
        ("--max_model_len", "spec.maxModelLen"),
        ("-tp", "spec.parallelism.tensorParallelSize"),
        ("--chat-template", "spec.toolCalling.chatTemplate"),
        ("--tool-call-parser", "spec.toolCalling.mode"),
    ],
)
def test_engine_args_may_not_set_what_the_operator_sets(argument, field):
    error = invalid({**CHATGLM3, "engineArgs": ["--enable-prefix-caching", argument, "1"]})
    assert error.field == "spec.engineArgs[1]"
    assert "engineArgs may not contain" in error.message
    assert (f"set {field} instead" if field else "the operator sets it") in error.message


# -- GPUs and scheduling --------------------------------------------------------------------------


def test_the_engine_gets_tensor_times_pipeline_gpus_as_request_and_limit():
    spec = {**CHATGLM3, "parallelism": {"tensorParallelSize": 2, "pipelineParallelSize": 3}}
    resources = container(render(tool_model(spec)), "engine")["resources"]
    assert resources == {"requests": {"nvidia.com/gpu": "6"}, "limits": {"nvidia.com/gpu": "6"}}


def test_the_gpu_resource_name_and_the_user_s_engine_resources_combine():
    spec = {
        **CHATGLM3,
        "gpu": {"resourceName": "amd.com/gpu"},
        "serving": {
            "resources": {"engine": {"requests": {"cpu": "4", "memory": "32Gi"}, "limits": {"memory": 48_000_000_000}}}
        },
    }
    resources = container(render(tool_model(spec)), "engine")["resources"]
    assert resources == {
        "requests": {"cpu": "4", "memory": "32Gi", "amd.com/gpu": "1"},
        "limits": {"memory": 48_000_000_000, "amd.com/gpu": "1"},
    }


def test_the_gpu_count_is_always_the_operator_s():
    spec = {**CHATGLM3, "serving": {"resources": {"engine": {"limits": {"nvidia.com/gpu": "7"}}}}}
    resources = container(render(tool_model(spec)), "engine")["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"


def test_more_gpus_per_pod_than_a_node_has_is_refused():
    # On one node, as parallelism.nodes says (without it, 16 GPUs go on 2 nodes: test_render_scale_out.py).
    spec = {**CHATGLM3, "parallelism": {"tensorParallelSize": 8, "pipelineParallelSize": 2, "nodes": 1}}
    error = invalid(spec)
    assert error.field == "spec.parallelism"
    assert "16 GPUs" in error.message and "8 GPUs" in error.message
    assert "tensorParallelSize" in error.message and "pipelineParallelSize" in error.message
    assert "parallelism.nodes" in error.message
    assert by_kind(render(tool_model(spec), max_gpus_per_node=16), "Deployment")
    with pytest.raises(InvalidSpec):
        render(tool_model({**CHATGLM3, "parallelism": {"tensorParallelSize": 3}}), max_gpus_per_node=2)


def test_a_gpu_product_selects_nodes_by_the_feature_discovery_label():
    spec = {**CHATGLM3, "gpu": {"product": "NVIDIA-A100-SXM4-80GB", "nodeSelector": {"pool": "gpu"}}}
    assert pod_spec(render(tool_model(spec)))["nodeSelector"] == {
        "pool": "gpu",
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    }
    spec = {**CHATGLM3, "gpu": {"product": "MI300X", "productLabel": "amd.com/gpu.product-name"}}
    assert pod_spec(render(tool_model(spec)))["nodeSelector"] == {"amd.com/gpu.product-name": "MI300X"}


def test_scheduling_fields_are_copied_to_the_pod():
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
            }
        }
    }
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    spec = {
        **CHATGLM3,
        "gpu": {
            "tolerations": tolerations,
            "affinity": affinity,
            "runtimeClassName": "nvidia",
            "priorityClassName": "inference",
        },
    }
    pod = pod_spec(render(tool_model(spec)))
    assert pod["tolerations"] == tolerations
    assert pod["affinity"] == affinity
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["priorityClassName"] == "inference"
    assert "nodeSelector" not in pod


def test_without_scheduling_fields_the_pod_has_none():
    pod = pod_spec(render(tool_model(CHATGLM3)))
    assert not {"nodeSelector", "tolerations", "affinity", "runtimeClassName", "priorityClassName"} & pod.keys()


# -- the simulated engine -------------------------------------------------------------------------


def test_sim_runs_toolmodel_sim_from_the_proxy_image_with_the_same_arguments():
    spec = {**CHATGLM3, "maxModelLen": 8192, "parallelism": {"tensorParallelSize": 4}}
    real = container(render(tool_model(spec)), "engine")
    simulated = container(render(tool_model({**spec, "serving": {"engine": "sim"}})), "engine")
    assert simulated["image"] == DEFAULT_PROXY_IMAGE
    assert simulated["command"] == list(SIM_COMMAND) == ["toolmodel", "sim"]
    assert simulated["args"] == real["args"]
    assert simulated["startupProbe"] == real["startupProbe"]
    assert simulated["ports"] == real["ports"]


def test_sim_uses_a_custom_proxy_image():
    spec = {**CHATGLM3, "serving": {"engine": "sim", "proxyImage": "registry.local/toolmodel:dev"}}
    manifests = render(tool_model(spec))
    assert container(manifests, "engine")["image"] == container(manifests, "proxy")["image"]
    assert container(manifests, "proxy")["image"] == "registry.local/toolmodel:dev"


def test_sim_requests_no_gpu_and_ignores_the_gpu_section():
    spec = {
        **CHATGLM3,
        "parallelism": {"tensorParallelSize": 16},  # more than a node has: irrelevant without GPUs
        "gpu": {
            "product": "NVIDIA-H100",
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"operator": "Exists"}],
            "runtimeClassName": "nvidia",
        },
        "serving": {"engine": "sim"},
    }
    manifests = render(tool_model(spec))
    engine = container(manifests, "engine")
    assert "nvidia.com/gpu" not in str(engine["resources"])
    assert engine["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    assert not {"nodeSelector", "tolerations", "runtimeClassName"} & pod_spec(manifests).keys()
    assert engine["securityContext"]["runAsNonRoot"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in engine["volumeMounts"]


def test_sim_takes_the_user_s_engine_resources():
    resources = {"requests": {"cpu": "1"}}
    spec = {**CHATGLM3, "serving": {"engine": "sim", "resources": {"engine": resources}}}
    assert container(render(tool_model(spec)), "engine")["resources"] == resources


def test_the_vllm_engine_runs_as_its_image_wants():
    assert "securityContext" not in container(render(tool_model(CHATGLM3)), "engine")


# -- storage and environment ----------------------------------------------------------------------


def test_the_model_cache_defaults_to_an_emptydir_at_models():
    manifests = render(tool_model(CHATGLM3))
    assert volumes(manifests)["model-cache"] == {"name": "model-cache", "emptyDir": {}}
    engine = container(manifests, "engine")
    assert {"name": "model-cache", "mountPath": "/models"} in engine["volumeMounts"]
    assert env(engine)["HF_HOME"] == {"name": "HF_HOME", "value": "/models"}


def test_an_emptydir_cache_can_be_size_limited():
    spec = {**CHATGLM3, "storage": {"cache": {"emptyDir": {"sizeLimit": "40Gi"}}}}
    assert volumes(render(tool_model(spec)))["model-cache"]["emptyDir"] == {"sizeLimit": "40Gi"}


def test_a_persistent_volume_claim_cache_is_mounted_with_its_subpath():
    spec = {**CHATGLM3, "storage": {"cache": {"persistentVolumeClaim": {"claimName": "models", "subPath": "hf"}}}}
    manifests = render(tool_model(spec))
    assert volumes(manifests)["model-cache"] == {
        "name": "model-cache",
        "persistentVolumeClaim": {"claimName": "models"},
    }
    mounts = container(manifests, "engine")["volumeMounts"]
    assert {"name": "model-cache", "mountPath": "/models", "subPath": "hf"} in mounts


def test_the_hugging_face_token_comes_from_the_secret():
    spec = {**CHATGLM3, "storage": {"hfTokenSecretRef": {"name": "hf"}}}
    assert env(container(render(tool_model(spec)), "engine"))["HF_TOKEN"] == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
    }
    assert "HF_TOKEN" not in env(container(render(tool_model(CHATGLM3)), "engine"))


def test_user_env_follows_the_operator_s_and_replaces_a_variable_of_the_same_name():
    spec = {
        **CHATGLM3,
        "env": [
            {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"},
            {"name": "HF_HOME", "value": "/models/hf"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
    }
    assert container(render(tool_model(spec)), "engine")["env"] == [
        {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"},
        {"name": "HF_HOME", "value": "/models/hf"},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]


# -- /dev/shm -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("gpus", "size"), [(1, "1Gi"), (2, "4Gi"), (4, "8Gi"), (8, "16Gi")])
def test_the_default_shm_size_grows_with_the_gpus_per_pod(gpus, size):
    assert default_shm_size(gpus) == size


def test_shm_is_a_memory_backed_emptydir_at_dev_shm():
    spec = {**CHATGLM3, "parallelism": {"tensorParallelSize": 2, "pipelineParallelSize": 2}}
    manifests = render(tool_model(spec))
    assert volumes(manifests)["shm"] == {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}
    assert {"name": "shm", "mountPath": "/dev/shm"} in container(manifests, "engine")["volumeMounts"]
    custom = render(tool_model({**spec, "serving": {"shmSize": "20Gi"}}))
    assert volumes(custom)["shm"]["emptyDir"]["sizeLimit"] == "20Gi"


# -- probes ---------------------------------------------------------------------------------------


def test_engine_probes_give_the_model_its_startup_budget():
    engine = container(render(tool_model(CHATGLM3)), "engine")
    health = {"path": "/health", "port": 8001}
    assert engine["startupProbe"] == {"httpGet": health, "periodSeconds": 10, "failureThreshold": 180}
    assert engine["readinessProbe"]["httpGet"] == health
    assert engine["livenessProbe"] == {
        "httpGet": health,
        "periodSeconds": 15,
        "timeoutSeconds": 10,
        "failureThreshold": 3,
    }


@pytest.mark.parametrize(("seconds", "failures"), [(10, 1), (95, 10), (600, 60), (3600, 360)])
def test_the_startup_probe_covers_startup_timeout_seconds(seconds, failures):
    spec = {**CHATGLM3, "serving": {"startupTimeoutSeconds": seconds}}
    manifests = render(tool_model(spec))
    assert container(manifests, "engine")["startupProbe"]["failureThreshold"] == failures
    assert by_kind(manifests, "Deployment")["spec"]["progressDeadlineSeconds"] > seconds


# -- the proxy sidecar ----------------------------------------------------------------------------


def test_the_proxy_sidecar_is_wired_to_the_engine():
    proxy = container(render(tool_model(QWEN)), "proxy")
    assert proxy["image"] == DEFAULT_PROXY_IMAGE == "ghcr.io/toolmodel/proxy:0.1.0"
    assert proxy["args"] == ["proxy"]
    assert "command" not in proxy  # the image's entrypoint is `toolmodel`
    assert proxy["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert proxy["env"] == [
        {"name": "TOOLMODEL_UPSTREAM", "value": "http://127.0.0.1:8001"},
        {"name": "TOOLMODEL_DIALECT", "value": "hermes"},
        {"name": "TOOLMODEL_HOST", "value": "0.0.0.0"},
        {"name": "TOOLMODEL_PORT", "value": "8000"},
        {"name": "TOOLMODEL_MODE", "value": "proxy"},
    ]
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert proxy["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert proxy["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    assert proxy["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert proxy["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert "terminationMessagePolicy" not in proxy


def test_the_proxy_environment_uses_the_proxy_s_own_variable_names_and_hugging_face_s():
    spec = {
        **CHATGLM3,
        "revision": "v1.0",
        "storage": {"hfTokenSecretRef": {"name": "hf"}},
        "serving": {"apiKeySecretRef": {"name": "keys"}},
    }
    names = set(env(container(render(tool_model(spec)), "proxy")))
    assert {"TOOLMODEL_TOKENIZER", "TOOLMODEL_TOKENIZER_REVISION", "TOOLMODEL_TOKENIZER_WAIT"} <= names
    assert names - {"HF_HOME", "HF_TOKEN"} <= set(ENVIRONMENT.values())


# -- the proxy's tokenizer (token-id dialects) ------------------------------------------------------

TOKEN_ID_DIALECTS = sorted(name for name, dialect in DIALECTS.items() if dialect.prompt_form == "token_ids")
TEXT_DIALECTS = sorted(set(DIALECTS) - set(TOKEN_ID_DIALECTS))


def test_chatglm3_is_prompted_in_token_ids():
    assert TOKEN_ID_DIALECTS == ["chatglm3"]


@pytest.mark.parametrize("engine", ["vllm", "sim"])
def test_a_token_id_proxy_reads_the_engine_s_model_cache_read_only(engine):
    manifests = render(tool_model({**CHATGLM3, "serving": {"engine": engine}}))
    proxy = container(manifests, "proxy")
    assert proxy["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "model-cache", "mountPath": "/models", "readOnly": True},
    ]
    assert {"name": "model-cache", "mountPath": "/models"} in container(manifests, "engine")["volumeMounts"]
    # vLLM downloads the model's tokenizer into the cache; the simulator publishes the one it
    # serves with beside it (never under the model's name)
    tokenizer = "THUDM/chatglm3-6b" if engine == "vllm" else "/models/toolmodel-sim/THUDM--chatglm3-6b"
    assert proxy["env"][5:] == [
        {"name": "TOOLMODEL_TOKENIZER", "value": tokenizer},
        {"name": "TOOLMODEL_TOKENIZER_WAIT", "value": "1800"},
        {"name": "HF_HOME", "value": "/models"},
    ]
    assert env(proxy)["HF_HOME"] == env(container(manifests, "engine"))["HF_HOME"]
    assert proxy["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert proxy["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_token_id_proxy_mounts_the_cache_claim_s_subpath_and_gets_the_hugging_face_token():
    spec = {
        **CHATGLM3,
        "storage": {
            "cache": {"persistentVolumeClaim": {"claimName": "models", "subPath": "hf"}},
            "hfTokenSecretRef": {"name": "hf", "key": "t"},
        },
    }
    manifests = render(tool_model(spec))
    proxy, engine = container(manifests, "proxy"), container(manifests, "engine")
    assert {"name": "model-cache", "mountPath": "/models", "subPath": "hf", "readOnly": True} in proxy["volumeMounts"]
    assert {"name": "model-cache", "mountPath": "/models", "subPath": "hf"} in engine["volumeMounts"]
    token = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}}
    assert env(proxy)["HF_TOKEN"] == env(engine)["HF_TOKEN"] == token


def test_a_token_id_proxy_takes_the_tokenizer_and_revision_vllm_takes():
    spec = {**CHATGLM3, "tokenizer": "org/chatglm3-tokenizer", "revision": "b098244"}
    manifests = render(tool_model(spec))
    assert flag_value(container(manifests, "engine")["args"], "--tokenizer") == "org/chatglm3-tokenizer"
    proxy = env(container(manifests, "proxy"))
    assert proxy["TOOLMODEL_TOKENIZER"] == {"name": "TOOLMODEL_TOKENIZER", "value": "org/chatglm3-tokenizer"}
    # vLLM's --tokenizer-revision defaults to --revision, for another tokenizer too.
    assert proxy["TOOLMODEL_TOKENIZER_REVISION"] == {"name": "TOOLMODEL_TOKENIZER_REVISION", "value": "b098244"}
    assert "TOOLMODEL_TOKENIZER_REVISION" not in env(container(render(tool_model(CHATGLM3)), "proxy"))


def test_a_token_id_proxy_waits_for_the_tokenizer_as_long_as_the_engine_may_take_to_start():
    manifests = render(tool_model({**CHATGLM3, "serving": {"startupTimeoutSeconds": 5400}}))
    assert env(container(manifests, "proxy"))["TOOLMODEL_TOKENIZER_WAIT"]["value"] == "5400"
    assert container(manifests, "engine")["startupProbe"]["failureThreshold"] * 10 >= 5400


def test_a_waiting_token_id_proxy_is_unready_but_not_restarted():
    proxy = container(render(tool_model(CHATGLM3)), "proxy")
    # /health answers 503 while the tokenizer is awaited: the pod is not Ready. The liveness
    # probe only connects (the proxy listens while it waits), and there is no startup probe.
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert set(proxy["livenessProbe"]) == {"tcpSocket", "periodSeconds", "failureThreshold"}
    assert "startupProbe" not in proxy


def test_a_token_id_proxy_gets_the_hugging_face_settings_the_engine_has():
    spec = {
        **CHATGLM3,
        "storage": {"hfTokenSecretRef": {"name": "hf"}},
        "env": [
            {"name": "HF_HOME", "value": "/models/hf"},
            {"name": "HF_ENDPOINT", "value": "https://hf-mirror.example"},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "mine", "key": "k"}}},
            {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"},
        ],
    }
    manifests = render(tool_model(spec))
    engine, proxy = env(container(manifests, "engine")), env(container(manifests, "proxy"))
    for name in ("HF_HOME", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_TOKEN"):
        assert proxy[name] == engine[name]
    assert proxy["HF_HOME"]["value"] == "/models/hf"
    assert proxy["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mine"
    assert "VLLM_LOGGING_LEVEL" not in proxy


@pytest.mark.parametrize("dialect", TEXT_DIALECTS)
def test_other_dialects_proxies_get_no_tokenizer_cache_or_termination_policy(dialect):
    spec = {
        "model": "org/model",
        "revision": "v1",
        "storage": {"hfTokenSecretRef": {"name": "hf"}},
        "toolCalling": {"dialect": dialect},
    }
    proxy = container(render(tool_model(spec)), "proxy")
    assert proxy["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert [variable["name"] for variable in proxy["env"]] == [
        "TOOLMODEL_UPSTREAM",
        "TOOLMODEL_DIALECT",
        "TOOLMODEL_HOST",
        "TOOLMODEL_PORT",
        "TOOLMODEL_MODE",
    ]
    assert "terminationMessagePolicy" not in proxy


def test_an_api_key_secret_becomes_the_proxy_s_api_key():
    spec = {**CHATGLM3, "serving": {"apiKeySecretRef": {"name": "keys"}}}
    assert env(container(render(tool_model(spec)), "proxy"))["TOOLMODEL_API_KEY"] == {
        "name": "TOOLMODEL_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "keys", "key": "api-key"}},
    }
    assert "TOOLMODEL_API_KEY" not in env(container(render(tool_model(CHATGLM3)), "proxy"))


def test_proxy_resources_replace_the_default():
    resources = {"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    spec = {**CHATGLM3, "serving": {"resources": {"proxy": resources}}}
    assert container(render(tool_model(spec)), "proxy")["resources"] == resources


# -- the Deployment and its pods ------------------------------------------------------------------


def test_the_deployment_never_surges_a_pod_that_would_need_more_gpus():
    deployment = by_kind(render(tool_model(CHATGLM3)), "Deployment")
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }


@pytest.mark.parametrize("replicas", [0, 1, 3])
def test_replicas(replicas):
    spec = {**CHATGLM3, "serving": {"replicas": replicas}}
    assert by_kind(render(tool_model(spec)), "Deployment")["spec"]["replicas"] == replicas


def test_the_pod_is_locked_down_and_given_time_to_finish_requests():
    pod = pod_spec(render(tool_model(CHATGLM3)))
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    assert [c["name"] for c in pod["containers"]] == ["engine", "proxy"]


def test_pod_labels_and_annotations_are_added_but_the_operator_s_labels_win():
    spec = {
        **CHATGLM3,
        "serving": {
            "podLabels": {"team": "ml", "app.kubernetes.io/instance": "hijack"},
            "podAnnotations": {"prometheus.io/scrape": "true", CHAT_TEMPLATE_HASH_ANNOTATION: "mine"},
        },
    }
    deployment = by_kind(render(tool_model(spec, name="glm")), "Deployment")
    metadata = deployment["spec"]["template"]["metadata"]
    assert metadata["labels"]["team"] == "ml"
    assert metadata["labels"]["app.kubernetes.io/instance"] == "glm"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= metadata["labels"].items()
    assert metadata["annotations"]["prometheus.io/scrape"] == "true"
    assert metadata["annotations"][CHAT_TEMPLATE_HASH_ANNOTATION] != "mine"
    assert metadata["annotations"]["kubectl.kubernetes.io/default-container"] == "engine"


# -- the Service ----------------------------------------------------------------------------------


def test_the_service_exposes_the_proxy_port_to_the_instance_s_pods():
    manifests = render(tool_model(CHATGLM3, name="glm"))
    service = by_kind(manifests, "Service")
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {"app.kubernetes.io/name": "toolmodel", "app.kubernetes.io/instance": "glm"},
        "ports": [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}],
    }
    pod_labels = by_kind(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("type_", ["NodePort", "LoadBalancer"])
def test_the_service_type_and_port(type_):
    spec = {**CHATGLM3, "serving": {"service": {"type": type_, "port": 443}}}
    service = by_kind(render(tool_model(spec)), "Service")
    assert service["spec"]["type"] == type_
    assert service["spec"]["ports"][0]["port"] == 443


# -- what the schema already refuses, when render gets it first ------------------------------------


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({}, "spec.model", "required"),
        (
            {**CHATGLM3, "parallelism": {"tensorParallelSize": 0}},
            "spec.parallelism.tensorParallelSize",
            "greater than or equal to 1",
        ),
        ({**CHATGLM3, "toolCalling": {"dialectt": "x"}}, "spec.toolCalling.dialectt", "camelCase"),
        ({**CHATGLM3, "serving": {"engine": "tgi"}}, "spec.serving.engine", "'vllm' or 'sim'"),
        ({**CHATGLM3, "env": [{"name": "A", "value": "1"}, {"value": "2"}]}, "spec.env[1].name", "required"),
        ({**CHATGLM3, "serving": {"shmSize": "lots"}}, "spec.serving.shmSize", "quantity"),
        (
            {**CHATGLM3, "storage": {"cache": {"emptyDir": {}, "persistentVolumeClaim": {"claimName": "c"}}}},
            "spec.storage.cache",
            "exactly one",
        ),
    ],
)
def test_schema_errors_become_invalid_spec_naming_the_field(spec, field, words):
    error = invalid(spec)
    assert error.field == field
    assert error.message.startswith(field)
    assert words in error.message
    assert str(error) == error.message


def test_several_schema_errors_are_all_reported():
    error = invalid({"model": "x", "maxModelLen": 0, "dtype": "int3"})
    assert error.field == "spec.maxModelLen"
    assert "spec.dtype" in error.message


@pytest.mark.parametrize("name", ["Glm", "1glm", "glm-", "g" * 64, "glm.3"])
def test_the_name_must_be_able_to_name_a_service(name):
    with pytest.raises(InvalidSpec) as caught:
        render(tool_model(CHATGLM3, name=name))
    assert caught.value.field == "metadata.name"
    assert "DNS-1035" in caught.value.message


def test_an_object_of_another_kind_is_refused():
    with pytest.raises(InvalidSpec) as caught:
        render({**tool_model(CHATGLM3), "kind": "Deployment"})
    assert caught.value.field == "kind"


def test_invalid_spec_reads_as_field_then_message():
    error = InvalidSpec("spec.x", "fix it")
    assert str(error) == "spec.x: fix it"
    assert (error.field, error.message) == ("spec.x", "fix it")


# -- Kubernetes accepts what is rendered ----------------------------------------------------------

K8S_VERSIONS = sorted({"1.31", kubernetes_validate.latest_version()})

VARIANTS = {
    "seed": CHATGLM3,
    "everything": {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "servedModelName": "qwen",
        "tokenizer": "Qwen/Qwen2.5-7B-Instruct",
        "revision": "main",
        "maxModelLen": 8192,
        "dtype": "half",
        "gpuMemoryUtilization": 0.9,
        "engineArgs": ["--enable-prefix-caching"],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        "storage": {
            "cache": {"persistentVolumeClaim": {"claimName": "models", "subPath": "hf"}},
            "hfTokenSecretRef": {"name": "hf", "key": "t"},
        },
        "parallelism": {"tensorParallelSize": 2, "pipelineParallelSize": 2},
        "gpu": {
            "product": "NVIDIA-L4",
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {}},
            "runtimeClassName": "nvidia",
            "priorityClassName": "high",
        },
        "toolCalling": {"dialect": "hermes", "mode": "native", "chatTemplate": {"configMapRef": {"name": "t"}}},
        "serving": {
            "replicas": 2,
            "resources": {
                "engine": {"requests": {"cpu": 4, "memory": "32Gi"}, "limits": {"memory": "48Gi"}},
                "proxy": {"requests": {"cpu": "200m"}},
            },
            "service": {"type": "LoadBalancer", "port": 443},
            "apiKeySecretRef": {"name": "keys"},
            "podAnnotations": {"a": "b"},
            "podLabels": {"team": "ml"},
            "shmSize": "16Gi",
            "startupTimeoutSeconds": 3600,
        },
    },
    "sim": {**CHATGLM3, "serving": {"engine": "sim"}},
    "token-ids": {
        **CHATGLM3,
        "tokenizer": "org/tokenizer",
        "revision": "v1",
        "storage": {
            "cache": {"persistentVolumeClaim": {"claimName": "models", "subPath": "hf"}},
            "hfTokenSecretRef": {"name": "hf", "key": "t"},
        },
    },
    "generic": MISTRAL,
    "inline": {**CHATGLM3, "toolCalling": {"chatTemplate": {"inline": "{{ x }}\n"}}},
}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_kubernetes_accepts_every_rendered_object(variant, version):
    for manifest in render(tool_model(VARIANTS[variant])):
        kubernetes_validate.validate(manifest, version, strict=True)


def test_unnamed_images_come_from_the_operators_defaults_and_named_ones_stay():
    from toolmodel_operator.render import ImageDefaults

    images = ImageDefaults(engine="registry.local/vllm:pinned", proxy="registry.local/proxy:pinned")
    containers = {c["name"]: c for c in pod_spec(render(tool_model(), images=images))["containers"]}
    assert containers["engine"]["image"] == "registry.local/vllm:pinned"
    assert containers["proxy"]["image"] == "registry.local/proxy:pinned"
    named = tool_model({"model": "THUDM/chatglm3-6b", "serving": {"engineImage": "mine/vllm:1"}})
    containers = {c["name"]: c for c in pod_spec(render(named, images=images))["containers"]}
    assert containers["engine"]["image"] == "mine/vllm:1"
    assert containers["proxy"]["image"] == "registry.local/proxy:pinned"
