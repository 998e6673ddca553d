"""Properties of the deterministic G1/G2 workload generator (provgraph.bench.workloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from provgraph.bench import workloads
from provgraph.bench.workloads import (
    GraphWorkload,
    generate_g1,
    load_npz,
    save_npz,
    write_tenant_csv,
    write_tenant_npz,
)

SMALL = {"nodes": 20_000, "edges": 200_000, "tenants": 20, "n_seeds": 2000}
ARRAY_FIELDS = ("node_ids", "node_tenant", "node_type", "src", "dst", "w", "etype", "edge_tenant")


@pytest.fixture(scope="module")
def small() -> GraphWorkload:
    return generate_g1(seed=42, **SMALL)


def assert_same(a: GraphWorkload, b: GraphWorkload) -> None:
    assert a.tenants == b.tenants
    for name in ARRAY_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.seeds.keys() == b.seeds.keys()
    for tenant in a.tenants:
        np.testing.assert_array_equal(a.seeds[tenant], b.seeds[tenant])


def test_same_seed_same_workload(small: GraphWorkload) -> None:
    assert_same(small, generate_g1(seed=42, **SMALL))


def test_different_seed_different_workload(small: GraphWorkload) -> None:
    other = generate_g1(seed=43, **SMALL)
    assert len(other.src) == len(small.src)
    assert not np.array_equal(other.src, small.src)
    assert not np.array_equal(other.node_tenant, small.node_tenant)
    assert not np.array_equal(other.w, small.w)


def test_dtypes_and_counts(small: GraphWorkload) -> None:
    assert small.tenants == [f"t{i:02d}" for i in range(20)]
    assert small.node_ids.dtype == np.int64 and len(small.node_ids) == SMALL["nodes"]
    assert len(np.unique(small.node_ids)) == SMALL["nodes"]
    assert small.node_tenant.dtype == np.int32 and small.node_type.dtype == np.uint8
    assert small.src.dtype == np.int64 and small.dst.dtype == np.int64
    assert small.w.dtype == np.float32 and small.etype.dtype == np.uint8
    assert small.edge_tenant.dtype == np.int32
    for name in ("src", "dst", "w", "etype", "edge_tenant"):
        assert len(getattr(small, name)) == SMALL["edges"], name
    assert sum(len(s) for s in small.seeds.values()) == SMALL["n_seeds"]


def test_edges_are_simple_and_inside_tenants(small: GraphWorkload) -> None:
    assert not np.any(small.src == small.dst)
    keys = small.src * SMALL["nodes"] + small.dst
    assert len(np.unique(keys)) == len(keys)
    # node_ids is 0..nodes-1, so a node's id indexes node_tenant directly.
    np.testing.assert_array_equal(small.node_ids, np.arange(SMALL["nodes"]))
    np.testing.assert_array_equal(small.node_tenant[small.src], small.edge_tenant)
    np.testing.assert_array_equal(small.node_tenant[small.dst], small.edge_tenant)


def test_value_ranges(small: GraphWorkload) -> None:
    assert small.w.min() > 0 and small.w.max() <= 1
    assert set(np.unique(small.etype).tolist()) == set(range(8))
    assert set(np.unique(small.node_type).tolist()) == set(range(10))
    # Uniform edge types: every type near 1/8 of the edges.
    shares = np.bincount(small.etype) / len(small.etype)
    assert np.all(np.abs(shares - 1 / 8) < 0.01)


def test_tenant_sizes_zipf_like(small: GraphWorkload) -> None:
    sizes = np.bincount(small.node_tenant, minlength=20)
    assert 0.3 <= sizes.max() / sizes.sum() <= 0.5
    # Smallest ~1.5k of 200k at full size, so ~0.75% here.
    assert 0.004 <= sizes.min() / sizes.sum() <= 0.012
    assert np.all(np.diff(sizes) <= 0)  # t00 is the largest
    # Edges proportional to nodes: 10 per node in every tenant.
    edges = np.bincount(small.edge_tenant, minlength=20)
    np.testing.assert_allclose(edges / sizes, 10.0, atol=0.01)
    # Tenants interleave in id space rather than occupying contiguous blocks.
    assert np.count_nonzero(np.diff(small.node_tenant)) > SMALL["nodes"] // 2


def test_seeds_belong_to_their_tenant_and_favour_hubs(small: GraphWorkload) -> None:
    sizes = np.bincount(small.node_tenant, minlength=20)
    out_degree = np.bincount(small.src, minlength=SMALL["nodes"])
    for index, tenant in enumerate(small.tenants):
        seeds = small.seeds[tenant]
        assert seeds.dtype == np.int64 and len(seeds) >= 1
        assert np.all(small.node_tenant[seeds] == index)
        assert abs(len(seeds) - SMALL["n_seeds"] * sizes[index] / sizes.sum()) <= 1
    largest = small.seeds["t00"]
    members = np.flatnonzero(small.node_tenant == 0)
    assert out_degree[largest].mean() > 2 * out_degree[members].mean()


def test_tenant_accessors(small: GraphWorkload) -> None:
    src, dst, w, etype = small.tenant_edges("t03")
    assert len(src) == np.count_nonzero(small.edge_tenant == 3)
    assert np.all(small.node_tenant[src] == 3) and np.all(small.node_tenant[dst] == 3)
    assert w.dtype == np.float32 and etype.dtype == np.uint8
    ids, types = small.tenant_nodes("t03")
    assert np.all(np.diff(ids) > 0) and len(ids) == len(types)
    np.testing.assert_array_equal(types, small.node_type[ids])
    assert set(np.unique(np.concatenate([src, dst])).tolist()) <= set(ids.tolist())
    with pytest.raises(KeyError):
        small.tenant_edges("nope")


def test_files_round_trip(small: GraphWorkload, tmp_path: Path) -> None:
    save_npz(small, tmp_path / "wl.npz")
    assert_same(small, load_npz(tmp_path / "wl.npz"))

    src, dst, w, etype = small.tenant_edges("t05")
    write_tenant_npz(small, "t05", tmp_path / "t05.npz")
    with np.load(tmp_path / "t05.npz") as data:
        assert sorted(data.files) == ["dst", "src", "type", "w"]
        np.testing.assert_array_equal(data["src"], src)
        np.testing.assert_array_equal(data["dst"], dst)
        np.testing.assert_array_equal(data["type"], etype)
        np.testing.assert_array_equal(data["w"], w)
    write_tenant_npz(small, "t05", tmp_path / "t05n.npz", with_nodes=True)
    with np.load(tmp_path / "t05n.npz") as data:
        ids, types = small.tenant_nodes("t05")
        np.testing.assert_array_equal(data["nodes"], ids)
        np.testing.assert_array_equal(data["node_types"], types)

    write_tenant_csv(small, "t05", tmp_path / "t05.csv")
    lines = (tmp_path / "t05.csv").read_text().splitlines()
    assert lines[0] == "src,dst,type,w"
    table = np.loadtxt(tmp_path / "t05.csv", delimiter=",", skiprows=1,
                       dtype=[("src", "<i8"), ("dst", "<i8"), ("type", "u1"), ("w", "<f8")])
    np.testing.assert_array_equal(table["src"], src)
    np.testing.assert_array_equal(table["dst"], dst)
    np.testing.assert_array_equal(table["type"], etype)
    np.testing.assert_array_equal(table["w"].astype(np.float32), w)  # %.9g is float32-exact


def test_tiny_and_dense_sizes_are_exact() -> None:
    # Small tenants saturate: the top-up must still reach the exact count without repeats.
    wl = generate_g1(seed=1, nodes=60, edges=800, tenants=5, n_seeds=5)
    assert len(wl.src) == 800
    keys = wl.src * 60 + wl.dst
    assert len(np.unique(keys)) == 800 and not np.any(wl.src == wl.dst)
    np.testing.assert_array_equal(wl.node_tenant[wl.src], wl.edge_tenant)
    sizes = np.bincount(wl.node_tenant, minlength=5)
    edges = np.bincount(wl.edge_tenant, minlength=5)
    assert np.all(edges <= sizes * (sizes - 1))
    assert all(len(s) == 1 for s in wl.seeds.values())
    with pytest.raises(ValueError):
        generate_g1(seed=1, nodes=10, edges=1_000, tenants=2, n_seeds=2)
    with pytest.raises(ValueError):
        generate_g1(seed=1, nodes=5, edges=0, tenants=2, n_seeds=2)


def test_default_g1_degree_shape() -> None:
    wl = generate_g1()
    assert len(wl.node_ids) == 200_000 and len(wl.src) == 2_000_000
    sizes = np.bincount(wl.node_tenant)
    assert 0.35 <= sizes.max() / sizes.sum() <= 0.45
    assert 1_200 <= sizes.min() <= 1_800
    assert sum(len(s) for s in wl.seeds.values()) == 2_000
    largest = int(np.argmax(sizes))
    src = wl.src[wl.edge_tenant == largest]
    out_degree = np.bincount(src, minlength=200_000)
    assert out_degree.max() >= 1_000
    assert 3 <= np.median(out_degree[out_degree > 0]) <= 15


@pytest.mark.parametrize("enumerable_pairs", [0, 1 << 22])
def test_top_up_fallback_completes_saturated_tenants(
    monkeypatch: pytest.MonkeyPatch, enumerable_pairs: int
) -> None:
    # Force the uniform fallback (both its enumerating and its sampling branch) right away.
    monkeypatch.setattr(workloads, "MAX_ZIPF_ROUNDS", 1)
    monkeypatch.setattr(workloads, "ENUMERABLE_PAIRS", enumerable_pairs)
    size = 30
    keys = workloads._tenant_edge_keys(np.random.default_rng(3), size, size * (size - 1))
    assert len(keys) == size * (size - 1) == len(np.unique(keys))
    assert not np.any(keys // size == keys % size)
