"""`python -m provgraph.bench decide`: policy decisions in-process and over HTTP, cache on vs off."""

from __future__ import annotations

import argparse
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from provgraph._core import DecisionCache, PolicyBundle, canonical_hash, canonical_hashes
from provgraph.bench.loadgen import Flow, FlowResult, health_flow, run, side_by_side
from provgraph.bench.report import format_table, percentiles_us, to_markdown, write_json
from provgraph.bench.server import ServerProcess, pin_to_core
from provgraph.policy.bundle import load_example_bundle, parse_bundle

__all__ = ["decision_bodies", "main", "prepare_policy", "run_decide_load", "start_policy_server"]

ROLES = [("analyst",), ("viewer",), ("operator",), ("analyst", "cleared"), ("security",)]
ACTIONS = [("graph.read", "graph"), ("graph.query", "graph"), ("graph.write", "graph"), ("export.create", "export"),
           ("graph.delete", "graph"), ("key.rotate", "key"), ("deploy", "service")]


def policy_input(rng: np.random.Generator, tenant: str, unique: bool = False) -> dict[str, Any]:
    action, rtype = ACTIONS[int(rng.integers(len(ACTIONS)))]
    attributes: dict[str, Any] = {"classification": "restricted" if rng.random() < 0.2 else "internal",
                                  "owner": f"team-{int(rng.integers(5))}"}
    context: dict[str, Any] = {"purpose": "legal-hold" if rng.random() < 0.1 else "analysis"}
    if unique:
        context["request"] = secrets.token_hex(8)  # a key the cache has never seen
    return {"action": action, "resource": {"type": rtype, "id": f"r{int(rng.integers(50))}",
                                           "attributes": attributes}, "context": context}


# ---- in-process ----------------------------------------------------------------------------------
def run_inproc(samples: int, seed: int = 1) -> dict[str, Any]:
    bundle = parse_bundle("authz", load_example_bundle())
    compiled = PolicyBundle.compile(bundle.modules, bundle.data_json())
    rng = np.random.default_rng(seed)
    inputs = []
    for i in range(samples):
        body = policy_input(rng, "t1")
        roles = list(ROLES[i % len(ROLES)])
        inputs.append({"tenant_id": "t1", "actor": {"id": f"user:{i % 20}", "roles": roles}, **body})
    encoded = [orjson.dumps(x) for x in inputs]
    key_parts = [{"actor": x["actor"], "resource": {"id": x["resource"]["id"],
                                                    "attributes": x["resource"]["attributes"]},
                  "context": x["context"]} for x in inputs]
    clock = time.perf_counter_ns
    # miss: a full evaluation of data.provgraph.authz.decision, on the bytecode VM (flag policy.vm=on)
    # and on the interpreter (the baseline), alternating per input; both must give the same decision.
    path = "provgraph/authz/decision"
    compiled.eval(path, encoded[0], vm=True)  # plans the path; later calls run the VM
    miss = np.empty(samples, dtype=np.int64)
    miss_interp = np.empty(samples, dtype=np.int64)
    mismatches = 0
    for i, raw in enumerate(encoded):
        t0 = clock()
        got = compiled.eval(path, raw, vm=True)
        t1 = clock()
        want = compiled.eval(path, raw, vm=False)
        miss_interp[i] = clock() - t1
        miss[i] = t1 - t0
        mismatches += got != want
    # key hashing: BLAKE3 of the RFC 8785 form of what enters the key
    t0 = clock()
    digests = [canonical_hash(k) for k in key_parts]
    hash_s = (clock() - t0) / 1e9
    t0 = clock()
    canonical_hashes(key_parts)  # one call for all keys: no per-call overhead
    batch_hash_s = (clock() - t0) / 1e9
    cache = DecisionCache(1_000_000)
    value = b'{"allow":true,"reasons":["r"],"obligations":[]}'
    for x, d in zip(inputs, digests):
        cache.put("t1", x["action"], x["resource"]["type"], d, 1, value, 60.0)
    # hit: key hashing + lookup, what /decide pays on a hit before building its answer
    hit = np.empty(samples, dtype=np.int64)
    for i, (x, k) in enumerate(zip(inputs, key_parts)):
        t0 = clock()
        cache.get("t1", x["action"], x["resource"]["type"], canonical_hash(k), 1)
        hit[i] = clock() - t0
    lookup = np.empty(samples, dtype=np.int64)
    for i, (x, d) in enumerate(zip(inputs, digests)):
        t0 = clock()
        cache.get("t1", x["action"], x["resource"]["type"], d, 1)
        lookup[i] = clock() - t0
    return {"samples": samples, "miss_eval": percentiles_us(miss), "miss_eval_interpreter": percentiles_us(miss_interp),
            "miss_vm_eligible": compiled.uses_vm(path), "miss_vm_mismatches": mismatches,
            "hit_hash_and_lookup": percentiles_us(hit),
            "hit_lookup_only": percentiles_us(lookup), "key_hashes_per_s": samples / hash_s,
            "key_hashes_per_s_batch": samples / batch_hash_s,
            "miss_over_hit_p50": float(np.percentile(miss, 50) / np.percentile(hit, 50))}


# ---- over HTTP ------------------------------------------------------------------------------------
def prepare_policy(server: ServerProcess, tenants: list[str], create: bool) -> dict[str, str]:
    """Upload the example bundle and make one key per (tenant, role set); returns {"tenant/i": key}."""
    admin = server.client()
    status, _, body = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(),
                                {"Content-Type": "application/gzip"})
    if status not in (200, 201):
        raise RuntimeError(f"bundle upload failed: {status} {body!r}")
    keys: dict[str, str] = {}
    for t in tenants:
        if create:
            admin.ok("POST", "/v1/admin/tenants", {"tenant_id": t}, status=201)
        for j, roles in enumerate(ROLES):
            keys[f"{t}/{j}"] = admin.ok("POST", "/v1/admin/keys", {"tenant_id": t, "scopes": ["read"],
                                                                   "actor": f"user:{j}", "roles": list(roles)},
                                        status=201)["key"]
    return keys


def start_policy_server(tenants: int = 4, core: int | None = 0) -> tuple[ServerProcess, dict[str, str], Path]:
    workdir = Path(tempfile.mkdtemp(prefix="provgraph-decide-"))
    server = ServerProcess(workdir / "data", "pga_" + secrets.token_urlsafe(24), core=core,
                           log_path=workdir / "server.log").start()
    return server, prepare_policy(server, [f"d{i:02d}" for i in range(tenants)], create=True), workdir


def decision_bodies(keys: dict[str, str], count: int, hit_ratio: float, hot: int = 200,
                    seed: int = 3) -> list[tuple[str, bytes, str]]:
    """(path, body, key) requests: a share `hit_ratio` from a small hot set, the rest never seen before."""
    rng = np.random.default_rng(seed)
    names = sorted(keys)
    hot_set = []
    for _ in range(hot):
        name = names[int(rng.integers(len(names)))]
        hot_set.append((f"/v1/tenants/{name.split('/')[0]}/decide", orjson.dumps(policy_input(rng, "")),
                        keys[name]))
    out = []
    for _ in range(count):
        if rng.random() < hit_ratio:
            out.append(hot_set[int(rng.integers(hot))])
        else:
            name = names[int(rng.integers(len(names)))]
            out.append((f"/v1/tenants/{name.split('/')[0]}/decide",
                        orjson.dumps(policy_input(rng, "", unique=True)), keys[name]))
    return out


def decide_flow(reqs: list[tuple[str, bytes, str]], weight: float = 1.0) -> Flow:
    def build(i: int) -> tuple[str, str, bytes | None, dict[str, str]]:
        path, body, key = reqs[i % len(reqs)]
        return ("POST", path, body, {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})

    return Flow("decide", weight, build, 200)


def run_decide_load(server: ServerProcess, reqs: list[tuple[str, bytes, str]], flags: dict[str, str], rate: float,
                    duration: float, warmup: float) -> dict[str, FlowResult]:
    server.client().ok("PUT", "/v1/admin/flags", flags)
    server.client().ok("POST", "/v1/cache/invalidate", {})
    return run("127.0.0.1", server.port, [decide_flow(reqs), health_flow(1.0)], 2 * rate, duration,
               warmup_s=warmup, max_inflight=512, seed=11, prebuild=len(reqs))


def _outcomes(server: ServerProcess) -> tuple[int, int]:
    """(hits, misses) the server's cache has counted so far."""
    cache = server.client().ok("GET", "/v1/bundles/authz/stats")["cache"]
    return int(cache["hits"]), int(cache["misses"])


# HTTP runs: the baseline (interpreter, no cache), the VM alone, the VM with the cache.
RUNS = {"baseline": {"policy.cache": "off", "policy.vm": "off"}, "vm": {"policy.cache": "off", "policy.vm": "on"},
        "vm+cache": {"policy.cache": "on", "policy.vm": "on"}}
COLUMNS = ["run", "name", "sent", "ok", "errors", "dropped", "p50_ms", "p95_ms", "p99_ms", "max_ms",
           "p99_vs_floor", "p50_minus_floor_ms"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m provgraph.bench decide", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rate", type=float, default=None, help="decisions/s (and /healthz at the same rate)")
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--hit-ratio", type=float, default=0.9)
    ap.add_argument("--samples", type=int, default=None, help="in-process samples")
    ap.add_argument("--out", default="bench-results/decide")
    a = ap.parse_args(argv)
    rate = a.rate or (200.0 if a.quick else 1500.0)
    duration = a.duration or (4.0 if a.quick else 20.0)
    warmup = 1.0 if a.quick else 3.0
    samples = a.samples or (2_000 if a.quick else 20_000)
    out = Path(a.out)

    inproc = run_inproc(samples)
    rows_in = [{"measure": k, **{p: v[p] for p in ("p50", "p95", "p99", "max")}}
               for k, v in inproc.items() if isinstance(v, dict)]
    print("in-process (µs, Python call included):")
    print(format_table(rows_in, ["measure", "p50", "p95", "p99", "max"]))
    print(f"miss on the bytecode VM vs the interpreter: p99 {inproc['miss_eval']['p99']:.1f} vs "
          f"{inproc['miss_eval_interpreter']['p99']:.1f} µs; VM used: {inproc['miss_vm_eligible']}, "
          f"{inproc['miss_vm_mismatches']} different decisions")
    print(f"key hashing: {inproc['key_hashes_per_s']:,.0f} keys/s one call each, "
          f"{inproc['key_hashes_per_s_batch']:,.0f} keys/s batched; miss/hit p50 ratio {inproc['miss_over_hit_p50']:.1f}")

    server, keys, workdir = start_policy_server()
    pin_to_core(1)
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {"inproc": inproc, "rate": rate, "duration_s": duration, "hit_ratio": a.hit_ratio,
                              "runs": {}}
    try:
        reqs = decision_bodies(keys, max(4096, int(rate * (duration + warmup))), a.hit_ratio)
        for label, flags in RUNS.items():
            before = _outcomes(server)
            res = run_decide_load(server, reqs, flags, rate, duration, warmup)
            after = _outcomes(server)
            hits, misses = after[0] - before[0], after[1] - before[1]
            report["runs"][label] = {k: v.as_dict() for k, v in res.items()}
            report["runs"][label]["flags"] = flags
            report["runs"][label]["server_hit_rate"] = hits / max(hits + misses, 1)
            rows += [{"run": label, **r} for r in side_by_side(res)]
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nHTTP: /decide at {rate:g}/s open loop ({a.hit_ratio:.0%} repeat keys), /healthz at the same rate:")
    print(format_table(rows, COLUMNS))
    print(f"server-side hit rate of the cache-on run (warm-up included): "
          f"{report['runs']['vm+cache']['server_hit_rate']:.1%}")
    write_json(out / "decide.json", report)
    (out / "decide.md").write_text(to_markdown(rows, COLUMNS))
    print(f"wrote {out / 'decide.json'}")
    return 1 if any(r["errors"] for r in rows) else 0
