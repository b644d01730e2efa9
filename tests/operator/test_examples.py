"""The example ToolModels: valid for the CRD, rendered without complaint, accepted by Kubernetes."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from _crds import check_any
from _toolmodels import EXAMPLES, by_kind, container, flag_value, pod_spec

from toolmodel_operator.crd import openapi_schema
from toolmodel_operator.render import render, resolved


def load(name: str) -> dict:
    (path,) = [path for path in EXAMPLES if path.name == name]
    document: dict = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def test_the_examples_are_there():
    assert [path.name for path in EXAMPLES] == [
        "autoscaled-qwen2.5-7b.yaml",
        "chatglm3-6b.yaml",
        "deepseek-v3-2node.yaml",
        "llama-3.1-8b.yaml",
        "lora-llama-3.2-3b.yaml",
        "qwen2.5-7b-hermes.yaml",
        "sim.yaml",
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_each_example_is_valid_for_the_crd_schema(path: Path):
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert len(documents) == 1
    jsonschema.Draft4Validator(openapi_schema()).validate(documents[0])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_each_example_renders_objects_kubernetes_accepts(path: Path):
    """Kubernetes' own kinds under kubernetes-validate; LeaderWorkerSet, ScaledObject and InferencePool
    against their published CRDs (../shared/crds), their pod templates under kubernetes-validate too."""
    manifests = render(yaml.safe_load(path.read_text(encoding="utf-8")))
    for manifest in manifests:
        check_any(manifest)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_each_example_explains_itself(path: Path):
    comments = [line for line in path.read_text(encoding="utf-8").splitlines() if line.lstrip().startswith("#")]
    assert len(comments) >= 3


def test_the_seed_example_serves_chatglm3_on_four_gpus():
    obj = load("chatglm3-6b.yaml")
    manifests = render(obj)
    arguments = container(manifests, "engine")["args"]
    assert flag_value(arguments, "--model") == "THUDM/chatglm3-6b"
    assert flag_value(arguments, "--served-model-name") == "ChatGLM3-6B"
    assert flag_value(arguments, "--tensor-parallel-size") == "4"
    assert flag_value(arguments, "--max-model-len") == "8192"
    assert "--trust-remote-code" in arguments
    assert container(manifests, "engine")["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert resolved(obj).dialect == "chatglm3"


def test_the_qwen_example_is_native_hermes_on_a_claim():
    manifests = render(load("qwen2.5-7b-hermes.yaml"))
    assert flag_value(container(manifests, "engine")["args"], "--tool-call-parser") == "hermes"
    assert "persistentVolumeClaim" in {v["name"]: v for v in pod_spec(manifests)["volumes"]}["model-cache"]


def test_the_llama_example_uses_the_token_secret():
    manifests = render(load("llama-3.1-8b.yaml"))
    names = [variable["name"] for variable in container(manifests, "engine")["env"]]
    assert "HF_TOKEN" in names
    assert resolved(load("llama-3.1-8b.yaml")).dialect == "llama3_json"


def test_the_sim_example_needs_no_gpu():
    manifests = render(load("sim.yaml"))
    engine = container(manifests, "engine")
    assert engine["command"] == ["toolmodel", "sim"]
    assert "gpu" not in str(engine["resources"])
    assert by_kind(manifests, "Service")["spec"]["type"] == "NodePort"
