"""The real operator (kopf) against an emulated API server (kmock) over HTTP.

The emulator has no uid or resourceVersion bookkeeping, no label-selector filtering, no garbage
collection and no schema validation: the tests give objects a uid themselves, the operator
filters by label on its side, owner references stand in for garbage collection, and the schema
is tested against the CRD elsewhere (tests/operator/test_examples.py).
"""

from __future__ import annotations

import asyncio
import copy
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from emulated import Cluster, emulated_cluster, eventually, running_operator

from toolmodel_operator.handlers import resync_liveness
from toolmodel_operator.kube import CONFIGMAPS, DEPLOYMENTS, EVENTS, PODS, SECRETS, SERVICES, TOOLMODELS

EXAMPLE = yaml.safe_load((Path(__file__).parents[2] / "examples" / "sim.yaml").read_text())
NAMESPACE = "default"


def sim_toolmodel(name: str = "chatglm3-sim", **spec_changes: Any) -> dict[str, Any]:
    toolmodel = copy.deepcopy(EXAMPLE)
    toolmodel["metadata"] = {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}", "generation": 1}
    toolmodel["spec"].update(spec_changes)
    return toolmodel


@pytest.fixture
async def cluster():
    async with emulated_cluster() as running:
        yield running


@pytest.fixture
async def operator(cluster):
    async with running_operator(cluster):
        yield


async def children(cluster: Cluster, name: str) -> dict[str, Any]:
    return {
        "configmap": await cluster.client.get(CONFIGMAPS, NAMESPACE, f"{name}-chat-template"),
        "deployment": await cluster.client.get(DEPLOYMENTS, NAMESPACE, name),
        "service": await cluster.client.get(SERVICES, NAMESPACE, name),
    }


async def status_of(cluster: Cluster, name: str) -> dict[str, Any]:
    toolmodel = await cluster.client.get(TOOLMODELS, NAMESPACE, name)
    return (toolmodel or {}).get("status") or {}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


async def events_about(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return [e for e in await cluster.client.list(EVENTS, NAMESPACE) if e.get("involvedObject", {}).get("name") == name]


async def created(cluster: Cluster, name: str) -> dict[str, Any]:
    async def all_there() -> dict[str, Any] | None:
        found = await children(cluster, name)
        return found if all(found.values()) else None

    result: dict[str, Any] = await eventually(all_there)
    return result


async def test_a_toolmodel_gets_its_configmap_deployment_and_service(cluster, operator):
    await cluster.client.create(TOOLMODELS, NAMESPACE, sim_toolmodel())
    found = await created(cluster, "chatglm3-sim")
    assert "[gMASK]sop" in found["configmap"]["data"]["chat-template.jinja"]
    assert found["deployment"]["spec"]["template"]["spec"]["containers"][0]["name"] == "engine"
    assert found["service"]["spec"]["ports"][0]["port"] == 8000
    for child in found.values():
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["uid"] == "uid-chatglm3-sim" and owner["controller"] is True  # deletion cascades
    status = await eventually(lambda: status_of(cluster, "chatglm3-sim"))
    assert status["endpoint"] == "http://chatglm3-sim.default.svc:8000/v1"
    assert status["servedModelName"] == "ChatGLM3-6B" and status["dialect"] == "chatglm3"
    assert status["phase"] == "Progressing"
    assert condition(status, "Ready")["status"] == "False"
    reasons = {e["reason"] for e in await eventually(lambda: events_about(cluster, "chatglm3-sim"))}
    assert "Created" in reasons


async def test_status_follows_the_deployment(cluster, operator):
    await cluster.client.create(TOOLMODELS, NAMESPACE, sim_toolmodel())
    await created(cluster, "chatglm3-sim")
    await cluster.client.patch(
        DEPLOYMENTS, NAMESPACE, "chatglm3-sim", {"status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}}
    )

    async def ready() -> dict[str, Any] | None:
        status = await status_of(cluster, "chatglm3-sim")
        return status if status.get("phase") == "Ready" else None

    status = await eventually(ready)
    assert status["readyReplicas"] == 1
    assert condition(status, "Ready") | {"lastTransitionTime": None} == condition(status, "Ready") | {
        "lastTransitionTime": None,
        "status": "True",
        "reason": "Serving",
    }


async def test_scaling_and_a_new_template_update_the_children(cluster, operator):
    await cluster.client.create(TOOLMODELS, NAMESPACE, sim_toolmodel())
    before = (await created(cluster, "chatglm3-sim"))["deployment"]
    old_hash = before["spec"]["template"]["metadata"]["annotations"]["toolmodel.dev/chat-template-hash"]

    serving = {**EXAMPLE["spec"].get("serving", {}), "replicas": 2}
    template = {"inline": "{% for m in messages %}{{ m.content }}{% endfor %}"}
    tool_calling = {**EXAMPLE["spec"]["toolCalling"], "chatTemplate": template}
    await cluster.client.patch(
        TOOLMODELS,
        NAMESPACE,
        "chatglm3-sim",
        {"metadata": {"generation": 2}, "spec": {"serving": serving, "toolCalling": tool_calling}},
    )

    async def rolled() -> dict[str, Any] | None:
        found = await children(cluster, "chatglm3-sim")
        deployment = found["deployment"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        if deployment["spec"]["replicas"] == 2 and annotations["toolmodel.dev/chat-template-hash"] != old_hash:
            return found
        return None

    found = await eventually(rolled)
    assert found["configmap"]["data"]["chat-template.jinja"] == template["inline"]


async def test_a_deleted_or_edited_child_is_put_back(cluster, operator):
    await cluster.client.create(TOOLMODELS, NAMESPACE, sim_toolmodel())
    original = await created(cluster, "chatglm3-sim")
    await cluster.client.delete(SERVICES, NAMESPACE, "chatglm3-sim")
    await cluster.client.patch(
        CONFIGMAPS, NAMESPACE, "chatglm3-sim-chat-template", {"data": {"chat-template.jinja": "x"}}
    )

    async def restored() -> bool:
        found = await children(cluster, "chatglm3-sim")
        return bool(found["service"]) and found["configmap"]["data"] == original["configmap"]["data"]

    await eventually(restored)


async def test_an_invalid_spec_is_reported_and_creates_nothing(cluster, operator):
    toolmodel = sim_toolmodel("broken")
    toolmodel["spec"]["toolCalling"] = {"dialect": "gpt5"}
    await cluster.client.create(TOOLMODELS, NAMESPACE, toolmodel)

    async def reported() -> dict[str, Any] | None:
        status = await status_of(cluster, "broken")
        return status if status.get("phase") == "Failed" else None

    status = await eventually(reported)
    ready = condition(status, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "spec.toolCalling.dialect" in ready["message"] and "chatglm3" in ready["message"]

    async def warnings_posted() -> list[dict[str, Any]]:
        return [event for event in await events_about(cluster, "broken") if event["type"] == "Warning"]

    warnings = await eventually(warnings_posted)
    assert warnings[0]["reason"] == "InvalidSpec"
    assert not any((await children(cluster, "broken")).values())


async def test_a_missing_secret_is_named_until_it_exists(cluster, operator):
    toolmodel = sim_toolmodel("keyed")
    toolmodel["spec"]["serving"] = {**toolmodel["spec"].get("serving", {}), "apiKeySecretRef": {"name": "proxy-key"}}
    await cluster.client.create(TOOLMODELS, NAMESPACE, toolmodel)

    async def reported() -> str:
        return str(condition(await status_of(cluster, "keyed"), "Ready").get("message", ""))

    message = await eventually(lambda: _containing(reported, "proxy-key"))
    assert "spec.serving.apiKeySecretRef" in message and "does not exist" in message
    assert not any((await children(cluster, "keyed")).values())

    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "proxy-key", "namespace": NAMESPACE}}
    await cluster.client.create(SECRETS, NAMESPACE, {**secret, "data": {"api-key": "c2VjcmV0"}})
    await created(cluster, "keyed")  # picked up by the periodic resync


async def _containing(read: Any, text: str) -> str | None:
    value = await read()
    return value if text in value else None


async def test_an_unschedulable_pod_is_explained_in_the_status(cluster, operator):
    await cluster.client.create(TOOLMODELS, NAMESPACE, sim_toolmodel())
    found = await created(cluster, "chatglm3-sim")
    labels = found["deployment"]["spec"]["template"]["metadata"]["labels"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "chatglm3-sim-abc", "namespace": NAMESPACE, "labels": labels},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ],
        },
    }
    await cluster.client.create(PODS, NAMESPACE, pod)

    async def explained() -> dict[str, Any] | None:
        status = await status_of(cluster, "chatglm3-sim")
        return status if status.get("phase") == "Degraded" else None

    status = await eventually(explained)
    message = condition(status, "Ready")["message"]
    assert "Insufficient nvidia.com/gpu" in message and "tensorParallelSize" in message
    assert condition(status, "Degraded")["status"] == "True"


async def test_a_deleted_toolmodel_is_not_recreated_and_its_children_carry_its_owner(cluster, operator):
    await cluster.client.create(TOOLMODELS, NAMESPACE, sim_toolmodel())
    found = await created(cluster, "chatglm3-sim")
    # A reconcile still running when the ToolModel goes may write a child after the collection
    # below; a cluster's collector removes such an orphan too (its owner's uid is gone), this
    # emulator has none: let the reconciles that the creation set off finish first.
    await _settle()
    await cluster.client.delete(TOOLMODELS, NAMESPACE, "chatglm3-sim")
    # The emulator has no garbage collector: do what the cluster's would, by owner reference.
    for kind, child in (("configmap", CONFIGMAPS), ("deployment", DEPLOYMENTS), ("service", SERVICES)):
        assert found[kind]["metadata"]["ownerReferences"][0]["name"] == "chatglm3-sim"
        await cluster.client.delete(child, NAMESPACE, found[kind]["metadata"]["name"])
    await _settle()
    assert not any((await children(cluster, "chatglm3-sim")).values())
    assert await cluster.client.get(TOOLMODELS, NAMESPACE, "chatglm3-sim") is None


async def test_a_restarted_operator_creates_no_duplicates(cluster):
    async with running_operator(cluster):
        await cluster.client.create(TOOLMODELS, NAMESPACE, sim_toolmodel())
        first = await created(cluster, "chatglm3-sim")
    async with running_operator(cluster):
        await _settle()
        second = await children(cluster, "chatglm3-sim")
    assert second == first | {"deployment": second["deployment"]}  # nothing recreated
    assert len(await cluster.client.list(DEPLOYMENTS, NAMESPACE)) == 1
    assert len(await cluster.client.list(SERVICES, NAMESPACE)) == 1


async def _settle(seconds: float = 1.5) -> None:
    import asyncio

    await asyncio.sleep(seconds)


@pytest.mark.parametrize(
    "spec",
    [
        "a string",
        ["a", "list"],
        {"model": "THUDM/chatglm3-6b", "serving": "fast"},
        {"model": "THUDM/chatglm3-6b", "serving": {"replicas": "many"}},
    ],
    ids=["spec a string", "spec a list", "serving a string", "replicas no number"],
)
async def test_a_malformed_toolmodel_gets_its_status_and_the_resync_keeps_running(cluster, operator, spec):
    # What admission would refuse, written where nothing validates (the emulator; an API server
    # without the CRD's schema): the operator must say so on the object and carry on.
    broken = {**sim_toolmodel("broken"), "spec": spec}
    await cluster.client.create(TOOLMODELS, NAMESPACE, broken)

    async def failed() -> dict[str, Any] | None:
        status = await status_of(cluster, "broken")
        return status if status.get("phase") == "Failed" else None

    status = await eventually(failed)
    assert condition(status, "Ready")["reason"] == "InvalidSpec"
    assert condition(status, "Ready")["message"].startswith("spec")
    # The resync (every 0.5 s here) outlives it: after it has met the broken object a few times,
    # a ToolModel that only a resync can complete (its Secret comes later, unwatched) completes.
    await asyncio.sleep(1.2)
    keyed = sim_toolmodel("keyed")
    keyed["spec"]["serving"] = {**keyed["spec"]["serving"], "apiKeySecretRef": {"name": "late-key", "key": "k"}}
    await cluster.client.create(TOOLMODELS, NAMESPACE, keyed)
    await eventually(lambda: _containing(lambda: _ready_message(cluster, "keyed"), "late-key"))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "late-key", "namespace": NAMESPACE}}
    await cluster.client.create(SECRETS, NAMESPACE, {**secret, "data": {"k": "c2VjcmV0"}})
    await created(cluster, "keyed")


async def _ready_message(cluster: Cluster, name: str) -> str:
    return str(condition(await status_of(cluster, name), "Ready").get("message", ""))


async def test_the_liveness_endpoint_reports_the_resync(cluster):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with running_operator(cluster, liveness_endpoint=f"http://127.0.0.1:{port}/healthz"):
        async with aiohttp.ClientSession() as session:

            async def healthy() -> dict[str, Any] | None:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        body = await response.json()
                except aiohttp.ClientConnectorError:
                    return None  # the endpoint is not listening yet
                return body if response.status == 200 and body.get("resync") == "running" else None

            assert (await eventually(healthy))["resync"] == "running"


async def test_a_stopped_resync_fails_the_liveness_probe():
    async def forever() -> None:
        await asyncio.sleep(3600)

    task = asyncio.create_task(forever())
    assert resync_liveness([]) == "starting"
    assert resync_liveness([task]) == "running"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    with pytest.raises(RuntimeError, match="resync has stopped"):
        resync_liveness([task])
