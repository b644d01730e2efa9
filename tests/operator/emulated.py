"""The test side of a cluster: an API server (emulated or real), the operator, a client to act as kubectl."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import kopf

from toolmodel_operator.embedded import emulated_api_server, operator_thread
from toolmodel_operator.handlers import OperatorConfig
from toolmodel_operator.kube import KubeClient

if TYPE_CHECKING:
    from real import ControlPlane


@dataclass
class Cluster:
    url: str
    client: KubeClient  # the test's own client, as kubectl would be (an admin on a real server)
    backend: str = "emulated"  # or "real"
    namespace: str = "default"  # the test's own namespace
    operator_connection: kopf.ConnectionInfo | None = None  # the operator's credentials; None: the test's
    plane: ControlPlane | None = None  # the real control plane

    @property
    def real(self) -> bool:
        return self.backend == "real"

    def admin(self) -> kopf.ConnectionInfo:
        """Credentials for another client with the test's own rights (as a controller would have)."""
        return self.plane.admin() if self.plane is not None else kopf.ConnectionInfo(server=self.url)


@asynccontextmanager
async def emulated_cluster(serves: Iterable[str] = ()) -> AsyncIterator[Cluster]:
    """A fresh emulated API server, serving the optional kinds in ``serves`` (scale_out.SCALE_OUT_KINDS)."""
    server = emulated_api_server(serves)
    url = await asyncio.to_thread(server.__enter__)
    try:
        async with KubeClient(kopf.ConnectionInfo(server=url), field_manager="test") as client:
            yield Cluster(url, client)
    finally:
        await asyncio.to_thread(server.__exit__, None, None, None)


@asynccontextmanager
async def running_operator(
    cluster: Cluster,
    *,
    liveness_endpoint: str | None = None,
    connection: kopf.ConnectionInfo | None = None,
    **settings: Any,
) -> AsyncIterator[None]:
    connection = connection or cluster.operator_connection or kopf.ConnectionInfo(server=cluster.url)
    settings.setdefault("resync_seconds", 0.5)
    config = OperatorConfig(connection=connection, **settings)
    running = operator_thread(config, liveness_endpoint=liveness_endpoint)
    await asyncio.to_thread(running.__enter__)
    try:
        yield
    finally:
        await asyncio.to_thread(running.__exit__, None, None, None)


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 10) -> Any:
    """The first truthy result of ``check``, polled for ``within`` seconds; fails with the last one."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            assert result, f"not true within {within} s: {result!r}"
            return result
        await asyncio.sleep(0.05)
