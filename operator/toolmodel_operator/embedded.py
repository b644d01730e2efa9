"""A Kubernetes API server and the operator, both on this machine: for the demo and the tests.

The API server is kmock's ``KubernetesEmulator``: real HTTP and real watch streams, so kopf runs
against it unmodified. Each runs on an event loop of its own, in a thread: on shutdown kopf
cancels every task of its loop that it did not find there at start, and the emulator must keep
answering while the caller blocks.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import kmock
import kopf

from .crd import crd_manifest
from .handlers import OperatorConfig, build_registry
from .kube import resource_of
from .scale_out import REQUIRED_APIS

__all__ = ["RESOURCES", "emulated_api_server", "operator_thread"]

# Everything the operator reads, writes or watches. The CRD resource must be there too, or kopf
# never starts watching.
RESOURCES = {
    "toolmodel.dev/v1alpha1/toolmodels": "ToolModel",
    "apps/v1/deployments": "Deployment",
    "v1/configmaps": "ConfigMap",
    "v1/services": "Service",
    "v1/pods": "Pod",
    "v1/secrets": "Secret",
    "v1/events": "Event",
    "v1/namespaces": "Namespace",
    "apiextensions.k8s.io/v1/customresourcedefinitions": "CustomResourceDefinition",
}
_CLUSTER_SCOPED = frozenset({"Namespace", "CustomResourceDefinition"})


class _Emulator(kmock.KubernetesEmulator):
    """kmock, plus two server behaviours the operator relies on that it lacks.

    ``generateName``: kopf posts every Event with it; without a generated name they would collide.

    Server-side apply, roughly: kmock merges every PATCH into the object, whatever its content
    type, and answers 404 for one that does not exist. An apply (``application/apply-patch+yaml``)
    of a missing object creates it here, as on a real server; of an existing one it stays a merge.
    So the emulator has no field managers: a field the operator stops setting is not removed, and
    there are no ``managedFields`` (the operator then compares values only). What apply does with
    field ownership is tested on a real API server (tests/operator, backend "real").
    """

    _names = itertools.count(1)

    async def _handle(self, request: Any) -> Any:
        metadata = request.data.get("metadata") if isinstance(request.data, dict) else None
        if isinstance(metadata, dict) and not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = f"{metadata['generateName']}{next(self._names):06d}"
        if _is_apply(request) and request.resource is not None and request.name:
            key = (request.resource, request.namespace, request.name)
            if key not in self._objects or self._objects[key].deleted:
                # A create, served as kmock serves a POST: its reactions match the requests it
                # recorded, by identity, so the create is recorded while it is served.
                create = attrs.evolve(request, method="POST", action=kmock.action.CREATE, name=None)
                self._requests.append(create)
                try:
                    return await super()._handle(create)
                finally:
                    self._requests.remove(create)
        return await super()._handle(request)


def _is_apply(request: Any) -> bool:
    content_type = {k.lower(): v for k, v in (request.headers or {}).items()}.get("content-type", "")
    return bool(request.method == "PATCH" and content_type.startswith("application/apply-patch"))


def _path(api_version: str, kind: str) -> str:
    """kmock's name of a resource: group/version/plural."""
    resource = resource_of({"apiVersion": api_version, "kind": kind})
    return f"{resource.api_version}/{resource.plural}"


@contextmanager
def _loop_thread(name: str) -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@contextmanager
def emulated_api_server(serves: Iterable[str] = ()) -> Iterator[str]:
    """An emulated API server with the ToolModel CRD installed, also serving the optional kinds
    (scale_out.SCALE_OUT_KINDS: LeaderWorkerSet, ...) in ``serves``; yields its URL."""
    optional = {kind: api_version for api_version, kind in REQUIRED_APIS}
    resources = RESOURCES | {_path(optional[kind], kind): kind for kind in serves}
    with _loop_thread("kubernetes-emulator") as loop:
        stack: list[Any] = []

        async def start() -> str:
            api = _Emulator()
            server = kmock.Server(api)
            await api.__aenter__()
            await server.__aenter__()
            stack.extend([server, api])
            for resource, kind in resources.items():
                api.resources[resource] = kmock.ResourceInfo(
                    kind=kind,
                    namespaced=kind not in _CLUSTER_SCOPED,
                    verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
                )
            url = str(server.url).rstrip("/")
            await server.client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd_manifest())
            return url

        async def stop() -> None:
            for context in stack:
                await context.__aexit__(None, None, None)

        url = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
        try:
            yield url
        finally:
            asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)


@contextmanager
def operator_thread(config: OperatorConfig, *, liveness_endpoint: str | None = None) -> Iterator[None]:
    """The operator, running until the block ends (with kopf's liveness endpoint, if given)."""
    stop, ready = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=build_registry(config),
                    standalone=True,
                    clusterwide=not config.namespaces,
                    namespaces=config.namespaces,
                    stop_flag=stop,
                    ready_flag=ready,
                    liveness_endpoint=liveness_endpoint,
                )
            )
        except BaseException as error:  # handed to the caller below
            failures.append(error)

    thread = threading.Thread(target=run, name="operator", daemon=True)
    thread.start()
    if not ready.wait(timeout=30):
        stop.set()
        raise RuntimeError(f"the operator did not start within 30 s: {failures or 'no error reported'}")
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)
        if thread.is_alive():
            raise RuntimeError("the operator did not stop within 15 s")
        if failures and not isinstance(failures[0], asyncio.CancelledError):
            raise failures[0]
