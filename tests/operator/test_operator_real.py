"""What only a real API server shows (backend ``real``, see real.py; the shared scenarios, on both
backends, are in test_operator.py): admission by every rule of the CRD's schema and by its CEL
rules, server-side apply and field managers, garbage collection, restarts of the operator and of
the API server, resourceVersion conflicts, and the chart's RBAC under a real authorizer with a
ServiceAccount token and OwnerReferencesPermissionEnforcement."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from emulated import Cluster, eventually, running_operator
from real import CLUSTER_ROLES, CRDS, OPERATOR_NAMESPACE, install_operator_account, unavailable
from test_operator import EXAMPLE, INSTANCE, children, created, pods_of, sim_toolmodel, status_of

import toolmodel_operator.handlers as handlers
from toolmodel_operator.crd import CRD_NAME, crd_manifest, openapi_schema
from toolmodel_operator.kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    FIELD_MANAGER,
    INFERENCE_POOLS,
    LEADER_WORKER_SETS,
    PODS,
    SCALED_OBJECTS,
    SECRETS,
    SERVICES,
    TOOLMODELS,
    KubeClient,
    KubeError,
    Resource,
    resource_of,
)
from toolmodel_operator.render import render

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
SPEC_SCHEMA = openapi_schema()["properties"]["spec"]


# -- admission: the CRD's schema, rule by rule ------------------------------------------------------


def sample(node: Mapping[str, Any]) -> Any:
    """A small value that the schema node admits."""
    if "enum" in node:
        return node["enum"][0]
    if node.get("x-kubernetes-int-or-string"):
        return "1"
    kind = node.get("type")
    if kind == "object":
        return {name: sample(node["properties"][name]) for name in node.get("required", [])}
    if kind == "array":
        return []
    if kind == "string":
        return "x" * max(1, node.get("minLength", 0))
    if kind in ("integer", "number"):
        low = node.get("minimum", 1)
        value = low + 1 if node.get("exclusiveMinimum") else max(low, 1)
        return min(value, node["maximum"]) if "maximum" in node else value
    if kind == "boolean":
        return True
    raise AssertionError(f"no sample for {node}")


def violations(node: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(rule, a value breaking it) for each rule the schema node has of its own."""
    kind = node.get("type")
    if node.get("x-kubernetes-int-or-string"):
        yield "type", True
    elif kind is not None:
        yield "type", 1 if kind in ("string", "object", "array", "boolean") else "x"
    if "enum" in node:
        yield "enum", "not-one-of-them"
    if "minimum" in node:
        yield "minimum", node["minimum"] if node.get("exclusiveMinimum") else node["minimum"] - 1
    if "maximum" in node:
        yield "maximum", node["maximum"] if node.get("exclusiveMaximum") else node["maximum"] + 1
    if node.get("minLength"):
        yield "minLength", "x" * (node["minLength"] - 1)
    if "maxLength" in node:
        yield "maxLength", "x" * (node["maxLength"] + 1)
    if "minItems" in node:
        yield "minItems", []
    if "maxItems" in node:
        yield "maxItems", [sample(node["items"])] * (node["maxItems"] + 1)
    if "maxProperties" in node:
        yield "maxProperties", {f"k{i}": sample(node["additionalProperties"]) for i in range(node["maxProperties"] + 1)}
    for name in node.get("required", []):
        yield f"required {name}", {k: v for k, v in sample(node).items() if k != name}


def rules(node: Mapping[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    """(path, rule, bad value) for every rule in the spec's schema; a path step is a property,
    ``[]`` (a list's item) or ``{}`` (a map's value)."""
    for rule, bad in violations(node):
        yield path, rule, bad
    for name, sub in node.get("properties", {}).items():
        yield from rules(sub, (*path, name))
    if isinstance(node.get("items"), Mapping):
        yield from rules(node["items"], (*path, "[]"))
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from rules(node["additionalProperties"], (*path, "{}"))


RULES = list(rules(SPEC_SCHEMA))


def spec_with(path: tuple[str, ...], value: Any) -> tuple[dict[str, Any], str]:
    """A valid spec with ``value`` at ``path``, and the field path the API server names for it."""
    spec = sample(SPEC_SCHEMA) | {"model": "THUDM/chatglm3-6b"}
    if not path:
        return value, "spec"
    node, schema, field = spec, SPEC_SCHEMA, "spec"
    for step, following in zip(path, (*path[1:], None), strict=True):
        if step == "[]":
            schema, key, field = schema["items"], 0, f"{field}[0]"
        elif step == "{}":
            schema, key, field = schema["additionalProperties"], "k", f"{field}.k"
        else:
            schema, key, field = schema["properties"][step], step, f"{field}.{step}"
        if following is None:
            child = value
        elif following == "[]":
            child = [sample(schema["items"])]
        elif following == "{}":
            child = {"k": sample(schema["additionalProperties"])}
        else:
            child = sample(schema)
        if isinstance(node, list):
            node[key] = child  # type: ignore[index]
        else:
            node[key] = child
        node = child
    return spec, field


def test_every_schema_rule_has_a_case():
    kinds = {rule.split()[0] for _, rule, _ in RULES}
    assert kinds == {
        "type",
        "enum",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "maxItems",
        "maxProperties",
        "required",
    }
    assert len(RULES) > 100


async def test_the_api_server_refuses_what_each_schema_rule_forbids(real: Cluster):
    """Every rule of the spec's schema (type, enum, ranges, lengths, sizes, required fields),
    broken one at a time in an otherwise valid ToolModel: refused by the API server (a dry run),
    naming the field, as the schema checked offline says (tests/operator/test_crd.py)."""
    offline = jsonschema.Draft4Validator(openapi_schema())
    path = TOOLMODELS.path(real.namespace)
    base = sim_toolmodel(real, "rules")
    valid, _ = spec_with((), sample(SPEC_SCHEMA) | {"model": "m"})
    await real.client._request("POST", path, {**base, "spec": valid}, params={"dryRun": "All"})
    failures = []
    for steps, rule, bad in RULES:
        spec, field = spec_with(steps, bad)
        body = {**base, "spec": spec}
        assert not offline.is_valid(body), (steps, rule)
        try:
            await real.client._request("POST", path, body, params={"dryRun": "All"})
        except KubeError as error:
            named = f"{field}.{rule.split()[1]}" if rule.startswith("required") else field
            # v1.20 names a list's item without its index (spec.env.name for spec.env[0].name)
            if error.status != 422 or re.sub(r"\[\d+\]", "", named) not in error.message:
                failures.append(f"{named} {rule}: {error}")
        else:
            failures.append(f"{field} {rule}: admitted {json.dumps(bad)[:80]}")
    assert not failures, f"{len(failures)} of {len(RULES)} rules not enforced:\n" + "\n".join(failures)


@pytest.mark.parametrize("example", [yaml.safe_load(p.read_text()) for p in EXAMPLES], ids=[p.name for p in EXAMPLES])
async def test_the_api_server_admits_each_example(real: Cluster, example: dict[str, Any]):
    example["metadata"]["namespace"] = real.namespace
    admitted = await real.client._request("POST", TOOLMODELS.path(real.namespace), example, params={"dryRun": "All"})
    assert admitted["spec"]["model"] == example["spec"]["model"]


CEL_CASES = {
    "chatTemplate": (
        {"toolCalling": {"dialect": "chatglm3", "chatTemplate": {"preset": "chatglm3", "inline": "{{ x }}"}}},
        "set at most one of preset, inline or configMapRef",
    ),
    "cache": (
        {"storage": {"cache": {"persistentVolumeClaim": {"claimName": "models"}, "emptyDir": {}}}},
        "set exactly one of persistentVolumeClaim or emptyDir",
    ),
    "env": (
        {"env": [{"name": "A", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
        "set value or valueFrom, not both",
    ),
}


@pytest.mark.parametrize("case", sorted(CEL_CASES))
async def test_the_cel_rules_refuse_on_the_crd_only_server_and_are_dropped_by_1_20(real: Cluster, case: str):
    changes, message = CEL_CASES[case]
    toolmodel = sim_toolmodel(real, "cel") | {"spec": {**EXAMPLE["spec"], **changes}}
    toolmodel["metadata"]["namespace"] = "default"
    path = TOOLMODELS.path("default")
    assert real.plane is not None
    async with KubeClient(real.plane.admin(real.plane.cel_server)) as cel:
        with pytest.raises(KubeError) as refused:
            await cel._request("POST", path, toolmodel, params={"dryRun": "All"})
        assert refused.value.status == 422 and message in refused.value.message
        fixed = copy.deepcopy(toolmodel)
        fixed["spec"] = EXAMPLE["spec"]
        await cel._request("POST", path, fixed, params={"dryRun": "All"})  # the same, without the clash
    # v1.20 drops x-kubernetes-validations from the CRD: the operator's own checks (render) are
    # what catches these there.
    await real.client._request("POST", path, toolmodel, params={"dryRun": "All"})


async def test_the_1_20_server_drops_the_cel_rules_the_crd_only_server_keeps(real: Cluster):
    assert real.plane is not None
    stored = await real.client.get(CRDS, None, CRD_NAME)
    assert stored is not None and "x-kubernetes-validations" not in json.dumps(stored)
    async with KubeClient(real.plane.admin(real.plane.cel_server)) as cel:
        kept = await cel.get(CRDS, None, CRD_NAME)
    rules = json.dumps(crd_manifest()).count("x-kubernetes-validations")
    assert rules >= 3 and kept is not None and json.dumps(kept).count("x-kubernetes-validations") == rules


# -- server-side apply: field managers ----------------------------------------------------------------


def managers(obj: Mapping[str, Any]) -> dict[str, str]:
    return {e["manager"]: e["operation"] for e in obj["metadata"].get("managedFields") or []}


async def test_a_removed_spec_key_leaves_the_child_and_another_managers_fields_stay(real: Cluster):
    pod_annotations = {"example.com/team": "ml", "example.com/cost-center": "42"}
    toolmodel = sim_toolmodel(real)
    toolmodel["spec"]["serving"] = {**toolmodel["spec"]["serving"], "podAnnotations": pod_annotations}
    async with running_operator(real):
        await real.client.create(TOOLMODELS, real.namespace, toolmodel)
        deployment = (await created(real, "chatglm3-sim"))["deployment"]
        assert pod_annotations.items() <= deployment["spec"]["template"]["metadata"]["annotations"].items()
        assert managers(deployment)[FIELD_MANAGER] == "Apply"

        # Another controller's annotation, on the object and on its pod template (as
        # `kubectl rollout restart` writes it), under a field manager of its own.
        other = {"example.com/owner": "another-controller"}
        restarted = {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}
        async with KubeClient(real.plane.admin(), field_manager="another-controller") as another:  # type: ignore[union-attr]
            await another.patch(
                DEPLOYMENTS,
                real.namespace,
                "chatglm3-sim",
                {"metadata": {"annotations": other}, "spec": {"template": {"metadata": {"annotations": restarted}}}},
            )
        # The user drops one of the pod annotations from the spec.
        await real.client.patch(
            TOOLMODELS,
            real.namespace,
            "chatglm3-sim",
            {"spec": {"serving": {"podAnnotations": {"example.com/cost-center": None}}}},
        )

        async def dropped() -> dict[str, Any] | None:
            live = await real.client.get(DEPLOYMENTS, real.namespace, "chatglm3-sim")
            annotations = (live or {})["spec"]["template"]["metadata"]["annotations"]
            return live if "example.com/cost-center" not in annotations else None

        live = await eventually(dropped, 30)
    annotations = live["spec"]["template"]["metadata"]["annotations"]
    assert annotations["example.com/team"] == "ml"  # still in the spec
    assert annotations["kubectl.kubernetes.io/restartedAt"] == restarted["kubectl.kubernetes.io/restartedAt"]
    assert live["metadata"]["annotations"]["example.com/owner"] == "another-controller"
    assert managers(live) | {"kube-controller-manager": "Update"} == {
        FIELD_MANAGER: "Apply",
        "another-controller": "Update",
        "kube-controller-manager": "Update",  # the Deployment's status
    }
    ours = next(e for e in live["metadata"]["managedFields"] if e["manager"] == FIELD_MANAGER)
    owned = json.dumps(ours["fieldsV1"])
    assert "example.com/team" in owned and "example.com/owner" not in owned and "restartedAt" not in owned


async def test_children_written_before_server_side_apply_are_adopted(real: Cluster):
    """An operator version before server-side apply created and merge-patched the children as the
    field manager "Python" (aiohttp's User-Agent): the first apply hands those fields over to
    toolmodel-operator, so what that version set and this one does not is removed."""
    toolmodel = sim_toolmodel(real)
    toolmodel["spec"]["serving"] = {**toolmodel["spec"]["serving"], "podAnnotations": {"example.com/old": "1"}}
    await real.client.create(TOOLMODELS, real.namespace, toolmodel)
    live_toolmodel = await real.client.get(TOOLMODELS, real.namespace, "chatglm3-sim")
    assert real.plane is not None
    # No fieldManager: the server names the manager after the User-Agent, aiohttp's "Python/3.x ...".
    async with KubeClient(real.plane.admin(), field_manager="") as legacy:
        assert live_toolmodel is not None
        for manifest in render(live_toolmodel):
            await legacy.create(resource_of(manifest), real.namespace, manifest)
    before = await real.client.get(DEPLOYMENTS, real.namespace, "chatglm3-sim")
    assert before is not None and managers(before).get("Python") == "Update"
    await real.client.patch(TOOLMODELS, real.namespace, "chatglm3-sim", {"spec": {"serving": {"podAnnotations": None}}})

    async with running_operator(real):

        async def adopted() -> dict[str, Any] | None:
            live = await real.client.get(DEPLOYMENTS, real.namespace, "chatglm3-sim")
            annotations = (live or {})["spec"]["template"]["metadata"].get("annotations") or {}
            return live if "example.com/old" not in annotations else None

        live = await eventually(adopted, 30)
    assert "Python" not in managers(live) and managers(live)[FIELD_MANAGER] == "Apply"
    assert live["metadata"]["uid"] == before["metadata"]["uid"]  # the same object, not recreated


# -- garbage collection -------------------------------------------------------------------------------


@pytest.mark.parametrize("propagation", ["Foreground", "Background"])
async def test_deleting_a_toolmodel_collects_its_children(real: Cluster, propagation: str):
    async with running_operator(real):
        await real.client.create(TOOLMODELS, real.namespace, sim_toolmodel(real))
        await created(real, "chatglm3-sim")
        assert await pods_of(real, "chatglm3-sim")  # Deployment -> ReplicaSet -> pod: all collected
        deleted = await real.client._request(
            "DELETE",
            TOOLMODELS.path(real.namespace, "chatglm3-sim"),
            {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
        )
        if propagation == "Foreground":
            # Kept, being deleted, until the children that block its deletion are gone.
            assert deleted["metadata"]["finalizers"] == ["foregroundDeletion"]
            assert deleted["metadata"]["deletionTimestamp"]
        else:
            assert await real.client.get(TOOLMODELS, real.namespace, "chatglm3-sim") is None
        gone: dict[str, float] = {}

        async def collected() -> bool:
            now = time.monotonic()
            if not any((await children(real, "chatglm3-sim")).values()):
                gone.setdefault("children", now)
            if await real.client.get(TOOLMODELS, real.namespace, "chatglm3-sim") is None:
                gone.setdefault("toolmodel", now)
            return len(gone) == 2

        await eventually(collected, 60)
        if propagation == "Foreground":
            assert gone["children"] <= gone["toolmodel"]
        await asyncio.sleep(2)  # the operator, still running, recreates nothing
        assert not any((await children(real, "chatglm3-sim")).values())
        assert not await real.client.list(PODS, real.namespace, {INSTANCE: "chatglm3-sim"})


# -- restarts -------------------------------------------------------------------------------------------


async def test_an_operator_stopped_mid_reconcile_resumes_and_duplicates_nothing(real: Cluster, monkeypatch):
    """The first operator stops after its first child, in the middle of a reconcile; the second
    finishes it from its watch (no resync here), recreates nothing, and keeps watching."""
    first_done = asyncio.Event()
    hold = {"on": True}
    apply = handlers.apply

    async def apply_then_hold(client: KubeClient, manifest: Mapping[str, Any], **options: Any) -> str:
        outcome = await apply(client, manifest, **options)
        while hold["on"]:
            first_done.set()
            await asyncio.sleep(0.05)  # cancelled when the operator stops
        return outcome

    monkeypatch.setattr(handlers, "apply", apply_then_hold)
    loop = asyncio.get_running_loop()
    async with running_operator(real, resync_seconds=3600):
        await real.client.create(TOOLMODELS, real.namespace, sim_toolmodel(real))
        await eventually(lambda: _on(loop, first_done), 30)
        before = {k: v for k, v in (await children(real, "chatglm3-sim")).items() if v}
        assert len(before) == 1, before  # one child written, the reconcile held after it
    hold["on"] = False
    async with running_operator(real, resync_seconds=3600):
        after = await created(real, "chatglm3-sim")
        (kind, child), *_ = before.items()
        assert after[kind]["metadata"]["uid"] == child["metadata"]["uid"]
        assert after[kind]["metadata"]["resourceVersion"] == child["metadata"]["resourceVersion"]
        await eventually(lambda: status_of(real, "chatglm3-sim"), 30)
        # Its watches work: a deleted child is back without any resync.
        await real.client.delete(SERVICES, real.namespace, "chatglm3-sim")
        await eventually(lambda: real.client.get(SERVICES, real.namespace, "chatglm3-sim"), 30)
    for resource in (CONFIGMAPS, DEPLOYMENTS, SERVICES):
        assert len(await real.client.list(resource, real.namespace, {INSTANCE: "chatglm3-sim"})) == 1


async def _on(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> bool:
    return event.is_set()


async def test_the_operator_s_watches_resume_after_the_api_server_restarts(real: Cluster):
    assert real.plane is not None
    async with running_operator(real, resync_seconds=3600):
        await real.client.create(TOOLMODELS, real.namespace, sim_toolmodel(real))
        first = await created(real, "chatglm3-sim")
        await asyncio.to_thread(real.plane.restart_apiserver)
        # Changes after the restart arrive by watch (no resync here): edits put back, a scale-up.
        await real.client.patch(
            CONFIGMAPS, real.namespace, "chatglm3-sim-chat-template", {"data": {"chat-template.jinja": "x"}}
        )
        await real.client.delete(SERVICES, real.namespace, "chatglm3-sim")

        async def repaired() -> bool:
            found = await children(real, "chatglm3-sim")
            return bool(found["service"]) and found["configmap"]["data"] == first["configmap"]["data"]

        await eventually(repaired, 60)
        serving = {**EXAMPLE["spec"]["serving"], "replicas": 2}
        await real.client.patch(TOOLMODELS, real.namespace, "chatglm3-sim", {"spec": {"serving": serving}})

        async def scaled() -> bool:
            deployment = await real.client.get(DEPLOYMENTS, real.namespace, "chatglm3-sim")
            return bool(deployment and deployment["spec"]["replicas"] == 2)

        await eventually(scaled, 30)
    assert len(await real.client.list(DEPLOYMENTS, real.namespace)) == 1


# -- conflicts ------------------------------------------------------------------------------------------


async def test_a_conflicting_status_write_is_retried_from_a_fresh_read(real: Cluster, monkeypatch, caplog):
    """Someone changes the ToolModel between the operator's read and its status write: the write,
    made over the resourceVersion it read, is refused (409) and the reconcile runs again."""
    assert real.plane is not None
    plane = real.plane
    conflicts: list[KubeError] = []
    patch = KubeClient.patch

    async def patch_after_someone_else(
        self: KubeClient, resource: Any, namespace: Any, name: str, body: Any, subresource: Any = None
    ) -> Any:
        if resource == TOOLMODELS and subresource == "status" and namespace == real.namespace and not conflicts:
            async with KubeClient(plane.admin(), field_manager="someone-else") as someone:
                await patch(someone, TOOLMODELS, namespace, name, {"metadata": {"labels": {"touched": "yes"}}})
        try:
            return await patch(self, resource, namespace, name, body, subresource)
        except KubeError as error:
            if error.status == 409:
                conflicts.append(error)
            raise

    monkeypatch.setattr(KubeClient, "patch", patch_after_someone_else)
    caplog.set_level(logging.INFO, logger="toolmodel.operator")
    async with running_operator(real, resync_seconds=3600):
        await real.client.create(TOOLMODELS, real.namespace, sim_toolmodel(real))

        async def written() -> dict[str, Any] | None:
            status = await status_of(real, "chatglm3-sim")
            return status if status.get("phase") else None

        status = await eventually(written, 30)
    assert conflicts and conflicts[0].status == 409
    assert any(
        "changed meanwhile" in record.getMessage() and real.namespace in record.getMessage()
        for record in caplog.records
    )
    toolmodel = await real.client.get(TOOLMODELS, real.namespace, "chatglm3-sim")
    assert toolmodel is not None and toolmodel["metadata"]["labels"] == {"touched": "yes"}
    assert status["phase"] == "Progressing"
    phases = [e for e in await real.client.list(EVENTS, real.namespace) if e["reason"] == "Progressing"]
    assert len(phases) == 1  # posted once, for the write that landed


# -- RBAC: the chart's rules, a ServiceAccount, a real authorizer ------------------------------------------


def role_named(role: Mapping[str, Any], name: str, *, without: str | None = None) -> dict[str, Any]:
    copied = copy.deepcopy(dict(role))
    copied["metadata"] = {"name": name}
    copied["rules"] = [rule for rule in copied["rules"] if without not in rule["resources"]]
    return copied


def grants(role: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (v, g, r) for rule in role["rules"] for v in rule["verbs"] for g in rule["apiGroups"] for r in rule["resources"]
    }


async def test_without_update_on_finalizers_every_child_is_forbidden_and_with_it_allowed(real: Cluster, caplog):
    """OwnerReferencesPermissionEnforcement (OpenShift's default admission plugin): an owner
    reference with blockOwnerDeletion, as the children's are, needs ``update`` on the owner's
    ``finalizers``. Without that rule in the chart's ClusterRole every child is refused (403);
    with it, created."""
    assert real.plane is not None
    role = role_named(real.plane.operator_role, "tm-no-finalizers", without="toolmodels/finalizers")
    assert len(role["rules"]) == len(real.plane.operator_role["rules"]) - 1
    token = await install_operator_account(real.plane, real.client, role)
    user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:tm-no-finalizers"
    async with running_operator(real, connection=real.plane.as_token(token)):
        await real.client.create(TOOLMODELS, real.namespace, sim_toolmodel(real))

        async def refused() -> list[dict[str, Any]]:
            return [
                e
                for e in _audit(real, user)
                if e["verb"] == "patch"
                and e["objectRef"].get("namespace") == real.namespace
                and e["responseStatus"]["code"] == 403
            ]

        forbidden = await eventually(refused, 30)
        assert not any((await children(real, "chatglm3-sim")).values())
        assert forbidden[0]["objectRef"]["resource"] in ("configmaps", "deployments", "services")
        said = [
            r.getMessage()
            for r in caplog.records
            if r.name == "toolmodel.operator" and real.namespace in r.getMessage()
        ]
        assert any("403" in m and "cannot set blockOwnerDeletion" in m for m in said), said
        # The same ClusterRole with the chart's rule for it:
        await real.client.patch(CLUSTER_ROLES, None, "tm-no-finalizers", {"rules": real.plane.operator_role["rules"]})
        await created(real, "chatglm3-sim")


def _audit(real: Cluster, user: str) -> list[dict[str, Any]]:
    assert real.plane is not None
    return [
        e
        for e in real.plane.audit()
        if e.get("user", {}).get("username") == user and e.get("stage") == "ResponseComplete"
    ]


async def test_the_chart_s_cluster_role_allows_every_request_and_each_verb_is_used(real: Cluster):
    """The operator's life through every request it can make, as a ServiceAccount bound to the
    chart's ClusterRole, read back from the API server's audit log: nothing refused, and every
    verb the chart grants was used (``create``: by a server-side apply that created, 201)."""
    assert real.plane is not None
    role = role_named(real.plane.operator_role, "tm-audited")
    token = await install_operator_account(real.plane, real.client, role)
    user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:tm-audited"
    ns = real.namespace
    async with running_operator(real, connection=real.plane.as_token(token)):
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "proxy-key", "namespace": ns}}
        await real.client.create(SECRETS, ns, {**secret, "data": {"api-key": "c2VjcmV0"}})
        mine = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "my-template", "namespace": ns}}
        await real.client.create(CONFIGMAPS, ns, {**mine, "data": {"chat-template.jinja": "{{ messages }}"}})
        toolmodel = sim_toolmodel(real)
        toolmodel["spec"]["serving"] = {**toolmodel["spec"]["serving"], "apiKeySecretRef": {"name": "proxy-key"}}
        await real.client.create(TOOLMODELS, ns, toolmodel)
        first = await created(real, "chatglm3-sim")
        await pods_of(real, "chatglm3-sim")  # not ready: the status reads their events

        async def events_read() -> bool:
            return any(e["verb"] == "list" and e["objectRef"].get("resource") == "events" for e in _audit(real, user))

        await eventually(events_read, 30)
        # Edits and a deletion put back; the spec moves to the user's template: the operator's goes.
        await real.client.patch(DEPLOYMENTS, ns, "chatglm3-sim", {"spec": {"replicas": 3}})
        await real.client.delete(SERVICES, ns, "chatglm3-sim")
        await eventually(lambda: real.client.get(SERVICES, ns, "chatglm3-sim"), 30)
        template = {"configMapRef": {"name": "my-template", "key": "chat-template.jinja"}}
        await real.client.patch(TOOLMODELS, ns, "chatglm3-sim", {"spec": {"toolCalling": {"chatTemplate": template}}})

        async def gone() -> bool:
            return await real.client.get(CONFIGMAPS, ns, first["configmap"]["metadata"]["name"]) is None

        await eventually(gone, 30)
        await _through_scale_out(real)
    # (its own namespace's and cluster-wide requests: it also meets the ToolModels of other tests'
    # namespaces, being deleted, where nothing may be created)
    audited = [e for e in _audit(real, user) if (e.get("objectRef") or {}).get("namespace") in (None, ns)]
    refused = [
        f"{e['verb']} {e['requestURI']}: {e['responseStatus']}" for e in audited if e["responseStatus"]["code"] == 403
    ]
    assert not refused, "the chart's ClusterRole refused the operator:\n" + "\n".join(refused)
    used = set()
    for e in audited:
        ref = e.get("objectRef") or {}
        resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((e["verb"], ref.get("apiGroup", ""), resource))
        if e["verb"] == "patch" and e["responseStatus"]["code"] == 201:
            used.add(("create", ref.get("apiGroup", ""), resource))
    unused = grants(role) - used
    # update on toolmodels/finalizers is no request: admission checks it on every child written
    # with blockOwnerDeletion (the test above shows it is needed).
    assert unused == {("update", "toolmodel.dev", "toolmodels/finalizers")}, f"granted, never used: {sorted(unused)}"


async def _through_scale_out(real: Cluster) -> None:
    """Several nodes, autoscaled (KEDA), in an InferencePool; an edit of each put back; then back to
    one node and none of them: every verb on the scale-out kinds the chart grants where they are served."""
    ns, name = real.namespace, "chatglm3-sim"
    lws = f"{name}-lws"
    autoscaling = {"minReplicas": 1, "maxReplicas": 4}
    spread = {"parallelism": {"pipelineParallelSize": 2, "nodes": 2}}
    await real.client.patch(
        TOOLMODELS, ns, name, {"spec": {**spread, "serving": {"autoscaling": autoscaling, "inferencePool": {}}}}
    )
    edits = [
        (LEADER_WORKER_SETS, lws, {"spec": {"startupPolicy": "LeaderReady"}}, ("startupPolicy", "LeaderCreated")),
        (SCALED_OBJECTS, name, {"spec": {"maxReplicaCount": 9}}, ("maxReplicaCount", 4)),
        (INFERENCE_POOLS, name, {"spec": {"appProtocol": "kubernetes.io/h2c"}}, ("appProtocol", "http")),
    ]
    for resource, child, edit, (key, value) in edits:
        await eventually(partial(real.client.get, resource, ns, child), 30)
        await real.client.patch(resource, ns, child, edit)
        await eventually(partial(_holds, real, resource, child, key, value), 30)
    await eventually(partial(_absent, real, DEPLOYMENTS, name), 30)
    one_node = {"parallelism": {"pipelineParallelSize": 1, "nodes": 1}}
    await real.client.patch(
        TOOLMODELS, ns, name, {"spec": {**one_node, "serving": {"autoscaling": None, "inferencePool": None}}}
    )
    for resource, child, *_ in edits:
        await eventually(partial(_absent, real, resource, child), 30)
    await eventually(partial(real.client.get, DEPLOYMENTS, ns, name), 30)


async def _holds(real: Cluster, resource: Resource, name: str, key: str, value: Any) -> bool:
    found = await real.client.get(resource, real.namespace, name)
    return bool(found and found["spec"].get(key) == value)


async def _absent(real: Cluster, resource: Resource, name: str) -> bool:
    return await real.client.get(resource, real.namespace, name) is None


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({"CI": "true"}, pytest.fail.Exception),
        ({"TOOLMODEL_REAL_K8S": "1"}, pytest.fail.Exception),
        ({}, pytest.skip.Exception),
        ({"TOOLMODEL_REAL_K8S": "0"}, pytest.skip.Exception),
    ],
    ids=["CI", "required", "local", "opted out"],
)
def test_a_real_backend_that_cannot_run_fails_in_ci_and_is_skipped_elsewhere(monkeypatch, env, outcome):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("TOOLMODEL_REAL_K8S", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(outcome, match="no apt-get here"):
        unavailable("no apt-get here")
