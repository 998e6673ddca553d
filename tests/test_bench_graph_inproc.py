"""python -m provgraph.bench graph-inproc: exact baselines, the verdict against the issue's targets, the sweep."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from provgraph.bench import graph_inproc
from provgraph.bench.workloads import edges_for_median_out_degree, generate_graph


def test_median_out_degree_calibration_lands_near_the_target() -> None:
    for target in (3, 7, 12):
        edges = edges_for_median_out_degree(target, nodes=20_000, tenants=5)
        wl = generate_graph(seed=2, nodes=20_000, edges=edges, tenants=5, n_seeds=50)
        assert abs(graph_inproc.median_out_degree(wl) - target) <= 1.5, (target, edges)


def test_zipf_exponents_shape_the_degrees() -> None:
    flat = generate_graph(seed=1, nodes=5000, edges=50_000, tenants=1, n_seeds=10, zipf_out=0.1)
    skewed = generate_graph(seed=1, nodes=5000, edges=50_000, tenants=1, n_seeds=10, zipf_out=1.0)
    def max_deg(wl: object) -> int:
        return int(np.bincount(wl.src).max())  # type: ignore[attr-defined]
    assert max_deg(skewed) > 3 * max_deg(flat)
    # the defaults are G1's: the same graph as before the parameters existed
    a = generate_graph(seed=4, nodes=3000, edges=20_000, tenants=3, n_seeds=30)
    b = generate_graph(seed=4, nodes=3000, edges=20_000, tenants=3, n_seeds=30, zipf_out=0.6, zipf_in=0.75)
    assert np.array_equal(a.src, b.src) and np.array_equal(a.dst, b.dst)


def test_run_checks_every_baseline_answer_and_reports_ratios(tmp_path: Path) -> None:
    rc = graph_inproc.main(["--nodes", "3000", "--edges", "30000", "--tenants", "3", "--queries", "60",
                            "--seed", "3", "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "graph-inproc.json").read_text())
    assert set(report["results"]) == {"Q1", "Q2", "Q3", "Q4"}
    for q, stats in report["results"].items():
        assert stats["mismatches"] == 0, q
        assert stats["csr"]["p50"] > 0
    assert {"numpy", "oracle"} <= set(report["results"]["Q1"])
    assert "igraph_over_csr" in report["results"]["Q2"]


def test_sweep_covers_five_seeds_of_both_shapes(tmp_path: Path) -> None:
    rc = graph_inproc.main(["--sweep", "--nodes", "2000", "--tenants", "2", "--queries", "40", "--out", str(tmp_path)])
    assert rc == 0
    sweep = json.loads((tmp_path / "graph-inproc-sweep.json").read_text())
    runs = sweep["runs"]
    assert [(r["shape"], r["seed"]) for r in runs] == [(s, k) for s in ("g1", "sparse") for k in range(1, 6)]
    for r in runs:
        w = r["report"]["workload"]
        assert w["avg_out_degree"] == (10 if r["shape"] == "g1" else graph_inproc.SPARSE_AVG_OUT_DEGREE)
        checks = r["verdict"]["checks"]
        assert {(c["query"], c["percentile"]) for c in checks} >= {("Q1", "p50"), ("Q2", "p50"), ("Q2", "p99")}
        for c in checks:  # each ratio carries both sides' own figures
            assert c["ratio"] == c["baseline_us"] / c["csr_us"]
            assert c["met"] == (c["ratio"] >= c["target"])
    assert sweep["met"] == all(r["verdict"]["met"] for r in runs)


def test_a_target_whose_baseline_did_not_run_is_not_met() -> None:
    wl = generate_graph(seed=1, nodes=1500, edges=15_000, tenants=2, n_seeds=30)
    report = graph_inproc.run_inproc(wl, 30, with_igraph=False, queries_to_run=("Q1", "Q2"))
    v = graph_inproc.verdict(report, "g1")
    missing = [c for c in v["checks"] if "missing" in c]
    assert {(c["query"], c["percentile"]) for c in missing} == {("Q2", "p50"), ("Q2", "p99")}
    assert not v["met"]
