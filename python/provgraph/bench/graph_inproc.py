"""`python -m provgraph.bench graph-inproc`: Q1–Q4 in-process on a G1-shaped graph, the Rust CSR vs the tightest
numpy we could write (Q1), igraph (Q2) and the numpy test oracle, same run; `--sweep` checks the issue's ratios on
seeds 1-5 of G1 and of a sparse variant."""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from provgraph._core import CsrGraph, TypeSet
from provgraph.bench.baselines import TightNumpyQ1
from provgraph.bench.report import format_table, percentiles_us, to_markdown, write_json
from provgraph.bench.workloads import (
    SOURCE_ZIPF_EXPONENT,
    TARGET_ZIPF_EXPONENT,
    GraphWorkload,
    edges_for_median_out_degree,
    generate_graph,
)
from provgraph.graph.reference import NumpyCsr

__all__ = ["build_engines", "main", "measure", "run_inproc", "verdict"]

Q1_TYPES = [0, 1, 2, 3, 4]
Q2_LIMIT = 50_000
BLOCK = 100  # queries per engine block


def build_engines(wl: GraphWorkload, with_igraph: bool = True) -> dict[str, Any]:
    """Per tenant: the Rust CsrGraph, the tight numpy Q1, the numpy oracle and (optionally) an igraph Graph."""
    out: dict[str, Any] = {"csr": {}, "numpy": {}, "oracle": {}, "igraph": {}, "igraph_ids": {}, "csr_build_s": 0.0}
    for t in wl.tenants:
        src, dst, w, et = wl.tenant_edges(t)
        ids, types = wl.tenant_nodes(t)
        t0 = time.perf_counter()
        out["csr"][t] = CsrGraph.from_edges(src, dst, w, et, ids, types)
        out["csr_build_s"] += time.perf_counter() - t0
        out["numpy"][t] = TightNumpyQ1(src, dst, w, et, ids)
        out["oracle"][t] = NumpyCsr.from_edges(src, dst, w, et, ids, types)
        if with_igraph:
            import igraph

            local = {int(v): i for i, v in enumerate(ids.tolist())}
            g = igraph.Graph(n=len(ids), edges=np.column_stack((np.searchsorted(ids, src), np.searchsorted(ids, dst))),
                             directed=True)
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


def _same(q: str, a: Any, b: Any) -> bool:
    if q == "Q1":  # scores are float64 products of the same float32 weights; rounding guards the last bit
        return [(v, round(x, 12)) for v, x in a] == [(v, round(x, 12)) for v, x in b]
    return bool(a == b)


def run_inproc(wl: GraphWorkload, queries: int, seed: int = 1, with_igraph: bool = True,
               queries_to_run: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")) -> dict[str, Any]:
    engines = build_engines(wl, with_igraph)
    csr, npy, ora = engines["csr"], engines["numpy"], engines["oracle"]
    ig, ig_ids = engines["igraph"], engines["igraph_ids"]
    seeds = _seed_list(wl, queries, seed)
    rng = np.random.default_rng(seed + 1)
    # Q3 targets: another seed of the same tenant
    targets = [int(rng.choice(wl.seeds[t])) for t, _ in seeds]
    q1_set = TypeSet(Q1_TYPES)  # built once, as the numpy baseline's type table is
    cases: dict[str, dict[str, Callable[[str, int, int], Any]]] = {
        "Q1": {"csr": lambda t, s, d: csr[t].topn(s, n=10, edge_types=q1_set),
               "numpy": lambda t, s, d: npy[t].topn(s, 10, Q1_TYPES),
               "oracle": lambda t, s, d: ora[t].topn(s, n=10, edge_types=Q1_TYPES)},
        "Q2": {"csr": lambda t, s, d: csr[t].neighborhood_size(s, depth=3, limit=Q2_LIMIT),
               "oracle": lambda t, s, d: ora[t].neighborhood_size(s, depth=3, limit=Q2_LIMIT)},
        "Q3": {"csr": lambda t, s, d: csr[t].path(s, d, max_depth=4),
               "oracle": lambda t, s, d: ora[t].path(s, d, max_depth=4)},
        "Q4": {"csr": lambda t, s, d: csr[t].topdegree(s, depth=2, n=10),
               "oracle": lambda t, s, d: ora[t].topdegree(s, depth=2, n=10)},
    }
    cases = {q: impls for q, impls in cases.items() if q in queries_to_run}
    if with_igraph and "Q2" in cases:
        # igraph counts the seed too and has no limit: it does at least the work Q2 asks for.
        cases["Q2"]["igraph"] = lambda t, s, d: ig[t].neighborhood_size(ig_ids[t][s], order=3, mode="out")
    report: dict[str, Any] = {"queries": queries, "csr_build_s": engines["csr_build_s"], "results": {}}
    edges = sum(g.edge_count for g in csr.values())
    report["csr_bytes_per_edge"] = sum(g.memory_bytes for g in csr.values()) / max(edges, 1)
    for q, impls in cases.items():
        # every baseline's answer against the engine's, on every measured seed, before timing
        mismatches = 0
        for (t, s), d in zip(seeds, targets):
            mine = impls["csr"](t, s, d)
            for name, fn in impls.items():
                if name == "igraph":
                    mismatches += mine != min(fn(t, s, d) - 1, Q2_LIMIT)
                elif name != "csr":
                    mismatches += not _same(q, mine, fn(t, s, d))
        stats: dict[str, Any] = {"mismatches": mismatches}
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
        for name in ("csr", "numpy", "oracle", "igraph"):
            if name not in stats:
                continue
            s = stats[name]
            ratio = stats.get(f"{name}_over_csr", {})
            rows.append({"query": q, "engine": name, "p50_us": s["p50"], "p95_us": s["p95"], "p99_us": s["p99"],
                         "max_us": s["max"], "x_p50": ratio.get("p50", 1.0), "x_p99": ratio.get("p99", 1.0),
                         "mismatches": stats["mismatches"] if name == "csr" else ""})
    return rows


COLUMNS = ["query", "engine", "p50_us", "p95_us", "p99_us", "max_us", "x_p50", "x_p99", "mismatches"]

# The targets: csr over its baseline, per query and percentile, on G1-shaped and sparse graphs.
TARGETS = {
    "g1": {("Q1", "numpy"): {"p50": 20.0, "p99": 10.0}, ("Q2", "igraph"): {"p50": 5.0, "p99": 5.0}},
    "sparse": {("Q1", "numpy"): {"p50": 12.0}, ("Q2", "igraph"): {"p50": 5.0, "p99": 5.0}},
}
SPARSE_AVG_OUT_DEGREE = 4


def verdict(report: dict[str, Any], shape: str) -> dict[str, Any]:
    """Each target of `shape` ("g1" or "sparse") against the report's ratios, with both engines'
    own p50/p99 beside every ratio (a ratio against a slow baseline would flatter). A target whose
    baseline did not run (--no-igraph) is a check not met, never one left out."""
    checks: list[dict[str, Any]] = []
    for (q, base), want in TARGETS[shape].items():
        stats = report["results"].get(q, {})
        if base not in stats:
            checks.extend({"query": q, "baseline": base, "percentile": p, "target": target, "met": False,
                           "missing": f"{base} did not run"} for p, target in want.items())
            continue
        for p, target in want.items():
            ratio = stats[f"{base}_over_csr"][p]
            checks.append({"query": q, "baseline": base, "percentile": p, "csr_us": stats["csr"][p],
                           "baseline_us": stats[base][p], "ratio": ratio, "target": target, "met": ratio >= target})
    return {"shape": shape, "checks": checks, "met": bool(checks) and all(c["met"] for c in checks)
            and sum(s["mismatches"] for s in report["results"].values()) == 0}


def median_out_degree(wl: GraphWorkload) -> float:
    """Median out-degree over every node of the workload (nodes without out-edges count as 0)."""
    index = np.searchsorted(wl.node_ids, wl.src)
    return float(np.median(np.bincount(index, minlength=len(wl.node_ids))))


def run_one(seed: int, nodes: int, edges: int, tenants: int, queries: int, with_igraph: bool,
            zipf_out: float, zipf_in: float, queries_to_run: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4"),
            ) -> dict[str, Any]:
    wl = generate_graph(seed=seed, nodes=nodes, edges=edges, tenants=tenants, zipf_out=zipf_out, zipf_in=zipf_in)
    report = run_inproc(wl, queries, seed=seed, with_igraph=with_igraph, queries_to_run=queries_to_run)
    report["workload"] = {"name": "G1-shaped", "seed": seed, "nodes": nodes, "edges": edges, "tenants": tenants,
                          "zipf_out": zipf_out, "zipf_in": zipf_in, "avg_out_degree": edges / nodes,
                          "median_out_degree": median_out_degree(wl)}
    return report


def _sweep_row(label: str, report: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
    res = report["results"]
    row: dict[str, Any] = {"graph": label, "median_deg": report["workload"]["median_out_degree"]}
    for q, base in (("Q1", "numpy"), ("Q2", "igraph")):
        if base not in res.get(q, {}):
            continue
        for p in ("p50", "p99"):
            row[f"{q}_csr_{p}"] = res[q]["csr"][p]
            row[f"{q}_{base}_{p}"] = res[q][base][p]
            row[f"{q}_x_{p}"] = res[q][f"{base}_over_csr"][p]
    row["met"] = "yes" if v["met"] else "NO"
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m provgraph.bench graph-inproc", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--nodes", type=int, default=None)
    ap.add_argument("--edges", type=int, default=None)
    ap.add_argument("--avg-out-degree", type=float, default=None, help="edges = nodes x this")
    ap.add_argument("--median-out-degree", type=float, default=None,
                    help="the edge count whose median out-degree is about this (the run prints the median it got)")
    ap.add_argument("--zipf-out", type=float, default=SOURCE_ZIPF_EXPONENT, help="source popularity exponent")
    ap.add_argument("--zipf-in", type=float, default=TARGET_ZIPF_EXPONENT, help="target popularity exponent")
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--queries", type=int, default=None)
    ap.add_argument("--no-igraph", action="store_true")
    ap.add_argument("--sweep", action="store_true",
                    help="Q1 and Q2 on seeds 1-5 of G1 and of the sparse variant (average out-degree "
                         f"{SPARSE_AVG_OUT_DEGREE}), each against the issue's targets")
    ap.add_argument("--out", default="bench-results/graph-inproc")
    a = ap.parse_args(argv)
    nodes = a.nodes or (20_000 if a.quick else 200_000)
    if a.edges is not None:
        edges = a.edges
    elif a.avg_out_degree is not None:
        edges = round(nodes * a.avg_out_degree)
    elif a.median_out_degree is not None:
        edges = edges_for_median_out_degree(a.median_out_degree, nodes, a.tenants, a.zipf_out)
    else:
        edges = nodes * 10
    queries = a.queries or (300 if a.quick else 2000)
    with_igraph = not a.no_igraph
    out = Path(a.out)
    if a.sweep:
        return _sweep(a, nodes, edges, queries, with_igraph, out)
    report = run_one(a.seed, nodes, edges, a.tenants, queries, with_igraph, a.zipf_out, a.zipf_in)
    rows = _rows(report)
    w = report["workload"]
    print(f"G1-shaped graph, seed {a.seed}: {nodes} nodes, {edges} edges, {a.tenants} tenants, zipf out {a.zipf_out} "
          f"in {a.zipf_in}, median out-degree {w['median_out_degree']:.0f}")
    print(format_table(rows, COLUMNS))
    print(f"x_* = baseline time / csr time (higher is better for csr); numpy = the tight vectorized Q1 "
          f"(bench/baselines.py), oracle = the test oracle (graph/reference.py). CSR build {report['csr_build_s']:.2f} s, "
          f"{report['csr_bytes_per_edge']:.1f} bytes/edge")
    write_json(out / "graph-inproc.json", report)
    (out / "graph-inproc.md").write_text(to_markdown(rows, COLUMNS))
    mismatches = sum(s["mismatches"] for s in report["results"].values())
    if mismatches:
        print(f"ERROR: {mismatches} results differ between csr and a baseline")
    return 1 if mismatches else 0


def _sweep(a: argparse.Namespace, nodes: int, edges: int, queries: int, with_igraph: bool, out: Path) -> int:
    sparse_edges = nodes * SPARSE_AVG_OUT_DEGREE
    runs: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for shape, shape_edges in (("g1", edges), ("sparse", sparse_edges)):
        for seed in range(1, 6):
            report = run_one(seed, nodes, shape_edges, a.tenants, queries, with_igraph, a.zipf_out, a.zipf_in,
                             queries_to_run=("Q1", "Q2"))
            v = verdict(report, shape)
            runs.append({"shape": shape, "seed": seed, "report": report, "verdict": v})
            rows.append(_sweep_row(f"{shape} seed {seed}", report, v))
            print(format_table(rows[-1:], list(rows[-1])), flush=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    print()
    print(format_table(rows, columns))
    for shape, targets in TARGETS.items():
        want = "; ".join(f"{q} vs {b} {p} >= {t:g}x" for (q, b), ps in targets.items() for p, t in ps.items())
        print(f"targets {shape}: {want}")
    met = all(r["verdict"]["met"] for r in runs)
    print(f"sweep: {sum(r['verdict']['met'] for r in runs)} of {len(runs)} graphs meet every target -> "
          f"{'met' if met else 'NOT met'}")
    write_json(out / "graph-inproc-sweep.json", {"runs": runs, "met": met})
    (out / "graph-inproc-sweep.md").write_text(to_markdown(rows, columns))
    return 0 if not any(s["mismatches"] for r in runs for s in r["report"]["results"].values()) else 1
