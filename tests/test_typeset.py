"""TypeSet: a type filter built once gives the same answers as the same list, on every query."""

from __future__ import annotations

import pytest
from provgraph._core import CsrGraph, TypeSet
from provgraph.bench.baselines import TightNumpyQ1
from provgraph.bench.workloads import generate_g1
from provgraph.errors import InvalidArgumentError


def test_typeset_answers_like_its_list() -> None:
    wl = generate_g1(seed=3, nodes=3000, edges=30_000, tenants=2, n_seeds=100)
    for t in wl.tenants:
        src, dst, w, et = wl.tenant_edges(t)
        ids, types = wl.tenant_nodes(t)
        g = CsrGraph.from_edges(src, dst, w, et, ids, types)
        for codes in ([0, 1, 2, 3, 4], [7], [], list(range(256))):
            ts = TypeSet(codes)
            for s in wl.seeds[t].tolist():
                assert g.topn(s, n=10, edge_types=ts, node_types=TypeSet([0, 1, 2])) == g.topn(
                    s, n=10, edge_types=codes, node_types=[0, 1, 2])
                assert g.neighborhood_size(s, edge_types=ts) == g.neighborhood_size(s, edge_types=codes)
                assert g.topdegree(s, edge_types=ts) == g.topdegree(s, edge_types=codes)
                assert g.path(s, int(ids[0]), edge_types=ts) == g.path(s, int(ids[0]), edge_types=codes)


def test_typeset_membership_and_bad_codes() -> None:
    ts = TypeSet([0, 3, 255])
    assert 3 in ts and 255 in ts and 1 not in ts and 256 not in ts and -1 not in ts
    with pytest.raises(InvalidArgumentError):
        TypeSet([256])
    with pytest.raises(TypeError):
        TypeSet(["a"])  # type: ignore[list-item]


def test_tight_numpy_baseline_is_exact() -> None:
    """The bench's tight numpy Q1 (score-bound pruning in numpy) answers as the engine does, on hubs,
    on seeds with fewer than n first hops, and with n larger than any answer."""
    wl = generate_g1(seed=5, nodes=4000, edges=40_000, tenants=3, n_seeds=300)
    for t in wl.tenants:
        src, dst, w, et = wl.tenant_edges(t)
        ids, types = wl.tenant_nodes(t)
        g = CsrGraph.from_edges(src, dst, w, et, ids, types)
        base = TightNumpyQ1(src, dst, w, et, ids)
        for s in wl.seeds[t].tolist() + ids[:50].tolist():
            for n, codes in ((10, [0, 1, 2, 3, 4]), (1, [0]), (200, list(range(8)))):
                want = [(v, round(x, 12)) for v, x in g.topn(s, n=n, edge_types=codes)]
                assert [(v, round(x, 12)) for v, x in base.topn(s, n, codes)] == want


def test_tight_numpy_baseline_keeps_a_cut_inside_its_row() -> None:
    """Weight-1 edges at the start of the next row sit exactly at a row's end in the search key; with no
    bound (too few first hops, and the best entries of each row filtered out by type) the cut of a row
    must not take them in."""
    import numpy as np

    # seed 1 -> 2 (type 0); row 2: 300 edges of type 1 at 0.9 (filtered), then 2 of type 0 at 0.1;
    # row 3, next in local id order: 3 -> 6 at weight 1.0, type 0
    src = np.array([1] + [2] * 302 + [3], dtype=np.int64)
    dst = np.array([2, *range(100, 400), 500, 501, 6], dtype=np.int64)
    w = np.array([0.5] + [0.9] * 300 + [0.1, 0.1] + [1.0], dtype=np.float32)
    et = np.array([0] + [1] * 300 + [0, 0, 0], dtype=np.uint8)
    g = CsrGraph.from_edges(src, dst, w, et)
    base = TightNumpyQ1(src, dst, w, et)
    want = g.topn(1, n=10, edge_types=[0])
    assert [v for v, _ in want] == [2, 500, 501]
    assert base.topn(1, 10, [0]) == want
