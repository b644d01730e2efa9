"""Reconciles of one ToolModel run one at a time, and a burst of events costs at most two."""

from __future__ import annotations

import asyncio
from typing import Any

from toolmodel_operator.handlers import OperatorConfig, Reconciler


class ToolModelsOnly:
    """Enough of KubeClient for ``Reconciler.reconcile``: every ToolModel exists."""

    def __init__(self) -> None:
        self.gets = 0

    async def get(self, resource: Any, namespace: str, name: str) -> dict[str, Any]:
        self.gets += 1
        return {"metadata": {"namespace": namespace, "name": name}}


class RecordingReconciler(Reconciler):
    """Records each reconcile that ran; the first one of each ToolModel waits to be released."""

    def __init__(self) -> None:
        super().__init__(ToolModelsOnly(), OperatorConfig())  # type: ignore[arg-type]
        self.ran: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.release = asyncio.Event()

    async def _reconcile(self, toolmodel: Any) -> None:
        name = toolmodel["metadata"]["name"]
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        if name not in self.ran:
            self.ran.append(name)
            await self.release.wait()
        else:
            self.ran.append(name)
        self.running -= 1


async def test_events_during_a_reconcile_are_answered_by_one_more_reconcile() -> None:
    reconciler = RecordingReconciler()
    first = asyncio.create_task(reconciler.reconcile("default", "a"))
    await asyncio.sleep(0)  # the first reconcile is running and holds the ToolModel's lock
    burst = [asyncio.create_task(reconciler.reconcile("default", "a")) for _ in range(10)]
    await asyncio.sleep(0)

    reconciler.release.set()
    await asyncio.gather(first, *burst)

    assert reconciler.ran == ["a", "a"]  # the first, then one that saw everything the burst changed
    assert reconciler.most_at_once == 1


async def test_different_toolmodels_reconcile_side_by_side() -> None:
    reconciler = RecordingReconciler()
    tasks = [asyncio.create_task(reconciler.reconcile("default", name)) for name in ("a", "b")]
    await asyncio.sleep(0)

    assert reconciler.most_at_once == 2
    reconciler.release.set()
    await asyncio.gather(*tasks)
    assert sorted(reconciler.ran) == ["a", "b"]


async def test_an_event_after_the_reconcile_finished_reconciles_again() -> None:
    reconciler = RecordingReconciler()
    reconciler.release.set()

    await reconciler.reconcile("default", "a")
    await reconciler.reconcile("default", "a")

    assert reconciler.ran == ["a", "a"]


async def test_a_cancelled_waiting_reconcile_does_not_swallow_later_events() -> None:
    reconciler = RecordingReconciler()
    first = asyncio.create_task(reconciler.reconcile("default", "a"))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(reconciler.reconcile("default", "a"))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)

    later = asyncio.create_task(reconciler.reconcile("default", "a"))
    reconciler.release.set()
    await asyncio.gather(first, later)

    assert reconciler.ran == ["a", "a"]
