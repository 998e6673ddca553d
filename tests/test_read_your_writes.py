"""Read-your-writes: after every acknowledged write, both engines answer exactly as a model of the graph does."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from provgraph.graph.manager import GraphManager
from provgraph.graph.model import DeleteBatch, EdgeBatch, NodeBatch
from provgraph.graph.reference import NumpyCsr
from provgraph.store import Store, Writer

NODE = st.integers(min_value=-3, max_value=12)
WEIGHT = st.sampled_from([0.25, 0.5, 1.0, 0.3, 0.9])
EDGE = st.tuples(NODE, NODE, WEIGHT, st.integers(0, 3))
OP = st.one_of(
    st.tuples(st.just("edges"), st.lists(EDGE, min_size=1, max_size=8)),
    st.tuples(st.just("nodes"), st.lists(st.tuples(NODE, st.integers(0, 2)), min_size=1, max_size=3)),
    st.tuples(st.just("del_edges"), st.lists(st.tuples(NODE, NODE), min_size=1, max_size=4)),
    st.tuples(st.just("del_nodes"), st.lists(NODE, min_size=1, max_size=2)),
)


class Model:
    """The graph as plain dicts: the meaning of every write, per docs/queries.md."""

    def __init__(self) -> None:
        self.nodes: dict[int, int] = {}
        self.edges: dict[tuple[int, int], tuple[float, int]] = {}

    def apply(self, op: tuple[str, Any]) -> None:
        kind, items = op
        if kind == "edges":
            for s, d, w, t in items:
                self.nodes.setdefault(s, 0)
                self.nodes.setdefault(d, 0)
                self.edges[(s, d)] = (w, t)
        elif kind == "nodes":
            for n, t in items:
                self.nodes[n] = t
        elif kind == "del_edges":
            for s, d in items:
                self.edges.pop((s, d), None)
        else:
            for n in items:
                if self.nodes.pop(n, None) is not None:
                    self.edges = {k: v for k, v in self.edges.items() if n not in k}

    def reference(self) -> NumpyCsr:
        keys = list(self.edges)
        return NumpyCsr.from_edges(
            np.array([k[0] for k in keys], dtype=np.int64), np.array([k[1] for k in keys], dtype=np.int64),
            np.array([self.edges[k][0] for k in keys], dtype=np.float32),
            np.array([self.edges[k][1] for k in keys], dtype=np.uint8),
            np.array(list(self.nodes), dtype=np.int64), np.array(list(self.nodes.values()), dtype=np.uint8))


def _submit(gm: GraphManager, op: tuple[str, Any]) -> None:
    kind, items = op
    if kind == "edges":
        a = np.array([(s, d) for s, d, _, _ in items], dtype=np.int64)
        batch = EdgeBatch(a[:, 0].copy(), a[:, 1].copy(), np.array([i[2] for i in items], dtype=np.float32),
                          np.array([i[3] for i in items], dtype=np.uint8))
        gm.write_edges(1, batch).result()
    elif kind == "nodes":
        gm.write_nodes(1, NodeBatch(np.array([n for n, _ in items], dtype=np.int64),
                                    np.array([t for _, t in items], dtype=np.uint8), [b""] * len(items))).result()
    elif kind == "del_edges":
        a = np.array(items, dtype=np.int64)
        gm.delete(1, DeleteBatch(np.zeros(0, dtype=np.int64), a[:, 0].copy(), a[:, 1].copy())).result()
    else:
        z = np.zeros(0, dtype=np.int64)
        gm.delete(1, DeleteBatch(np.array(items, dtype=np.int64), z, z)).result()


def _answers(run: Any, nodes: list[int]) -> list[Any]:
    out = []
    for seed in nodes:
        for spec in ({"query": "topn", "seed": seed, "n": 4},
                     {"query": "topn", "seed": seed, "hops": 1, "n": 3, "edge_types": [0, 2]},
                     {"query": "neighborhood", "seed": seed, "depth": 2, "node_types": [0, 1]},
                     {"query": "path", "src": seed, "dst": nodes[0]},
                     {"query": "topdegree", "seed": seed, "n": 3}):
            out.append(run(spec))
    return out


def _ref_answer(ref: NumpyCsr, spec: dict[str, Any]) -> Any:
    q = spec["query"]
    if q == "topn":
        return {"results": [{"node": v, "score": s} for v, s in
                            ref.topn(spec["seed"], n=spec["n"], hops=spec.get("hops", 2),
                                     edge_types=spec.get("edge_types"))]}
    if q == "neighborhood":
        return {"count": ref.neighborhood_size(spec["seed"], depth=spec["depth"], node_types=spec["node_types"])}
    if q == "path":
        return {"path": ref.path(spec["src"], spec["dst"])}
    return {"results": [{"node": v, "degree": d} for v, d in ref.topdegree(spec["seed"], n=spec["n"])]}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OP, min_size=1, max_size=25))
def test_every_acknowledged_write_is_visible(ops: list[tuple[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp), sync=False)
        writer = Writer(store)
        # a tiny rebuild threshold: snapshots are rebuilt and swapped in the background mid-sequence
        gm = GraphManager(store, writer, rebuild_min_delta=6, rebuild_fraction=0.0)
        gm.load_tenant(1)
        model = Model()
        try:
            for op in ops:
                _submit(gm, op)
                model.apply(op)
                nodes = sorted(model.nodes)
                if not nodes:
                    continue
                ref = model.reference()
                want = [_ref_answer(ref, s) for s in _answers(lambda s: s, nodes)]
                for engine in ("csr", "lmdb"):
                    got = _answers(lambda s, e=engine: gm.query(1, s, e), nodes)
                    assert got == want, (engine, op)
            # after a restart (snapshot loaded from LMDB) the answers are the same
            gm2 = GraphManager(store, writer)
            gm2.load_tenant(1)
            if model.nodes:
                nodes = sorted(model.nodes)
                assert _answers(lambda s: gm2.query(1, s, "csr"), nodes) == \
                    _answers(lambda s: gm.query(1, s, "csr"), nodes)
            gm2.close()
        finally:
            gm.close()
            writer.close()
            store.close()
