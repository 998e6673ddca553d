"""Seeded benchmark data shared by the asv suite: the largest G1 tenant and its query seeds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

SEED = 42
QUERIES = 1000
# G1's sparse variant (average out-degree 4 instead of 10), as graph-inproc --sweep runs it
SPARSE_EDGES = 800_000


def g1_largest_tenant(seed: int = SEED, edges: int = 2_000_000) -> dict[str, Any]:
    """Arrays of the largest tenant of G1 (as the generator makes it, with `edges` in all) plus its
    query seeds."""
    from provgraph.bench.workloads import generate_g1

    wl = generate_g1(seed=seed, edges=edges)
    t = wl.largest_tenant()
    src, dst, w, et = wl.tenant_edges(t)
    ids, types = wl.tenant_nodes(t)
    rng = np.random.default_rng(seed)
    seeds = rng.choice(wl.seeds[t], size=QUERIES).astype(np.int64)
    return {"src": src, "dst": dst, "w": w, "etype": et, "ids": ids, "types": types, "seeds": seeds}


def latencies_us(fn: Callable[[int], Any], seeds: np.ndarray) -> np.ndarray:
    """Per-call latency in µs, Python call included."""
    out = np.empty(len(seeds))
    clock = time.perf_counter_ns
    for i, s in enumerate(seeds.tolist()):
        t0 = clock()
        fn(s)
        out[i] = (clock() - t0) / 1e3
    return out
