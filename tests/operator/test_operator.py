"""The real operator (kopf) against an API server over HTTP: one suite, two backends.

``emulated``: kmock's emulator, in-process, a fresh one per test. It has no uid, resourceVersion
or generation bookkeeping, no label-selector filtering, no admission, no controllers and no garbage
collection, and applies a server-side apply as a merge: the tests give objects a uid themselves,
stand in for the controllers (a Deployment's status, a pod) and for the garbage collector.

``real``: hack/real-apiserver.sh's kube-apiserver v1.20 + kube-controller-manager + etcd (see
real.py), a namespace per test. The operator runs as the chart's ServiceAccount and ClusterRole,
with OwnerReferencesPermissionEnforcement on; the API server assigns uids, admits by the CRD's
schema, the controllers make ReplicaSets and pods (there is no scheduler or kubelet: the tests
write the pods' status as those would), and the garbage collector deletes the children.

Where a backend cannot show the same thing, the scenario says what each shows. What only a real
API server does (admission rule by rule, CEL, field managers, conflicts, RBAC, restarts of the API
server) is in test_operator_real.py.
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
from emulated import Cluster, eventually, running_operator

from toolmodel_operator.handlers import resync_liveness
from toolmodel_operator.kube import CONFIGMAPS, DEPLOYMENTS, EVENTS, PODS, SECRETS, SERVICES, TOOLMODELS, KubeError

EXAMPLE = yaml.safe_load((Path(__file__).parents[2] / "examples" / "sim.yaml").read_text())
INSTANCE = "app.kubernetes.io/instance"


def sim_toolmodel(cluster: Cluster, name: str = "chatglm3-sim", **spec_changes: Any) -> dict[str, Any]:
    toolmodel = copy.deepcopy(EXAMPLE)
    toolmodel["metadata"] = {"name": name, "namespace": cluster.namespace}
    if not cluster.real:  # the emulator keeps what it is given; a real API server assigns them
        toolmodel["metadata"] |= {"uid": f"uid-{name}", "generation": 1}
    toolmodel["spec"].update(spec_changes)
    return toolmodel


def within(cluster: Cluster, seconds: float = 10) -> float:
    """Time for a change to go round: longer on a real control plane (controllers, the collector)."""
    return seconds * 3 if cluster.real else seconds


@pytest.fixture
async def operator(cluster):
    async with running_operator(cluster):
        yield


async def children(cluster: Cluster, name: str) -> dict[str, Any]:
    return {
        "configmap": await cluster.client.get(CONFIGMAPS, cluster.namespace, f"{name}-chat-template"),
        "deployment": await cluster.client.get(DEPLOYMENTS, cluster.namespace, name),
        "service": await cluster.client.get(SERVICES, cluster.namespace, name),
    }


async def status_of(cluster: Cluster, name: str) -> dict[str, Any]:
    toolmodel = await cluster.client.get(TOOLMODELS, cluster.namespace, name)
    return (toolmodel or {}).get("status") or {}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


async def events_about(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await cluster.client.list(EVENTS, cluster.namespace)
        if e.get("involvedObject", {}).get("name") == name
    ]


async def created(cluster: Cluster, name: str) -> dict[str, Any]:
    async def all_there() -> dict[str, Any] | None:
        found = await children(cluster, name)
        return found if all(found.values()) else None

    result: dict[str, Any] = await eventually(all_there, within(cluster))
    return result


async def pods_of(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    """The Deployment's pods, as its ReplicaSet made them (real backend)."""

    async def made() -> list[dict[str, Any]]:
        return await cluster.client.list(PODS, cluster.namespace, {INSTANCE: name})

    pods: list[dict[str, Any]] = await eventually(made, within(cluster))
    return pods


async def set_pod_status(cluster: Cluster, pod: dict[str, Any], status: dict[str, Any]) -> None:
    await cluster.client.patch(PODS, cluster.namespace, pod["metadata"]["name"], {"status": status}, "status")


async def make_ready(cluster: Cluster, name: str) -> None:
    """The Deployment's one replica becomes ready: written by the test on the emulator; on a real
    control plane the pods' status is (as a kubelet would write it), and the ReplicaSet and
    Deployment controllers carry it up."""
    if not cluster.real:
        ready = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
        await cluster.client.patch(DEPLOYMENTS, cluster.namespace, name, {"status": ready})
        return
    for pod in await pods_of(cluster, name):
        containers = pod["spec"]["containers"]
        await set_pod_status(
            cluster,
            pod,
            {
                "phase": "Running",
                "conditions": [
                    {"type": kind, "status": "True"}
                    for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                ],
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "image": c["image"],
                        "imageID": "",
                        "ready": True,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}},
                    }
                    for c in containers
                ],
            },
        )


async def test_a_toolmodel_gets_its_configmap_deployment_and_service(cluster, operator):
    await cluster.client.create(TOOLMODELS, cluster.namespace, sim_toolmodel(cluster))
    found = await created(cluster, "chatglm3-sim")
    toolmodel = await cluster.client.get(TOOLMODELS, cluster.namespace, "chatglm3-sim")
    assert toolmodel is not None
    assert "[gMASK]sop" in found["configmap"]["data"]["chat-template.jinja"]
    assert found["deployment"]["spec"]["template"]["spec"]["containers"][0]["name"] == "engine"
    assert found["service"]["spec"]["ports"][0]["port"] == 8000
    for child in found.values():
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["uid"] == toolmodel["metadata"]["uid"] and owner["controller"] is True  # deletion cascades
    status = await eventually(lambda: status_of(cluster, "chatglm3-sim"), within(cluster))
    assert status["endpoint"] == f"http://chatglm3-sim.{cluster.namespace}.svc:8000/v1"
    assert status["servedModelName"] == "ChatGLM3-6B" and status["dialect"] == "chatglm3"
    assert status["phase"] == "Progressing"
    assert status["observedGeneration"] == toolmodel["metadata"]["generation"]
    assert condition(status, "Ready")["status"] == "False"

    async def posted() -> set[str]:
        reasons = {e["reason"] for e in await events_about(cluster, "chatglm3-sim")}
        return reasons if {"Created", "Progressing"} <= reasons else set()

    await eventually(posted, within(cluster))


async def test_status_follows_the_deployment(cluster, operator):
    await cluster.client.create(TOOLMODELS, cluster.namespace, sim_toolmodel(cluster))
    await created(cluster, "chatglm3-sim")
    await make_ready(cluster, "chatglm3-sim")

    async def ready() -> dict[str, Any] | None:
        status = await status_of(cluster, "chatglm3-sim")
        return status if status.get("phase") == "Ready" else None

    status = await eventually(ready, within(cluster))
    assert status["readyReplicas"] == 1
    assert condition(status, "Ready") | {"lastTransitionTime": None} == condition(status, "Ready") | {
        "lastTransitionTime": None,
        "status": "True",
        "reason": "Serving",
    }


async def test_scaling_and_a_new_template_update_the_children(cluster, operator):
    await cluster.client.create(TOOLMODELS, cluster.namespace, sim_toolmodel(cluster))
    before = (await created(cluster, "chatglm3-sim"))["deployment"]
    old_hash = before["spec"]["template"]["metadata"]["annotations"]["toolmodel.dev/chat-template-hash"]

    serving = {**EXAMPLE["spec"].get("serving", {}), "replicas": 2}
    template = {"inline": "{% for m in messages %}{{ m.content }}{% endfor %}"}
    tool_calling = {**EXAMPLE["spec"]["toolCalling"], "chatTemplate": template}
    await cluster.client.patch(
        TOOLMODELS,
        cluster.namespace,
        "chatglm3-sim",
        # the generation: the emulator's bookkeeping (a real API server ignores it and counts itself)
        {"metadata": {"generation": 2}, "spec": {"serving": serving, "toolCalling": tool_calling}},
    )

    async def rolled() -> dict[str, Any] | None:
        found = await children(cluster, "chatglm3-sim")
        deployment = found["deployment"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        if deployment["spec"]["replicas"] == 2 and annotations["toolmodel.dev/chat-template-hash"] != old_hash:
            return found
        return None

    found = await eventually(rolled, within(cluster))
    assert found["configmap"]["data"]["chat-template.jinja"] == template["inline"]

    async def observed() -> dict[str, Any] | None:
        status = await status_of(cluster, "chatglm3-sim")
        return status if status.get("observedGeneration") == 2 and status.get("replicas") == 2 else None

    await eventually(observed, within(cluster))


async def test_a_deleted_or_edited_child_is_put_back(cluster, operator):
    await cluster.client.create(TOOLMODELS, cluster.namespace, sim_toolmodel(cluster))
    original = await created(cluster, "chatglm3-sim")
    await cluster.client.delete(SERVICES, cluster.namespace, "chatglm3-sim")
    await cluster.client.patch(
        CONFIGMAPS, cluster.namespace, "chatglm3-sim-chat-template", {"data": {"chat-template.jinja": "x"}}
    )
    await cluster.client.patch(DEPLOYMENTS, cluster.namespace, "chatglm3-sim", {"spec": {"replicas": 7}})

    async def restored() -> bool:
        found = await children(cluster, "chatglm3-sim")
        return (
            bool(found["service"])
            and found["configmap"]["data"] == original["configmap"]["data"]
            and found["deployment"]["spec"]["replicas"] == 1
        )

    await eventually(restored, within(cluster))


async def test_an_invalid_spec_is_reported_and_creates_nothing(cluster, operator):
    # Valid for the CRD's schema (a real API server admits it), not for the operator: the dialect
    # of an unknown model cannot be inferred.
    toolmodel = sim_toolmodel(cluster, "broken", model="acme/mystery-7b")
    toolmodel["spec"]["toolCalling"] = {}
    await cluster.client.create(TOOLMODELS, cluster.namespace, toolmodel)

    async def reported() -> dict[str, Any] | None:
        status = await status_of(cluster, "broken")
        return status if status.get("phase") == "Failed" else None

    status = await eventually(reported, within(cluster))
    ready = condition(status, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "spec.toolCalling.dialect" in ready["message"] and "chatglm3" in ready["message"]

    async def warned() -> set[str]:
        reasons = {event["reason"] for event in await events_about(cluster, "broken") if event["type"] == "Warning"}
        return reasons if "InvalidSpec" in reasons else set()

    assert await eventually(warned, within(cluster)) <= {"InvalidSpec", "Failed"}  # the reason, and the phase
    assert not any((await children(cluster, "broken")).values())


async def test_a_missing_secret_is_named_until_it_exists(cluster, operator):
    toolmodel = sim_toolmodel(cluster, "keyed")
    toolmodel["spec"]["serving"] = {**toolmodel["spec"].get("serving", {}), "apiKeySecretRef": {"name": "proxy-key"}}
    await cluster.client.create(TOOLMODELS, cluster.namespace, toolmodel)

    async def reported() -> str:
        return str(condition(await status_of(cluster, "keyed"), "Ready").get("message", ""))

    message = await eventually(lambda: _containing(reported, "proxy-key"), within(cluster))
    assert "spec.serving.apiKeySecretRef" in message and "does not exist" in message
    assert not any((await children(cluster, "keyed")).values())

    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "proxy-key", "namespace": cluster.namespace}}
    await cluster.client.create(SECRETS, cluster.namespace, {**secret, "data": {"api-key": "c2VjcmV0"}})
    await created(cluster, "keyed")  # picked up by the periodic resync


async def _containing(read: Any, text: str) -> str | None:
    value = await read()
    return value if text in value else None


UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
}


async def test_an_unschedulable_pod_is_explained_in_the_status(cluster, operator):
    await cluster.client.create(TOOLMODELS, cluster.namespace, sim_toolmodel(cluster))
    found = await created(cluster, "chatglm3-sim")
    if cluster.real:
        # The ReplicaSet's pod, with what a scheduler would write on it.
        for pod in await pods_of(cluster, "chatglm3-sim"):
            await set_pod_status(cluster, pod, {"phase": "Pending", "conditions": [UNSCHEDULABLE]})
    else:
        labels = found["deployment"]["spec"]["template"]["metadata"]["labels"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "chatglm3-sim-abc", "namespace": cluster.namespace, "labels": labels},
            "status": {"phase": "Pending", "conditions": [UNSCHEDULABLE]},
        }
        await cluster.client.create(PODS, cluster.namespace, pod)

    async def explained() -> dict[str, Any] | None:
        status = await status_of(cluster, "chatglm3-sim")
        return status if status.get("phase") == "Degraded" else None

    status = await eventually(explained, within(cluster))
    message = condition(status, "Ready")["message"]
    assert "Insufficient nvidia.com/gpu" in message and "tensorParallelSize" in message
    assert condition(status, "Degraded")["status"] == "True"


async def test_a_deleted_toolmodel_is_not_recreated_and_its_children_go_with_it(cluster, operator):
    await cluster.client.create(TOOLMODELS, cluster.namespace, sim_toolmodel(cluster))
    found = await created(cluster, "chatglm3-sim")
    for kind in ("configmap", "deployment", "service"):
        assert found[kind]["metadata"]["ownerReferences"][0]["name"] == "chatglm3-sim"
    # A reconcile still running when the ToolModel goes may write a child after the collection
    # below; a cluster's collector removes such an orphan too (its owner's uid is gone), the
    # emulator has none: let the reconciles that the creation set off finish first.
    await _settle()
    await cluster.client.delete(TOOLMODELS, cluster.namespace, "chatglm3-sim")
    if not cluster.real:
        # The emulator has no garbage collector: do what the cluster's would, by owner reference.
        for kind, child in (("configmap", CONFIGMAPS), ("deployment", DEPLOYMENTS), ("service", SERVICES)):
            await cluster.client.delete(child, cluster.namespace, found[kind]["metadata"]["name"])

    async def gone() -> bool:
        return not any((await children(cluster, "chatglm3-sim")).values())

    await eventually(gone, within(cluster))
    await _settle()
    assert not any((await children(cluster, "chatglm3-sim")).values())
    assert await cluster.client.get(TOOLMODELS, cluster.namespace, "chatglm3-sim") is None


async def test_a_restarted_operator_creates_no_duplicates(cluster):
    async with running_operator(cluster):
        await cluster.client.create(TOOLMODELS, cluster.namespace, sim_toolmodel(cluster))
        first = await created(cluster, "chatglm3-sim")
    async with running_operator(cluster):
        await _settle()
        second = await children(cluster, "chatglm3-sim")
    # nothing recreated, nothing rewritten (the Deployment's status is the controller's)
    for kind in ("configmap", "service"):
        assert _identity(second[kind]) == _identity(first[kind]), kind
    assert second["deployment"]["metadata"].get("uid") == first["deployment"]["metadata"].get("uid")
    assert len(await cluster.client.list(DEPLOYMENTS, cluster.namespace)) == 1
    assert len(await cluster.client.list(SERVICES, cluster.namespace)) == 1
    assert len(await cluster.client.list(CONFIGMAPS, cluster.namespace, {INSTANCE: "chatglm3-sim"})) == 1


def _identity(child: dict[str, Any]) -> tuple[Any, ...]:
    """What changes when an object is recreated or written: uid and resourceVersion (a real API
    server's), else (the emulator's) the object itself."""
    metadata = child["metadata"]
    if metadata.get("resourceVersion"):
        return metadata["uid"], metadata["resourceVersion"]
    return (child,)


async def _settle(seconds: float = 1.5) -> None:
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
async def test_a_malformed_toolmodel_is_refused_or_reported_and_the_resync_keeps_running(cluster, spec):
    broken = {**sim_toolmodel(cluster, "broken"), "spec": spec}
    if cluster.real:
        # Admission by the CRD's schema: it never gets to the operator.
        with pytest.raises(KubeError) as refused:
            await cluster.client.create(TOOLMODELS, cluster.namespace, broken)
        assert refused.value.status == 422 and "spec" in refused.value.message
        return
    async with running_operator(cluster):
        # Where nothing validates (the emulator; an API server without the CRD's schema): the
        # operator must say so on the object and carry on.
        await cluster.client.create(TOOLMODELS, cluster.namespace, broken)

        async def failed() -> dict[str, Any] | None:
            status = await status_of(cluster, "broken")
            return status if status.get("phase") == "Failed" else None

        status = await eventually(failed)
        assert condition(status, "Ready")["reason"] == "InvalidSpec"
        assert condition(status, "Ready")["message"].startswith("spec")
        # The resync (every 0.5 s here) outlives it: after it has met the broken object a few times,
        # a ToolModel that only a resync can complete (its Secret comes later, unwatched) completes.
        await asyncio.sleep(1.2)
        keyed = sim_toolmodel(cluster, "keyed")
        keyed["spec"]["serving"] = {**keyed["spec"]["serving"], "apiKeySecretRef": {"name": "late-key", "key": "k"}}
        await cluster.client.create(TOOLMODELS, cluster.namespace, keyed)
        await eventually(lambda: _containing(lambda: _ready_message(cluster, "keyed"), "late-key"))
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "late-key", "namespace": cluster.namespace},
        }
        await cluster.client.create(SECRETS, cluster.namespace, {**secret, "data": {"k": "c2VjcmV0"}})
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
