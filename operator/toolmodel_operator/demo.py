"""``toolmodel demo``: the whole flow on this machine, printed step by step, no cluster needed.

An emulated Kubernetes API server, the operator, ``kubectl apply`` of a ToolModel, then the pod
the operator asked for run locally from the workload itself (the Deployment's pod; on several nodes
the LeaderWorkerSet's leader pod): the engine with the engine container's own arguments and the
ConfigMap's chat template, the proxy with the sidecar's own environment, and an unmodified OpenAI
SDK client calling tools through it.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import kopf
import yaml

from toolcall_proxy import hub
from toolcall_proxy.demo import (
    conversation,
    free_port,
    process,
    prompt_tokenizer,
    show_raw_output,
    step,
    wait_healthy,
)
from toolcall_proxy.dialects import DIALECTS, get_dialect

from .embedded import emulated_api_server, operator_thread
from .handlers import OperatorConfig
from .kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    HORIZONTAL_POD_AUTOSCALERS,
    INFERENCE_POOLS,
    LEADER_WORKER_SETS,
    SCALED_OBJECTS,
    SECRETS,
    TOOLMODELS,
    KubeClient,
    resource_of,
)
from .render import InvalidSpec, resolved
from .scale_out import SCALE_OUT_KINDS, leader_worker_set_name

__all__ = [
    "BUILTIN_TOOLMODEL",
    "demo_main",
    "local_environment",
    "local_mounts",
    "local_volumes",
    "localized",
    "pod_spec",
]

# examples/sim.yaml, without its comments (a test keeps the two the same).
BUILTIN_TOOLMODEL: dict[str, Any] = {
    "apiVersion": "toolmodel.dev/v1alpha1",
    "kind": "ToolModel",
    "metadata": {"name": "chatglm3-sim"},
    "spec": {
        "model": "THUDM/chatglm3-6b",
        "servedModelName": "ChatGLM3-6B",
        "trustRemoteCode": True,
        "maxModelLen": 8192,
        "toolCalling": {"dialect": "chatglm3"},
        "serving": {"engine": "sim", "startupTimeoutSeconds": 60, "service": {"type": "NodePort", "port": 8000}},
    },
}
# A model of each family, for `--dialect`.
_MODELS = {
    "chatglm3": ("THUDM/chatglm3-6b", "ChatGLM3-6B"),
    "hermes": ("Qwen/Qwen2.5-7B-Instruct", "Qwen2.5-7B-Instruct"),
    "llama3_json": ("meta-llama/Llama-3.1-8B-Instruct", "Llama-3.1-8B-Instruct"),
    "glm4": ("THUDM/glm-4-9b-chat", "GLM-4-9B-Chat"),
    "deepseek_v3": ("deepseek-ai/DeepSeek-V3-0324", "DeepSeek-V3"),
    "deepseek_v31": ("deepseek-ai/DeepSeek-V3.1", "DeepSeek-V3.1"),
    "internlm": ("internlm/internlm2_5-7b-chat", "InternLM2.5-7B-Chat"),
    "generic": ("mistralai/Mistral-7B-Instruct-v0.2", "Mistral-7B-Instruct"),
}
NAMESPACE = "default"


class DemoError(Exception):
    """What stops the demo, in one line for the user (exit status 2)."""


def _read_toolmodel(file: str) -> dict[str, Any]:
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as error:
        raise DemoError(f"cannot read {file}: {error.strerror or error}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or error
        raise DemoError(f"{file} is not YAML{where}: {problem}") from None
    toolmodels = [d for d in documents if isinstance(d, dict) and d.get("kind") == "ToolModel"]
    if not toolmodels:
        raise DemoError(f"{file} holds no ToolModel (a document with kind: ToolModel)")
    return dict(toolmodels[0])


def _toolmodel_for(dialect: str | None, file: str | None) -> dict[str, Any]:
    toolmodel = _read_toolmodel(file) if file is not None else copy.deepcopy(BUILTIN_TOOLMODEL)
    if dialect is not None:
        model, served = _MODELS.get(get_dialect(dialect).name, ("demo/model", "demo-model"))
        toolmodel["metadata"] = {"name": f"{dialect.replace('_', '-')}-sim"}
        spec = toolmodel["spec"]
        spec.update(model=model, servedModelName=served)
        spec.pop("trustRemoteCode", None)
        spec["toolCalling"] = {"dialect": dialect}
    metadata = toolmodel.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    toolmodel["metadata"] = {**metadata, "namespace": NAMESPACE, "uid": "demo-uid", "generation": 1}
    try:
        resolved(toolmodel)  # as the operator checks it, before anything starts
    except InvalidSpec as error:
        raise DemoError(f"{file or 'the ToolModel'}: invalid ToolModel: {error}") from None
    return toolmodel


def demo_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="toolmodel demo", description=__doc__)
    parser.add_argument("--dialect", choices=sorted(DIALECTS), help="demonstrate another model family")
    parser.add_argument("-f", "--filename", help="apply this ToolModel instead of the built-in chatglm3 one")
    options = parser.parse_args(list(argv))
    # The demo prints its own steps; kopf's notices (signals off outside the main thread) are noise.
    logging.getLogger("kopf").setLevel(logging.ERROR)
    try:
        return asyncio.run(_demo(_toolmodel_for(options.dialect, options.filename)))
    except DemoError as error:
        print(f"toolmodel demo: {error}", file=sys.stderr)
        return 2


async def _demo(toolmodel: dict[str, Any]) -> int:
    name = toolmodel["metadata"]["name"]
    # A cluster with every API a ToolModel may ask for: LeaderWorkerSet, KEDA, autoscaling/v2, InferencePool.
    with emulated_api_server(serves=SCALE_OUT_KINDS) as url:
        optional = ", ".join(SCALE_OUT_KINDS)
        step(1, f"Emulated Kubernetes API server on {url} (kmock), with the ToolModel CRD installed (and {optional})")
        connection = kopf.ConnectionInfo(server=url)
        with operator_thread(OperatorConfig(connection=connection, resync_seconds=2)):
            step(2, "The operator runs against it (kopf, the same handlers as in the cluster)")
            async with KubeClient(connection) as client:
                secrets = await _stand_in_secrets(client, toolmodel)
                step(3, f"kubectl apply: ToolModel {name}")
                print(_indented(yaml.safe_dump(toolmodel["spec"], sort_keys=False)))
                await client.create(TOOLMODELS, NAMESPACE, toolmodel)
                workload, config_maps = await _children(client, name)
                await _run_pod(client, toolmodel, workload, config_maps, secrets)
    return 0


async def _stand_in_secrets(client: KubeClient, toolmodel: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The Secrets the ToolModel names, made up for the demo (a cluster has its own), by name."""
    secrets: dict[str, dict[str, str]] = {}
    for reference in resolved(toolmodel).references:
        if reference.kind == "Secret" and reference.key is not None:
            secrets.setdefault(reference.name, {})[reference.key] = f"demo-{reference.name}-{reference.key}"
        else:
            raise DemoError(
                f"{reference.field} names {reference.kind} {reference.name}, which the demo cannot stand in for"
            )
    for secret_name, data in secrets.items():
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret_name}, "stringData": data}
        await client.create(SECRETS, NAMESPACE, secret)
        literals = " ".join(f"--from-literal={key}=..." for key in data)
        print(
            f"    Secret {secret_name}: a stand-in made up for the demo "
            f"(on a cluster: kubectl create secret generic {secret_name} {literals})"
        )
    return secrets


async def _children(client: KubeClient, name: str) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The workload (a Deployment, or a LeaderWorkerSet for several nodes), and the data of the
    ConfigMaps its pods mount, by name."""
    for _ in range(200):
        workload = await client.get(DEPLOYMENTS, NAMESPACE, name) or await client.get(
            LEADER_WORKER_SETS, NAMESPACE, leader_worker_set_name(name)
        )
        if workload is not None:
            break
        await asyncio.sleep(0.05)
    else:
        status = (await client.get(TOOLMODELS, NAMESPACE, name) or {}).get("status") or {}
        why = next((c.get("message") for c in status.get("conditions") or [] if c.get("status") == "False"), None)
        raise DemoError(f"the operator created no Deployment or LeaderWorkerSet within 10 s: {why or 'no status yet'}")
    step(4, "The operator created:")
    config_maps: dict[str, dict[str, str]] = {}
    for volume in pod_spec(workload).get("volumes", []):
        if "configMap" in volume:
            config_map_name = volume["configMap"]["name"]
            config_map = await client.get(CONFIGMAPS, NAMESPACE, config_map_name)
            data = config_maps[config_map_name] = dict((config_map or {}).get("data") or {})
            print(f"    ConfigMap {config_map_name}: {', '.join(data)} ({sum(map(len, data.values()))} characters)")
    workload_name = workload["metadata"]["name"]
    if workload["kind"] == "Deployment":
        _print_containers(f"Deployment {workload_name}", pod_spec(workload))
    else:
        group = workload["spec"]["leaderWorkerTemplate"]
        replicas = workload["spec"].get("replicas", "autoscaled")
        print(f"    LeaderWorkerSet {workload_name}: replicas {replicas}, each a group of {group['size']} pods")
        workers = "worker (pod 1)" if group["size"] == 2 else f"workers (pods 1-{group['size'] - 1})"
        _print_containers("  leader (pod 0)", pod_spec(workload))
        _print_containers(f"  {workers}", group["workerTemplate"]["spec"])
    print(f"    Service {name}: port {toolmodel_port(workload)} -> the proxy")
    status = await _status(client, name)  # written once every object of the reconcile is applied
    for resource in (SCALED_OBJECTS, HORIZONTAL_POD_AUTOSCALERS, INFERENCE_POOLS):
        found = await client.get(resource, NAMESPACE, name)
        if found is not None:
            print(f"    {found['kind']} {name}: {_summary(found)}")
    print(f"    status: phase {status.get('phase')}, endpoint {status.get('endpoint')}")
    return workload, config_maps


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    """The spec of the pod that serves: the Deployment's, or the LeaderWorkerSet's leader (its
    worker template stands for the leader too when it has no leader template of its own)."""
    if workload["kind"] == "Deployment":
        return dict(workload["spec"]["template"]["spec"])
    group = workload["spec"]["leaderWorkerTemplate"]
    return dict((group.get("leaderTemplate") or group["workerTemplate"])["spec"])


def _print_containers(owner: str, spec: Mapping[str, Any]) -> None:
    for container in spec["containers"]:
        # the proxy image's entrypoint is `toolmodel`; a shell script shows as its first line
        command = [*(container.get("command") or ["toolmodel"]), *(container.get("args") or [])]
        shown = " ".join(part.splitlines()[0] + (" ..." if "\n" in part else "") for part in command if part)
        print(f"    {owner}, container {container['name']}: {shown}")


def _summary(found: Mapping[str, Any]) -> str:
    spec = found.get("spec") or {}
    if found["kind"] == "ScaledObject":
        trigger = spec["triggers"][0]["metadata"]
        bounds = f"{spec['minReplicaCount']}-{spec['maxReplicaCount']} replicas"
        return f"{bounds} on {trigger['query']} (target {trigger['threshold']} per replica)"
    if found["kind"] == "HorizontalPodAutoscaler":
        metric = spec["metrics"][0]["pods"]
        bounds = f"{spec['minReplicas']}-{spec['maxReplicas']} replicas"
        return f"{bounds} on {metric['metric']['name']} (target {metric['target']['averageValue']} per pod)"
    labels = ",".join(f"{k}={v}" for k, v in spec["selector"]["matchLabels"].items())
    return f"pods {labels} on port {spec['targetPorts'][0]['number']}"


def toolmodel_port(workload: Mapping[str, Any]) -> int:
    proxy = _container(workload, "proxy")
    return int(next(p["containerPort"] for p in proxy.get("ports", []) if p.get("name") == "http"))


async def _status(client: KubeClient, name: str, phase: str | None = None) -> dict[str, Any]:
    for _ in range(200):
        toolmodel = await client.get(TOOLMODELS, NAMESPACE, name)
        status = (toolmodel or {}).get("status") or {}
        if status and (phase is None or status.get("phase") == phase):
            return dict(status)
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the ToolModel's status did not reach {phase or 'any phase'} within 10 s")


def _container(workload: Mapping[str, Any], name: str) -> dict[str, Any]:
    return dict(next(c for c in pod_spec(workload)["containers"] if c["name"] == name))


async def _run_pod(
    client: KubeClient,
    toolmodel: Mapping[str, Any],
    workload: dict[str, Any],
    config_maps: Mapping[str, Mapping[str, str]],
    secrets: Mapping[str, Mapping[str, str]],
) -> None:
    engine, proxy = _container(workload, "engine"), _container(workload, "proxy")
    engine_port, proxy_port = free_port(), free_port()
    python = [sys.executable, "-m", "toolcall_proxy.cli"]
    with tempfile.TemporaryDirectory() as workdir:
        # Each of the pod's volumes is a directory here, shared by the containers that mount it
        # (the model cache: the engine's downloads, read by a proxy that tokenizes).
        volumes = local_volumes(pod_spec(workload), config_maps, Path(workdir))
        engine_mounts, proxy_mounts = local_mounts(engine, volumes), local_mounts(proxy, volumes)
        engine_command = [*python, "sim", *_local_engine_arguments(engine, engine_mounts, engine_port)]
        engine_environment = {**local_environment(engine, engine_mounts, secrets), **_OFFLINE}
        proxy_environment = _local_proxy_environment(proxy, proxy_mounts, engine_port, proxy_port, secrets)
        if workload["kind"] == "Deployment":
            step(5, "Running the pod here, from the Deployment's own containers:")
        else:
            step(5, "Running the leader pod here, from the LeaderWorkerSet's leader template:")
            print("    (on a cluster the workers join the leader's Ray head; the simulated engine needs none)")
        if engine.get("command") != ["toolmodel", "sim"]:
            print("    (no GPU here: the simulated engine takes the engine container's vLLM arguments)")
            _read_the_simulated_tokenizer(proxy_environment, engine_command)
        print(f"    volumes: {', '.join(volumes)} as directories in {workdir}")
        print("    engine: toolmodel " + " ".join(engine_command[3:]) + " with " + _assignments(engine_environment))
        print("    proxy:  toolmodel proxy with " + _assignments(proxy_environment))
        with (
            process(engine_command, engine_environment, unset=_host_only(engine_environment)) as engine_process,
            process([*python, "proxy"], proxy_environment, unset=_host_only(proxy_environment)) as proxy_process,
        ):
            await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{engine_port}/health", engine_process)
            await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{proxy_port}/health", proxy_process)
            name = toolmodel["metadata"]["name"]
            # What the kubelet and the Deployment (or LeaderWorkerSet) controller would report once
            # the probes pass (an autoscaled workload starts at its minimum: one replica here).
            replicas = int(workload["spec"].get("replicas", 1))
            ready = {"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas}
            await client.patch(resource_of(workload), NAMESPACE, workload["metadata"]["name"], {"status": ready})
            status = await _status(client, name, "Ready")
            step(6, "Both containers are healthy; the operator reports the ToolModel ready:")
            print(
                f"    NAME={name} DIALECT={status['dialect']} READY={status['readyReplicas']} PHASE={status['phase']}"
            )
            print(f"    endpoint {status['endpoint']} (here: http://127.0.0.1:{proxy_port}/v1)")
            dialect = status["dialect"]
            served = asked = status["servedModelName"]
            api_key = proxy_environment.get("TOOLMODEL_API_KEY", "demo")
            adapters = [adapter["name"] for adapter in toolmodel["spec"].get("adapters") or []]
            if adapters:
                # An adapter's name is a model of its own, in the base model's dialect.
                listed = await asyncio.to_thread(_models, proxy_port, api_key)
                print(f"    /v1/models: {', '.join(listed)}; the client below asks for the adapter {adapters[0]}")
                asked = adapters[0]
            tokenizer = prompt_tokenizer(dialect, proxy_environment)
            await asyncio.to_thread(show_raw_output, 7, dialect, engine_port, served, tokenizer)
            await asyncio.to_thread(_converse, proxy_port, asked, api_key)
    print("\nDone: kubectl apply -> operator -> vLLM-shaped pod -> proxy -> tool calls in the OpenAI SDK.")


def _models(proxy_port: int, api_key: str) -> list[str]:
    from openai import OpenAI

    with OpenAI(base_url=f"http://127.0.0.1:{proxy_port}/v1", api_key=api_key) as client:
        return [model.id for model in client.models.list()]


def _converse(proxy_port: int, served: str, api_key: str) -> None:
    from openai import OpenAI

    with OpenAI(base_url=f"http://127.0.0.1:{proxy_port}/v1", api_key=api_key) as client:
        conversation(client, served, first_step=8)


# The demo downloads nothing: the engine and the proxy use the model cache directory as it is.
_OFFLINE = {"HF_HUB_OFFLINE": "1"}


def local_volumes(
    pod_spec: Mapping[str, Any], config_maps: Mapping[str, Mapping[str, str]], workdir: Path
) -> dict[str, Path]:
    """Each of the pod's volumes as a directory in ``workdir``, by name: a ConfigMap's holding its
    items, any other (emptyDir, a claim) empty, for the containers that mount it to share."""
    volumes: dict[str, Path] = {}
    for volume in pod_spec.get("volumes") or []:
        local = volumes[volume["name"]] = workdir / volume["name"]
        local.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            data = config_maps.get(volume["configMap"]["name"]) or {}
            for item in volume["configMap"].get("items") or [{"key": key, "path": key} for key in data]:
                if item["key"] in data:
                    (local / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                    (local / item["path"]).write_text(data[item["key"]], encoding="utf-8")
    return volumes


def local_mounts(container: Mapping[str, Any], volumes: Mapping[str, Path]) -> dict[str, Path]:
    """The container's mount paths -> the local directories of their volumes (or subPaths)."""
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        local = volumes.get(mount["name"])
        if local is None:
            continue
        if mount.get("subPath"):
            local = local / mount["subPath"]
            local.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = local
    return mounts


def localized(value: str, mounts: Mapping[str, Path]) -> str:
    """``value`` with a path on one of the mounts made the local one (the deepest mount wins);
    ``--flag=PATH`` too."""
    if value.startswith("-") and "=" in value:
        flag, given = value.split("=", 1)
        return f"{flag}={localized(given, mounts)}"
    for mount_path in sorted(mounts, key=len, reverse=True):
        root = mount_path.rstrip("/")
        if root and (value == root or value.startswith(root + "/")):
            return str(mounts[mount_path]) + value[len(root) :]
    return value


def local_environment(
    container: Mapping[str, Any], mounts: Mapping[str, Path], secrets: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, str]:
    """The container's variables: their values, paths on its volumes made local, and those taken
    from a Secret (``valueFrom.secretKeyRef``) from ``secrets``; other ``valueFrom`` needs the cluster."""
    environment: dict[str, str] = {}
    for variable in container.get("env") or []:
        if "value" in variable:
            environment[variable["name"]] = localized(str(variable["value"]), mounts)
            continue
        reference = (variable.get("valueFrom") or {}).get("secretKeyRef") or {}
        value = (secrets or {}).get(reference.get("name", ""), {}).get(reference.get("key", ""))
        if value is not None:
            environment[variable["name"]] = value
    return environment


def _local_engine_arguments(engine: Mapping[str, Any], mounts: Mapping[str, Path], port: int) -> list[str]:
    """The engine container's arguments, with paths on its volumes and its address made local."""
    arguments = [localized(argument, mounts) for argument in engine.get("args") or []]
    for index in range(1, len(arguments)):
        if arguments[index - 1] == "--port":
            arguments[index] = str(port)
        if arguments[index - 1] == "--host":
            arguments[index] = "127.0.0.1"
    return arguments


def _local_proxy_environment(
    proxy: Mapping[str, Any],
    mounts: Mapping[str, Path],
    engine_port: int,
    proxy_port: int,
    secrets: Mapping[str, Mapping[str, str]],
) -> dict[str, str]:
    environment = {**local_environment(proxy, mounts, secrets), **_OFFLINE}
    environment["TOOLMODEL_UPSTREAM"] = environment["TOOLMODEL_UPSTREAM"].rsplit(":", 1)[0] + f":{engine_port}"
    environment["TOOLMODEL_HOST"] = "127.0.0.1"
    environment["TOOLMODEL_PORT"] = str(proxy_port)
    environment["TOOLMODEL_LOG_LEVEL"] = "warning"
    return environment


def _read_the_simulated_tokenizer(proxy_environment: dict[str, str], engine_command: Sequence[str]) -> None:
    """With vLLM replaced by the simulator, the proxy reads the tokenizer the simulator publishes,
    as the operator points it for ``engine: sim`` (it downloads nothing here)."""
    if "TOOLMODEL_TOKENIZER" in proxy_environment and "--model" in engine_command:
        model = engine_command[list(engine_command).index("--model") + 1]
        home = Path(proxy_environment.get("HF_HOME") or hub.hf_home())
        proxy_environment["TOOLMODEL_TOKENIZER"] = str(hub.simulated_tokenizer_dir(model, home))


def _host_only(environment: Mapping[str, str]) -> list[str]:
    """This machine's Hugging Face settings that the container does not have: a pod's container
    would not see them (HF_HUB_CACHE would lead both processes to this machine's cache)."""
    return sorted(name for name in os.environ if name.startswith("HF_") and name not in environment)


def _assignments(environment: Mapping[str, str]) -> str:
    return " ".join(f"{name}={value}" for name, value in environment.items())


def _indented(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())
