"""`python -m provgraph.bench fairness`: the A1 antagonist drill and the weighted run (WORKLOADS.md).

Drill: four victim tenants run Q1, Q2 and decide at their quotas; one antagonist (the tenant with
the largest graph) floods heavy Q2/Q4 (whole-tenant traversals) and bulk writes at `--flood` x its
quota. Three runs on one server, side by side: the victims alone; with the antagonist and the flags
off (scheduling.fair, admission.quota: the baseline, today's behaviour); with the antagonist and the
flags on. Verdict per victim: Q1 p99 with the flags on <= 1.5 x its solo p99 + 2 ms, no victim
errors. The antagonist's throttled and shed counts, and whether GET /v1/admin/signals names it
first, are reported.

Weighted run: three tenants with quota weights 1:2:4 each keep `--backlog` heavy queries
outstanding (closed loop); Jain's index of (CPU share / weight) over the measured window, from the
per-tenant CPU counters of /metrics, must be >= 0.95."""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from provgraph.bench.decide import decision_bodies, prepare_policy
from provgraph.bench.graph_http import GraphBench, start_loaded_server
from provgraph.bench.loadgen import Flow, FlowResult, health_flow, run
from provgraph.bench.report import format_table, write_json
from provgraph.bench.server import JsonClient
from provgraph.bench.workloads import generate_graph
from provgraph.service.scheduling import jain_index

__all__ = ["main", "tenant_cpu"]

P99_FACTOR, P99_SLACK_MS = 1.5, 2.0
JAIN_TARGET = 0.95
WEIGHTS = (1, 2, 4)
ANTAGONIST_OK = (200, 422, 429, 503)


def tenant_cpu(admin: JsonClient) -> dict[str, float]:
    """provgraph_tenant_cpu_seconds_total per tenant label, from /metrics."""
    status, _, raw = admin.raw("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    out: dict[str, float] = {}
    for line in raw.decode().splitlines():
        if line.startswith('provgraph_tenant_cpu_seconds_total{tenant="'):
            name = line.split('tenant="', 1)[1].split('"', 1)[0]
            out[name] = float(line.rsplit(" ", 1)[1])
    return out


def _flow(name: str, weight: float, reqs: list[tuple[str, str, bytes, str]],
          expect: int | tuple[int, ...] = 200) -> Flow:
    def build(i: int) -> tuple[str, str, bytes | None, dict[str, str]]:
        method, path, body, key = reqs[i % len(reqs)]
        return (method, path, body, {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})

    return Flow(name, weight, build, expect)


def _queries(bench: GraphBench, tenant: str, body_of: Any, count: int, seed: int) -> list[tuple[str, str, bytes, str]]:
    rng = np.random.default_rng(seed)
    seeds = bench.workload.seeds[tenant]
    path, key = f"/v1/tenants/{tenant}/graph/query", bench.keys[tenant]
    return [("POST", path, orjson.dumps(body_of(int(seeds[i]))), key)
            for i in rng.integers(0, len(seeds), count).tolist()]


def _bulk_writes(bench: GraphBench, tenant: str, batch: int, count: int, seed: int) -> list[tuple[str, str, bytes, str]]:
    rng = np.random.default_rng(seed)
    ids, _ = bench.workload.tenant_nodes(tenant)
    out = []
    for _ in range(count):
        src = rng.choice(ids, batch)
        dst = rng.choice(ids, batch)
        body = orjson.dumps({"src": src.tolist(), "dst": dst.tolist(), "w": [0.5] * batch})
        out.append(("POST", f"/v1/tenants/{tenant}/graph/edges", body, bench.keys[tenant]))
    return out


def q1(seed: int) -> dict[str, Any]:
    return {"query": "topn", "seed": seed, "hops": 2, "n": 10}


def q2(seed: int) -> dict[str, Any]:
    return {"query": "neighborhood", "seed": seed, "depth": 3, "limit": 50_000}


def heavy_q2(seed: int) -> dict[str, Any]:
    return {"query": "neighborhood", "seed": seed, "depth": 8, "limit": 10_000_000}


def heavy_q4(seed: int) -> dict[str, Any]:
    return {"query": "topdegree", "seed": seed, "depth": 4, "n": 10}


def _signals(admin: JsonClient) -> dict[str, dict[str, Any]]:
    return {t["tenant_id"]: t for t in admin.ok("GET", "/v1/admin/signals")["tenants"]}


def drill(bench: GraphBench, victims: list[str], antagonist: str, args: argparse.Namespace) -> dict[str, Any]:
    admin = bench.admin()
    decide_keys = prepare_policy(bench.server, victims, create=False)
    victim_rps = args.victim_q1 * 1.25 + args.victim_decide  # q1, q2 at a quarter of q1, decide
    for v in victims:
        admin.ok("PUT", f"/v1/admin/tenants/{v}/quota", {"rps": victim_rps * 1.5, "burst": int(victim_rps * 2)})
    admin.ok("PUT", f"/v1/admin/tenants/{antagonist}/quota",
             {"rps": args.antagonist_quota, "burst": int(args.antagonist_quota * 2), "weight": 1})
    victim_flows: list[Flow] = []
    for i, v in enumerate(victims):
        victim_flows.append(_flow(f"q1:{v}", args.victim_q1, _queries(bench, v, q1, 2048, 10 + i)))
        victim_flows.append(_flow(f"q2:{v}", args.victim_q1 / 4, _queries(bench, v, q2, 1024, 20 + i)))
        dec = [("POST", p, b, k) for p, b, k in decision_bodies({n: k for n, k in decide_keys.items()
                                                                 if n.startswith(v + "/")}, 1024, 0.9, seed=30 + i)]
        victim_flows.append(_flow(f"decide:{v}", args.victim_decide, dec))
    victim_flows.append(health_flow(args.victim_q1))
    flood = args.antagonist_quota * args.flood
    mix = [m.strip() for m in args.antagonist_mix.split(",") if m.strip()]
    makers = {"q2": lambda: _queries(bench, antagonist, heavy_q2, 512, 40),
              "q4": lambda: _queries(bench, antagonist, heavy_q4, 512, 41),
              "write": lambda: _bulk_writes(bench, antagonist, args.write_batch, 64, 42)}
    antagonist_flows = [_flow(f"antagonist:{m}", flood / len(mix), makers[m](), ANTAGONIST_OK) for m in mix]
    runs: dict[str, dict[str, FlowResult]] = {}
    counts: dict[str, dict[str, Any]] = {}
    ranked_first: dict[str, str | None] = {}
    for name, flows, flags in (("solo", victim_flows, "on"), ("antagonist, flags off", victim_flows + antagonist_flows,
                                                               "off"),
                               ("antagonist, flags on", victim_flows + antagonist_flows, "on")):
        bench.apply_flags({"scheduling.fair": flags, "admission.quota": flags}, restart=True)
        admin = bench.admin()
        before = _signals(admin)
        rate = sum(f.weight for f in flows)
        runs[name] = run("127.0.0.1", bench.server.port, flows, rate, args.duration, warmup_s=args.warmup,
                         max_inflight=args.max_inflight, seed=args.seed, drain_timeout_s=10.0)
        after = _signals(admin)
        ranked = admin.ok("GET", "/v1/admin/signals")["tenants"]
        ranked_first[name] = ranked[0]["tenant_id"] if ranked else None
        a0, a1 = before.get(antagonist, {}), after.get(antagonist, {})
        counts[name] = {k: a1.get(k, 0) - a0.get(k, 0) for k in ("throttled", "shed", "heavy")}
        counts[name]["harm"] = a1.get("harm", 0.0)
    rows, verdicts = [], {}
    solo = runs["solo"]
    for v in victims:
        for kind in ("q1", "q2", "decide"):
            key = f"{kind}:{v}"
            row: dict[str, Any] = {"tenant": v, "flow": kind}
            for name, res in runs.items():
                r = res[key]
                row[f"{name} p50"] = round(r.p50_ms, 2)
                row[f"{name} p99"] = round(r.p99_ms, 2)
                row[f"{name} errors"] = r.errors + r.dropped
            if kind == "q1":
                limit = P99_FACTOR * solo[key].p99_ms + P99_SLACK_MS
                on = runs["antagonist, flags on"][key]
                row["limit p99"] = round(limit, 2)
                verdicts[v] = bool(on.p99_ms <= limit and on.errors == 0 and on.dropped == 0)
                row["verdict"] = "met" if verdicts[v] else "NOT met"
            rows.append(row)
    antagonist_rows = []
    for name in ("antagonist, flags off", "antagonist, flags on"):
        res = runs[name]
        sent = sum(r.sent for f, r in res.items() if f.startswith("antagonist:"))
        antagonist_rows.append({"run": name, "sent": sent, **counts[name], "signals rank 1": ranked_first[name]})
    return {"victims": rows, "antagonist": antagonist_rows, "verdicts": verdicts,
            "antagonist_named_first": ranked_first["antagonist, flags on"] == antagonist,
            "healthz": {name: {"p50": round(res["healthz"].p50_ms, 2), "p99": round(res["healthz"].p99_ms, 2)}
                        for name, res in runs.items()},
            "runs": {name: {f: r.as_dict() for f, r in res.items()} for name, res in runs.items()}}


def weighted(bench: GraphBench, tenants: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Three tenants, weights 1:2:4, each with `backlog` heavy queries always outstanding. The server
    restarts with `--heavy-work args.weighted_heavy_work`, low enough that their whole-tenant
    traversals (graphs smaller than the server's default bar) go to the pool: the pool is what is
    being shared."""
    server = bench.server
    server.extra = [*server.extra, "--heavy-work", str(args.weighted_heavy_work)]  # the last one wins
    bench.apply_flags({"scheduling.fair": "on", "admission.quota": "on"}, restart=True)
    admin = bench.admin()
    weights = dict(zip(tenants, WEIGHTS, strict=True))
    for t, w in weights.items():
        admin.ok("PUT", f"/v1/admin/tenants/{t}/quota", {"rps": 10_000, "burst": 10_000, "weight": w,
                                                          "concurrency": 1000})
    stop = threading.Event()
    statuses: dict[str, dict[str, int]] = {t: {} for t in tenants}
    lock = threading.Lock()

    def client(t: str, i: int) -> None:
        c = JsonClient(bench.server.port, bench.keys[t])
        reqs = _queries(bench, t, heavy_q2, 64, 100 + i)
        j = 0
        while not stop.is_set():
            _, path, body, _ = reqs[j % len(reqs)]
            status, _, _ = c.raw("POST", path, body)
            with lock:
                statuses[t][str(status)] = statuses[t].get(str(status), 0) + 1
            j += 1
        c.close()

    threads = [threading.Thread(target=client, args=(t, i), daemon=True)
               for t in tenants for i in range(args.backlog)]
    for th in threads:
        th.start()
    time.sleep(args.warmup)
    before = tenant_cpu(admin)
    time.sleep(args.weighted_duration)
    after = tenant_cpu(admin)
    stop.set()
    for th in threads:
        th.join(60)
    used = {t: after.get(t, 0.0) - before.get(t, 0.0) for t in tenants}
    total = sum(used.values()) or 1.0
    share = {t: used[t] / total for t in tenants}
    index = jain_index([share[t] / weights[t] for t in tenants])
    return {"weights": weights, "cpu_seconds": {t: round(v, 3) for t, v in used.items()},
            "cpu_share": {t: round(v, 4) for t, v in share.items()},
            "ideal_share": {t: round(w / sum(WEIGHTS), 4) for t, w in weights.items()},
            "statuses": statuses, "jain_index": round(index, 4), "target": JAIN_TARGET,
            "verdict": "met" if index >= JAIN_TARGET else "NOT met"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m provgraph.bench fairness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=42, help="graph generator seed")
    p.add_argument("--nodes", type=int, default=200_000)
    p.add_argument("--edges", type=int, default=2_000_000)
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per drill run")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--victim-q1", type=float, default=40.0, help="Q1/s per victim (Q2 at a quarter of it)")
    p.add_argument("--victim-decide", type=float, default=10.0, help="decisions/s per victim")
    p.add_argument("--antagonist-quota", type=float, default=10.0, help="the antagonist's quota (rps)")
    p.add_argument("--flood", type=float, default=10.0, help="the antagonist's rate as a multiple of its quota")
    p.add_argument("--write-batch", type=int, default=500, help="edges per antagonist bulk write")
    p.add_argument("--max-inflight", type=int, default=512)
    p.add_argument("--backlog", type=int, default=12,
                   help="weighted run: heavy queries outstanding per tenant (enough that no queue runs dry "
                        "while its answers make their round trip)")
    p.add_argument("--weighted-duration", type=float, default=15.0)
    p.add_argument("--weighted-heavy-work", type=int, default=20_000,
                   help="the server's --heavy-work in the weighted run (its tenants' traversals go to the pool)")
    p.add_argument("--antagonist-mix", default="q2,q4,write",
                   help="the antagonist's flows (comma-separated: q2, q4, write), its rate split evenly")
    p.add_argument("--heavy-work", type=int, default=None,
                   help="the server's --heavy-work (default: the server's; --quick: 100000, its graphs are small)")
    p.add_argument("--server-arg", action="append", default=[],
                   help="an extra argument for `provgraph serve` (repeat; e.g. --server-arg=--pool-workers=1)")
    p.add_argument("--skip-drill", action="store_true")
    p.add_argument("--skip-weighted", action="store_true")
    p.add_argument("--quick", action="store_true", help="small graph and short runs (CI)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.nodes, args.edges = 40_000, 300_000
        args.duration, args.warmup, args.weighted_duration = 4.0, 1.0, 4.0
        if args.heavy_work is None:
            args.heavy_work = 100_000  # the antagonist's graph is 157k edges here
        args.weighted_heavy_work = min(args.weighted_heavy_work, 5000)
    wl = generate_graph(seed=args.seed, nodes=args.nodes, edges=args.edges, tenants=5,
                        n_seeds=1000)
    counts = np.bincount(wl.edge_tenant, minlength=len(wl.tenants))
    by_size = [wl.tenants[i] for i in np.argsort(-counts, kind="stable")]
    antagonist, victims = by_size[0], by_size[1:5]
    extra = [*(["--heavy-work", str(args.heavy_work)] if args.heavy_work is not None else []), *args.server_arg]
    bench = start_loaded_server(wl, extra)
    out: dict[str, Any] = {"graph": {"seed": args.seed, "nodes": args.nodes, "edges": args.edges,
                                     "tenant_edges": {t: int(counts[i]) for i, t in enumerate(wl.tenants)}},
                           "antagonist": antagonist, "victims": victims}
    ok = True
    try:
        if not args.skip_drill:
            d = drill(bench, victims, antagonist, args)
            out["drill"] = d
            print(f"A1 drill: antagonist {antagonist} ({out['graph']['tenant_edges'][antagonist]} edges) "
                  f"floods {args.antagonist_quota * args.flood:g} req/s at quota {args.antagonist_quota:g}; "
                  f"victims {', '.join(victims)}")
            print(format_table(d["victims"], list(d["victims"][0])))
            print(format_table(d["antagonist"], list(d["antagonist"][0])))
            print(f"healthz p50/p99 per run (ms): {d['healthz']}")
            print(f"signals name the antagonist first (flags on): {d['antagonist_named_first']}")
            met = all(d["verdicts"].values())
            print(f"verdict: victims' Q1 p99 <= {P99_FACTOR} x solo + {P99_SLACK_MS:g} ms with the flags on: "
                  f"{'met' if met else 'NOT met'} ({sum(d['verdicts'].values())}/{len(victims)}); "
                  f"antagonist named first: {'met' if d['antagonist_named_first'] else 'NOT met'}")
            ok = ok and met and d["antagonist_named_first"]
        if not args.skip_weighted:
            w = weighted(bench, victims[:3], args)
            out["weighted"] = w
            print(f"weighted run (weights 1:2:4, {args.backlog} heavy queries outstanding each):")
            print(format_table([{"tenant": t, "weight": w["weights"][t], "cpu s": w["cpu_seconds"][t],
                                 "share": w["cpu_share"][t], "ideal": w["ideal_share"][t],
                                 "statuses": str(w["statuses"][t])} for t in w["weights"]],
                               ["tenant", "weight", "cpu s", "share", "ideal", "statuses"]))
            print(f"Jain's index of CPU share / weight: {w['jain_index']} (target >= {JAIN_TARGET}): {w['verdict']}")
            ok = ok and w["verdict"] == "met"
    finally:
        bench.close()
    if args.json is not None:
        write_json(args.json, out)
    return 0 if ok else 1
