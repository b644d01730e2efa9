"""The kopf handlers: small, level-based, idempotent. Decisions live in ``render`` and ``status``.

Every watch event of a ToolModel, and of any object the operator made for one, leads to the same
``reconcile``: render the desired children, create or patch what differs, then write the status
computed from the cluster. Running it twice changes nothing; running it after a restart creates
nothing twice; a child someone edited or deleted is put back by the event its change caused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from .kube import (
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    HORIZONTAL_POD_AUTOSCALERS,
    INFERENCE_POOLS,
    LEADER_WORKER_SETS,
    PODS,
    SCALED_OBJECTS,
    SERVICES,
    TOOLMODELS,
    KubeClient,
    KubeError,
    Resource,
    apply,
    post_event,
    resource_of,
    utc_now,
)
from .render import (
    DEFAULT_MAX_GPUS_PER_NODE,
    AutoscalingDefaults,
    ImageDefaults,
    InvalidSpec,
    chat_template_config_map_name,
    render,
    resolved,
    workload,
)
from .scale_out import (
    DEFAULT_PROMETHEUS_ADDRESS,
    KEDA_API_VERSION,
    REQUIRED_APIS,
    SCALE_OUT_KINDS,
    leader_worker_set_name,
    missing_api,
)
from .status import compute_status

__all__ = ["OperatorConfig", "Reconciler", "build_registry"]

log = logging.getLogger("toolmodel.operator")

MANAGED_BY = {"app.kubernetes.io/managed-by": "toolmodel-operator"}
_CONFLICT_RETRIES = 5
_INSTANCE = "app.kubernetes.io/instance"


@dataclass
class OperatorConfig:
    """How the operator reaches the cluster and what it allows."""

    connection: kopf.ConnectionInfo | None = None  # None: in-cluster service account, else kubeconfig
    max_gpus_per_node: int = DEFAULT_MAX_GPUS_PER_NODE
    # Every ToolModel is reconciled at least this often, as a safety net for missed events. A
    # plain loop rather than a kopf timer: timers put a finalizer on every object, and deleting a
    # ToolModel would then hang whenever the operator is not running.
    resync_seconds: float = 60.0
    namespaces: tuple[str, ...] = ()  # () = all namespaces
    images: ImageDefaults = field(default_factory=ImageDefaults)
    prometheus_address: str = DEFAULT_PROMETHEUS_ADDRESS  # what KEDA's ScaledObjects query
    # How long the answer to "which optional APIs (LeaderWorkerSet, KEDA, ...) does the cluster
    # serve" is reused: a CRD installed later is seen within this time (and the next resync).
    discovery_seconds: float = 30.0
    # The optional kinds (scale_out.SCALE_OUT_KINDS) the operator may manage, as its RBAC grants them
    # (the chart passes the ones it grants): only these are watched, looked up and written.
    scale_out_kinds: tuple[str, ...] = SCALE_OUT_KINDS


class Reconciler:
    def __init__(self, client: KubeClient, config: OperatorConfig) -> None:
        self.client = client
        self.config = config
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._queued: set[tuple[str, str]] = set()  # a reconcile waits for the lock, not started yet
        self._served = ServedApis(client, config.discovery_seconds, config.scale_out_kinds)

    async def resync(self, namespaces: tuple[str, ...]) -> None:
        """Reconciles every ToolModel in these namespaces (all, when empty)."""
        for namespace in namespaces or (None,):
            try:
                toolmodels = await self.client.list(TOOLMODELS, namespace)
            except (KubeError, OSError, TimeoutError) as error:
                log.warning("resync could not list ToolModels: %s", error)
                continue
            for toolmodel in toolmodels:
                metadata = toolmodel["metadata"]
                await self.safely(self.reconcile(metadata.get("namespace", "default"), metadata["name"]), toolmodel)

    async def reconcile(self, namespace: str, name: str) -> None:
        """Brings the ToolModel's children and status in line with its latest spec.

        The ToolModel's own events and each child's arrive on separate kopf workers, a burst of
        them per change (a create makes three children, then the status patch). Reconciles of one
        ToolModel run one at a time, and one that is still waiting to start stands for all that
        come after it: it reads the ToolModel when it starts, so it sees their changes too.
        """
        key = (namespace, name)
        if key in self._queued:
            return
        self._queued.add(key)
        started = False
        try:
            async with self._locks.setdefault(key, asyncio.Lock()):
                self._queued.discard(key)
                started = True
                for attempt in range(_CONFLICT_RETRIES):
                    latest = await self.client.get(TOOLMODELS, namespace, name)
                    if latest is None or latest["metadata"].get("deletionTimestamp"):
                        return  # deleted: the children go with it, by their owner references
                    try:
                        await self._reconcile(latest)
                        return
                    except KubeError as error:
                        # The ToolModel changed while this ran (the status write names the
                        # resourceVersion it was computed from): again, from a fresh read.
                        if error.status != 409 or attempt == _CONFLICT_RETRIES - 1:
                            raise
                        log.info("ToolModel %s/%s changed meanwhile (%s): reconciling again", namespace, name, error)
        finally:
            if not started:
                self._queued.discard(key)

    async def _reconcile(self, toolmodel: Mapping[str, Any]) -> None:
        namespace, name = toolmodel["metadata"].get("namespace", "default"), toolmodel["metadata"]["name"]
        served = await self._served.get()
        try:
            user_template = await self._check_references(toolmodel, namespace)
            manifests = render(
                toolmodel,
                max_gpus_per_node=self.config.max_gpus_per_node,
                referenced_template=user_template,
                images=self.config.images,
                autoscaling=AutoscalingDefaults(
                    via="keda" if (KEDA_API_VERSION, "ScaledObject") in served else "hpa",
                    prometheus_address=self.config.prometheus_address,
                ),
            )
            missing = missing_api(manifests, served, self.config.scale_out_kinds)
            if missing is not None:
                raise InvalidSpec(*missing)  # nothing is created: not even the part the cluster could hold
        except InvalidSpec as error:
            await self._invalid(toolmodel, str(error))
            return
        spec = resolved(toolmodel)
        served_by = workload(manifests)
        autoscaled = spec.tool_model.spec.serving.autoscaling is not None
        for manifest in manifests:
            # An autoscaled workload's replicas are the autoscaler's: the operator's last count stays
            # until the autoscaler writes its own, rather than dropping to the default of 1.
            hand_over = ("spec.replicas",) if autoscaled and manifest["kind"] == served_by["kind"] else ()
            outcome = await apply(self.client, manifest, hand_over=hand_over)
            if outcome != "unchanged":
                kind, child = manifest["kind"], manifest["metadata"]["name"]
                log.info("%s %s %s for ToolModel %s/%s", outcome, kind, child, namespace, name)
                await self._event(toolmodel, "Normal", outcome.capitalize(), f"{outcome} {kind} {child}")
        await self._remove_stale(toolmodel, manifests, served)
        live = await self.client.get(resource_of(served_by), namespace, served_by["metadata"]["name"])
        pods = await self.client.list(PODS, namespace, {_INSTANCE: name, **MANAGED_BY})
        events: list[dict[str, Any]] = []
        if any(not _pod_ready(pod) for pod in pods):
            names = {pod["metadata"]["name"] for pod in pods}
            events = [
                event
                for event in await self.client.list(EVENTS, namespace)
                if (event.get("involvedObject") or {}).get("name") in names
            ]
        status = compute_status(
            toolmodel,
            workload=live,
            workload_kind=served_by["kind"],
            pods=pods,
            events=events,
            endpoint=spec.endpoint,
            served_model_name=spec.served_model_name,
            dialect=spec.dialect,
            now=utc_now(),
        )
        await self._write_status(toolmodel, status)

    async def _check_references(self, toolmodel: Mapping[str, Any], namespace: str) -> str | None:
        """Objects the spec names must exist: a missing one is the user's to create or rename.

        Returns the text of the user's own chat-template ConfigMap, if the spec names one, so the
        pods roll when it changes.
        """
        user_template = None
        for reference in resolved(toolmodel).references:
            resource = resource_of({"apiVersion": reference.api_version, "kind": reference.kind})
            found = await self.client.get(resource, namespace, reference.name)
            if found is None:
                raise InvalidSpec(
                    reference.field,
                    f"{reference.kind} {reference.name!r} does not exist in namespace {namespace!r}: "
                    "create it, or fix the name",
                )
            data = {**(found.get("data") or {}), **(found.get("stringData") or {})}
            if reference.key is not None and reference.key not in data:
                keys = ", ".join(sorted(data)) or "no keys"
                raise InvalidSpec(
                    reference.field, f"{reference.kind} {reference.name!r} has no key {reference.key!r}; it has: {keys}"
                )
            if reference.kind == "ConfigMap" and reference.key is not None:
                user_template = str(data[reference.key])
        return user_template

    async def _remove_stale(
        self, toolmodel: Mapping[str, Any], manifests: list[dict[str, Any]], served: set[tuple[str, str]]
    ) -> None:
        """The operator's children the spec no longer asks for go: the other workload after a move
        between one node and several, an autoscaler or InferencePool the spec dropped (or one of the
        other autoscaling backend), the template ConfigMap once the template comes from elsewhere.
        Only objects labelled as the operator's, of this ToolModel."""
        namespace, name = toolmodel["metadata"].get("namespace", "default"), toolmodel["metadata"]["name"]
        wanted = {(m["apiVersion"], m["kind"], m["metadata"]["name"]) for m in manifests}
        for resource, kind, child, why in _possible_children(name):
            if (resource.api_version, kind, child) in wanted:
                continue
            if (resource.api_version, kind) in REQUIRED_APIS and (resource.api_version, kind) not in served:
                continue  # the cluster has no such objects
            try:
                stale = await self.client.get(resource, namespace, child)
            except KubeError as error:
                if error.status != 403:
                    raise
                continue  # the operator may not read them (the chart grants it with the feature): none of its
            labels = ((stale or {}).get("metadata") or {}).get("labels") or {}
            if stale is None or not labels.items() >= {**MANAGED_BY, _INSTANCE: name}.items():
                continue
            await self.client.delete(resource, namespace, child)
            log.info("deleted %s %s of ToolModel %s/%s: %s", kind, child, namespace, name, why)
            await self._event(toolmodel, "Normal", "Deleted", f"deleted {kind} {child}: {why}")

    async def _invalid(self, toolmodel: Mapping[str, Any], message: str) -> None:
        previous = {c.get("type"): c for c in (toolmodel.get("status") or {}).get("conditions") or []}
        if previous.get("Ready", {}).get("message") != message:
            log.warning("ToolModel %s is invalid: %s", toolmodel["metadata"]["name"], message)
            await self._event(toolmodel, "Warning", "InvalidSpec", message)
        status = compute_status(toolmodel, workload=None, invalid=message, now=utc_now())
        await self._write_status(toolmodel, status)

    async def safely(self, work: Awaitable[None], body: Mapping[str, Any]) -> None:
        """A failed reconciliation is logged and retried by the next event or resync, never fatal;
        one that fails for a reason the operator did not foresee is also a Warning on the object."""
        metadata = body.get("metadata", {})
        where = f"{metadata.get('namespace')}/{metadata.get('name')}"
        try:
            await work
        except (KubeError, OSError, TimeoutError) as error:
            log.warning("reconciling %s failed, will retry: %s", where, error)
        except Exception as error:
            log.exception("reconciling %s failed, will retry", where)
            message = f"the operator could not reconcile this ToolModel: {error!r}"
            await self._event(body, "Warning", "ReconcileFailed", message)

    async def _event(self, toolmodel: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the ToolModel, for `kubectl describe`. Posted here rather than by
        kopf.event, which works only inside kopf's handlers (not in the resync); a failure to post
        is logged, never a failed reconcile."""
        try:
            await post_event(self.client, toolmodel, kind, reason, message)
        except (KubeError, OSError, TimeoutError) as error:
            log.warning("could not post the event %s on %s: %s", reason, toolmodel["metadata"].get("name"), error)

    async def _write_status(self, toolmodel: Mapping[str, Any], status: dict[str, Any]) -> None:
        current = toolmodel.get("status") or {}
        if _same_status(current, status):
            return
        metadata = toolmodel["metadata"]
        patch: dict[str, Any] = {"status": status}
        if metadata.get("resourceVersion"):
            # Only over the ToolModel it was computed from: a 409 otherwise, and a fresh reconcile.
            patch["metadata"] = {"resourceVersion": metadata["resourceVersion"]}
        try:
            await self.client.patch(
                TOOLMODELS, metadata.get("namespace"), metadata["name"], patch, subresource="status"
            )
        except KubeError as error:
            if error.status != 404:  # deleted meanwhile: nothing to report on
                raise
            return
        if current.get("phase") != status["phase"]:  # once written: a retried write posts it once
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            kind = "Warning" if status["phase"] in ("Degraded", "Failed") else "Normal"
            await self._event(toolmodel, kind, status["phase"], ready["message"])


class ServedApis:
    """Which of the optional APIs (``scale_out.REQUIRED_APIS``: LeaderWorkerSet, KEDA, autoscaling/v2,
    InferencePool) of the ``permitted`` kinds the cluster serves, by discovery, asked again once the
    answer is ``ttl`` seconds old."""

    def __init__(self, client: KubeClient, ttl: float, permitted: tuple[str, ...]) -> None:
        self._client = client
        self._ttl = ttl
        self._permitted = permitted
        self._served: set[tuple[str, str]] = set()
        self._asked_at: float | None = None

    async def get(self) -> set[tuple[str, str]]:
        now = asyncio.get_running_loop().time()
        if self._asked_at is None or now - self._asked_at >= self._ttl:
            served = set()
            for api_version, kind in REQUIRED_APIS:
                if kind in self._permitted and await self._client.serves(
                    resource_of({"apiVersion": api_version, "kind": kind})
                ):
                    served.add((api_version, kind))
            self._served, self._asked_at = served, now
        return set(self._served)


def _possible_children(name: str) -> list[tuple[Resource, str, str, str]]:
    """Every object the operator may make for the ToolModel ``name``: (resource, kind, name, why it
    goes when the spec no longer asks for it)."""
    return [
        (
            CONFIGMAPS,
            "ConfigMap",
            chat_template_config_map_name(name),
            "the chat template comes from elsewhere now",
        ),
        (DEPLOYMENTS, "Deployment", name, "the model runs on several nodes now, as a LeaderWorkerSet"),
        (
            LEADER_WORKER_SETS,
            "LeaderWorkerSet",
            leader_worker_set_name(name),
            "the model runs on one node now, as a Deployment",
        ),
        (SCALED_OBJECTS, "ScaledObject", name, "serving.autoscaling is off, or not through KEDA"),
        (
            HORIZONTAL_POD_AUTOSCALERS,
            "HorizontalPodAutoscaler",
            name,
            "serving.autoscaling is off, or through KEDA",
        ),
        (INFERENCE_POOLS, "InferencePool", name, "serving.inferencePool was removed"),
    ]


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _same_status(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    def comparable(status: Mapping[str, Any]) -> Any:
        conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []]
        return {**status, "conditions": conditions}

    return bool(comparable(current) == comparable(desired))


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:  # noqa: C901 - a flat list of small handlers
    """A fresh registry with the operator's handlers: one per process, or one per test."""
    registry = kopf.OperatorRegistry()
    state: dict[str, Reconciler] = {}
    resyncs: list[asyncio.Task[None]] = []

    def reconciler() -> Reconciler:
        # Built on first use: kopf logs in after the startup handlers have run.
        if "reconciler" not in state:
            assert config.connection is not None, "no Kubernetes credentials: the login handler has not run"
            state["reconciler"] = Reconciler(KubeClient(config.connection), config)
        return state["reconciler"]

    @kopf.on.login(registry=registry)
    def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
        if config.connection is None:
            config.connection = kopf.login_with_service_account(
                settings=settings, **kwargs
            ) or kopf.login_with_kubeconfig(settings=settings, **kwargs)
        return config.connection

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Only the events the operator posts on purpose; handler logs stay in the log.
        settings.posting.level = logging.CRITICAL
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="toolmodel.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="toolmodel.dev")
        settings.watching.server_timeout = 300
        resyncs.append(asyncio.create_task(resync_forever()))

    @kopf.on.probe(id="resync", registry=registry)
    def resync_probe(**_: Any) -> str:
        # kopf's liveness endpoint (the chart's livenessProbe) fails while this raises.
        return resync_liveness(resyncs)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        for task in resyncs:
            task.cancel()
        await asyncio.gather(*resyncs, return_exceptions=True)
        if "reconciler" in state:
            await state.pop("reconciler").client.close()

    async def resync_forever() -> None:
        # The safety net under every watch: nothing one object or one API call does may end it.
        while True:
            await asyncio.sleep(config.resync_seconds)
            if config.connection is None:
                continue
            try:
                await reconciler().resync(config.namespaces)
            except Exception:
                log.exception("resync failed; the next one runs in %s s", config.resync_seconds)

    @kopf.on.event(TOOLMODELS.group, TOOLMODELS.version, TOOLMODELS.plural, registry=registry)
    async def toolmodel_changed(body: kopf.Body, type: str | None, **_: Any) -> None:
        if type != "DELETED":
            metadata = body.get("metadata", {})
            await reconciler().safely(
                reconciler().reconcile(metadata.get("namespace", "default"), metadata["name"]), body
            )

    async def child_changed(body: kopf.Body, **_: Any) -> None:
        name = (body.get("metadata", {}).get("labels") or {}).get(_INSTANCE)
        if name:
            namespace = body.get("metadata", {}).get("namespace", "default")
            await reconciler().safely(reconciler().reconcile(namespace, name), body)

    # The optional kinds it is permitted too: where the cluster does not serve one, kopf says so
    # once and watches it from when its CRD is installed.
    optional = [
        resource_of({"apiVersion": api_version, "kind": kind})
        for api_version, kind in REQUIRED_APIS
        if kind in config.scale_out_kinds
    ]
    for resource in (DEPLOYMENTS, CONFIGMAPS, SERVICES, PODS, *optional):
        kopf.on.event(resource.group, resource.version, resource.plural, labels=MANAGED_BY, registry=registry)(
            child_changed
        )

    return registry


def resync_liveness(resyncs: list[asyncio.Task[None]]) -> str:
    """ "running" while the periodic resync runs; an error once it has stopped, so that the
    liveness probe restarts an operator whose safety net is gone."""
    if resyncs and all(task.done() for task in resyncs):
        raise RuntimeError("the periodic resync has stopped: the operator is restarted to bring it back")
    return "running" if resyncs else "starting"
