"""Q1–Q4 are identical on the csr engine (snapshot and overlay), the lmdb engine and the numpy reference."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from provgraph._core import CsrGraph
from provgraph.bench.workloads import GraphWorkload, generate_g1
from provgraph.graph.bulk import bulk_load
from provgraph.graph.lmdb_engine import LmdbGraphEngine
from provgraph.graph.model import EdgeBatch, NodeBatch
from provgraph.graph.reference import NumpyCsr
from provgraph.graph.storage import GraphTables
from provgraph.store import Store

Q1_TYPES = [0, 1, 2, 3, 4]


def _rounded(rows: list[tuple[int, float]]) -> list[tuple[int, float]]:
    return [(v, round(s, 12)) for v, s in rows]


def _seeds(wl: GraphWorkload, t: str, count: int) -> list[int]:
    """Workload seeds (hot nodes), the top hubs, and nodes without out-edges."""
    src, _, _, _ = wl.tenant_edges(t)
    ids, _ = wl.tenant_nodes(t)
    deg = np.zeros(len(ids), dtype=np.int64)
    np.add.at(deg, np.searchsorted(ids, src), 1)
    hubs = ids[np.argsort(-deg, kind="stable")[:5]]
    sinks = ids[deg == 0][:5]
    return sorted(set(wl.seeds[t][:count].tolist()) | set(hubs.tolist()) | set(sinks.tolist()))


def _check_tenant(wl: GraphWorkload, t: str, num: int, lmdb: LmdbGraphEngine, count: int) -> int:
    src, dst, w, et = wl.tenant_edges(t)
    ids, types = wl.tenant_nodes(t)
    snapshot = CsrGraph.from_edges(src, dst, w, et, ids, types)
    overlay = CsrGraph.empty()  # the same graph, written in batches into the delta overlay
    overlay.upsert_nodes(ids, types)
    for s in range(0, len(src), 7_919):
        e = slice(s, s + 7_919)
        overlay.upsert_edges(src[e], dst[e], w[e], et[e])
    assert overlay.delta_rows > 0 and overlay.edge_count == snapshot.edge_count == len(src)
    ref = NumpyCsr.from_edges(src, dst, w, et, ids, types)
    seeds = _seeds(wl, t, count)
    rng = np.random.default_rng(num)
    checked = 0
    for seed in seeds:
        target = int(rng.choice(seeds))
        want: dict[str, Any] = {
            "topn": _rounded(ref.topn(seed, n=10, edge_types=Q1_TYPES)),
            "topn1": _rounded(ref.topn(seed, n=5, hops=1, edge_types=None)),
            "nb": ref.neighborhood_size(seed, depth=3, limit=50_000),
            "nb_small": ref.neighborhood_size(seed, depth=2, limit=100, edge_types=[1, 3], node_types=[2, 5]),
            "path": ref.path(seed, target, max_depth=4),
            "deg": ref.topdegree(seed, depth=2, n=10),
        }
        for g in (snapshot, overlay):
            got = {
                "topn": _rounded(g.topn(seed, n=10, edge_types=Q1_TYPES)),
                "topn1": _rounded(g.topn(seed, n=5, hops=1)),
                "nb": g.neighborhood_size(seed, depth=3, limit=50_000),
                "nb_small": g.neighborhood_size(seed, depth=2, limit=100, edge_types=[1, 3], node_types=[2, 5]),
                "path": g.path(seed, target, max_depth=4),
                "deg": g.topdegree(seed, depth=2, n=10),
            }
            assert got == want, (t, seed)
        got_lmdb = {
            "topn": _rounded(lmdb.topn(num, seed, n=10, edge_types=frozenset(Q1_TYPES))[0]),
            "topn1": _rounded(lmdb.topn(num, seed, n=5, hops=1)[0]),
            "nb": lmdb.neighborhood_size(num, seed, depth=3, limit=50_000)[0],
            "nb_small": lmdb.neighborhood_size(num, seed, depth=2, limit=100, edge_types=frozenset([1, 3]),
                                               node_types=frozenset([2, 5]))[0],
            "path": lmdb.path(num, seed, target, max_depth=4)[0],
            "deg": lmdb.topdegree(num, seed, depth=2, n=10)[0],
        }
        assert got_lmdb == want, (t, seed)
        checked += 1
    return checked


def _run(tmp_path: Path, wl: GraphWorkload, per_tenant: int) -> int:
    store = Store(tmp_path / "data", sync=False)
    tables = GraphTables(store.dbs)
    try:
        checked = 0
        for num, t in enumerate(wl.tenants, start=1):
            ids, types = wl.tenant_nodes(t)
            store.write_direct(partial(tables.put_nodes, tenant=num, batch=NodeBatch(ids, types, [b""] * len(ids))))
            src, dst, w, et = wl.tenant_edges(t)
            bulk_load(store, num, EdgeBatch(src, dst, w, et))
            checked += _check_tenant(wl, t, num, LmdbGraphEngine(tables, store.env), per_tenant)
        return checked
    finally:
        store.close()


def test_engines_identical_on_small_g1(tmp_path: Path) -> None:
    wl = generate_g1(seed=3, nodes=12_000, edges=120_000, tenants=5, n_seeds=2000)
    assert _run(tmp_path, wl, per_tenant=300) >= 500


@pytest.mark.slow
def test_engines_identical_on_g1(tmp_path: Path) -> None:
    wl = generate_g1()
    assert _run(tmp_path, wl, per_tenant=30) >= 500
