"""asv: in-process graph engine — Q1/Q2 p50/p95/p99 per commit, and CSR build time, on the largest G1 tenant."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import g1_largest_tenant, latencies_us

_SAMPLES: dict[str, np.ndarray] = {}


def _graph(data: dict[str, Any]) -> Any:
    from provgraph._core import CsrGraph

    return CsrGraph.from_edges(data["src"], data["dst"], data["w"], data["etype"], data["ids"], data["types"])


class GraphQueryTails:
    """Tail latency of Q1 and Q2 (µs, Python call included); asv charts each percentile."""

    params = [50, 95, 99]
    param_names = ["percentile"]
    unit = "us"
    timeout = 300

    def setup_cache(self) -> dict[str, Any]:
        return g1_largest_tenant()

    def setup(self, data: dict[str, Any], percentile: int) -> None:
        if not _SAMPLES:
            g = _graph(data)
            seeds = data["seeds"]
            q1 = [0, 1, 2, 3, 4]
            _SAMPLES["q1"] = latencies_us(lambda s: g.topn(s, n=10, edge_types=q1), seeds)
            _SAMPLES["q2"] = latencies_us(lambda s: g.neighborhood_size(s, depth=3, limit=50_000), seeds)

    def track_q1_topn(self, data: dict[str, Any], percentile: int) -> float:
        return float(np.percentile(_SAMPLES["q1"], percentile))

    def track_q2_neighborhood(self, data: dict[str, Any], percentile: int) -> float:
        return float(np.percentile(_SAMPLES["q2"], percentile))


class CsrBuild:
    """Time to build the CSR snapshot of the largest G1 tenant (~800k edges)."""

    timeout = 300

    def setup_cache(self) -> dict[str, Any]:
        return g1_largest_tenant()

    def time_csr_build(self, data: dict[str, Any]) -> None:
        _graph(data)

    def track_csr_bytes_per_edge(self, data: dict[str, Any]) -> float:
        g = _graph(data)
        return float(g.memory_bytes / g.edge_count)

    track_csr_bytes_per_edge.unit = "bytes"  # type: ignore[attr-defined]
