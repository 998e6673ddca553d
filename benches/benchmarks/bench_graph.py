"""asv: in-process graph engine — Q1/Q2 p50/p95/p99 per commit on the largest G1 tenant and on the largest
tenant of G1's sparse variant, Q1 from a request body to response bytes (the native fast path vs the same
steps in Python), and CSR build time."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from .common import SPARSE_EDGES, g1_largest_tenant, latencies_us

_SAMPLES: dict[str, np.ndarray] = {}
_SPARSE_SAMPLES: dict[str, np.ndarray] = {}


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
            bodies = {s: orjson.dumps({"query": "topn", "seed": s, "hops": 2, "n": 10, "edge_types": q1})
                      for s in seeds.tolist()}

            def python_path(s: int) -> bytes:  # what /graph/query did before the fast path, validation aside
                spec = orjson.loads(bodies[s])
                rows = g.topn(spec["seed"], n=spec["n"], edge_types=spec["edge_types"])
                return orjson.dumps({"results": [{"node": v, "score": x} for v, x in rows]})

            _SAMPLES["q1_body_native"] = latencies_us(lambda s: g.query_json(bodies[s]), seeds)
            _SAMPLES["q1_body_python"] = latencies_us(python_path, seeds)

    def track_q1_topn(self, data: dict[str, Any], percentile: int) -> float:
        return float(np.percentile(_SAMPLES["q1"], percentile))

    def track_q2_neighborhood(self, data: dict[str, Any], percentile: int) -> float:
        return float(np.percentile(_SAMPLES["q2"], percentile))

    def track_q1_body_to_bytes_native(self, data: dict[str, Any], percentile: int) -> float:
        """A /graph/query body to its response bytes in one native call (CsrGraph.query_json)."""
        return float(np.percentile(_SAMPLES["q1_body_native"], percentile))

    def track_q1_body_to_bytes_python(self, data: dict[str, Any], percentile: int) -> float:
        """The baseline of the one above: orjson parse, topn, result dicts, orjson dumps."""
        return float(np.percentile(_SAMPLES["q1_body_python"], percentile))


class SparseGraphQueryTails:
    """Q1 and Q2 tails (µs, Python call included) on the largest tenant of G1 with average out-degree 4:
    fewer edges per row, so per-query set-up and row misses weigh more than on G1."""

    params = [50, 95, 99]
    param_names = ["percentile"]
    unit = "us"
    timeout = 300

    def setup_cache(self) -> dict[str, Any]:
        return g1_largest_tenant(edges=SPARSE_EDGES)

    def setup(self, data: dict[str, Any], percentile: int) -> None:
        if not _SPARSE_SAMPLES:
            g = _graph(data)
            seeds = data["seeds"]
            _SPARSE_SAMPLES["q1"] = latencies_us(lambda s: g.topn(s, n=10, edge_types=[0, 1, 2, 3, 4]), seeds)
            _SPARSE_SAMPLES["q2"] = latencies_us(lambda s: g.neighborhood_size(s, depth=3, limit=50_000), seeds)

    def track_q1_topn(self, data: dict[str, Any], percentile: int) -> float:
        return float(np.percentile(_SPARSE_SAMPLES["q1"], percentile))

    def track_q2_neighborhood(self, data: dict[str, Any], percentile: int) -> float:
        return float(np.percentile(_SPARSE_SAMPLES["q2"], percentile))


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
