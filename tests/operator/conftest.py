"""The operator's integration suite runs on two backends: ``emulated`` (kmock, in-process, a fresh
API server per test) and ``real`` (hack/real-apiserver.sh: one control plane per session, a
namespace per test). See real.py for when the real one is skipped or required."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from emulated import Cluster, emulated_cluster
from real import ControlPlane, real_cluster, start

BACKENDS = ["emulated", "real"]


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
