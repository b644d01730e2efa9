"""The operator applying what scale-out renders: a LeaderWorkerSet for a replica on several nodes, an
autoscaler (KEDA ScaledObject or HorizontalPodAutoscaler) that owns the replica count, an
InferencePool; moving between them; and what happens where the cluster lacks one of those APIs.

Both backends. ``emulated``: kmock serving the optional kinds each scenario asks for (it keeps what
it is given: no controllers, no collector, no field managers). ``real``: the v1.20 control plane with
the published LeaderWorkerSet, ScaledObject and InferencePool CRDs installed (real.py) and the chart's
RBAC rendered for them; Kubernetes 1.20 serves no autoscaling/v2, so an HPA is refused there as on
any cluster older than 1.23. Neither runs the LeaderWorkerSet, KEDA or HPA controllers: the tests
write what those would (a LeaderWorkerSet's status, an autoscaler's replica count).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from emulated import Cluster, emulated_cluster, eventually, running_operator
from real import real_cluster
from test_operator import condition, make_ready, sim_toolmodel, status_of, within

from toolmodel_operator.kube import (
    DEPLOYMENTS,
    HANDOVER_FIELD_MANAGER,
    HORIZONTAL_POD_AUTOSCALERS,
    INFERENCE_POOLS,
    LEADER_WORKER_SETS,
    SCALED_OBJECTS,
    SERVICES,
    TOOLMODELS,
    KubeClient,
    Resource,
)

NAME = "chatglm3-sim"
LWS = f"{NAME}-lws"
TWO_NODES = {"pipelineParallelSize": 2, "nodes": 2}
AUTOSCALING = {"minReplicas": 1, "maxReplicas": 4, "signal": "queueDepth", "target": 5}
EVERY_OPTIONAL_KIND = ("LeaderWorkerSet", "ScaledObject", "HorizontalPodAutoscaler", "InferencePool")


@pytest.fixture(params=["emulated", "real"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """A cluster serving the scale-out kinds: every one on the emulator; on the real control plane
    the CRDs real.py installs (not autoscaling/v2, which Kubernetes serves from 1.23)."""
    if request.param == "emulated":
        async with emulated_cluster(serves=EVERY_OPTIONAL_KIND) as running:
            yield running
        return
    async with real_cluster(request.getfixturevalue("control_plane"), request.node.name) as running:
        yield running


@pytest.fixture
async def operator(cluster: Cluster) -> AsyncIterator[None]:
    async with running_operator(cluster, discovery_seconds=0):
        yield


async def get(cluster: Cluster, resource: Resource, name: str) -> dict[str, Any] | None:
    return await cluster.client.get(resource, cluster.namespace, name)


async def present(cluster: Cluster, resource: Resource, name: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        return await get(cluster, resource, name)

    result: dict[str, Any] = await eventually(found, within(cluster))
    return result


async def absent(cluster: Cluster, resource: Resource, name: str) -> None:
    async def gone() -> bool:
        return await get(cluster, resource, name) is None

    await eventually(gone, within(cluster))


async def change_spec(cluster: Cluster, changes: dict[str, Any]) -> None:
    await cluster.client.patch(TOOLMODELS, cluster.namespace, NAME, {"spec": changes})


async def settled(cluster: Cluster) -> None:
    """Long enough for several resyncs (every 0.5 s in these tests) to have run."""
    await asyncio.sleep(3 if cluster.real else 1.5)


async def make_group_ready(cluster: Cluster) -> None:
    """What the LeaderWorkerSet controller reports once a group's pods are ready (neither backend
    runs it): written through the status subresource on the real server, as the controller does."""
    ready = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
    await cluster.client.patch(LEADER_WORKER_SETS, cluster.namespace, LWS, {"status": ready}, *_status(cluster))


async def test_a_model_on_several_nodes_is_a_leader_worker_set_serving_through_its_leaders(cluster, operator):
    await cluster.client.create(TOOLMODELS, cluster.namespace, sim_toolmodel(cluster, parallelism=TWO_NODES))
    lws = await present(cluster, LEADER_WORKER_SETS, LWS)
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert lws["metadata"]["ownerReferences"][0]["name"] == NAME
    service = await present(cluster, SERVICES, NAME)
    assert service["spec"]["selector"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    await settled(cluster)
    assert await get(cluster, DEPLOYMENTS, NAME) is None

    async def reports(phase: str, reason: str) -> dict[str, Any] | None:
        status = await status_of(cluster, NAME)
        return status if status.get("phase") == phase and condition(status, "Ready")["reason"] == reason else None

    await eventually(lambda: reports("Progressing", "Starting"), within(cluster))
    await make_group_ready(cluster)
    status = await eventually(lambda: reports("Ready", "Serving"), within(cluster))
    assert condition(status, "Ready")["message"] == "1/1 replicas ready"

    # Scaled: a second group; one of two ready until the LeaderWorkerSet says otherwise.
    await change_spec(cluster, {"serving": {"replicas": 2}})

    async def groups() -> int | None:
        found = await get(cluster, LEADER_WORKER_SETS, LWS)
        return found["spec"].get("replicas") if found else None

    assert await eventually(lambda: _equals(groups, 2), within(cluster))
    status = await eventually(lambda: reports("Progressing", "Serving"), within(cluster))
    assert (
        condition(status, "Ready")["message"]
        == "1/2 replicas ready; the engine may still be downloading or loading the model"
    )


async def test_moving_between_one_node_and_several_replaces_the_workload(cluster, operator):
    await cluster.client.create(TOOLMODELS, cluster.namespace, sim_toolmodel(cluster))
    await present(cluster, DEPLOYMENTS, NAME)

    await change_spec(cluster, {"parallelism": TWO_NODES})
    await present(cluster, LEADER_WORKER_SETS, LWS)
    await absent(cluster, DEPLOYMENTS, NAME)
    service = await get(cluster, SERVICES, NAME)
    assert service is not None and "leaderworkerset.sigs.k8s.io/worker-index" in service["spec"]["selector"]

    await change_spec(cluster, {"parallelism": {"pipelineParallelSize": 1, "nodes": 1}})
    await present(cluster, DEPLOYMENTS, NAME)
    await absent(cluster, LEADER_WORKER_SETS, LWS)

    async def one_node_selector() -> bool:
        found = await get(cluster, SERVICES, NAME)
        return found is not None and "leaderworkerset.sigs.k8s.io/worker-index" not in found["spec"]["selector"]

    if cluster.real:  # the emulator applies as a merge: a key the operator dropped stays there
        await eventually(one_node_selector, within(cluster))
    await make_ready(cluster, NAME)

    async def ready() -> bool:
        return (await status_of(cluster, NAME)).get("phase") == "Ready"

    await eventually(ready, within(cluster))


async def test_an_autoscaled_workload_keeps_the_replicas_its_autoscaler_sets(cluster, operator):
    toolmodel = sim_toolmodel(cluster)
    toolmodel["spec"]["serving"]["replicas"] = 2
    await cluster.client.create(TOOLMODELS, cluster.namespace, toolmodel)

    async def replicas() -> int | None:
        found = await get(cluster, DEPLOYMENTS, NAME)
        return int(found["spec"]["replicas"]) if found else None

    assert await eventually(lambda: _equals(replicas, 2), within(cluster))

    # Autoscaled from now on: the count stays where it was (not the default of 1) until the
    # autoscaler sets its own, and the ScaledObject scales the Deployment.
    await change_spec(cluster, {"serving": {"autoscaling": AUTOSCALING}})
    scaled_object = await present(cluster, SCALED_OBJECTS, NAME)
    assert scaled_object["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}
    assert scaled_object["spec"]["minReplicaCount"] == 1 and scaled_object["spec"]["maxReplicaCount"] == 4
    await settled(cluster)
    assert await replicas() == 2
    if cluster.real:
        owners = _replica_owners(await get(cluster, DEPLOYMENTS, NAME))
        assert owners == {HANDOVER_FIELD_MANAGER}, owners

    # The autoscaler (KEDA's HPA, through the scale subresource) sets 3; the operator leaves it.
    async with KubeClient(cluster.admin(), field_manager="kube-controller-manager") as autoscaler:
        await autoscaler.patch(DEPLOYMENTS, cluster.namespace, NAME, {"spec": {"replicas": 3}}, *_scale(cluster))
    await cluster.client.patch(TOOLMODELS, cluster.namespace, NAME, {"metadata": {"labels": {"touched": "yes"}}})
    await settled(cluster)
    assert await replicas() == 3
    assert (await status_of(cluster, NAME)).get("replicas") == 3

    # Fixed again: the spec's count, and the ScaledObject goes.
    await change_spec(cluster, {"serving": {"autoscaling": None, "replicas": 1}})
    await absent(cluster, SCALED_OBJECTS, NAME)
    assert await eventually(lambda: _equals(replicas, 1), within(cluster))


async def test_an_inference_pool_holds_the_serving_pods_until_the_spec_drops_it(cluster, operator):
    toolmodel = sim_toolmodel(cluster, parallelism=TWO_NODES)
    toolmodel["spec"]["serving"]["inferencePool"] = {}
    await cluster.client.create(TOOLMODELS, cluster.namespace, toolmodel)
    pool = await present(cluster, INFERENCE_POOLS, NAME)
    assert pool["spec"]["selector"]["matchLabels"]["leaderworkerset.sigs.k8s.io/worker-index"] == "0"
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    await change_spec(cluster, {"serving": {"inferencePool": None}})
    await absent(cluster, INFERENCE_POOLS, NAME)
    assert await get(cluster, LEADER_WORKER_SETS, LWS) is not None


async def test_a_deleted_multi_node_toolmodel_leaves_nothing_behind(cluster, operator):
    toolmodel = sim_toolmodel(cluster, parallelism=TWO_NODES)
    toolmodel["spec"]["serving"] |= {"autoscaling": AUTOSCALING, "inferencePool": {}}
    await cluster.client.create(TOOLMODELS, cluster.namespace, toolmodel)
    children = [(LEADER_WORKER_SETS, LWS), (SCALED_OBJECTS, NAME), (INFERENCE_POOLS, NAME), (SERVICES, NAME)]
    for resource, name in children:
        found = await present(cluster, resource, name)
        assert found["metadata"]["ownerReferences"][0]["name"] == NAME
    await cluster.client.delete(TOOLMODELS, cluster.namespace, NAME)
    if not cluster.real:
        # No garbage collector: do what a cluster's does, by owner reference, and keep doing it for
        # a while, as it does: a resync that read the ToolModel just before it went may apply a
        # child after the first collection (its owner's uid is gone: a collector removes it too).
        for _ in range(3):
            for resource, name in children:
                await cluster.client.delete(resource, cluster.namespace, name)
            await settled(cluster)
    for resource, name in children:
        await absent(cluster, resource, name)
    await settled(cluster)
    for resource, name in children:
        assert await get(cluster, resource, name) is None


# -- kinds the cluster does not serve ---------------------------------------------------------------


@pytest.fixture
async def bare_cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """A cluster without LeaderWorkerSet (emulated only: the real one has its CRD) and without
    autoscaling/v2 (both: Kubernetes 1.20)."""
    if request.param == "emulated":
        async with emulated_cluster(serves=("ScaledObject", "InferencePool")) as running:
            yield running
        return
    async with real_cluster(request.getfixturevalue("control_plane"), request.node.name) as running:
        yield running


# The real control plane has LeaderWorkerSet installed: the emulator shows that case.
@pytest.mark.parametrize(
    ("bare_cluster", "case"),
    [("emulated", "hpa"), ("real", "hpa"), ("emulated", "several nodes")],
    indirect=["bare_cluster"],
)
async def test_a_kind_the_cluster_does_not_serve_is_named_with_how_to_get_it_and_nothing_is_created(
    bare_cluster: Cluster, case: str
):
    cluster = bare_cluster
    toolmodel = sim_toolmodel(cluster)
    if case == "hpa":
        toolmodel["spec"]["serving"]["autoscaling"] = {**AUTOSCALING, "via": "hpa"}
        field, words = "spec.serving.autoscaling", ["HorizontalPodAutoscaler", "Kubernetes 1.23", "via: keda"]
    else:
        toolmodel["spec"]["parallelism"] = TWO_NODES
        field, words = "spec.parallelism", ["LeaderWorkerSet", "https://lws.sigs.k8s.io/docs/installation/"]
    async with running_operator(cluster, discovery_seconds=0):
        await cluster.client.create(TOOLMODELS, cluster.namespace, toolmodel)

        async def invalid() -> dict[str, Any] | None:
            ready = condition(await status_of(cluster, NAME), "Ready")
            return ready if ready.get("reason") == "InvalidSpec" else None

        ready = await eventually(invalid, within(cluster))
        assert ready["message"].startswith(field)
        assert all(word in ready["message"] for word in words), ready["message"]
        await settled(cluster)
    for resource, name in ((DEPLOYMENTS, NAME), (LEADER_WORKER_SETS, LWS), (SERVICES, NAME)):
        assert await get(cluster, resource, name) is None


async def test_without_keda_autoscaling_is_a_horizontal_pod_autoscaler():
    async with emulated_cluster(serves=("HorizontalPodAutoscaler",)) as cluster:
        async with running_operator(cluster, discovery_seconds=0):
            toolmodel = sim_toolmodel(cluster)
            toolmodel["spec"]["serving"]["autoscaling"] = AUTOSCALING
            await cluster.client.create(TOOLMODELS, cluster.namespace, toolmodel)
            hpa = await present(cluster, HORIZONTAL_POD_AUTOSCALERS, NAME)
            assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}
            metric = hpa["spec"]["metrics"][0]["pods"]
            assert metric["metric"]["name"] == "vllm:num_requests_waiting"


async def test_changing_the_autoscaler_replaces_the_other():
    async with emulated_cluster(serves=EVERY_OPTIONAL_KIND) as cluster:
        async with running_operator(cluster, discovery_seconds=0):
            toolmodel = sim_toolmodel(cluster)
            toolmodel["spec"]["serving"]["autoscaling"] = AUTOSCALING  # KEDA, as it is installed
            await cluster.client.create(TOOLMODELS, cluster.namespace, toolmodel)
            await present(cluster, SCALED_OBJECTS, NAME)
            await change_spec(cluster, {"serving": {"autoscaling": {**AUTOSCALING, "via": "hpa"}}})
            await present(cluster, HORIZONTAL_POD_AUTOSCALERS, NAME)
            await absent(cluster, SCALED_OBJECTS, NAME)


# -- helpers --------------------------------------------------------------------------------------


async def _equals(read: Any, expected: Any) -> bool:
    return bool(await read() == expected)


def _scale(cluster: Cluster) -> tuple[str, ...]:
    """Where an autoscaler writes replicas: the scale subresource (the emulator's are the object)."""
    return ("scale",) if cluster.real else ()


def _status(cluster: Cluster) -> tuple[str, ...]:
    return ("status",) if cluster.real else ()


def _replica_owners(deployment: dict[str, Any] | None) -> set[str]:
    entries = ((deployment or {}).get("metadata") or {}).get("managedFields") or []
    return {
        entry["manager"] for entry in entries if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    }


async def test_a_kind_the_operator_is_not_permitted_names_the_chart_value_that_grants_it():
    """Served, but not among the kinds the operator's RBAC grants (the chart's --scale-out-kinds):
    InvalidSpec naming the value, nothing created, rather than a Forbidden retried for ever."""
    async with emulated_cluster(serves=EVERY_OPTIONAL_KIND) as cluster:
        async with running_operator(cluster, discovery_seconds=0, scale_out_kinds=("ScaledObject",)):
            await cluster.client.create(TOOLMODELS, cluster.namespace, sim_toolmodel(cluster, parallelism=TWO_NODES))

            async def invalid() -> dict[str, Any] | None:
                ready = condition(await status_of(cluster, NAME), "Ready")
                return ready if ready.get("reason") == "InvalidSpec" else None

            ready = await eventually(invalid, within(cluster))
            assert ready["message"].startswith("spec.parallelism")
            assert "not permitted to manage leaderworkersets.leaderworkerset.x-k8s.io" in ready["message"]
            assert "scaleOut.leaderWorkerSet: true" in ready["message"]
            await settled(cluster)
            assert await get(cluster, LEADER_WORKER_SETS, LWS) is None
            assert await get(cluster, SERVICES, NAME) is None
