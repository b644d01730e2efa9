"""`toolmodel demo`, the README's main-job command: the whole flow with no cluster."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from _toolmodels import container, pod_spec, tool_model

from toolcall_proxy.demo import process, prompt_tokenizer
from toolcall_proxy.dialects import DIALECTS
from toolcall_proxy.tokens import train_demo_tokenizer
from toolmodel_operator import demo
from toolmodel_operator.demo import (
    BUILTIN_TOOLMODEL,
    demo_main,
    local_environment,
    local_mounts,
    local_volumes,
    localized,
)
from toolmodel_operator.render import render

CHATGLM3_SIM = {
    "model": "THUDM/chatglm3-6b",
    "serving": {"engine": "sim"},
    "storage": {
        "cache": {"persistentVolumeClaim": {"claimName": "models", "subPath": "hf"}},
        "hfTokenSecretRef": {"name": "hf"},
    },
}


def test_the_builtin_toolmodel_is_the_sim_example():
    example = yaml.safe_load((Path(__file__).parents[2] / "examples" / "sim.yaml").read_text())
    assert example == BUILTIN_TOOLMODEL


def test_the_demo_runs_apply_to_tool_calls_and_prints_each_step(capsys):
    assert demo_main([]) == 0
    out = capsys.readouterr().out
    assert "kubectl apply: ToolModel chatglm3-sim" in out
    assert "Deployment chatglm3-sim, container engine: toolmodel sim --model THUDM/chatglm3-6b" in out
    assert "--chat-template /etc/toolmodel/chat-template/chat-template.jinja" in out  # as the operator rendered it
    # Both processes share the pod's model cache, a directory here; the proxy's tokenizer is the model's.
    (engine_home,) = re.findall(r"engine: toolmodel sim .* with .*HF_HOME=(\S+)", out)
    (proxy_home,) = re.findall(r"proxy: +toolmodel proxy with .*HF_HOME=(\S+)", out)
    assert engine_home == proxy_home and engine_home.endswith("/model-cache")
    # the tokenizer the simulated engine serves with, published beside the cache for the proxy
    assert f"TOOLMODEL_TOKENIZER={engine_home}/toolmodel-sim/THUDM--chatglm3-6b" in out
    assert "tool_call(location='San Francisco')" in out  # the model's own words, asked in ids
    assert "PHASE=Ready" in out
    for city in ("San Francisco", "Tokyo", "Paris"):
        assert f'get_current_weather({{"location": "{city}"}})' in out
    assert "Final answer" in out


def test_an_example_that_needs_a_secret_runs_with_a_stand_in_the_demo_says_it_made(capsys):
    example = Path(__file__).parents[2] / "examples" / "qwen2.5-7b-hermes.yaml"  # an API key from a Secret
    assert demo_main(["-f", str(example)]) == 0
    out = capsys.readouterr().out
    assert "Secret qwen-api-key: a stand-in made up for the demo" in out
    assert "Final answer" in out  # the client used the key the proxy took from the stand-in


def test_the_multi_node_example_shows_its_leader_worker_set_and_runs_the_leader_pod_here(capsys):
    example = Path(__file__).parents[2] / "examples" / "deepseek-v3-2node.yaml"
    assert demo_main(["-f", str(example)]) == 0
    out = capsys.readouterr().out
    assert "LeaderWorkerSet deepseek-v3-lws: replicas 1, each a group of 2 pods" in out
    assert "leader (pod 0), container engine: /bin/sh -c set -e ..." in out  # the Ray head, then vLLM
    assert 'worker (pod 1), container engine: /bin/sh -c until ray start --address="$LWS_LEADER_ADDRESS:6379"' in out
    assert "Running the leader pod here, from the LeaderWorkerSet's leader template" in out
    # The simulated engine takes the leader's vLLM arguments as they are, Ray backend included.
    (engine,) = re.findall(r"engine: toolmodel sim (.*) with ", out)
    assert "--tensor-parallel-size 8 --pipeline-parallel-size 2 --distributed-executor-backend ray" in engine
    assert "DIALECT=deepseek_v3 READY=1 PHASE=Ready" in out
    assert "Final answer" in out


def test_the_autoscaled_example_shows_its_scaled_object(capsys):
    example = Path(__file__).parents[2] / "examples" / "autoscaled-qwen2.5-7b.yaml"
    assert demo_main(["-f", str(example)]) == 0
    out = capsys.readouterr().out
    query = 'sum(vllm:num_requests_waiting{namespace="default",job="qwen2-5-7b-autoscaled"})'
    assert f"ScaledObject qwen2-5-7b-autoscaled: 1-4 replicas on {query} (target 5 per replica)" in out
    assert "PHASE=Ready" in out and "Final answer" in out


def test_the_lora_example_lists_its_adapters_and_the_client_asks_one(capsys):
    example = Path(__file__).parents[2] / "examples" / "lora-llama-3.2-3b.yaml"
    assert demo_main(["-f", str(example)]) == 0
    out = capsys.readouterr().out
    assert "--enable-lora --lora-modules sql-lora=jeeejeee/llama32-3b-text2sql-spider support=" in out
    assert "InferencePool llama-3-2-3b: pods " in out
    assert "/v1/models: Llama-3.2-3B-Instruct, sql-lora, support; the client below asks for the adapter sql-lora" in out
    assert 'get_current_weather({"location": "Paris"})' in out and "Final answer" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read {file}: No such file or directory"),
        ("kind: ToolModel\n  bad: [\n", "{file} is not YAML (line 2, column 6): mapping values are not allowed here"),
        ("kind: Deployment\n", "{file} holds no ToolModel (a document with kind: ToolModel)"),
        (
            "apiVersion: toolmodel.dev/v1alpha1\nkind: ToolModel\nmetadata: {name: x}\nspec: {model: m, gpus: 2}\n",
            "{file}: invalid ToolModel: spec.gpus: unknown field",
        ),
    ],
    ids=["missing", "not-yaml", "no-toolmodel", "invalid"],
)
def test_a_file_the_demo_cannot_use_ends_it_with_one_line_and_status_2(tmp_path, capsys, content, message):
    file = tmp_path / "toolmodel.yaml"
    if content is not None:
        file.write_text(content)
    assert demo_main(["-f", str(file)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("toolmodel demo: " + message.format(file=file))
    assert captured.err.count("\n") == 1


def test_a_secret_s_value_reaches_the_container_s_environment(tmp_path):
    container = {"env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]}
    assert local_environment(container, {}, {"hf": {"token": "stand-in"}}) == {"HF_TOKEN": "stand-in"}
    assert local_environment(container, {}) == {}  # without it: needs the cluster


# -- the pod's volumes and environment, made local -------------------------------------------------


def test_each_volume_is_a_directory_here_and_a_configmap_s_holds_its_items(tmp_path):
    spec = {
        "volumes": [
            {"name": "chat-template", "configMap": {"name": "t", "items": [{"key": "k", "path": "a/file.jinja"}]}},
            {"name": "everything", "configMap": {"name": "u"}},
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": "models"}},
            {"name": "scratch", "emptyDir": {}},
        ]
    }
    volumes = local_volumes(spec, {"t": {"k": "template", "other": "x"}, "u": {"one": "1", "two": "2"}}, tmp_path)
    assert volumes == {name: tmp_path / name for name in ("chat-template", "everything", "model-cache", "scratch")}
    assert all(path.is_dir() for path in volumes.values())
    assert (tmp_path / "chat-template" / "a" / "file.jinja").read_text() == "template"
    assert sorted(p.name for p in (tmp_path / "chat-template").iterdir()) == ["a"]
    assert {p.name: p.read_text() for p in (tmp_path / "everything").iterdir()} == {"one": "1", "two": "2"}
    assert list((tmp_path / "model-cache").iterdir()) == []


def test_containers_mounting_one_volume_share_its_directory_and_subpath(tmp_path):
    manifests = render(tool_model(CHATGLM3_SIM))
    volumes = local_volumes(pod_spec(manifests), {}, tmp_path)
    engine = local_mounts(container(manifests, "engine"), volumes)
    proxy = local_mounts(container(manifests, "proxy"), volumes)
    assert engine["/models"] == proxy["/models"] == tmp_path / "model-cache" / "hf"
    assert (tmp_path / "model-cache" / "hf").is_dir()
    assert engine["/etc/toolmodel/chat-template"] == tmp_path / "chat-template"
    assert "/etc/toolmodel/chat-template" not in proxy


def test_paths_on_a_mount_are_made_local_and_nothing_else():
    mounts = {"/models": Path("/here/cache"), "/models/deep/": Path("/here/deep"), "/etc/t": Path("/here/t")}
    assert localized("/models", mounts) == "/here/cache"
    assert localized("/models/hub/x", mounts) == "/here/cache/hub/x"
    assert localized("/models/deep/file", mounts) == "/here/deep/file"  # the deepest mount wins
    assert localized("--chat-template=/etc/t/x.jinja", mounts) == "--chat-template=/here/t/x.jinja"
    for untouched in ("/models2", "/etc/tx", "THUDM/chatglm3-6b", "http://127.0.0.1:8001", "models/x", ""):
        assert localized(untouched, mounts) == untouched


def test_the_processes_get_the_containers_own_environment_with_the_cache_here(tmp_path):
    manifests = render(tool_model(CHATGLM3_SIM))
    volumes = local_volumes(pod_spec(manifests), {}, tmp_path)
    engine, proxy = container(manifests, "engine"), container(manifests, "proxy")
    engine_env = local_environment(engine, local_mounts(engine, volumes))
    proxy_env = demo._local_proxy_environment(proxy, local_mounts(proxy, volumes), 1234, 5678, {})
    cache = str(tmp_path / "model-cache" / "hf")
    assert engine_env == {"HF_HOME": cache}  # HF_TOKEN comes from a Secret: not here
    assert proxy_env == {
        "TOOLMODEL_UPSTREAM": "http://127.0.0.1:1234",
        "TOOLMODEL_DIALECT": "chatglm3",
        "TOOLMODEL_HOST": "127.0.0.1",
        "TOOLMODEL_PORT": "5678",
        "TOOLMODEL_MODE": "proxy",
        "TOOLMODEL_TOKENIZER": f"{cache}/toolmodel-sim/THUDM--chatglm3-6b",  # what the simulator publishes
        "TOOLMODEL_TOKENIZER_WAIT": "1800",
        "HF_HOME": cache,
        "HF_HUB_OFFLINE": "1",  # the demo downloads nothing
        "TOOLMODEL_LOG_LEVEL": "warning",
    }


def test_the_engine_arguments_point_at_the_local_template_and_address(tmp_path):
    manifests = render(tool_model({**CHATGLM3_SIM, "model": "/models/chatglm3"}))
    engine = container(manifests, "engine")
    volumes = local_volumes(pod_spec(manifests), {"demo-chat-template": {"chat-template.jinja": "t"}}, tmp_path)
    arguments = demo._local_engine_arguments(engine, local_mounts(engine, volumes), 4321)
    assert arguments[arguments.index("--model") + 1] == str(tmp_path / "model-cache" / "hf" / "chatglm3")
    template = arguments[arguments.index("--chat-template") + 1]
    assert Path(template).read_text() == "t"
    assert arguments[arguments.index("--port") + 1] == "4321"
    assert arguments[arguments.index("--host") + 1] == "127.0.0.1"


def test_this_machine_s_hugging_face_settings_stay_out_of_the_pod(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", "/somewhere/else")
    monkeypatch.setenv("HF_HOME", "/my/home")
    monkeypatch.setenv("TOOLMODEL_DEMO_MARK", "kept")
    environment = {"HF_HOME": "/pod/cache"}
    unset = demo._host_only(environment)
    assert "HF_HUB_CACHE" in unset and "HF_HOME" not in unset
    seen = tmp_path / "seen"
    script = (
        "import os, sys; open(sys.argv[1], 'w').write(' '.join(str(os.environ.get(name)) for name in "
        "('HF_HUB_CACHE', 'HF_HOME', 'TOOLMODEL_DEMO_MARK')))"
    )
    with process([sys.executable, "-c", script, str(seen)], environment, unset=unset) as child:
        assert child.wait(timeout=30) == 0
    assert seen.read_text().split() == ["None", "/pod/cache", "kept"]


# -- the model's raw output, asked in ids -----------------------------------------------------------


def test_the_demo_asks_in_ids_with_the_tokenizer_the_proxy_loads(tmp_path):
    layout = DIALECTS["chatglm3"].token_layout
    assert layout is not None
    source = train_demo_tokenizer(tmp_path / "trained", layout)
    tokenizer = prompt_tokenizer("chatglm3", {"TOOLMODEL_TOKENIZER": str(source)})
    assert tokenizer is not None and tokenizer.demo and tokenizer.stop_ids
    assert prompt_tokenizer("hermes", {"TOOLMODEL_TOKENIZER": str(source)}) is None
    with pytest.raises(ValueError, match=r"has no tokenizer\.model"):
        prompt_tokenizer("chatglm3", {"TOOLMODEL_TOKENIZER": str(tmp_path / "empty")})
