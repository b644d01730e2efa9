"""Prometheus metrics of one proxy instance."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..caching import CACHES

__all__ = ["ProxyMetrics"]


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

        self.registry.register(_CacheCollector())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


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
