"""`provgraph demo`: the main job — a real server on a temp LMDB dir, G1 for 20 tenants, baseline vs optimized."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import uvloop

from provgraph.bench.actions import (
    ACTION_RATE,
    BURST,
    action_keys,
    batch_vs_single_summary,
    issuance_lag,
    lag_lines,
    p1_run,
    pauses_line,
    run_batch_vs_single,
    verdict_line,
)
from provgraph.bench.decide import decision_bodies, prepare_policy, run_decide_load
from provgraph.bench.graph_http import run_engine, start_loaded_server
from provgraph.bench.loadgen import FlowResult
from provgraph.bench.report import format_table, to_markdown, write_json
from provgraph.bench.storage import compaction_showcase, showcase_line
from provgraph.bench.workloads import generate_g1
from provgraph.flags import profile_values

__all__ = ["run_demo"]

PEAK_RPS = 300  # WORKLOADS.md P1 "current peak"
GRAPH_SHARE = 0.5  # Q1 40 % + Q2 10 % of P1
DECIDE_SHARE = 0.25  # policy decisions: 25 % of P1
HIT_RATIO = 0.9


def _improvement(before: float, after: float) -> float:
    return 100.0 * (before - after) / before if before > 0 else 0.0


def _row(label: str, b: FlowResult, a: FlowResult) -> dict[str, Any]:
    """One flow, baseline (b) vs optimized (a)."""
    return {
        "flow": label, "base_p50_ms": b.p50_ms, "base_p95_ms": b.p95_ms, "base_p99_ms": b.p99_ms,
        "opt_p50_ms": a.p50_ms, "opt_p95_ms": a.p95_ms, "opt_p99_ms": a.p99_ms,
        "p50_better_%": _improvement(b.p50_ms, a.p50_ms), "p95_better_%": _improvement(b.p95_ms, a.p95_ms),
        "p99_better_%": _improvement(b.p99_ms, a.p99_ms),
        "errors": f"{b.errors}/{a.errors}", "dropped": f"{b.dropped}/{a.dropped}",
    }


def _table(runs: dict[str, dict[str, FlowResult]]) -> list[dict[str, Any]]:
    labels = {"q1": "Q1 top-N 2-hop (lmdb→csr)", "q2": "Q2 3-hop neighborhood (lmdb→csr)",
              "healthz": "/healthz floor (graph runs)"}
    return [_row(labels[f], runs["lmdb"][f], runs["csr"][f]) for f in ("q1", "q2", "healthz")]


def _decide_table(runs: dict[str, dict[str, FlowResult]]) -> list[dict[str, Any]]:
    labels = {"decide": "/decide (cache off→on)", "healthz": "/healthz floor (decide runs)"}
    return [_row(labels[f], runs["off"][f], runs["on"][f]) for f in ("decide", "healthz")]


def _flow_result(name: str, d: dict[str, Any]) -> FlowResult:
    """A bench/actions.py result row (a P1 flow or a batch-vs-single mode) as a FlowResult."""
    return FlowResult(name, ok=d.get("ok", d.get("actions", 0)), errors=d["errors"], dropped=d["dropped"],
                      p50_ms=d["p50_ms"], p95_ms=d["p95_ms"], p99_ms=d["p99_ms"], max_ms=d["max_ms"],
                      error_samples=d["error_samples"])


def _actions_table(bvs: dict[str, Any], p1: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [_row(f"actions single (2 round trips each)→actions:batch (burst of {bvs['burst']})",
                 _flow_result("single", bvs["single"]), _flow_result("batch", bvs["batch"]))]
    labels = {"preflight_execute": "P1 preflight+execute (flags off→on)",
              "approval": "P1 approval flow, 2 approvers (flags off→on)",
              "receipt_verify": "P1 receipt read+verify (flags off→on)", "healthz": "/healthz floor (P1 runs)"}
    return rows + [_row(label, _flow_result(f, p1["baseline"][f]), _flow_result(f, p1["optimized"][f]))
                   for f, label in labels.items()]


COLUMNS = ["flow", "base_p50_ms", "base_p95_ms", "base_p99_ms", "opt_p50_ms", "opt_p95_ms", "opt_p99_ms",
           "p50_better_%", "p95_better_%", "p99_better_%", "errors", "dropped"]


def run_demo(quick: bool = False, out_dir: Path = Path("demo-results"), seed: int = 42) -> int:
    nodes, edges = (20_000, 200_000) if quick else (200_000, 2_000_000)
    rate = PEAK_RPS * GRAPH_SHARE
    duration, warmup = (5.0, 1.0) if quick else (20.0, 3.0)
    t0 = time.perf_counter()
    print(f"provgraph demo{' (quick)' if quick else ''}: G1 with {nodes:,} nodes / {edges:,} edges / 20 tenants")
    wl = generate_g1(seed=seed, nodes=nodes, edges=edges, tenants=20)
    bench = start_loaded_server(wl)
    print(f"  server on 127.0.0.1:{bench.server.port}, data in {bench.server.data_dir}")
    print(f"  loaded through the API in {bench.ingest['seconds']:.1f} s ({bench.ingest['edges_per_s']:,.0f} edges/s)")
    runs: dict[str, dict[str, FlowResult]] = {}
    decide_runs: dict[str, dict[str, FlowResult]] = {}
    decide_rate = PEAK_RPS * DECIDE_SHARE
    p1_runs: dict[str, dict[str, Any]] = {}
    p1_verdicts: dict[str, dict[str, Any]] = {}  # the P1 target (every flow's p99 vs 1.5 x /healthz p99 + 10 ms)
    p1_pauses: dict[str, dict[str, Any]] = {}  # the server's collector pauses during each P1 run
    windows: dict[str, tuple[float, float]] = {}  # P1 run -> when it ran (its receipts' issuance lag)
    bvs_duration = 3.0 if quick else duration
    try:
        for engine, label in (("lmdb", "baseline: graph.engine=lmdb"), ("csr", "optimized: graph.engine=csr")):
            print(f"  {label}: Q1 {0.8 * rate:g}/s + Q2 {0.2 * rate:g}/s open loop for {duration:g} s, "
                  f"/healthz {rate:g}/s beside it")
            runs[engine] = run_engine(bench, engine, "graph", rate, duration, warmup)
        keys = prepare_policy(bench.server, wl.tenants[:4], create=False)
        reqs = decision_bodies(keys, max(4096, int(decide_rate * (duration + warmup))), HIT_RATIO)
        for cache, label in (("off", "baseline: policy.cache=off policy.vm=off"),
                             ("on", "optimized: policy.cache=on policy.vm=on")):
            print(f"  {label}: /decide {decide_rate:g}/s ({HIT_RATIO:.0%} repeated keys) for {duration:g} s, "
                  f"/healthz {decide_rate:g}/s beside it")
            flags = {"policy.cache": cache, "policy.vm": cache}
            decide_runs[cache] = run_decide_load(bench.server, reqs, flags, decide_rate, duration, warmup)
        akeys = action_keys(bench, keys)
        base = f"http://127.0.0.1:{bench.server.port}"
        bench.apply_flags(profile_values("optimized"))
        print(f"  actions, all flags on: {ACTION_RATE} actions/s in bursts of {BURST}, each as preflight+execute "
              f"then as one actions:batch request, {bvs_duration:g} s per mode in 4 alternating segments")
        bvs = uvloop.run(run_batch_vs_single(base, akeys, ACTION_RATE, BURST, bvs_duration, warmup))
        for label in ("baseline", "optimized"):
            print(f"  {label}: P1 mix at {PEAK_RPS} req/s + /healthz {PEAK_RPS}/s for {duration:g} s "
                  f"(flags {'off' if label == 'baseline' else 'on'})")
            bench.apply_flags(profile_values(label))
            started = time.time()
            run = p1_run(base, akeys, PEAK_RPS, duration, warmup)
            p1_runs[label], p1_verdicts[label], p1_pauses[label] = run["flows"], run["verdict"], run["collector"]
            windows[f"P1 {label}"] = (started + warmup, time.time())
        issuance = issuance_lag(base, akeys, windows)
        admin = bench.server.client()
        compaction = compaction_showcase(bench.server.data_dir, admin)
        admin.close()
    finally:
        bench.close()
    rows = _table(runs) + _decide_table(decide_runs) + _actions_table(bvs, p1_runs)
    print()
    print(format_table(rows, COLUMNS))
    _, bvs_line = batch_vs_single_summary(bvs)
    iss_line = "\n".join(lag_lines(issuance))
    p1_lines = "\n".join(f"{verdict_line(f'P1 {label}', v)}\n    {pauses_line(p1_pauses[label])}"
                         for label, v in p1_verdicts.items())
    print(f"{bvs_line}; round trips per action {bvs['single']['round_trips_per_action']:.2f} vs "
          f"{bvs['batch']['round_trips_per_action']:.2f}")
    print(p1_lines)
    print(iss_line)
    compaction_line = showcase_line(compaction)
    print(compaction_line)
    report = {
        "workload": {"name": "G1", "seed": seed, "nodes": nodes, "edges": edges, "tenants": 20},
        "profile": {"name": "P1 graph share", "rate": rate, "q1_rate": 0.8 * rate, "q2_rate": 0.2 * rate,
                    "floor_rate": rate, "duration_s": duration, "warmup_s": warmup},
        "ingest": bench.ingest,
        "runs": {e: {f: r.as_dict() for f, r in res.items()} for e, res in runs.items()},
        "decide": {"rate": decide_rate, "hit_ratio": HIT_RATIO,
                   "runs": {c: {f: r.as_dict() for f, r in res.items()} for c, res in decide_runs.items()}},
        "actions": {"batch_vs_single": bvs,
                    "p1": {"rate": PEAK_RPS, "floor_rate": PEAK_RPS, "duration_s": duration, "warmup_s": warmup,
                           "runs": p1_runs, "verdicts": p1_verdicts,
                           "collector": p1_pauses},
                    "issuance": issuance},
        "receipt_compaction": compaction,
        "table": rows,
        "seconds": time.perf_counter() - t0,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "demo.json", report)
    md = ["# provgraph demo — baseline vs optimized on the P1 flows", "",
          (f"G1 seed {seed}: {nodes:,} nodes, {edges:,} edges, 20 tenants; ingest through the API "
           f"{bench.ingest['seconds']:.1f} s. Open loop, latency from intended send time; Q1 {0.8 * rate:g}/s, "
           f"Q2 {0.2 * rate:g}/s, /healthz {rate:g}/s for {duration:g} s per engine; /decide {decide_rate:g}/s with "
           f"{HIT_RATIO:.0%} repeated keys, cache and bytecode VM off then on. Actions: {ACTION_RATE} actions/s in "
           f"bursts of {BURST}, as preflight+execute pairs (baseline column) then one actions:batch request per burst "
           f"(optimized column), all flags on, {bvs_duration:g} s each in 4 alternating segments, latency per action from the burst's ready "
           f"time; then the P1 mix at {PEAK_RPS} req/s (+ /healthz {PEAK_RPS}/s) with every flag off, then on, "
           f"{duration:g} s each. Errors and drops: baseline/optimized."), "",
          to_markdown(rows, COLUMNS), "", bvs_line + ".", "",
          *(("  - " if line.startswith("    ") else "- ") + line.strip() for line in p1_lines.splitlines()), "",
          iss_line + ".", "", compaction_line + ".", ""]
    (out_dir / "demo.md").write_text("\n".join(md))
    print(f"\nwrote {out_dir / 'demo.json'} and {out_dir / 'demo.md'} ({report['seconds']:.0f} s)")
    errors = sum(r.errors for res in (runs["csr"], decide_runs["on"]) for r in res.values())
    # the actions runs: both batch-vs-single modes run with every flag on, and the optimized P1 mix
    errors += bvs["single"]["errors"] + bvs["batch"]["errors"]
    errors += sum(r["errors"] for r in p1_runs["optimized"].values())
    if compaction["tenant"] is not None and not compaction["identical_to_served"]:
        errors += 1
    return 1 if errors else 0
