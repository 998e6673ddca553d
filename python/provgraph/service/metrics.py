"""Prometheus metrics of the service: request latency per route, graph counters and gauges."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

# Buckets from 50 µs to 5 s: the hot paths live in the sub-millisecond range.
_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram("provgraph_http_request_duration_seconds",
                                         "HTTP request latency by route", ["method", "route", "status"],
                                         buckets=_BUCKETS, registry=r)
        self.graph_queries = Counter("provgraph_graph_queries_total", "Graph queries", ["query", "engine"],
                                     registry=r)
        self.graph_query_seconds = Histogram("provgraph_graph_query_duration_seconds",
                                             "Graph query engine time", ["query", "engine"],
                                             buckets=_BUCKETS, registry=r)
        self.graph_edges_written = Counter("provgraph_graph_edges_written_total", "Edges written", registry=r)
        self.graph_nodes = Gauge("provgraph_graph_nodes", "Live nodes over all tenants", registry=r)
        self.graph_edges = Gauge("provgraph_graph_edges", "Live edges over all tenants", registry=r)
        self.graph_delta_rows = Gauge("provgraph_graph_delta_rows", "Rows in delta overlays", registry=r)
        self.graph_rebuilds = Gauge("provgraph_graph_snapshot_rebuilds", "Snapshot rebuilds since start",
                                    registry=r)
        self.graph_memory = Gauge("provgraph_graph_memory_bytes", "CSR + overlay memory", registry=r)
        self.writer_groups = Gauge("provgraph_store_commit_groups", "Group commits since start", registry=r)
        self.writer_jobs = Gauge("provgraph_store_commit_jobs", "Write jobs committed since start", registry=r)
        self.writer_nice = Gauge("provgraph_store_writer_nice",
                                 "Nice value in effect for the writer thread (flag runtime.writer_priority)",
                                 registry=r)
        self.policy_decision_seconds = Histogram("provgraph_policy_decision_duration_seconds",
                                                 "Decision latency by bundle, revision and cache outcome",
                                                 ["bundle", "revision", "cache"], buckets=_BUCKETS, registry=r)
        self.policy_eval_errors = Counter("provgraph_policy_eval_errors_total",
                                          "Policy evaluations that failed (decided as deny)", registry=r)
        self.policy_vm_fallbacks = Gauge("provgraph_policy_vm_fallbacks",
                                         "Evaluations the bytecode VM failed and the interpreter redid, since start",
                                         registry=r)
        self.policy_cache = Gauge("provgraph_policy_cache", "Decision cache counters", ["stat"], registry=r)
        self.policy_log_dropped = Gauge("provgraph_policy_decision_log_dropped",
                                        "Decision log entries shed because the writer fell behind", registry=r)
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
        self._refreshers: list[Callable[[], None]] = []
        self._request_children: dict[tuple[str, str, int], Any] = {}

    def on_scrape(self, fn: Callable[[], None]) -> None:
        """Register a function that refreshes gauges right before each scrape."""
        self._refreshers.append(fn)

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
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.request_seconds.labels(method, route, str(status))
        child.observe(seconds)

    def observe_issued(self, lags: list[float]) -> None:
        self.receipts_issued.inc(len(lags))
        for lag in lags:
            self.issuance_lag.observe(lag)

    def set_graph_stats(self, stats: dict[str, Any]) -> None:
        self.graph_nodes.set(stats["nodes"])
        self.graph_edges.set(stats["edges"])
        self.graph_delta_rows.set(stats["delta_rows"])
        self.graph_rebuilds.set(stats["rebuilds"])
        self.graph_memory.set(stats["memory_bytes"])

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, kept: labels() costs more than the inc() or observe() that
        follows it, on every query and decision. Kept in a dict made on first use, so the
        constructor above stays as it is; capped, since a label (a bundle revision) may change."""
        memo: dict[tuple[Any, tuple[str, ...]], Any] = self.__dict__.setdefault("_children", {})
        key = (metric, labels)
        found = memo.get(key)
        if found is None:
            if len(memo) >= 1024:
                memo.clear()
            found = memo[key] = metric.labels(*labels)
        return found
