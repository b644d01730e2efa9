#!/usr/bin/env python3
"""Benchmark E: 1,000 ToolModels on the emulated API server, time until all their children exist,
and the operator's peak RSS. The operator runs as its own process (`toolmodel operator`), reading
a kubeconfig that points at the emulator, exactly as it would read a cluster's.

    .venv/bin/python hack/bench/operator_scale.py [--count 1000] [--json PATH] [--kmock-as-shipped]

The emulator (kmock's KubernetesEmulator, in a thread of this process) runs with BENCHMARK-ONLY
workarounds from ``emulator_for_bench.py``: as shipped, kmock walks its whole request log and its
whole object store on every request, so its cost grows with the square of the run's length and the
figure measured kmock, not the operator (at 100 ToolModels: 276 s of emulator CPU against 2.5 s of
the operator's). Its answers stay the same, less the Python traceback kmock puts in its error
Statuses. ``--kmock-as-shipped`` runs without them, for comparison only: as shipped, 100 ToolModels
take ~100 s and the bench's lists time out meanwhile; do not try 1,000.

Besides time and the operator's peak RSS, it reports the CPU seconds the operator process and the
emulator thread used from the first create to the end, so that the reader sees which side was busy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import kopf
import yaml
from emulator_for_bench import bench_emulator

from toolmodel_operator.embedded import emulated_api_server
from toolmodel_operator.kube import CONFIGMAPS, DEPLOYMENTS, SERVICES, TOOLMODELS, KubeClient, KubeError, Resource

NAMESPACE = "default"


def _kubeconfig(url: str, directory: str) -> str:
    path = Path(directory) / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulated", "cluster": {"server": url}}],
        "users": [{"name": "bench", "user": {"token": "bench"}}],
        "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "bench"}}],
        "current-context": "emulated",
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of a process, or of one of its threads, from /proc."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _emulator_thread() -> int:
    """The native id of the emulator's thread (started by ``emulated_api_server``)."""
    for thread in threading.enumerate():
        if thread.name == "kubernetes-emulator" and thread.native_id is not None:
            return thread.native_id
    raise RuntimeError("the emulator's thread is not running")


def _toolmodel(index: int) -> dict[str, object]:
    return {
        "apiVersion": "toolmodel.dev/v1alpha1",
        "kind": "ToolModel",
        "metadata": {"name": f"model-{index:04d}", "namespace": NAMESPACE, "uid": f"uid-{index}", "generation": 1},
        "spec": {"model": "THUDM/chatglm3-6b", "toolCalling": {"dialect": "chatglm3"}, "serving": {"engine": "sim"}},
    }


async def _run(url: str, count: int, deadline: float) -> tuple[float, int]:
    async with KubeClient(kopf.ConnectionInfo(server=url)) as client:
        seen = {kind: 0 for kind in (SERVICES, DEPLOYMENTS, CONFIGMAPS)}

        async def complete(kind: Resource) -> bool:
            try:
                seen[kind] = len(await client.list(kind, NAMESPACE))
            except (KubeError, OSError, TimeoutError):  # an emulator too busy to answer in 30 s
                return False
            return seen[kind] >= count

        started = time.perf_counter()
        await asyncio.gather(*(client.create(TOOLMODELS, NAMESPACE, _toolmodel(i)) for i in range(count)))
        # Services first: the operator applies them last. Listing 1,000 objects costs the emulator
        # too, so the other kinds are listed only once the Services are all there.
        while time.perf_counter() - started < deadline:
            for kind in seen:
                if not await complete(kind):
                    break
            else:
                return time.perf_counter() - started, count
            await asyncio.sleep(0.5)
        for kind in seen:
            await complete(kind)
        return float("inf"), min(seen.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--deadline", type=float, default=300.0, help="give up after this many seconds")
    parser.add_argument("--json", default="bench-results/operator.json")
    parser.add_argument(
        "--kmock-as-shipped",
        action="store_true",
        help="without the benchmark-only workarounds for kmock (quadratic: for comparison only)",
    )
    options = parser.parse_args()
    Path(options.json).parent.mkdir(parents=True, exist_ok=True)
    workarounds = nullcontext() if options.kmock_as_shipped else bench_emulator()
    with workarounds, emulated_api_server() as url, tempfile.TemporaryDirectory() as workdir:
        environment = dict(os.environ, KUBECONFIG=_kubeconfig(url, workdir))
        command = [sys.executable, "-m", "toolcall_proxy.cli", "operator", "--all-namespaces", "--liveness", ""]
        log = open(Path(options.json).with_suffix(".log"), "w")  # noqa: SIM115 - closed with the process
        operator = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(3)  # kopf's start-up: discovery and the first watch requests
            emulator = _emulator_thread()
            cpu_before = (_cpu_seconds(operator.pid), _cpu_seconds(os.getpid(), emulator), time.process_time())
            seconds, created = asyncio.run(_run(url, options.count, options.deadline))
            cpu_after = (_cpu_seconds(operator.pid), _cpu_seconds(os.getpid(), emulator), time.process_time())
            peak = _peak_rss_mb(operator.pid)
        finally:
            operator.terminate()
            operator.wait(timeout=30)
        # Reported before the emulator stops: kmock as shipped may take longer to stop than it is given.
        cpu = tuple(round(after - before, 1) for before, after in zip(cpu_before, cpu_after, strict=True))
        _report(options, seconds, created, peak, cpu)
    return 0


def _report(options: argparse.Namespace, seconds: float, created: int, peak: float, cpu: tuple[float, ...]) -> None:
    operator_cpu, emulator_cpu, bench_cpu = cpu
    result = {
        "figure": f"E operator: {options.count} ToolModels fully reconciled on the emulated API server",
        "seconds": round(seconds, 1),
        "reconciled": created,
        "operator_peak_rss_mb": round(peak, 1),
        # From the first create to the end: the operator process; the emulator's thread; this whole
        # process (the emulator plus the client that creates the ToolModels and counts children).
        "operator_cpu_seconds": operator_cpu,
        "emulator_cpu_seconds": emulator_cpu,
        "bench_process_cpu_seconds": bench_cpu,
        "kmock_workarounds": not options.kmock_as_shipped,
        "targets": {"seconds": "< 60", "operator_peak_rss_mb": "< 200"},
    }
    Path(options.json).write_text(json.dumps(result, indent=2))
    verdict = "pass" if seconds < 60 and peak < 200 else "FAIL"
    print(f"| E {options.count} ToolModels -> all children | {seconds:.1f} s ({created} reconciled) | < 60 s | ")
    print(f"| E operator peak RSS | {peak:.1f} MB | < 200 MB | {verdict}")
    print(f"| E CPU during the run: operator / emulator | {operator_cpu:.1f} s / {emulator_cpu:.1f} s | - | ")


if __name__ == "__main__":
    sys.exit(main())
