"""The chart's RBAC against the requests the operator really makes.

The real operator (kopf and the handlers) runs against the emulated API server of
``toolmodel_operator.embedded`` through a scenario that exercises every path: children created,
restored and patched back, a Secret checked, pods and their events read, the chat-template
ConfigMap deleted when the spec moves to the user's own, the status written. Every request it
sends is turned into (verb, group, resource, namespace, name) as the API server's authorizer
would (with what the authorizer checks besides: ``implied_accesses``), and must be allowed by the
rules the chart renders; every verb the chart grants must have been used. So the rules are both
sufficient and minimal, and stay so as the operator changes. tests/operator (backend "real") checks
the same on a real API server, from its audit log.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf
import pytest
import yaml
from _chart import ROOT, Tools, find, objects, render

import toolmodel_operator.embedded as embedded
from toolmodel_operator.handlers import OperatorConfig, build_registry
from toolmodel_operator.kube import resource_of

NAMESPACE = "default"
PEERING = "toolmodel-operator"
TEST_AGENT = "chart-rbac-test"  # the test's own requests carry this User-Agent, the operator's do not


@dataclass(frozen=True, order=True)
class Access:
    verb: str
    group: str
    resource: str  # with /subresource
    namespace: str | None
    name: str | None


def access_of(method: str, path: str, query: Mapping[str, str]) -> Access | None:
    """What the API server's authorizer sees in a request; None for discovery (allowed to all)."""
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None  # the group version's resource list
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource += "/" + rest[2]
    verb = {"POST": "create", "PATCH": "patch", "PUT": "update"}.get(method)
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch") in ("true", "1") else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    assert verb is not None, f"unexpected {method} {path}"
    return Access(verb, group, resource, namespace, name)


def implied_accesses(
    method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
) -> list[Access]:
    """What the API server authorizes for a write besides its own verb, which a recording of
    requests does not show: a server-side apply may create the object (then ``create`` is checked
    too: recorded for every apply, an upper bound), and an owner reference with
    ``blockOwnerDeletion`` is admitted, under OwnerReferencesPermissionEnforcement, only for who
    may ``update`` the owner's ``finalizers``."""
    access = access_of(method, path, query)
    if access is None or method not in ("POST", "PUT", "PATCH"):
        return []
    implied = []
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    if method == "PATCH" and content_type.startswith("application/apply-patch"):
        implied.append(Access("create", access.group, access.resource, access.namespace, access.name))
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    metadata = data.get("metadata") if isinstance(data, dict) else None
    for owner in (metadata or {}).get("ownerReferences") or []:
        if owner.get("blockOwnerDeletion"):
            resource = resource_of(owner)
            implied.append(
                Access("update", resource.group, f"{resource.plural}/finalizers", access.namespace, owner["name"])
            )
    return implied


def allows(rules: Sequence[Mapping[str, Any]], access: Access) -> bool:
    for rule in rules:
        if (
            access.group in rule["apiGroups"]
            and access.resource in rule["resources"]
            and access.verb in rule["verbs"]
            and ("resourceNames" not in rule or access.name in rule["resourceNames"])
        ):
            return True
    return False


@dataclass
class Granted:
    """The rules of the rendered chart: cluster-wide, and per namespace."""

    cluster: list[dict[str, Any]]
    namespaced: dict[str, list[dict[str, Any]]]

    def allows(self, access: Access) -> bool:
        if allows(self.cluster, access):
            return True
        return access.namespace is not None and allows(self.namespaced.get(access.namespace, []), access)

    def grants(self) -> set[tuple[str, str, str]]:
        rules = self.cluster + [rule for rules in self.namespaced.values() for rule in rules]
        return {
            (verb, group, res)
            for r in rules
            for verb in r["verbs"]
            for group in r["apiGroups"]
            for res in r["resources"]
        }


def granted(tools: Tools, *sets: str, api_versions: Sequence[str] = ()) -> Granted:
    manifests = objects(render(tools, (), sets, api_versions=api_versions))
    bound = {b["roleRef"]["name"] for b in find(manifests, "ClusterRoleBinding")}
    cluster = [
        rule for role in find(manifests, "ClusterRole") if role["metadata"]["name"] in bound for rule in role["rules"]
    ]
    namespaced: dict[str, list[dict[str, Any]]] = {}
    bound_roles = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in find(manifests, "RoleBinding")}
    for role in find(manifests, "Role"):
        key = (role["metadata"]["namespace"], role["metadata"]["name"])
        if key in bound_roles:
            namespaced.setdefault(key[0], []).extend(role["rules"])
    return Granted(cluster, namespaced)


# -- the emulated cluster, recording the operator's requests ------------------------------------------


async def namespaces(raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
    """The Namespace collection, with one namespace; a watch of it stays open and quiet."""
    if raw.query.get("watch") not in ("true", "1"):
        listing = {
            "apiVersion": "v1",
            "kind": "NamespaceList",
            "metadata": {"resourceVersion": "1"},
            "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}],
        }
        return aiohttp.web.json_response(listing)
    response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(raw)
    deadline = time.monotonic() + 60
    while raw.transport is not None and not raw.transport.is_closing() and time.monotonic() < deadline:  # noqa: ASYNC110 - aiohttp offers no event for a closed connection
        await asyncio.sleep(0.1)
    return response


class Recorder:
    def __init__(self) -> None:
        self.accesses: list[Access] = []
        self.active = False  # from the operator's start: the emulator's own setup is not the operator's
        self._lock = threading.Lock()

    def record(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes = b""
    ) -> None:
        if not self.active or {k.lower(): v for k, v in headers.items()}.get("user-agent") == TEST_AGENT:
            return
        access = access_of(method, path, query)
        if access is not None:
            with self._lock:
                self.accesses.append(access)
                self.accesses.extend(implied_accesses(method, path, query, headers, body))

    def seen(self) -> set[Access]:
        with self._lock:
            return set(self.accesses)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Every request reaching the emulated API server, recorded before the emulator sees it."""
    recorder = Recorder()
    original = embedded._Emulator.__call__

    async def serve(self: Any, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        recorder.record(raw.method, raw.path, dict(raw.query), dict(raw.headers), await raw.read())
        if raw.path == "/api/v1/namespaces":
            return await namespaces(raw)  # the emulator cannot serve the Namespace collection
        return await original(self, raw)

    monkeypatch.setattr(embedded._Emulator, "__call__", serve)
    # kopf's peering resources, for the runs with peering.
    monkeypatch.setitem(embedded.RESOURCES, "kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering")
    monkeypatch.setitem(embedded.RESOURCES, "kopf.dev/v1/kopfpeerings", "KopfPeering")
    monkeypatch.setattr(embedded, "_CLUSTER_SCOPED", embedded._CLUSTER_SCOPED | {"ClusterKopfPeering"})
    return recorder


@contextmanager
def operator(url: str, namespaces: tuple[str, ...] = (), peering: str | None = None) -> Iterator[None]:
    """The operator as `toolmodel operator` runs it (kopf.run's arguments), until the block ends."""
    config = OperatorConfig(connection=kopf.ConnectionInfo(server=url), resync_seconds=0.5, namespaces=namespaces)
    stop, ready = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=build_registry(config),
                    clusterwide=not namespaces,
                    namespaces=namespaces,
                    standalone=peering is None,
                    peering_name=peering,
                    stop_flag=stop,
                    ready_flag=ready,
                )
            )
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=run, name="operator", daemon=True)
    thread.start()
    assert ready.wait(timeout=30), f"the operator did not start: {failures}"
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the operator did not stop"


class Client:
    """The test's kubectl: its requests are not recorded."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url, self.session = url, session

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"User-Agent": TEST_AGENT}
        if method == "PATCH":
            headers["Content-Type"] = "application/merge-patch+json"
        async with self.session.request(method, self.url + path, json=body, headers=headers) as response:
            return await response.json() if response.status < 400 else None

    async def eventually(self, method: str, path: str, check: Any, within: float = 15) -> Any:
        deadline = time.monotonic() + within
        while True:
            found = await self.call(method, path)
            if check(found):
                return found
            assert time.monotonic() < deadline, f"{method} {path}: not as expected within {within} s: {found}"
            await asyncio.sleep(0.1)


def sim_toolmodel(**serving: Any) -> dict[str, Any]:
    toolmodel = yaml.safe_load((ROOT / "examples" / "sim.yaml").read_text(encoding="utf-8"))
    toolmodel["metadata"] = {"name": "chatglm3-sim", "namespace": NAMESPACE, "uid": "uid-chatglm3-sim"}
    toolmodel["spec"]["serving"].update(serving)
    return toolmodel


CORE = f"/api/v1/namespaces/{NAMESPACE}"
TOOLMODELS = f"/apis/toolmodel.dev/v1alpha1/namespaces/{NAMESPACE}/toolmodels"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"


async def every_path(client: Client, recorder: Recorder) -> None:
    """A ToolModel's life through every request the operator can make."""
    await client.call("POST", f"{CORE}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "proxy-key"}, "data": {"api-key": "c2VjcmV0"},
    })  # fmt: skip
    await client.call("POST", f"{CORE}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "my-template"},
        "data": {"chat-template.jinja": "{% for m in messages %}{{ m.content }}{% endfor %}"},
    })  # fmt: skip
    await client.call("POST", TOOLMODELS, sim_toolmodel(apiKeySecretRef={"name": "proxy-key"}))
    template = f"{CORE}/configmaps/chatglm3-sim-chat-template"
    await client.eventually("GET", template, bool)
    await client.eventually("GET", f"{CORE}/services/chatglm3-sim", bool)
    await client.eventually("GET", f"{DEPLOYMENTS}/chatglm3-sim", bool)
    await client.eventually("GET", f"{TOOLMODELS}/chatglm3-sim", lambda tm: tm and tm.get("status"))

    # A pod that is not ready: the status reads the pods and their events.
    labels = {"app.kubernetes.io/instance": "chatglm3-sim", "app.kubernetes.io/managed-by": "toolmodel-operator"}
    await client.call("POST", f"{CORE}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "chatglm3-sim-0", "labels": labels},
        "spec": {"containers": [{"name": "engine", "image": "x"}]}, "status": {"phase": "Pending"},
    })  # fmt: skip
    deadline = time.monotonic() + 15
    while not any(a.resource == "events" and a.verb == "list" for a in recorder.seen()):
        assert time.monotonic() < deadline, "the operator never read the pods' events"
        await asyncio.sleep(0.1)

    # Edited and deleted children are put back.
    await client.call("PATCH", f"{DEPLOYMENTS}/chatglm3-sim", {"spec": {"replicas": 7}})
    await client.eventually("GET", f"{DEPLOYMENTS}/chatglm3-sim", lambda d: d and d["spec"]["replicas"] == 1)
    await client.call("PATCH", template, {"data": {"chat-template.jinja": "edited"}})
    await client.eventually("GET", template, lambda c: c and c["data"]["chat-template.jinja"] != "edited")
    await client.call("PATCH", f"{CORE}/services/chatglm3-sim", {"spec": {"type": "ClusterIP"}})
    await client.eventually("GET", f"{CORE}/services/chatglm3-sim", lambda s: s and s["spec"]["type"] == "NodePort")
    await client.call("DELETE", f"{CORE}/services/chatglm3-sim")
    await client.eventually("GET", f"{CORE}/services/chatglm3-sim", bool)

    # The spec moves to the user's template: the operator's ConfigMap goes.
    chat_template = {"configMapRef": {"name": "my-template", "key": "chat-template.jinja"}}
    await client.call("PATCH", f"{TOOLMODELS}/chatglm3-sim", {"spec": {"toolCalling": {"chatTemplate": chat_template}}})
    await client.eventually("GET", template, lambda found: found is None)


async def scenario(url: str, recorder: Recorder, namespaces: tuple[str, ...] = (), peering: str | None = None) -> None:
    async with aiohttp.ClientSession() as session:
        client = Client(url, session)
        if peering is not None:
            if namespaces:
                for namespace in namespaces:
                    await client.call("POST", f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings", {
                        "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": peering},
                    })  # fmt: skip
            else:
                await client.call("POST", "/apis/kopf.dev/v1/clusterkopfpeerings", {
                    "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": peering},
                })  # fmt: skip
        recorder.active = True
        with operator(url, namespaces, peering):
            await every_path(client, recorder)


def check(recorder: Recorder, rules: Granted, *, all_used: bool = True) -> None:
    seen = recorder.seen()
    assert seen, "no request was recorded"
    denied = sorted(access for access in seen if not rules.allows(access))
    assert not denied, "the chart's RBAC would deny the operator:\n" + "\n".join(map(str, denied))
    if all_used:
        used = {(a.verb, a.group, a.resource) for a in seen}
        unused = sorted(rules.grants() - used)
        assert not unused, f"granted but never used (least privilege): {unused}"


async def test_the_cluster_role_allows_exactly_what_the_operator_does(tools: Tools, recorder: Recorder):
    with embedded.emulated_api_server() as url:
        await scenario(url, recorder)
    check(recorder, granted(tools))


async def test_the_namespaced_roles_allow_exactly_what_the_operator_does(tools: Tools, recorder: Recorder):
    with embedded.emulated_api_server() as url:
        await scenario(url, recorder, namespaces=(NAMESPACE,))
    seen = recorder.seen()
    assert {a.resource for a in seen if a.namespace is None} == {"customresourcedefinitions", "namespaces"}
    check(recorder, granted(tools, f"watchNamespaces={{{NAMESPACE}}}"))


async def test_peering_rules_allow_what_kopf_does_with_its_peers(tools: Tools, recorder: Recorder):
    with embedded.emulated_api_server() as url:
        await scenario(url, recorder, peering=PEERING)
    peering = {a for a in recorder.seen() if a.group == "kopf.dev"}
    assert {(a.verb, a.resource) for a in peering} >= {
        ("list", "clusterkopfpeerings"),
        ("patch", "clusterkopfpeerings"),
    }
    assert {a.name for a in peering if a.verb == "patch"} == {PEERING}
    check(recorder, granted(tools, "peering.enabled=true", "replicaCount=2"))


async def test_namespaced_peering_rules_allow_what_kopf_does(tools: Tools, recorder: Recorder):
    with embedded.emulated_api_server() as url:
        await scenario(url, recorder, namespaces=(NAMESPACE,), peering=PEERING)
    peering = {a for a in recorder.seen() if a.group == "kopf.dev"}
    assert {(a.verb, a.resource, a.namespace) for a in peering} >= {
        ("watch", "kopfpeerings", NAMESPACE),
        ("patch", "kopfpeerings", NAMESPACE),
    }
    check(recorder, granted(tools, "peering.enabled=true", f"watchNamespaces={{{NAMESPACE}}}"))


def test_access_of_reads_requests_as_the_authorizer_does():
    assert access_of("GET", "/api/v1/namespaces/a/pods", {"watch": "true"}) == Access("watch", "", "pods", "a", None)
    assert access_of("GET", "/api/v1/namespaces/a/pods", {}) == Access("list", "", "pods", "a", None)
    assert access_of("GET", "/api/v1/namespaces", {}) == Access("list", "", "namespaces", None, None)
    assert access_of("GET", "/api/v1/namespaces/a", {}) == Access("get", "", "namespaces", None, "a")
    assert access_of("PATCH", "/apis/toolmodel.dev/v1alpha1/namespaces/a/toolmodels/x/status", {}) == Access(
        "patch", "toolmodel.dev", "toolmodels/status", "a", "x"
    )
    assert access_of("DELETE", "/api/v1/namespaces/a/configmaps/c", {}) == Access("delete", "", "configmaps", "a", "c")
    assert access_of("GET", "/apis/apps/v1", {}) is None and access_of("GET", "/api", {}) is None
    assert access_of("GET", "/version", {}) is None


def test_implied_accesses_are_what_the_authorizer_checks_besides_the_verb():
    path = "/api/v1/namespaces/a/configmaps/c"
    owner = {"apiVersion": "toolmodel.dev/v1alpha1", "kind": "ToolModel", "name": "m", "uid": "u"}
    body = json.dumps({"metadata": {"name": "c", "ownerReferences": [{**owner, "blockOwnerDeletion": True}]}}).encode()
    apply = {"Content-Type": "application/apply-patch+yaml"}
    assert implied_accesses("PATCH", path, {}, apply, body) == [
        Access("create", "", "configmaps", "a", "c"),
        Access("update", "toolmodel.dev", "toolmodels/finalizers", "a", "m"),
    ]
    merge = {"Content-Type": "application/merge-patch+json"}
    unblocking = json.dumps({"metadata": {"ownerReferences": [owner]}}).encode()
    assert implied_accesses("PATCH", path, {}, merge, unblocking) == []
    assert implied_accesses("GET", path, {}, {}, b"") == []


# -- scale-out: each kind granted only when its feature is enabled or its API detected ------------------

# scaleOut.FEATURE -> the (group, resource) it grants, and the API whose presence `auto` looks for.
SCALE_OUT: dict[str, tuple[tuple[str, str], str]] = {
    "leaderWorkerSet": (
        ("leaderworkerset.x-k8s.io", "leaderworkersets"),
        "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet",
    ),
    "keda": (("keda.sh", "scaledobjects"), "keda.sh/v1alpha1/ScaledObject"),
    "hpa": (("autoscaling", "horizontalpodautoscalers"), "autoscaling/v2/HorizontalPodAutoscaler"),
    "inferencePool": (
        ("inference.networking.k8s.io", "inferencepools"),
        "inference.networking.k8s.io/v1/InferencePool",
    ),
}
SCALE_OUT_VERBS = ("get", "list", "watch", "create", "patch", "delete")
WATCHED = ("team-a", "team-b")
# Where the rules are: the ClusterRole (checked in any namespace), or a Role in each watched namespace.
SCOPES: dict[str, tuple[str, ...]] = {"cluster": (), "namespaced": (f"watchNamespaces={{{','.join(WATCHED)}}}",)}


def verbs_on(rules: Granted, scope: str, group: str, resource: str) -> set[str]:
    """The verbs the operator may use on the resource, asked as the authorizer would, in the
    namespaces it serves (a sample of all, cluster-wide): the same in each, and with Roles none
    outside them."""
    namespaces = WATCHED if scope == "namespaced" else ("default", "models")
    asked = (*SCALE_OUT_VERBS, "update", "deletecollection")
    found = [{verb for verb in asked if rules.allows(Access(verb, group, resource, ns, "x"))} for ns in namespaces]
    assert all(verbs == found[0] for verbs in found), f"{resource}: unlike in {namespaces}: {found}"
    if scope == "namespaced":
        assert not [verb for verb in asked if rules.allows(Access(verb, group, resource, "unwatched", "x"))]
    return found[0]


def scale_out_grants(rules: Granted, scope: str) -> dict[str, set[str]]:
    """feature -> the verbs granted on its kind, for the features with any."""
    grants = {feature: verbs_on(rules, scope, *kind) for feature, (kind, _) in SCALE_OUT.items()}
    return {feature: verbs for feature, verbs in grants.items() if verbs}


@pytest.mark.parametrize("scope", SCOPES)
def test_no_scale_out_kind_is_granted_by_default_without_its_api(tools: Tools, scope: str):
    rules = granted(tools, *SCOPES[scope])
    assert scale_out_grants(rules, scope) == {}
    assert verbs_on(rules, scope, "apps", "deployments") == {"get", "list", "watch", "create", "patch"}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("feature", SCALE_OUT)
def test_a_scale_out_kind_is_granted_when_its_api_is_served(tools: Tools, feature: str, scope: str):
    _, api = SCALE_OUT[feature]
    rules = granted(tools, *SCOPES[scope], api_versions=[api])
    assert scale_out_grants(rules, scope) == {feature: set(SCALE_OUT_VERBS)}  # that one only, every verb


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("feature", SCALE_OUT)
def test_a_scale_out_kind_is_forced_on_or_off_by_its_value(tools: Tools, feature: str, scope: str):
    forced_on = granted(tools, *SCOPES[scope], f"scaleOut.{feature}=true")
    assert scale_out_grants(forced_on, scope) == {feature: set(SCALE_OUT_VERBS)}
    every_api = [a for _, a in SCALE_OUT.values()]
    forced_off = granted(tools, *SCOPES[scope], f"scaleOut.{feature}=false", api_versions=every_api)
    assert set(scale_out_grants(forced_off, scope)) == set(SCALE_OUT) - {feature}


def test_auto_looks_for_the_kind_not_its_group_version(tools: Tools):
    """`helm template` reports every built-in group version, autoscaling/v2 included, with no cluster
    at all; a cluster reports group/version/Kind too. Detection by group version alone would grant
    HPAs in every rendering, and the others on a cluster serving only another kind of their group."""
    group_versions = [api.rsplit("/", 1)[0] for _, api in SCALE_OUT.values()]
    assert "autoscaling/v2" in group_versions
    assert scale_out_grants(granted(tools, api_versions=group_versions), "cluster") == {}
    assert scale_out_grants(granted(tools, api_versions=["autoscaling/v1/HorizontalPodAutoscaler"]), "cluster") == {}


# (sets, api versions) -> whether Deployments get delete: only where LeaderWorkerSets are granted.
DEPLOYMENT_DELETE = [
    ((), (), False),
    ((), ("leaderworkerset.x-k8s.io/v1/LeaderWorkerSet",), True),
    (("scaleOut.leaderWorkerSet=true",), (), True),
    (("scaleOut.leaderWorkerSet=false",), ("leaderworkerset.x-k8s.io/v1/LeaderWorkerSet",), False),
    (("scaleOut.keda=true", "scaleOut.hpa=true", "scaleOut.inferencePool=true"), (), False),
]


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize(("sets", "api_versions", "delete"), DEPLOYMENT_DELETE)
def test_deployments_are_deletable_only_with_leader_worker_sets(
    tools: Tools, scope: str, sets: tuple[str, ...], api_versions: tuple[str, ...], delete: bool
):
    rules = granted(tools, *SCOPES[scope], *sets, api_versions=api_versions)
    verbs = verbs_on(rules, scope, "apps", "deployments")
    assert verbs == {"get", "list", "watch", "create", "patch"} | ({"delete"} if delete else set())
    assert ("leaderWorkerSet" in scale_out_grants(rules, scope)) == delete


@pytest.mark.parametrize("scope", SCOPES)
def test_the_scale_out_features_add_exactly_their_rules(tools: Tools, scope: str):
    """Everything granted: the default rules, plus the four kinds' verbs and delete on Deployments,
    and nothing else."""
    default = granted(tools, *SCOPES[scope])
    every = granted(tools, *SCOPES[scope], *(f"scaleOut.{feature}=true" for feature in SCALE_OUT))
    added = {(verb, group, resource) for (group, resource), _ in SCALE_OUT.values() for verb in SCALE_OUT_VERBS}
    assert every.grants() - default.grants() == added | {("delete", "apps", "deployments")}
    assert default.grants() <= every.grants()


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize(("sets", "api_versions", "_"), DEPLOYMENT_DELETE)
def test_the_operator_is_told_exactly_the_scale_out_kinds_it_is_granted(
    tools: Tools, scope: str, sets: tuple[str, ...], api_versions: tuple[str, ...], _: bool
):
    """--scale-out-kinds lists the kinds the rules grant: the operator watches and writes those, and
    reports a ToolModel needing another as InvalidSpec, rather than meeting Forbidden."""
    from toolmodel_operator.run import _parser

    manifests = objects(render(tools, (), (*SCOPES[scope], *sets), api_versions=api_versions))
    (deployment,) = find(manifests, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    kinds = _parser().parse_args(container["args"][1:]).scale_out_kinds
    told = {kind for kind in kinds.split(",") if kind}
    by_kind = {"leaderWorkerSet": "LeaderWorkerSet", "keda": "ScaledObject", "hpa": "HorizontalPodAutoscaler"}
    by_kind["inferencePool"] = "InferencePool"
    rules = granted(tools, *SCOPES[scope], *sets, api_versions=api_versions)
    assert told == {by_kind[feature] for feature in scale_out_grants(rules, scope)}
