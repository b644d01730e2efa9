"""Prometheus metrics of one proxy instance."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..caching import CACHES

__all__ = ["QUEUES", "ProxyMetrics", "RequestLoad", "Waiting"]

# What a request can wait for inside the proxy, before it goes to the engine: the one thread that
# checks tools lists not seen before (a flood of new schemas queues there), and the engine's first
# answer on how it takes a constraint (``GET /version``), asked once. The upstream pool has no
# limit, so nothing waits for a connection.
QUEUES = ("tools_check", "engine_version")


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "toolmodel_proxy_requests",
            "Requests answered, by route kind and HTTP status",
            ["kind", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "toolmodel_proxy_request_duration_seconds",
            "Time from request to the end of the response",
            ["kind"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.tool_calls = Counter(
            "toolmodel_proxy_tool_calls", "Tool calls parsed from model output", ["dialect"], registry=self.registry
        )
        self.parse_failures = Counter(
            "toolmodel_proxy_parse_failures",
            "Model output that looked like a tool call but failed to parse or validate",
            ["dialect", "reason"],
            registry=self.registry,
        )
        self.unconstrained = Counter(
            "toolmodel_proxy_unconstrained",
            "Requests whose tool calls should have been constrained at decode time but were not, by why: "
            "the engine cannot (engine), the family's markers cannot be named (dialect), the engine refused (refused)",
            ["dialect", "reason"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "toolmodel_proxy_upstream_errors", "Failed upstream requests", ["reason"], registry=self.registry
        )

        self.load = RequestLoad()
        self.registry.register(_CacheCollector())
        self.registry.register(_LoadCollector(self.load))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestLoad:
    """The requests the proxy holds now, for an autoscaler. Plain counts: they change only on the
    event loop's thread, once per request, and are read when /metrics is asked."""

    __slots__ = ("in_flight", "queued")

    def __init__(self) -> None:
        self.in_flight = 0  # from a request's arrival until its response ended or its client left
        self.queued = dict.fromkeys(QUEUES, 0)

    def waiting(self, queue: str) -> Waiting:
        """A request starts waiting in ``queue``; it stops when the token's ``leave`` is called."""
        self.queued[queue] += 1
        return Waiting(self, queue)


class Waiting:
    """One request's wait in one queue. ``leave`` may be called more than once (when its turn comes
    and again when it is done): only the first counts, so the gauge never goes below zero."""

    __slots__ = ("_load", "_queue")

    def __init__(self, load: RequestLoad, queue: str) -> None:
        self._load: RequestLoad | None = load
        self._queue = queue

    def leave(self) -> None:
        if self._load is not None:
            self._load.queued[self._queue] -= 1
            self._load = None


class _LoadCollector(Collector):
    """The request load, read when /metrics is asked."""

    def __init__(self, load: RequestLoad) -> None:
        self._load = load

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "toolmodel_proxy_requests_in_flight",
            "Requests being answered, from arrival until the response (a stream too) has ended or the client "
            "went away; the probes' /health and /metrics are not counted",
            value=self._load.in_flight,
        )
        queued = GaugeMetricFamily(
            "toolmodel_proxy_requests_queued",
            "Requests held in the proxy before they go to the engine, by what they wait for: the thread that "
            "checks tools lists not seen before (tools_check), the engine's first answer on its version "
            "(engine_version)",
            labels=["waiting_for"],
        )
        for queue, count in self._load.queued.items():
            queued.add_metric([queue], count)
        yield queued


class _CacheCollector(Collector):
    """Each bounded cache's size, read when /metrics is asked."""

    def collect(self) -> Iterator[Metric]:
        entries = GaugeMetricFamily("toolmodel_proxy_cache_entries", "Entries held, by cache", labels=["cache"])
        held = GaugeMetricFamily(
            "toolmodel_proxy_cache_bytes", "Estimated bytes held (keys and what was made of them)", labels=["cache"]
        )
        evicted = CounterMetricFamily(
            "toolmodel_proxy_cache_evictions", "Entries dropped to stay within the bounds", labels=["cache"]
        )
        for cache in CACHES:
            entries.add_metric([cache.name], len(cache))
            held.add_metric([cache.name], cache.bytes)
            evicted.add_metric([cache.name], cache.evictions)
        yield from (entries, held, evicted)
