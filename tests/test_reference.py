"""NumpyCsr (numpy reference for Q1-Q4) checked against a brute-force pure-Python oracle."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import igraph
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from provgraph.bench.workloads import generate_g1
from provgraph.graph.reference import DEFAULT_TOPN_EDGE_TYPES, NumpyCsr

I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
# database=None: keep the example database out of the repository checkout.
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, database=None)


# ---- brute-force oracle: dicts and exhaustive enumeration, written from docs/queries.md ----


@dataclass
class OracleGraph:
    out: dict[int, dict[int, tuple[float, int]]] = field(default_factory=dict)
    node_type: dict[int, int] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        edges: Sequence[tuple[int, int, float, int]],
        nodes: Sequence[tuple[int, int]] = (),
    ) -> OracleGraph:
        graph = cls()
        for src, dst, w, etype in edges:
            graph.node_type.setdefault(src, 0)
            graph.node_type.setdefault(dst, 0)
            graph.out.setdefault(src, {})[dst] = (w, etype)  # a rewrite replaces the pair
        for node, ntype in nodes:
            graph.node_type[node] = ntype
        return graph

    def edges_from(self, node: int, edge_types: Sequence[int] | None) -> list[tuple[int, float]]:
        return [
            (dst, w)
            for dst, (w, etype) in self.out.get(node, {}).items()
            if edge_types is None or etype in edge_types
        ]

    def reported(self, node: int, node_types: Sequence[int] | None) -> bool:
        return node_types is None or self.node_type[node] in node_types

    def require(self, node: int) -> None:
        if node not in self.node_type:
            raise KeyError(node)

    def topn(
        self,
        seed: int,
        n: int,
        hops: int,
        edge_types: Sequence[int] | None,
        node_types: Sequence[int] | None,
    ) -> list[tuple[int, float]]:
        self.require(seed)
        best: dict[int, float] = {}

        def offer(node: int, score: float) -> None:
            best[node] = max(best.get(node, score), score)

        for middle, w1 in self.edges_from(seed, edge_types):
            offer(middle, float(w1))
            if hops == 2:
                for end, w2 in self.edges_from(middle, edge_types):
                    offer(end, float(w1) * float(w2))
        ranked = sorted(
            ((node, score) for node, score in best.items()
             if node != seed and self.reported(node, node_types)),
            key=lambda item: (-item[1], item[0]),
        )
        return ranked[:n]

    def distances(self, seed: int, depth: int, edge_types: Sequence[int] | None) -> dict[int, int]:
        dist = {seed: 0}
        frontier = [seed]
        for level in range(1, depth + 1):
            following = []
            for node in frontier:
                for nxt, _ in self.edges_from(node, edge_types):
                    if nxt not in dist:
                        dist[nxt] = level
                        following.append(nxt)
            frontier = following
        return dist

    def neighborhood_size(
        self,
        seed: int,
        depth: int,
        limit: int,
        edge_types: Sequence[int] | None,
        node_types: Sequence[int] | None,
    ) -> int:
        self.require(seed)
        dist = self.distances(seed, depth, edge_types)
        count = sum(1 for node, d in dist.items() if d >= 1 and self.reported(node, node_types))
        return min(count, limit)

    def path(
        self, src: int, dst: int, max_depth: int, edge_types: Sequence[int] | None
    ) -> list[int] | None:
        self.require(src)
        self.require(dst)
        # Enumerate every walk of length 0, 1, 2, ...; the first length that reaches dst is
        # the shortest, and min() over lists is the lexicographic order.
        walks: list[list[int]] = [[src]]
        for _length in range(max_depth + 1):
            arrived = [walk for walk in walks if walk[-1] == dst]
            if arrived:
                return min(arrived)
            walks = [
                walk + [nxt] for walk in walks for nxt, _ in self.edges_from(walk[-1], edge_types)
            ]
        return None

    def path_by_distance_to_target(
        self, src: int, dst: int, max_depth: int, edge_types: Sequence[int] | None
    ) -> list[int] | None:
        """Q3 for graphs too big to enumerate: greedy smallest step that keeps the path shortest.

        A different algorithm from the reference (BFS backwards from dst instead of forward
        layers), so agreement is still an independent check.
        """
        self.require(src)
        self.require(dst)
        incoming: dict[int, list[int]] = {}
        for node in self.out:
            for nxt, _ in self.edges_from(node, edge_types):
                incoming.setdefault(nxt, []).append(node)
        to_dst = {dst: 0}
        frontier = [dst]
        while frontier:
            following = []
            for node in frontier:
                for prev in incoming.get(node, []):
                    if prev not in to_dst:
                        to_dst[prev] = to_dst[node] + 1
                        following.append(prev)
            frontier = following
        if src not in to_dst or to_dst[src] > max_depth:
            return None
        route = [src]
        while route[-1] != dst:
            here = route[-1]
            route.append(min(nxt for nxt, _ in self.edges_from(here, edge_types)
                             if to_dst.get(nxt) == to_dst[here] - 1))
        return route

    def topdegree(
        self,
        seed: int,
        depth: int,
        n: int,
        edge_types: Sequence[int] | None,
        node_types: Sequence[int] | None,
    ) -> list[tuple[int, int]]:
        self.require(seed)
        dist = self.distances(seed, depth, edge_types)
        ranked = sorted(
            ((node, len(self.out.get(node, {}))) for node, d in dist.items()
             if d >= 1 and self.reported(node, node_types)),
            key=lambda item: (-item[1], item[0]),
        )
        return ranked[:n]


# ---- random small graphs ------------------------------------------------------------------

node_ids = st.one_of(
    st.integers(-3, 12),
    st.sampled_from([I64_MIN, I64_MIN + 1, I64_MAX - 1, I64_MAX, -(1 << 40), 1 << 53]),
    st.integers(I64_MIN, I64_MAX),
)
# Few distinct weights make ties (0.5 * 0.5 == 0.25, 1.0 * x == x) common.
weights = st.one_of(
    st.sampled_from([0.25, 0.5, 1.0]),
    st.floats(min_value=1e-4, max_value=1.0).map(lambda x: float(np.float32(x))),
)
type_filters = st.one_of(st.none(), st.lists(st.integers(0, 7), max_size=5))
node_type_filters = st.one_of(st.none(), st.lists(st.integers(0, 3), min_size=1, max_size=3))


class AlwaysDense(NumpyCsr):
    """NumpyCsr forced onto its n-sized-scratch code paths (normally only for big frontiers)."""

    def _dense(self, count: int) -> bool:
        return True


ENGINES: tuple[type[NumpyCsr], ...] = (NumpyCsr, AlwaysDense)


@dataclass
class Case:
    pool: list[int]
    edges: list[tuple[int, int, float, int]]
    nodes: list[tuple[int, int]]

    def csr(self, engine: type[NumpyCsr] = NumpyCsr) -> NumpyCsr:
        src = np.array([e[0] for e in self.edges], dtype=np.int64)
        dst = np.array([e[1] for e in self.edges], dtype=np.int64)
        w = np.array([e[2] for e in self.edges], dtype=np.float32)
        etype = np.array([e[3] for e in self.edges], dtype=np.uint8)
        if not self.nodes:
            return engine.from_edges(src, dst, w, etype)
        extra = np.array([n[0] for n in self.nodes], dtype=np.int64)
        types = np.array([n[1] for n in self.nodes], dtype=np.uint8)
        return engine.from_edges(src, dst, w, etype, nodes=extra, node_types=types)

    def oracle(self) -> OracleGraph:
        return OracleGraph.build(self.edges, self.nodes)

    def query_nodes(self) -> st.SearchStrategy[int]:
        """Mostly nodes of the graph, sometimes any pool id (possibly unknown)."""
        known = sorted(self.oracle().node_type)
        if not known:
            return st.sampled_from(self.pool)
        return st.one_of(st.sampled_from(known), st.sampled_from(known), st.sampled_from(self.pool))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    # Pool ids may end up in no edge and no node list: those are the "unknown" queries.
    pool = draw(st.lists(node_ids, min_size=1, max_size=9, unique=True))
    edge = st.tuples(st.sampled_from(pool), st.sampled_from(pool), weights, st.integers(0, 7))
    # An explicit size: hypothesis' own list sizes skew small, leaving few 2-4 hop paths.
    edge_count = draw(st.integers(0, 4 * len(pool) + 4))
    edges = draw(st.lists(edge, min_size=edge_count, max_size=edge_count))
    # Repeat some pairs with new weight/type to exercise last-write-wins.
    if edges:
        rewrites = draw(st.lists(st.sampled_from(edges), max_size=4))
        edges += [(s, d, draw(weights), draw(st.integers(0, 7))) for s, d, _, _ in rewrites]
    nodes = draw(st.lists(st.tuples(st.sampled_from(pool), st.integers(0, 3)), max_size=12))
    return Case(pool, edges, nodes)


def outcome(call: Callable[..., object], *args: object) -> object:
    """The result of a query, or KeyError if it raised one (compared between engines)."""
    try:
        return call(*args)
    except KeyError:
        return KeyError


@PROPERTY_SETTINGS
@given(case=cases(), data=st.data())
def test_topn_matches_oracle(case: Case, data: st.DataObject) -> None:
    seed = data.draw(case.query_nodes())
    n = data.draw(st.integers(0, 12))
    hops = data.draw(st.sampled_from([1, 2]))
    edge_types = data.draw(type_filters)
    node_types = data.draw(node_type_filters)
    oracle = case.oracle()
    expected = outcome(oracle.topn, seed, n, hops, edge_types, node_types)
    for engine in ENGINES:
        got = outcome(case.csr(engine).topn, seed, n, hops, edge_types, node_types)
        assert got == expected  # exact float equality: both compute float64(w1) * float64(w2)


@PROPERTY_SETTINGS
@given(case=cases(), data=st.data())
def test_neighborhood_size_matches_oracle(case: Case, data: st.DataObject) -> None:
    seed = data.draw(case.query_nodes())
    depth = data.draw(st.integers(0, 4))
    limit = data.draw(st.sampled_from([0, 1, 2, 3, 5, 50_000]))
    edge_types = data.draw(type_filters)
    node_types = data.draw(node_type_filters)
    oracle = case.oracle()
    expected = outcome(oracle.neighborhood_size, seed, depth, limit, edge_types, node_types)
    for engine in ENGINES:
        csr = case.csr(engine)
        got = outcome(csr.neighborhood_size, seed, depth, limit, edge_types, node_types)
        assert got == expected


@PROPERTY_SETTINGS
@given(case=cases(), data=st.data())
def test_path_matches_oracle(case: Case, data: st.DataObject) -> None:
    src = data.draw(case.query_nodes())
    dst = data.draw(case.query_nodes())
    max_depth = data.draw(st.integers(0, 4))
    edge_types = data.draw(type_filters)
    oracle = case.oracle()
    expected = outcome(oracle.path, src, dst, max_depth, edge_types)
    for engine in ENGINES:
        got = outcome(case.csr(engine).path, src, dst, max_depth, edge_types)
        assert got == expected
    # The faster oracle used on generated tenants below must agree with enumeration too.
    assert outcome(oracle.path_by_distance_to_target, src, dst, max_depth, edge_types) == expected


@PROPERTY_SETTINGS
@given(case=cases(), data=st.data())
def test_topdegree_matches_oracle(case: Case, data: st.DataObject) -> None:
    seed = data.draw(case.query_nodes())
    depth = data.draw(st.integers(0, 3))
    n = data.draw(st.integers(0, 12))
    edge_types = data.draw(type_filters)
    node_types = data.draw(node_type_filters)
    oracle = case.oracle()
    expected = outcome(oracle.topdegree, seed, depth, n, edge_types, node_types)
    for engine in ENGINES:
        got = outcome(case.csr(engine).topdegree, seed, depth, n, edge_types, node_types)
        assert got == expected


# ---- hand-written cases ---------------------------------------------------------------------


def small_graph() -> NumpyCsr:
    # 1 -> 2 (0.5), 1 -> 3 (1.0), 2 -> 4 (0.5), 3 -> 4 (0.25), 3 -> 1 (1.0), 4 -> 5 (type 6)
    return NumpyCsr.from_edges(
        np.array([1, 1, 2, 3, 3, 4], dtype=np.int64),
        np.array([2, 3, 4, 4, 1, 5], dtype=np.int64),
        np.array([0.5, 1.0, 0.5, 0.25, 1.0, 0.9], dtype=np.float32),
        np.array([0, 0, 1, 2, 0, 6], dtype=np.uint8),
        nodes=np.array([9, 2], dtype=np.int64),
        node_types=np.array([3, 7], dtype=np.uint8),
    )


def test_topn_worked_example() -> None:
    csr = small_graph()
    # 4 is reached via 2 (0.25) and via 3 (0.25): a tie between paths, one entry.
    assert csr.topn(1) == [(3, 1.0), (2, 0.5), (4, 0.25)]
    assert csr.topn(1, n=2) == [(3, 1.0), (2, 0.5)]
    assert csr.topn(1, hops=1) == [(3, 1.0), (2, 0.5)]
    assert csr.topn(1, node_types=[7]) == [(2, 0.5)]
    # The type-6 edge 4 -> 5 is outside the default {0..4}; with all types it is 2 hops from 3.
    # 3 -> 1 -> 3 does not make the seed a candidate; 3 -> 1 -> 2 is a path through 1.
    assert csr.topn(3) == [(1, 1.0), (2, 0.5), (4, 0.25)]
    with_all_types = [(1, 1.0), (2, 0.5), (4, 0.25), (5, 0.25 * float(np.float32(0.9)))]
    assert csr.topn(3, edge_types=None) == with_all_types
    assert csr.topn(9) == []  # a node without out-edges
    assert csr.topn(5) == []


def test_default_topn_edge_types_follow_workloads() -> None:
    assert DEFAULT_TOPN_EDGE_TYPES == (0, 1, 2, 3, 4)


def test_other_queries_worked_example() -> None:
    csr = small_graph()
    assert csr.neighborhood_size(1) == 4  # 3, 2 | 4 | 5
    assert csr.neighborhood_size(1, depth=1) == 2
    assert csr.neighborhood_size(1, limit=3) == 3
    assert csr.neighborhood_size(1, edge_types=[0, 1, 2]) == 3
    assert csr.neighborhood_size(1, node_types=[7]) == 1
    assert csr.path(1, 4) == [1, 2, 4]  # [1, 3, 4] is as short but larger
    assert csr.path(3, 5) == [3, 4, 5]
    assert csr.path(3, 5, max_depth=1) is None
    assert csr.path(3, 5, edge_types=[0, 1, 2]) is None
    assert csr.path(9, 9) == [9]
    assert csr.path(5, 1) is None
    # Total out-degree counts every type: 3 has 2, 1 has 2, 4 has 1 (its type-6 edge).
    assert csr.topdegree(3, edge_types=[0]) == [(1, 2), (2, 1)]
    assert csr.topdegree(1) == [(3, 2), (2, 1), (4, 1)]
    assert csr.topdegree(1, n=1, node_types=[0]) == [(3, 2)]


def test_unknown_nodes_raise_key_error() -> None:
    csr = small_graph()
    for missing in (0, 6, -1, I64_MAX, I64_MIN, 1 << 70):
        assert not csr.has_node(missing)
        with pytest.raises(KeyError):
            csr.topn(missing)
        with pytest.raises(KeyError):
            csr.neighborhood_size(missing)
        with pytest.raises(KeyError):
            csr.topdegree(missing)
        with pytest.raises(KeyError):
            csr.path(missing, 1)
        with pytest.raises(KeyError):
            csr.path(1, missing)
    assert csr.has_node(9) and csr.has_node(5)


def test_duplicate_edges_last_write_wins() -> None:
    csr = NumpyCsr.from_edges(
        np.array([7, 7, 7, 7], dtype=np.int64),
        np.array([8, 9, 8, 8], dtype=np.int64),
        np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32),
        np.array([1, 1, 5, 2], dtype=np.uint8),
    )
    assert csr.edge_count == 2
    last_weights = [(8, float(np.float32(0.4))), (9, float(np.float32(0.2)))]
    assert csr.topn(7, edge_types=None) == last_weights
    assert csr.topn(7, edge_types=[5]) == []  # the type-5 version of 7 -> 8 was overwritten


def test_extreme_ids() -> None:
    src = np.array([I64_MIN, I64_MAX, -5], dtype=np.int64)
    dst = np.array([I64_MAX, -5, I64_MIN], dtype=np.int64)
    csr = NumpyCsr.from_edges(src, dst, np.ones(3, dtype=np.float32), np.zeros(3, dtype=np.uint8))
    assert csr.topn(I64_MIN) == [(-5, 1.0), (I64_MAX, 1.0)]  # tie: smaller id first
    assert csr.path(I64_MIN, -5) == [I64_MIN, I64_MAX, -5]
    assert csr.topdegree(I64_MAX, depth=3) == [(I64_MIN, 1), (-5, 1)]


def test_argument_validation() -> None:
    csr = small_graph()
    with pytest.raises(ValueError):
        csr.topn(1, hops=3)
    with pytest.raises(ValueError):
        NumpyCsr.from_edges([1], [2, 3], [1.0], [0])
    empty = NumpyCsr.from_edges([], [], [], [])
    assert empty.node_count == 0
    with pytest.raises(KeyError):
        empty.topn(0)


# ---- a generated tenant: oracle for Q1 and igraph for Q2/Q3 distances ----------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_generated_tenant_against_oracle_and_igraph(engine: type[NumpyCsr]) -> None:
    wl = generate_g1(seed=7, nodes=6_000, edges=60_000, tenants=4, n_seeds=200)
    tenant = wl.tenants[1]
    src, dst, w, etype = wl.tenant_edges(tenant)
    ids, types = wl.tenant_nodes(tenant)
    csr = engine.from_edges(src, dst, w, etype, nodes=ids, node_types=types)
    oracle = OracleGraph.build(
        [(int(s), int(d), float(x), int(t)) for s, d, x, t in zip(src, dst, w, etype)],
        [(int(i), int(t)) for i, t in zip(ids, types)],
    )
    local = {int(node): index for index, node in enumerate(ids)}
    g = igraph.Graph(n=len(ids), edges=[(local[int(s)], local[int(d)]) for s, d in zip(src, dst)],
                     directed=True)
    seeds = [int(s) for s in wl.seeds[tenant][:40]]
    for seed, target in zip(seeds, reversed(seeds)):
        assert csr.topn(seed) == oracle.topn(seed, 10, 2, DEFAULT_TOPN_EDGE_TYPES, None)
        expected = oracle.topn(seed, 25, 2, DEFAULT_TOPN_EDGE_TYPES, [1, 2])
        assert csr.topn(seed, n=25, node_types=[1, 2]) == expected
        assert csr.topdegree(seed) == oracle.topdegree(seed, 2, 10, None, None)
        reach = g.neighborhood(local[seed], order=3, mode="out", mindist=1)
        assert csr.neighborhood_size(seed) == len(reach)
        path = csr.path(seed, target)
        assert path == oracle.path_by_distance_to_target(seed, target, 4, None)
        assert csr.path(seed, target, edge_types=[0, 1, 2]) == oracle.path_by_distance_to_target(
            seed, target, 4, [0, 1, 2])
        hops = g.distances(local[seed], local[target], mode="out")[0][0]
        if path is None:
            assert hops > 4
        else:
            assert len(path) - 1 == hops
