"""BENCHMARK-ONLY workarounds for kmock's ``KubernetesEmulator``, the test double benchmark E runs on.

Nothing here is product code, and nothing here changes what the operator does or sees: the HTTP
answers are the same (but for 3.). It only removes costs that kmock (0.8), built for unit tests of
a few dozen requests, grows with the length of a run, so that figure E measures the operator, not
kmock:

1. The request log. kmock appends every request to ``Root._requests`` (and to the serving
   reaction's ``Reaction._requests``), for assertions in tests, and finds the reaction for a
   request with ``request in payload._source``: ``View.__contains__`` iterates that view, i.e.
   the WHOLE log, evaluating the view's criteria on every logged request until it reaches the new
   one, for each of the ~15 reactions it tries. One request costs O(requests so far), a run
   O(requests^2): at 100 ToolModels (~2,300 requests) the emulator thread used 276 s of CPU, a
   whole core throughout, against the operator's 2.5 s, and answered so late that the bench's own
   lists timed out; with these workarounds, the same run takes 2-3 s of CPU on either side.
   Fix: membership of a request in a chain of ``Filter``/``Priority`` views over the root is
   decided on that one request (its criteria, then the next view down), which is what iterating
   them computes; any other kind of view keeps kmock's own test. The logs keep only the requests
   in flight, and the errors answered (every 404, with its traceback and frames) are not kept for
   the assertions at exit, so they cost neither memory nor collector time as the run goes on.
2. The object store. Every get, create, patch, delete, list and watch scans ALL stored objects of
   ALL kinds (``KubernetesEmulator.__get_objs``), and every list scans them again for the known
   resources (``_get_resources``); the store grows with every ToolModel, child and Event, so this
   is quadratic too. Fix: an index by resource, and by (namespace, name) for a named request.
3. Not quadratic, but a fifth of what was left: kmock answers every Kubernetes error (the 404 of
   each get before a create, say) with the server-side Python traceback in the Status's
   ``details``, and formatting it costs more than the rest of the request. A real API server sends
   no traceback: neither does this one, for the Kubernetes errors kmock raises on purpose (404,
   409); any other error (a fault in the emulator) keeps kmock's answer with the traceback.

Use ``with bench_emulator():`` around ``emulated_api_server()``: it swaps these in for the
duration and puts kmock back as it was afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import aiohttp.web
import attrs
from kmock._internal import dsl, k8s_views, references, rendering
from kmock._internal.k8s import KubernetesError, KubernetesScaffold

from toolmodel_operator import embedded

__all__ = ["BenchEmulator", "bench_emulator"]

_KMOCK_CONTAINS = dsl.View.__contains__


def _contains(view: dsl.View, item: Any) -> bool:
    """``item in view``, for a request: walked down the view's chain, not over the request log."""
    if isinstance(item, rendering.Request):
        while True:
            kind = type(view)
            if kind is dsl.Filter:  # yields the requests of its source that meet its criteria
                if not view.criteria(item):
                    return False
                view = view._source
            elif kind is dsl.Priority:  # yields the requests of its source
                view = view._source
            elif isinstance(view, dsl.Root) and kind.__iter__ is dsl.Root.__iter__:
                return any(request is item for request in reversed(view._requests))
            else:
                break
    return bool(_KMOCK_CONTAINS(view, item))


@attrs.frozen(eq=False, order=False)
class _IndexedObjects(k8s_views.ObjectsArray):
    """kmock's object store, plus an index: resource -> (namespace, name) -> object."""

    _by_resource: dict[references.resource, dict[tuple[str | None, str], Any]] = attrs.field(factory=dict, init=False)

    def of(self, resource: references.resource | None) -> dict[tuple[str | None, str], Any]:
        return self._by_resource.get(resource, {}) if resource is not None else {}

    def resources(self) -> set[references.resource]:
        return set(self._by_resource)

    def __setitem__(self, key: Any, value: Any, /) -> None:
        k8s_views.ObjectsArray.__setitem__(self, key, value)
        if len(key) == 3:  # a whole object, not one version of it: a new object from now on
            resource, namespace, name = k8s_views._parse_resource(key[0]), key[1], key[2]
            self._by_resource.setdefault(resource, {})[namespace, name] = self._objects[resource, namespace, name]

    def __delitem__(self, key: Any, /) -> None:
        k8s_views.ObjectsArray.__delitem__(self, key)
        if len(key) == 3:
            self._by_resource.get(k8s_views._parse_resource(key[0]), {}).pop((key[1], key[2]), None)

    def clear(self) -> None:
        k8s_views.ObjectsArray.clear(self)
        self._by_resource.clear()


class _NoErrors(list[Exception]):
    """kmock keeps every error it answered, to raise them at exit in strict mode: not strict here."""

    def append(self, error: Exception, /) -> None:
        pass


class BenchEmulator(embedded._Emulator):
    """The product's emulator (kmock + ``generateName``), with the costs above taken out."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._objects = _IndexedObjects()

    async def __aenter__(self) -> BenchEmulator:
        await super().__aenter__()
        self._errors[-1] = _NoErrors()
        return self

    async def _handle(self, request: Any) -> Any:
        try:
            return await super()._handle(request)
        finally:
            # Only for assertions in tests, which a benchmark has none of: keep the ones in flight.
            for index in range(len(self._requests) - 1, -1, -1):
                if self._requests[index] is request:
                    del self._requests[index]
                    break
            for payload in self._payloads:
                payload._requests.clear()

    async def _render_error(self, exc: Exception) -> Any:
        if not isinstance(exc, KubernetesError):
            return await super()._render_error(exc)
        status = {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "code": exc.status,
            "status": "Failure",
            "reason": exc.reason or type(exc).__name__,
            "message": exc.message or repr(exc),
            "details": exc.details or {},
        }
        return aiohttp.web.json_response(status, status=exc.status)

    def _get_resources(self) -> list[references.resource]:
        return list(set(KubernetesScaffold._get_resources(self)) | self._objects.resources())

    # Overrides the name-mangled private ``KubernetesEmulator.__get_objs``; same selection, with
    # ``__check`` as kmock's, but only among the objects of the requested resource.
    def _KubernetesEmulator__get_objs(self, request: rendering.Request, strict: bool) -> list[Any]:
        objects = self._objects.of(request.resource)
        if request.name is not None and (strict or request.namespace is not None):
            found = objects.get((request.namespace, request.name))
            return [] if found is None else [found]
        check = self._KubernetesEmulator__check
        return [
            obj
            for (namespace, name), obj in objects.items()
            if check(request, request.resource, namespace, name, strict=strict)
        ]


@contextmanager
def bench_emulator() -> Iterator[None]:
    """While in this block, ``emulated_api_server()`` runs a ``BenchEmulator``."""
    with (
        mock.patch.object(dsl.View, "__contains__", _contains),
        mock.patch.object(embedded, "_Emulator", BenchEmulator),
    ):
        yield
