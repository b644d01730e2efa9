"""A small Kubernetes REST client for the few kinds the operator owns, and idempotent apply.

kopf brings its own API client for watching; the operator's writes go through this one, built
from the same ``kopf.ConnectionInfo`` the login handler produced, so both talk to the same
cluster with the same credentials.

Children are written with server-side apply under the field manager ``toolmodel-operator``: the
API server records which fields the operator set, so a field the operator stops setting is
removed, and fields another manager set on a child (an annotation of another controller, a
sidecar a webhook added) are left alone. ``kubectl get -o yaml --show-managed-fields`` shows who
owns what.
"""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf
import orjson

__all__ = [
    "FIELD_MANAGER",
    "HANDOVER_FIELD_MANAGER",
    "KubeClient",
    "KubeError",
    "Resource",
    "apply",
    "contains",
    "owns_beyond",
    "resource_of",
]

FIELD_MANAGER = "toolmodel-operator"
# The manager name the API server gave the operator's writes before it applied them (aiohttp's
# User-Agent, "Python/3.x aiohttp/3.y"): the fields it owns on a child are handed over on the
# first apply, or keys those versions set could never be removed.
LEGACY_FIELD_MANAGER = "Python"
# Who holds a field the operator stops writing but whose value must stay (an autoscaled workload's
# replicas) until its new owner (the autoscaler, through the scale subresource) writes it.
HANDOVER_FIELD_MANAGER = "toolmodel-handover"
APPLY_PATCH = "application/apply-patch+yaml"  # a JSON body is YAML too


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
        if subresource is not None:
            base += f"/{subresource}"
        return base


CONFIGMAPS = Resource("", "v1", "configmaps")
SECRETS = Resource("", "v1", "secrets")
SERVICES = Resource("", "v1", "services")
PODS = Resource("", "v1", "pods")
EVENTS = Resource("", "v1", "events")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
TOOLMODELS = Resource("toolmodel.dev", "v1alpha1", "toolmodels")
# The kinds of other projects (and of newer Kubernetes) a ToolModel may ask for: not every cluster
# serves them (``KubeClient.serves``).
LEADER_WORKER_SETS = Resource("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")
SCALED_OBJECTS = Resource("keda.sh", "v1alpha1", "scaledobjects")
HORIZONTAL_POD_AUTOSCALERS = Resource("autoscaling", "v2", "horizontalpodautoscalers")
INFERENCE_POOLS = Resource("inference.networking.k8s.io", "v1", "inferencepools")
_BY_KIND = {
    ("v1", "ConfigMap"): CONFIGMAPS,
    ("v1", "Secret"): SECRETS,
    ("v1", "Service"): SERVICES,
    ("v1", "Pod"): PODS,
    ("apps/v1", "Deployment"): DEPLOYMENTS,
    ("toolmodel.dev/v1alpha1", "ToolModel"): TOOLMODELS,
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): LEADER_WORKER_SETS,
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECTS,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): HORIZONTAL_POD_AUTOSCALERS,
    ("inference.networking.k8s.io/v1", "InferencePool"): INFERENCE_POOLS,
}


def manages(manifest: Mapping[str, Any]) -> bool:
    """Whether the operator applies objects of the manifest's kind."""
    return (manifest.get("apiVersion"), manifest.get("kind")) in _BY_KIND


def resource_of(manifest: Mapping[str, Any]) -> Resource:
    try:
        return _BY_KIND[(manifest["apiVersion"], manifest["kind"])]
    except KeyError:
        raise ValueError(f"the operator does not manage {manifest.get('apiVersion')}/{manifest.get('kind')}") from None


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class KubeClient:
    """JSON over HTTP to the API server: get, list, create, merge-patch, apply, delete.

    Every write names the field manager: the operator's, unless told otherwise.
    """

    def __init__(self, info: kopf.ConnectionInfo, *, field_manager: str = FIELD_MANAGER) -> None:
        self._server = info.server.rstrip("/")
        self.field_manager = field_manager
        self._headers = {"Accept": "application/json"}
        if info.token:
            self._headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        elif info.username and info.password:
            pair = f"{info.username}:{info.password}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._ssl = _ssl_context(info)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=30),
                json_serialize=lambda v: orjson.dumps(v).decode(),
            )
        headers = {"Content-Type": content_type or "application/json"} if body is not None else {}
        data = orjson.dumps(body) if body is not None else None
        if method in ("POST", "PUT", "PATCH") and self.field_manager:
            params = {"fieldManager": self.field_manager, **(params or {})}
        async with self._session.request(
            method, self._server + path, data=data, headers=headers, params=params, ssl=self._ssl
        ) as response:
            payload = await response.read()
            if response.status >= 400:
                raise KubeError(response.status, _status_message(payload))
            return orjson.loads(payload) if payload else None

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._request("GET", resource.path(namespace, name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        return found

    async def list(
        self, resource: Resource, namespace: str | None, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        path = resource.path(namespace)
        if labels:
            path += "?labelSelector=" + ",".join(f"{key}%3D{value}" for key, value in labels.items())
        items: list[dict[str, Any]] = (await self._request("GET", path) or {}).get("items") or []
        # Filtered here as well: not every API server (nor every test double) applies the selector.
        if labels:
            items = [item for item in items if _has_labels(item, labels)]
        return items

    async def create(self, resource: Resource, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self._request("POST", resource.path(namespace), body)
        return created

    async def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        patched: dict[str, Any] = await self._request(
            "PATCH", resource.path(namespace, name, subresource), body, "application/merge-patch+json"
        )
        return patched

    async def json_patch(
        self, resource: Resource, namespace: str | None, name: str, operations: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        patched: dict[str, Any] = await self._request(
            "PATCH", resource.path(namespace, name), operations, "application/json-patch+json"
        )
        return patched

    async def apply(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """Server-side apply of ``body``, which holds every field the operator owns, and only those.

        Forced: the fields in it are the operator's, whoever changed them since (the drift it
        repairs); fields outside it are not touched, and those it owned before but no longer
        lists are removed. Creates the object if it does not exist.
        """
        params = {"force": "true"}
        if field_manager is not None:
            params["fieldManager"] = field_manager
        applied: dict[str, Any] = await self._request(
            "PATCH", resource.path(namespace, name), body, APPLY_PATCH, params
        )
        return applied

    async def serves(self, resource: Resource) -> bool:
        """Whether the API server serves ``resource`` (its CRD installed, its API version there).

        Discovery, which every authenticated user may read: a 404 for an API group or version the
        server does not have, a list without the plural for one it has without this resource.
        """
        base = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
        try:
            found = await self._request("GET", base)
        except KubeError as error:
            if error.status in (404, 503):  # 503: an aggregated API whose server is away
                return False
            raise
        return any(item.get("name") == resource.plural for item in (found or {}).get("resources") or [])

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> None:
        try:
            await self._request("DELETE", resource.path(namespace, name))
        except KubeError as error:
            if error.status != 404:
                raise


EVENT_SOURCE = "toolmodel-operator"


def utc_now() -> str:
    """Now, as Kubernetes writes times (RFC 3339, seconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def post_event(client: KubeClient, obj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    """A core/v1 Event about ``obj`` (Normal or Warning), as `kubectl describe` shows them."""
    metadata = obj["metadata"]
    namespace = metadata.get("namespace", "default")
    now = utc_now()
    involved = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": metadata["name"]}
    involved |= {"namespace": namespace, "uid": metadata.get("uid"), "resourceVersion": metadata.get("resourceVersion")}
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": namespace},
        "involvedObject": {key: value for key, value in involved.items() if value is not None},
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": EVENT_SOURCE},
        "reportingComponent": EVENT_SOURCE,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    await client.create(EVENTS, namespace, event)


def contains(desired: Any, live: Any) -> bool:
    """Whether ``live`` already holds everything ``desired`` says (the server may add more)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            key in live and contains(value, live[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(map(contains, desired, live))
    return bool(desired == live)


def owns_beyond(fields: Mapping[str, Any], desired: Any) -> bool:
    """Whether a field set (``managedFields[].fieldsV1``) names a field ``desired`` does not have.

    The keys of a field set: ``f:name`` a map's field, ``k:{...}`` a list item by its key fields,
    ``v:value`` a set member, ``i:n`` a list item by index, ``.`` the node itself.
    """
    for key, below in fields.items():
        kind, _, text = key.partition(":")
        if kind == ".":
            continue
        if kind == "f" and isinstance(desired, Mapping) and text in desired:
            child = desired[text]
        elif kind == "k" and isinstance(desired, list):
            wanted = json.loads(text)
            child = next((item for item in desired if _has_key(item, wanted)), _MISSING)
        elif kind == "v" and isinstance(desired, list):
            child = json.loads(text) if json.loads(text) in desired else _MISSING
        elif kind == "i" and isinstance(desired, list) and text.isdigit() and int(text) < len(desired):
            child = desired[int(text)]
        else:
            return True
        if child is _MISSING or (below and owns_beyond(below, child)):
            return True
    return False


_MISSING = object()
# Key fields the API server defaults when a manifest leaves them out (ports' protocol).
_DEFAULTED_KEYS = {"protocol": "TCP"}


def _has_key(item: Any, key: Mapping[str, Any]) -> bool:
    return isinstance(item, Mapping) and all(item.get(k, _DEFAULTED_KEYS.get(k)) == v for k, v in key.items())


def _managed(live: Mapping[str, Any], manager: str, operation: str) -> list[dict[str, Any]]:
    entries = (live.get("metadata") or {}).get("managedFields") or []
    return [e for e in entries if e.get("manager") == manager and e.get("operation") == operation]


def up_to_date(manifest: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """Whether applying ``manifest`` would change nothing: the live object holds all of it, and
    (where the server tracks field managers) the operator owns no field the manifest dropped."""
    if not contains(manifest, live):
        return False
    if "managedFields" not in (live.get("metadata") or {}):
        return True  # a server without field management (the emulator): values are all there is
    ours = _managed(live, FIELD_MANAGER, "Apply")
    if not ours or _managed(live, LEGACY_FIELD_MANAGER, "Update"):
        return False  # written before server-side apply: applied once, and the legacy fields adopted
    return not any(owns_beyond(entry.get("fieldsV1") or {}, manifest) for entry in ours)


async def apply(client: KubeClient, manifest: Mapping[str, Any], *, hand_over: Sequence[str] = ()) -> str:
    """Server-side applies ``manifest`` unless the live object is up to date already; returns
    created/updated/unchanged.

    Comparing before writing keeps reconciliation quiet: a write would trigger a watch event,
    which would trigger another reconciliation. ``hand_over``: the paths of fields (``spec.replicas``)
    the manifest leaves out for another writer to own; where the operator owned one, its live value
    is handed over first, or dropping it from the applied set would remove it (and a Deployment
    without replicas is defaulted to 1).
    """
    resource = resource_of(manifest)
    metadata = manifest["metadata"]
    namespace, name = metadata.get("namespace"), metadata["name"]
    live = await client.get(resource, namespace, name)
    if live is not None and up_to_date(manifest, live):
        return "unchanged"
    if live is not None and _managed(live, LEGACY_FIELD_MANAGER, "Update"):
        await _adopt_legacy_fields(client, resource, live)
    if live is not None:
        for path in hand_over:
            await _hand_over(client, resource, manifest, live, path.split("."))
    await client.apply(resource, namespace, name, manifest)
    return "created" if live is None else "updated"


async def _hand_over(
    client: KubeClient, resource: Resource, manifest: Mapping[str, Any], live: Mapping[str, Any], path: list[str]
) -> None:
    """The field at ``path``, if the operator owns it and ``manifest`` leaves it out, applied with its
    live value by HANDOVER_FIELD_MANAGER: shared for a moment, then that manager's alone once the
    operator's apply drops it (what Kubernetes documents for moving replicas to an autoscaler)."""
    if _get(manifest, path) is not _MISSING:
        return
    value = _get(live, path)
    owned = [entry.get("fieldsV1") or {} for entry in _managed(live, FIELD_MANAGER, "Apply")]
    if value is _MISSING or not any(_owns(fields, path) for fields in owned):
        return
    body: dict[str, Any] = {"apiVersion": manifest["apiVersion"], "kind": manifest["kind"]}
    body["metadata"] = {"name": live["metadata"]["name"], "namespace": live["metadata"].get("namespace")}
    node = body
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    metadata = live["metadata"]
    await client.apply(
        resource, metadata.get("namespace"), metadata["name"], body, field_manager=HANDOVER_FIELD_MANAGER
    )


def _get(obj: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def _owns(fields: Mapping[str, Any], path: Sequence[str]) -> bool:
    for key in path:
        below = fields.get(f"f:{key}")
        if below is None:
            return False
        fields = below
    return True


async def _adopt_legacy_fields(client: KubeClient, resource: Resource, live: Mapping[str, Any]) -> None:
    """The fields an operator version before server-side apply wrote (as the manager "Python",
    by merge patch) become the operator's applied ones, so the next apply removes those it no
    longer sets, as kubectl does when it moves an object from client- to server-side apply.
    Guarded by the resourceVersion: if the object changed meanwhile the patch fails, and the
    reconcile is retried (at once on a 409, else by the next event or resync).
    """
    metadata = live["metadata"]
    entries = metadata.get("managedFields") or []
    legacy = [e for e in entries if e.get("manager") == LEGACY_FIELD_MANAGER and e.get("operation") == "Update"]
    fields: dict[str, Any] = {}
    for entry in legacy + _managed(live, FIELD_MANAGER, "Apply"):
        fields = _union(fields, entry.get("fieldsV1") or {})
    ours = {"manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": live["apiVersion"]}
    ours |= {"fieldsType": "FieldsV1", "fieldsV1": fields}
    replaced = [*legacy, *_managed(live, FIELD_MANAGER, "Apply")]
    kept = [e for e in entries if e not in replaced]
    operations = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": metadata.get("resourceVersion")},
        {"op": "replace", "path": "/metadata/managedFields", "value": [*kept, ours]},
    ]
    await client.json_patch(resource, metadata.get("namespace"), metadata["name"], operations)


def _union(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(a)
    for key, value in b.items():
        merged[key] = _union(merged[key], value) if key in merged else value
    return merged


def _has_labels(item: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    present = (item.get("metadata") or {}).get("labels") or {}
    return all(present.get(key) == value for key, value in labels.items())


def _status_message(payload: bytes) -> str:
    try:
        status = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", "replace")[:300]
    if isinstance(status, dict):
        return str(status.get("message") or status.get("reason") or status)
    return str(status)


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if not info.server.startswith("https"):
        return False
    if info.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        ca_data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
        context = ssl.create_default_context(cafile=info.ca_path or None, cadata=ca_data)
    certificate, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        # ssl needs files for client certificates; they live as long as the process
        certificate = _temporary_file(info.certificate_data)
        key = _temporary_file(info.private_key_data)
    if certificate and key:
        context.load_cert_chain(certificate, key)
    return context


def _temporary_file(data: str | bytes) -> str:
    handle = tempfile.NamedTemporaryFile(delete=False, suffix=".pem")  # noqa: SIM115 - kept for the process
    handle.write(data.encode() if isinstance(data, str) else data)
    handle.close()
    return handle.name
