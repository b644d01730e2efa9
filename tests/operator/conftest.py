"""The operator's integration suite runs on two backends: ``emulated`` (kmock, in-process, a fresh
API server per test) and ``real`` (hack/real-apiserver.sh: one control plane per session, a
namespace per test). See real.py for when the real one is skipped or required."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from emulated import Cluster, emulated_cluster
from real import NAMESPACES, ControlPlane, start

from toolmodel_operator.kube import TOOLMODELS, KubeClient

BACKENDS = ["emulated", "real"]
TEST_MANAGER = "test"  # the field manager of the tests' own writes, as "kubectl" is of kubectl's


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The real control plane, started once per session (built on the machine's first use)."""
    yield from start(Path(tmp_path_factory.mktemp("real-k8s")))


@pytest.fixture(params=BACKENDS)
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    if request.param == "emulated":
        async with emulated_cluster() as running:
            yield running
        return
    plane: ControlPlane = request.getfixturevalue("control_plane")
    async with real_cluster(plane, request.node.name) as running:
        yield running


@pytest.fixture
async def real(control_plane: ControlPlane, request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    """The real backend alone, for what only a real API server does."""
    async with real_cluster(control_plane, request.node.name) as running:
        yield running


@asynccontextmanager
async def real_cluster(plane: ControlPlane, test: str) -> AsyncIterator[Cluster]:
    """A namespace of its own on the real control plane, deleted afterwards (with what is in it)."""
    hint = "".join(c if c.isalnum() else "-" for c in test.split("[")[0].removeprefix("test_"))
    namespace = plane.new_namespace_name(hint)
    async with KubeClient(plane.admin(), field_manager=TEST_MANAGER) as client:
        await client.create(
            NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
        try:
            yield Cluster(
                url=plane.server,
                client=client,
                backend="real",
                namespace=namespace,
                operator_connection=plane.operator(),
                plane=plane,
            )
        finally:
            # Its ToolModels first: gone at once, where the namespace takes a while, so that the
            # operators of the tests that follow do not meet them.
            for toolmodel in await client.list(TOOLMODELS, namespace):
                await client.delete(TOOLMODELS, namespace, toolmodel["metadata"]["name"])
            await client.delete(NAMESPACES, None, namespace)
