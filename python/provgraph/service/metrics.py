"""Prometheus metrics of the service: request latency per route, graph counters and gauges.

Counts that only grow are counters (`_total`); levels are gauges. Counts kept by other parts
(the writer, the decision cache, the native core) are read at scrape time by a collector, so
they are exposed as counters without being copied into a gauge. Every label set is bounded."""

from __future__ import annotations

import gc
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["DECISION_REVISIONS_KEPT", "Metrics"]

# Buckets from 50 µs to 5 s: the hot paths live in the sub-millisecond range.
_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Revisions of one bundle whose decision latency series are kept: the active one and the ones
# before it, so a rollback or the decisions still in flight across an activation keep their
# series; older ones are removed, or every upload would add series to /metrics for good.
DECISION_REVISIONS_KEPT = 3
# A request's method comes from the client: any other token is counted as "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class _ReadCounters(Collector):
    """Counters whose value lives elsewhere, read at each scrape (unlabelled, or one label)."""

    def __init__(self) -> None:
        self.read: list[tuple[str, str, str | None, Callable[[], Any]]] = []

    def collect(self) -> Iterator[Metric]:
        for name, doc, label, fn in self.read:
            value = fn()
            if label is None:
                yield CounterMetricFamily(name, doc, value=value)
            else:
                family = CounterMetricFamily(name, doc, labels=[label])
                for label_value, count in sorted(value.items()):
                    family.add_metric([label_value], count)
                yield family


class _ReadGauges(Collector):
    """Gauges with one label whose values live elsewhere, read at each scrape (a bounded label set)."""

    def __init__(self) -> None:
        self.read: list[tuple[str, str, str, Callable[[], dict[str, float]]]] = []

    def collect(self) -> Iterator[Metric]:
        for name, doc, label, fn in self.read:
            family = GaugeMetricFamily(name, doc, labels=[label])
            for label_value, value in sorted(fn().items()):
                family.add_metric([label_value], value)
            yield family


class _ReadHistograms(Collector):
    """Histograms kept elsewhere as (bucket upper bounds, counts per bucket with +Inf last, sum), read
    at each scrape."""

    def __init__(self) -> None:
        self.read: list[tuple[str, str, tuple[float, ...], Callable[[], tuple[list[int], float]]]] = []

    def collect(self) -> Iterator[Metric]:
        for name, doc, bounds, fn in self.read:
            counts, total = fn()
            cumulative, acc = [], 0
            for bound, count in zip((*(repr(b) for b in bounds), "+Inf"), counts):
                acc += count
                cumulative.append((bound, acc))
            yield HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=total)


# Tenants named in the per-tenant series: the top K by harm, then CPU; the rest are summed as "other",
# so a thousand tenants cannot blow up a scrape (and only these customers are named in it).
TENANT_SERIES_TOP_K = 10


class _TenantSignals(Collector):
    """The noisy-neighbor signals per tenant (provgraph.service.scheduling), read at each scrape, with
    bounded labels: the top TENANT_SERIES_TOP_K tenants by harm then CPU, the rest as `other`."""

    def __init__(self, signals: Callable[[], dict[str, dict[str, Any]]], cpu: Callable[[], dict[str, int]]) -> None:
        self.signals, self.cpu = signals, cpu

    def collect(self) -> Iterator[Metric]:
        sig, cpu = self.signals(), self.cpu()
        tenants = set(sig) | set(cpu)
        ranked = sorted(tenants, key=lambda t: (-sig.get(t, {}).get("harm", 0.0), -cpu.get(t, 0), t))
        named = set(ranked[:TENANT_SERIES_TOP_K])

        def label(t: str) -> str:
            return t if t in named else "other"

        counters = {
            "provgraph_tenant_cpu_seconds": ("Thread CPU time of a tenant's requests (loop, pool, bulk writes)",
                                             {t: cpu.get(t, 0) / 1e9 for t in tenants}),
            "provgraph_tenant_heavy_queries": ("A tenant's queries run in the heavy-work pool",
                                               {t: s["heavy"] for t, s in sig.items()}),
            "provgraph_tenant_bulk_jobs": ("A tenant's bulk jobs (bulk writes, large batches) through the bulk gate",
                                           {t: s["bulk"] for t, s in sig.items()}),
            "provgraph_tenant_shed": ("A tenant's heavy queries and bulk jobs refused 503 (queue full or time budget)",
                                      {t: s["shed"] for t, s in sig.items()}),
            "provgraph_tenant_throttled": ("A tenant's requests answered 429 (over quota)",
                                           {t: s["throttled"] for t, s in sig.items()}),
        }
        for name, (doc, values) in counters.items():
            family = CounterMetricFamily(name, doc, labels=["tenant"])
            summed: dict[str, float] = {}
            for t, v in values.items():
                summed[label(t)] = summed.get(label(t), 0) + v
            for t, v in sorted(summed.items()):
                family.add_metric([t], v)
            yield family
        gauges = {
            "provgraph_tenant_harm": ("Share of worker time (pool, bulk jobs) a tenant used while other tenants' work waited "
                                  "(last minute)"),
            "provgraph_tenant_cpu_share": "A tenant's share of all tenants' CPU (last minute)",
            "provgraph_tenant_victim_inflation": "A tenant's request p99 now over its lowest recent p99",
        }
        for name, doc in gauges.items():
            key = name.removeprefix("provgraph_tenant_")
            gauge = GaugeMetricFamily(name, doc, labels=["tenant"])
            other = 0.0
            for t, s in sorted(sig.items()):
                if t in named:
                    gauge.add_metric([t], s[key])
                elif key != "victim_inflation":
                    other += s[key]
            if key != "victim_inflation" and len(tenants) > len(named):
                gauge.add_metric(["other"], other)
            yield gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram("provgraph_http_request_duration_seconds",
                                         "HTTP request latency by route", ["method", "route", "status"],
                                         buckets=_BUCKETS, registry=r)
        self.graph_queries = Counter("provgraph_graph_queries_total", "Graph queries", ["query", "engine"],
                                     registry=r)
        self.graph_edges_written = Counter("provgraph_graph_edges_written_total", "Edges written", registry=r)
        self.graph_nodes = Gauge("provgraph_graph_nodes", "Live nodes over all tenants", registry=r)
        self.graph_edges = Gauge("provgraph_graph_edges", "Live edges over all tenants", registry=r)
        self.graph_delta_rows = Gauge("provgraph_graph_delta_rows", "Rows in delta overlays", registry=r)
        self.graph_memory = Gauge("provgraph_graph_memory_bytes", "CSR + overlay memory", registry=r)
        self.writer_nice = Gauge("provgraph_store_writer_nice",
                                 "Nice value in effect for the writer thread (flag runtime.writer_priority)",
                                 registry=r)
        self.policy_decision_seconds = Histogram(
            "provgraph_policy_decision_duration_seconds",
            f"Decision latency by bundle, revision (the {DECISION_REVISIONS_KEPT} most recent of a bundle) and "
            "cache outcome", ["bundle", "revision", "cache"], buckets=_BUCKETS, registry=r)
        self.policy_eval_errors = Counter("provgraph_policy_eval_errors_total",
                                          "Policy evaluations that failed (decided as deny)", registry=r)
        self.policy_cache_entries = Gauge("provgraph_policy_cache_entries", "Decisions in the cache", registry=r)
        self.receipts_issued = Counter("provgraph_receipts_issued_total", "Receipts signed, chained, committed",
                                       registry=r)
        self.issuance_lag = Histogram("provgraph_receipt_issuance_lag_seconds", "issued_at - executed_at",
                                      buckets=_BUCKETS, registry=r)
        self.outbox_depth = Gauge("provgraph_receipt_outbox_depth", "Receipt intents waiting to be issued",
                                  registry=r)
        self.dlq_depth = Gauge("provgraph_receipt_dlq_depth", "Receipt intents in the dead-letter queue", registry=r)
        self.preflights_stored = Gauge("provgraph_preflights_stored",
                                       "Preflights stored (pending, executed or expired, until swept)", registry=r)
        self.preflights_swept = Counter("provgraph_preflights_swept_total",
                                        "Preflights removed after their retention", registry=r)
        self.gc_pause = Histogram("provgraph_gc_pause_seconds",
                                  "Pauses of Python's cyclic collector by generation (flag runtime.gc)",
                                  ["generation"], buckets=_BUCKETS, registry=r)
        self.gc_frozen = Gauge("provgraph_gc_frozen_objects",
                               "Objects in the collector's permanent generation (runtime.gc=frozen)", registry=r)
        self._read_counters = _ReadCounters()
        r.register(self._read_counters)
        self._read_histograms = _ReadHistograms()
        r.register(self._read_histograms)
        self._read_gauges = _ReadGauges()
        r.register(self._read_gauges)
        self._decision_children: dict[tuple[str, str, bool], Any] = {}
        self._decision_revisions: dict[str, OrderedDict[str, None]] = {}
        self._refreshers: list[Callable[[], None]] = []
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._query_children: dict[tuple[str, str], Any] = {}

    def on_scrape(self, fn: Callable[[], None]) -> None:
        """Register a function that refreshes gauges right before each scrape."""
        self._refreshers.append(fn)

    def read_tenant_signals(self, signals: Callable[[], dict[str, dict[str, Any]]],
                            cpu: Callable[[], dict[str, int]]) -> None:
        """Per-tenant signals series (bounded: top K tenants, the rest as `other`), read at each scrape."""
        self.registry.register(_TenantSignals(signals, cpu))

    def read_counter(self, name: str, doc: str, fn: Callable[[], int]) -> None:
        """Expose `fn()`, a count that only grows and is kept elsewhere, as the counter `name`_total."""
        self._read_counters.read.append((name, doc, None, fn))

    def read_counters(self, name: str, doc: str, label: str, fn: Callable[[], dict[str, int]]) -> None:
        """Like read_counter, one series per key of `fn()` (a fixed set of keys: the label stays bounded)."""
        self._read_counters.read.append((name, doc, label, fn))

    def read_gauges(self, name: str, doc: str, label: str, fn: Callable[[], dict[str, float]]) -> None:
        """One gauge series per key of `fn()` (a fixed set of keys: the label stays bounded), read at each scrape."""
        self._read_gauges.read.append((name, doc, label, fn))

    def read_histogram(self, name: str, doc: str, bounds: tuple[float, ...],
                       fn: Callable[[], tuple[list[int], float]]) -> None:
        """Expose a histogram kept elsewhere: `fn()` gives its counts per bucket of `bounds` (+Inf last,
        not cumulative) and their sum."""
        self._read_histograms.read.append((name, doc, bounds, fn))

    def render(self) -> bytes:
        for fn in self._refreshers:
            fn()
        return generate_latest(self.registry)

    def watch_collector(self) -> Callable[[], None]:
        """Time every pause of the cyclic collector (gc.callbacks) into provgraph_gc_pause_seconds and
        keep provgraph_gc_frozen_objects current; returns the function that stops watching."""
        children = [self.gc_pause.labels(str(generation)) for generation in range(3)]
        started = [0.0]

        def callback(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                children[info["generation"]].observe(time.perf_counter() - started[0])

        gc.callbacks.append(callback)
        self.on_scrape(lambda: self.gc_frozen.set(gc.get_freeze_count()))
        return lambda: gc.callbacks.remove(callback)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # labels() costs ~4 us a call (it validates and joins the label values); the children of a
        # bounded set of (method, route template, status) are kept.
        child = self._request_children.get((method, route, status))
        if child is None:
            # Kept under the label's method, not the client's: odd methods share one child and
            # do not grow this dict either.
            if method not in _METHODS:
                method = "other"
            key = (method, route, status)
            child = self._request_children.get(key)
            if child is None:
                child = self._request_children[key] = self.request_seconds.labels(method, route, str(status))
        child.observe(seconds)

    def observe_decision(self, bundle: str, revision: str, cached: bool, seconds: float) -> None:
        key = (bundle, revision, cached)
        child = self._decision_children.get(key)
        if child is None:
            child = self._decision_child(bundle, revision, cached)
        child.observe(seconds)

    def _decision_child(self, bundle: str, revision: str, cached: bool) -> Any:
        # First decision of this (bundle, revision, outcome): the revision becomes the most recent
        # of its bundle, and the series of revisions past the DECISION_REVISIONS_KEPT most recent go.
        revisions = self._decision_revisions.setdefault(bundle, OrderedDict())
        revisions[revision] = None
        revisions.move_to_end(revision)
        while len(revisions) > DECISION_REVISIONS_KEPT:
            old, _ = revisions.popitem(last=False)
            for outcome in (True, False):
                if self._decision_children.pop((bundle, old, outcome), None) is not None:
                    self.policy_decision_seconds.remove(bundle, old, "hit" if outcome else "miss")
        child = self.policy_decision_seconds.labels(bundle, revision, "hit" if cached else "miss")
        self._decision_children[(bundle, revision, cached)] = child
        return child

    def observe_issued(self, lags: list[float]) -> None:
        self.receipts_issued.inc(len(lags))
        for lag in lags:
            self.issuance_lag.observe(lag)

    def set_graph_stats(self, stats: dict[str, Any]) -> None:
        self.graph_nodes.set(stats["nodes"])
        self.graph_edges.set(stats["edges"])
        self.graph_delta_rows.set(stats["delta_rows"])
        self.graph_memory.set(stats["memory_bytes"])

    def count_query(self, kind: str, engine: str) -> None:
        # labels() costs more than the inc() that follows it; the children of the few (query kind,
        # engine) pairs are kept.
        child = self._query_children.get((kind, engine))
        if child is None:
            child = self._query_children[(kind, engine)] = self.graph_queries.labels(kind, engine)
        child.inc()
