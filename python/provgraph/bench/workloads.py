"""Deterministic generators for the G1/G2 multi-tenant graph workloads (see WORKLOADS.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "GraphWorkload",
    "edges_for_median_out_degree",
    "generate_g1",
    "generate_g2",
    "generate_graph",
    "load_npz",
    "save_npz",
    "write_tenant_csv",
    "write_tenant_npz",
]

# Tenant sizes follow size(rank) ∝ rank^-1.33: with 20 tenants the largest holds ~40% of
# the nodes and the smallest ~0.75% (1.5k of 200k), as WORKLOADS.md asks.
TENANT_SIZE_EXPONENT = 1.33
# Popularity exponents inside a tenant: out-degree max in the thousands, median ~7.
SOURCE_ZIPF_EXPONENT = 0.6
TARGET_ZIPF_EXPONENT = 0.75
# Every tenant needs a few nodes so that it can hold edges (no self loops) and seeds.
MIN_TENANT_NODES = 3
NODE_TYPE_COUNT = 10
EDGE_TYPE_COUNT = 8
# Rounds of popularity-biased sampling before the top-up falls back to uniform pairs;
# only tiny, nearly complete tenants ever get that far.
MAX_ZIPF_ROUNDS = 40
# Tenants with at most this many ordered pairs fill the last gaps by enumerating them.
ENUMERABLE_PAIRS = 1 << 22

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class GraphWorkload:
    """One generated multi-tenant graph: nodes, edges and per-tenant query seeds."""

    tenants: list[str]
    node_ids: NDArray[np.int64]  # global ids; tenants interleaved in id space
    node_tenant: NDArray[np.int32]  # index into `tenants`, per node
    node_type: NDArray[np.uint8]  # 0..9
    src: NDArray[np.int64]  # global node ids
    dst: NDArray[np.int64]
    w: NDArray[np.float32]  # in (0, 1]
    etype: NDArray[np.uint8]  # 0..7
    edge_tenant: NDArray[np.int32]
    seeds: dict[str, NDArray[np.int64]]  # per tenant, drawn with prob ∝ out-degree + 1

    def tenant_index(self, tenant: str) -> int:
        try:
            return self.tenants.index(tenant)
        except ValueError:
            raise KeyError(tenant) from None

    def tenant_edges(
        self, tenant: str
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32], NDArray[np.uint8]]:
        """(src, dst, w, etype) of the edges of one tenant."""
        mask = self.edge_tenant == self.tenant_index(tenant)
        return self.src[mask], self.dst[mask], self.w[mask], self.etype[mask]

    def tenant_nodes(self, tenant: str) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
        """(ids, types) of the nodes of one tenant, ids ascending."""
        mask = self.node_tenant == self.tenant_index(tenant)
        ids = self.node_ids[mask]
        order = np.argsort(ids, kind="stable")
        return ids[order], self.node_type[mask][order]

    def largest_tenant(self) -> str:
        counts = np.bincount(self.node_tenant, minlength=len(self.tenants))
        return self.tenants[int(np.argmax(counts))]


def _split_proportional(
    total: int, weights: NDArray[np.float64], minimum: int, caps: IntArray | None = None
) -> IntArray:
    """Integer split of `total` ∝ `weights` (largest remainder), each part in [minimum, cap].

    Parts whose share falls outside the bounds are pinned to the bound and the rest is
    re-split among the others, so unconstrained parts stay proportional to each other.
    """
    parts = len(weights)
    limit = np.full(parts, np.iinfo(np.int64).max, dtype=np.int64) if caps is None else caps
    over_capacity = caps is not None and int(caps.sum()) < total
    if np.any(limit < minimum) or minimum * parts > total or over_capacity:
        raise ValueError(f"cannot split {total} into {parts} parts within the bounds")
    alloc = np.zeros(parts, dtype=np.int64)
    pinned = np.zeros(parts, dtype=np.bool_)
    while True:
        free = ~pinned
        exact = np.zeros(parts, dtype=np.float64)
        exact[free] = (total - int(alloc[pinned].sum())) * weights[free] / weights[free].sum()
        below = free & (exact < minimum)
        above = free & (exact > limit)
        if below.any():
            alloc[below], pinned[below] = minimum, True
            continue
        if above.any():
            alloc[above], pinned[above] = limit[above], True
            continue
        break
    alloc[free] = np.floor(exact[free]).astype(np.int64)
    leftover = total - int(alloc.sum())
    # The free parts' fractional parts sum to `leftover` and are each < 1, so the
    # `leftover` largest are positive and a +1 keeps every part within its cap.
    by_fraction = np.argsort(-(exact - np.floor(exact)), kind="stable")
    alloc[by_fraction[:leftover]] += 1
    return alloc


def _zipf_cdf(size: int, exponent: float) -> NDArray[np.float64]:
    weights = np.arange(1, size + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return cdf


def _draw_ranks(rng: np.random.Generator, cdf: NDArray[np.float64], count: int) -> IntArray:
    ranks = np.searchsorted(cdf, rng.random(count), side="right").astype(np.int64)
    # Float rounding can leave cdf[-1] a hair below a draw; clamp rather than overflow.
    return np.minimum(ranks, len(cdf) - 1)


def _first_occurrences(keys: IntArray) -> IntArray:
    """Distinct keys in order of first appearance (so truncation keeps an unbiased sample)."""
    _, first = np.unique(keys, return_index=True)
    first.sort()
    return keys[first]


def _tenant_edge_keys(rng: np.random.Generator, size: int, count: int,
                      zipf_out: float = SOURCE_ZIPF_EXPONENT, zipf_in: float = TARGET_ZIPF_EXPONENT) -> IntArray:
    """`count` distinct pair keys src_rank * size + dst_rank, no self loops, Zipf by rank."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    src_cdf = _zipf_cdf(size, zipf_out)
    dst_cdf = _zipf_cdf(size, zipf_in)
    keys = np.zeros(0, dtype=np.int64)
    # Hub-to-hub pairs repeat, so oversample a little and then top up the shortfall.
    draw = int(count * 1.15) + 16
    for _ in range(MAX_ZIPF_ROUNDS):
        src = _draw_ranks(rng, src_cdf, draw)
        dst = _draw_ranks(rng, dst_cdf, draw)
        distinct = src != dst
        before = len(keys)
        keys = _first_occurrences(np.concatenate([keys, src[distinct] * size + dst[distinct]]))
        if len(keys) >= count:
            return keys[:count]
        # Size the next round from this round's yield of new pairs.
        yield_rate = max((len(keys) - before) / draw, 0.02)
        draw = int((count - len(keys)) / yield_rate * 1.2) + 16
    return _fill_uniform(rng, size, count, keys)


def _fill_uniform(rng: np.random.Generator, size: int, count: int, keys: IntArray) -> IntArray:
    """Complete a nearly saturated tenant with uniformly chosen missing pairs."""
    pairs = size * (size - 1)
    if pairs <= ENUMERABLE_PAIRS:
        everything = np.arange(size * size, dtype=np.int64)
        everything = everything[everything // size != everything % size]
        missing = np.setdiff1d(everything, keys, assume_unique=True)
        chosen = rng.choice(missing, size=count - len(keys), replace=False)
        return np.concatenate([keys, chosen])
    while len(keys) < count:
        draw = 2 * (count - len(keys)) + 16
        src = rng.integers(0, size, draw, dtype=np.int64)
        dst = rng.integers(0, size, draw, dtype=np.int64)
        distinct = src != dst
        keys = _first_occurrences(np.concatenate([keys, src[distinct] * size + dst[distinct]]))
    return keys[:count]


def generate_graph(
    seed: int = 42,
    nodes: int = 200_000,
    edges: int = 2_000_000,
    tenants: int = 20,
    n_seeds: int = 2000,
    zipf_out: float = SOURCE_ZIPF_EXPONENT,
    zipf_in: float = TARGET_ZIPF_EXPONENT,
) -> GraphWorkload:
    """Generate a G1-shaped multi-tenant graph of any size (deterministic in `seed`); `zipf_out` /
    `zipf_in` are the popularity exponents of sources and targets inside a tenant."""
    if tenants < 1:
        raise ValueError("tenants must be >= 1")
    if nodes < MIN_TENANT_NODES * tenants:
        raise ValueError(f"nodes must be >= {MIN_TENANT_NODES} per tenant")
    if edges < 0:
        raise ValueError("edges must be >= 0")
    if n_seeds < tenants:
        raise ValueError("n_seeds must be >= tenants (every tenant gets at least one seed)")

    # Independent streams per purpose/tenant keep each part stable if another changes.
    global_seq, *tenant_seqs = np.random.SeedSequence(seed).spawn(tenants + 1)
    rng = np.random.default_rng(global_seq)

    rank_weights = np.arange(1, tenants + 1, dtype=np.float64) ** -TENANT_SIZE_EXPONENT
    tenant_sizes = _split_proportional(nodes, rank_weights, MIN_TENANT_NODES)
    edge_caps = tenant_sizes * (tenant_sizes - 1)
    if edges > int(edge_caps.sum()):
        raise ValueError(f"{edges} edges do not fit without duplicates or self loops")
    tenant_edge_counts = _split_proportional(
        edges, tenant_sizes.astype(np.float64), 0, edge_caps
    )
    tenant_seed_counts = _split_proportional(n_seeds, tenant_sizes.astype(np.float64), 1)

    width = max(2, len(str(tenants - 1)))
    names = [f"t{i:0{width}d}" for i in range(tenants)]

    # A random permutation of the id space dealt out in consecutive slices interleaves the
    # tenants; each slice is also in random order, so it doubles as popularity rank → node.
    id_permutation = rng.permutation(nodes).astype(np.int64)
    node_ids = np.arange(nodes, dtype=np.int64)
    node_tenant = np.empty(nodes, dtype=np.int32)
    node_type = rng.integers(0, NODE_TYPE_COUNT, nodes, dtype=np.uint8)

    src_parts: list[IntArray] = []
    dst_parts: list[IntArray] = []
    seeds: dict[str, IntArray] = {}
    offset = 0
    for index, name in enumerate(names):
        size = int(tenant_sizes[index])
        rank_to_node = id_permutation[offset : offset + size]
        offset += size
        node_tenant[rank_to_node] = index
        tenant_rng = np.random.default_rng(tenant_seqs[index])
        keys = _tenant_edge_keys(tenant_rng, size, int(tenant_edge_counts[index]), zipf_out, zipf_in)
        src_rank, dst_rank = keys // size, keys % size
        src_parts.append(rank_to_node[src_rank])
        dst_parts.append(rank_to_node[dst_rank])
        # Hot nodes are queried more, as in production: P(seed) ∝ out-degree + 1.
        popularity = np.bincount(src_rank, minlength=size).astype(np.float64) + 1.0
        picked = tenant_rng.choice(
            size, size=int(tenant_seed_counts[index]), p=popularity / popularity.sum()
        )
        seeds[name] = rank_to_node[picked]

    src = np.concatenate(src_parts)
    dst = np.concatenate(dst_parts)
    # 1 - U[0, 1) lies in (0, 1]; float32 throughout so the stored value is the generated one.
    w = np.float32(1.0) - rng.random(edges, dtype=np.float32)
    etype = rng.integers(0, EDGE_TYPE_COUNT, edges, dtype=np.uint8)
    edge_tenant = np.repeat(np.arange(tenants, dtype=np.int32), tenant_edge_counts)
    return GraphWorkload(
        tenants=names,
        node_ids=node_ids,
        node_tenant=node_tenant,
        node_type=node_type,
        src=src,
        dst=dst,
        w=w,
        etype=etype,
        edge_tenant=edge_tenant,
        seeds=seeds,
    )


def edges_for_median_out_degree(median: float, nodes: int = 200_000, tenants: int = 20,
                                zipf_out: float = SOURCE_ZIPF_EXPONENT) -> int:
    """The edge count at which G1's generator gives a median out-degree of about `median`.

    A node of popularity rank r in a tenant of size S with E edges expects E * p(r) out-edges,
    p the Zipf(`zipf_out`) law over 1..S, and tenants get edges in proportion to their size: so
    the median of those expectations over all nodes grows linearly with the edge count. The
    generated graph's own median (an integer, and duplicates are drawn again) is close to it:
    the graph-inproc bench prints the median it got."""
    if median <= 0:
        raise ValueError("median out-degree must be > 0")
    rank_weights = np.arange(1, tenants + 1, dtype=np.float64) ** -TENANT_SIZE_EXPONENT
    sizes = _split_proportional(nodes, rank_weights, MIN_TENANT_NODES)
    expected = []
    for size in sizes.tolist():
        p = np.arange(1, size + 1, dtype=np.float64) ** -zipf_out
        expected.append(size / nodes * p / p.sum())  # per edge of the whole graph
    per_edge = float(np.median(np.concatenate(expected)))
    return round(median / per_edge)


def generate_g1(
    seed: int = 42,
    nodes: int = 200_000,
    edges: int = 2_000_000,
    tenants: int = 20,
    n_seeds: int = 2000,
) -> GraphWorkload:
    """G1: 20 tenants, 200k nodes, 2M edges, 2,000 seeds (sizes overridable)."""
    return generate_graph(seed=seed, nodes=nodes, edges=edges, tenants=tenants, n_seeds=n_seeds)


def generate_g2(seed: int = 42) -> GraphWorkload:
    """G2: the G1 shape at 1M nodes, 10M edges, 50 tenants (scale check)."""
    return generate_graph(seed=seed, nodes=1_000_000, edges=10_000_000, tenants=50, n_seeds=5000)


def save_npz(wl: GraphWorkload, path: str | os.PathLike[str]) -> None:
    """Write a whole workload to one .npz file (read back with `load_npz`)."""
    # Typed as Any so that mypy does not match the spread against savez's `allow_pickle`.
    arrays: dict[str, Any] = {
        "tenants": np.array(wl.tenants, dtype=np.str_),
        "node_ids": wl.node_ids,
        "node_tenant": wl.node_tenant,
        "node_type": wl.node_type,
        "src": wl.src,
        "dst": wl.dst,
        "w": wl.w,
        "etype": wl.etype,
        "edge_tenant": wl.edge_tenant,
    }
    arrays.update({f"seeds_{name}": wl.seeds[name] for name in wl.tenants})
    np.savez(path, **arrays)


def load_npz(path: str | os.PathLike[str]) -> GraphWorkload:
    """Read a workload written by `save_npz`."""
    with np.load(path, allow_pickle=False) as data:
        names = [str(name) for name in data["tenants"]]
        return GraphWorkload(
            tenants=names,
            node_ids=data["node_ids"],
            node_tenant=data["node_tenant"],
            node_type=data["node_type"],
            src=data["src"],
            dst=data["dst"],
            w=data["w"],
            etype=data["etype"],
            edge_tenant=data["edge_tenant"],
            seeds={name: data[f"seeds_{name}"] for name in names},
        )


def write_tenant_csv(wl: GraphWorkload, tenant: str, path: str | os.PathLike[str]) -> None:
    """One tenant's edges as CSV with header `src,dst,type,w` (bulk-loader input)."""
    src, dst, w, etype = wl.tenant_edges(tenant)
    table = np.empty(len(src), dtype=[("src", "<i8"), ("dst", "<i8"), ("type", "u1"), ("w", "<f8")])
    table["src"], table["dst"], table["type"], table["w"] = src, dst, etype, w
    # %.9g round-trips every float32 exactly, so a reload yields the same weights.
    np.savetxt(path, table, fmt=["%d", "%d", "%d", "%.9g"], delimiter=",",
               header="src,dst,type,w", comments="")


def write_tenant_npz(
    wl: GraphWorkload, tenant: str, path: str | os.PathLike[str], with_nodes: bool = False
) -> None:
    """One tenant's edges as .npz with keys `src`, `dst`, `type`, `w` (bulk-loader input).

    `with_nodes` also stores `nodes` (int64 ids) and `node_types` (uint8), so a loader can
    restore node types, which edge rows do not carry.
    """
    src, dst, w, etype = wl.tenant_edges(tenant)
    if with_nodes:
        ids, types = wl.tenant_nodes(tenant)
        np.savez(path, src=src, dst=dst, type=etype, w=w, nodes=ids, node_types=types)
    else:
        np.savez(path, src=src, dst=dst, type=etype, w=w)
