"""`python -m provgraph.bench graph-inproc`: Q1–Q4 in-process on G1, Rust CSR vs numpy CSR vs igraph, same run."""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from provgraph._core import CsrGraph
from provgraph.bench.report import format_table, percentiles_us, to_markdown, write_json
from provgraph.bench.workloads import GraphWorkload, generate_g1
from provgraph.graph.reference import NumpyCsr

__all__ = ["build_engines", "main", "measure"]

Q1_TYPES = [0, 1, 2, 3, 4]
BLOCK = 100  # queries per engine block


def build_engines(wl: GraphWorkload, with_igraph: bool = True) -> dict[str, Any]:
    """Per tenant: the Rust CsrGraph, the numpy reference CSR and (optionally) an igraph Graph."""
    out: dict[str, Any] = {"csr": {}, "numpy": {}, "igraph": {}, "igraph_ids": {}, "csr_build_s": 0.0}
    for t in wl.tenants:
        src, dst, w, et = wl.tenant_edges(t)
        ids, types = wl.tenant_nodes(t)
        t0 = time.perf_counter()
        out["csr"][t] = CsrGraph.from_edges(src, dst, w, et, ids, types)
        out["csr_build_s"] += time.perf_counter() - t0
        out["numpy"][t] = NumpyCsr.from_edges(src, dst, w, et, ids, types)
        if with_igraph:
            import igraph

            local = {int(v): i for i, v in enumerate(ids.tolist())}
            g = igraph.Graph(n=len(ids), edges=list(zip(np.searchsorted(ids, src).tolist(),
                                                        np.searchsorted(ids, dst).tolist())), directed=True)
            out["igraph"][t] = g
            out["igraph_ids"][t] = local
    return out


def measure(calls: list[Callable[[], Any]]) -> np.ndarray:
    """Wall time of each call in ns, Python call included; GC off while measuring."""
    times = np.empty(len(calls), dtype=np.int64)
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i, fn in enumerate(calls):
            t0 = clock()
            fn()
            times[i] = clock() - t0
    finally:
        gc.enable()
    return times


def _seed_list(wl: GraphWorkload, count: int, seed: int) -> list[tuple[str, int]]:
    pairs = [(t, int(s)) for t in wl.tenants for s in wl.seeds[t].tolist()]
    rng = np.random.default_rng(seed)
    return [pairs[i] for i in rng.integers(0, len(pairs), size=count).tolist()]


def run_inproc(wl: GraphWorkload, queries: int, seed: int = 1, with_igraph: bool = True) -> dict[str, Any]:
    engines = build_engines(wl, with_igraph)
    csr, npy, ig, ig_ids = engines["csr"], engines["numpy"], engines["igraph"], engines["igraph_ids"]
    seeds = _seed_list(wl, queries, seed)
    rng = np.random.default_rng(seed + 1)
    # Q3 targets: another seed of the same tenant
    targets = [int(rng.choice(wl.seeds[t])) for t, _ in seeds]
    cases: dict[str, dict[str, Callable[[str, int, int], Any]]] = {
        "Q1": {"csr": lambda t, s, d: csr[t].topn(s, n=10, edge_types=Q1_TYPES),
               "numpy": lambda t, s, d: npy[t].topn(s, n=10, edge_types=Q1_TYPES)},
        "Q2": {"csr": lambda t, s, d: csr[t].neighborhood_size(s, depth=3, limit=50_000),
               "numpy": lambda t, s, d: npy[t].neighborhood_size(s, depth=3, limit=50_000)},
        "Q3": {"csr": lambda t, s, d: csr[t].path(s, d, max_depth=4),
               "numpy": lambda t, s, d: npy[t].path(s, d, max_depth=4)},
        "Q4": {"csr": lambda t, s, d: csr[t].topdegree(s, depth=2, n=10),
               "numpy": lambda t, s, d: npy[t].topdegree(s, depth=2, n=10)},
    }
    if with_igraph:
        # igraph counts the seed too and has no limit: an upper bound on the work Q2 asks for.
        cases["Q2"]["igraph"] = lambda t, s, d: ig[t].neighborhood_size(ig_ids[t][s], order=3, mode="out")
    report: dict[str, Any] = {"queries": queries, "csr_build_s": engines["csr_build_s"], "results": {}}
    edges = sum(g.edge_count for g in csr.values())
    report["csr_bytes_per_edge"] = sum(g.memory_bytes for g in csr.values()) / max(edges, 1)
    for q, impls in cases.items():
        # equality check on every measured seed (csr vs numpy) before timing
        mismatches = sum(1 for (t, s), d in zip(seeds, targets)
                         if impls["csr"](t, s, d) != impls["numpy"](t, s, d)) if q != "Q1" else sum(
            1 for (t, s), d in zip(seeds, targets)
            if [(v, round(x, 12)) for v, x in impls["csr"](t, s, d)]
            != [(v, round(x, 12)) for v, x in impls["numpy"](t, s, d)])
        stats: dict[str, Any] = {"mismatches_csr_vs_numpy": mismatches}
        # Each engine runs blocks of consecutive queries (its working set stays warm, as in a
        # server), and blocks alternate between engines so machine noise hits all of them alike.
        samples: dict[str, list[np.ndarray]] = {name: [] for name in impls}
        work = list(zip(seeds, targets))
        for start in range(0, len(work), BLOCK):
            block = work[start:start + BLOCK]
            names = list(impls) if (start // BLOCK) % 2 == 0 else list(reversed(impls))
            for name in names:
                fn = impls[name]
                samples[name].append(measure([partial(fn, t, s, d) for (t, s), d in block]))
        for name, parts in samples.items():
            stats[name] = percentiles_us(np.concatenate(parts))
        for base in impls:
            if base == "csr":
                continue
            stats[f"{base}_over_csr"] = {p: stats[base][p] / stats["csr"][p] for p in ("p50", "p95", "p99")}
        report["results"][q] = stats
    return report


def _rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for q, stats in report["results"].items():
        for name in ("csr", "numpy", "igraph"):
            if name not in stats:
                continue
            s = stats[name]
            ratio = stats.get(f"{name}_over_csr", {})
            rows.append({"query": q, "engine": name, "p50_us": s["p50"], "p95_us": s["p95"], "p99_us": s["p99"],
                         "max_us": s["max"], "x_p50": ratio.get("p50", 1.0), "x_p99": ratio.get("p99", 1.0),
                         "mismatches": stats["mismatches_csr_vs_numpy"] if name == "numpy" else ""})
    return rows


COLUMNS = ["query", "engine", "p50_us", "p95_us", "p99_us", "max_us", "x_p50", "x_p99", "mismatches"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m provgraph.bench graph-inproc", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--nodes", type=int, default=None)
    ap.add_argument("--edges", type=int, default=None)
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--queries", type=int, default=None)
    ap.add_argument("--no-igraph", action="store_true")
    ap.add_argument("--out", default="bench-results/graph-inproc")
    a = ap.parse_args(argv)
    nodes = a.nodes or (20_000 if a.quick else 200_000)
    edges = a.edges or (200_000 if a.quick else 2_000_000)
    queries = a.queries or (300 if a.quick else 2000)
    wl = generate_g1(seed=a.seed, nodes=nodes, edges=edges, tenants=a.tenants)
    report = run_inproc(wl, queries, with_igraph=not a.no_igraph)
    report["workload"] = {"name": "G1", "seed": a.seed, "nodes": nodes, "edges": edges, "tenants": a.tenants}
    rows = _rows(report)
    print(format_table(rows, COLUMNS))
    print(f"x_* = baseline time / csr time (higher is better for csr). CSR build {report['csr_build_s']:.2f} s, "
          f"{report['csr_bytes_per_edge']:.1f} bytes/edge")
    out = Path(a.out)
    write_json(out / "graph-inproc.json", report)
    (out / "graph-inproc.md").write_text(to_markdown(rows, COLUMNS))
    mismatches = sum(s["mismatches_csr_vs_numpy"] for s in report["results"].values())
    if mismatches:
        print(f"ERROR: {mismatches} results differ between csr and numpy")
    return 1 if mismatches else 0
