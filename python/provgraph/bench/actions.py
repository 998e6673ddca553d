"""`python -m provgraph.bench actions`: receipts in-process, the P1 mix over HTTP (1x, 3x peak, baseline), and
actions:batch vs single preflight+execute calls at the same action rate."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from provgraph.bench.decide import decision_bodies, prepare_policy
from provgraph.bench.graph_http import GraphBench, q1_body, q2_body, start_loaded_server
from provgraph.bench.loadgen import HttpPool, frozen_heap, has_ms_timers, timer_delay
from provgraph.bench.report import format_table, percentiles_us, to_markdown, write_json
from provgraph.bench.workloads import generate_g1
from provgraph.config import parse_flag_assignments
from provgraph.flags import profile_values

__all__ = [
    "ABLATE",
    "action_keys",
    "batch_vs_single_summary",
    "inproc_receipts",
    "issuance_lag",
    "main",
    "p1_run",
    "p1_verdict",
    "pauses_line",
    "repeat_line",
    "repeat_summary",
    "run_ablation",
    "run_batch_vs_single",
    "run_mix",
    "run_repeat",
    "scrape",
    "verdict_line",
]

PEAK_RPS = 300
ACTION_RATE = 300  # actions/s of the batch-vs-single comparison
BURST = 20  # actions that become ready together: one actions:batch request, or BURST single flows
# P1 (WORKLOADS.md): share of requests per flow; the floor runs at the total rate beside them.
P1 = {"q1": 0.40, "q2": 0.10, "decide": 0.25, "preflight_execute": 0.15, "approval": 0.05, "receipt_verify": 0.05}


# ---- in-process: sign + chain + commit ---------------------------------------------------------------
def inproc_receipts(count: int) -> dict[str, Any]:
    """Receipts/s through the real pipeline (outbox → sign → chain → LMDB commit), the process pinned
    to one core: batches of 512 with 4 in flight (signing the next while the last commits) vs one
    receipt at a time, each signed then committed before the next."""
    from provgraph.actions.pipeline import Issuer
    from provgraph.actions.signing import KeyRing
    from provgraph.bench.server import pin_to_core
    from provgraph.store import Store, Txn, Writer

    def put_intents(issuer: Issuer, intents: list[dict[str, Any]], txn: Txn) -> None:
        for it in intents:
            issuer.put_intent(txn, 1, it, time.time())

    out: dict[str, Any] = {"count": count}
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    pin_to_core(min(affinity) if affinity else None)
    out["cores"] = len(os.sched_getaffinity(0)) if affinity else os.cpu_count()
    for label, batch, pipeline in (("batch_512", 512, 4), ("one_by_one", 1, 1)):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp))
            writer = Writer(store)
            issuer = Issuer(store, writer, KeyRing(store), batch_max=batch, pipeline=pipeline)
            n = count if batch > 1 else max(count // 10, 200)
            intents = [_intent(i) for i in range(n)]
            store.write_direct(partial(put_intents, issuer, intents))
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            asyncio.run(issuer.drain())
            seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            assert issuer.issued == n
            out[label] = {"receipts": n, "seconds": seconds, "receipts_per_s": n / seconds,
                          "cpu_s_per_receipt_us": cpu / n * 1e6}
            writer.close()
            store.close()
    if affinity:
        os.sched_setaffinity(0, affinity)
    out["batch_over_single"] = out["batch_512"]["receipts_per_s"] / out["one_by_one"]["receipts_per_s"]
    return out


def _intent(i: int) -> dict[str, Any]:
    from provgraph._core import uuid7

    return {"receipt_id": uuid7(), "tenant_id": "t1", "executed_at": "2026-11-26T07:00:00.000000Z",
            "actor": {"id": f"user:{i % 20}", "roles": ["operator"]}, "action": "deploy",
            "resource": {"type": "service", "id": f"svc-{i % 1000}"},
            "policy": {"bundle": "authz", "revision": "2026-11-26.1", "decision_id": str(i), "decision": "allow"},
            "preflight_id": uuid7(), "request_hash": os.urandom(32).hex(), "result_hash": os.urandom(32).hex(),
            "approvals": [], "evidence": [{"hash": os.urandom(32).hex(), "size": 1000 + i}]}


# ---- over HTTP: chained flows, open loop ---------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.lat: dict[str, list[int]] = {}
        self.errors: dict[str, int] = {}
        self.samples: dict[str, list[str]] = {}

    def ok(self, flow: str, ns: int) -> None:
        self.lat.setdefault(flow, []).append(ns)

    def error(self, flow: str, what: str) -> None:
        self.errors[flow] = self.errors.get(flow, 0) + 1
        s = self.samples.setdefault(flow, [])
        if len(s) < 3:
            s.append(what[:300])


async def _call(session: HttpPool, method: str, url: str, key: str | None, body: Any = None,
                expect: int = 200) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = orjson.dumps(body)
    status, raw = await session.request(method, url, data, headers)
    if status != expect:
        raise RuntimeError(f"{method} {url} -> {status}: {raw[:200]!r}")
    return orjson.loads(raw) if raw else None


def action_keys(bench: GraphBench, decide_keys: dict[str, str] | None = None) -> dict[str, Any]:
    """What the P1 flows need on a loaded server: an operator, two approvers and a reader key on the first
    tenant, /decide bodies (example bundle uploaded unless `decide_keys` says it is done), graph keys and seeds."""
    wl = bench.workload
    admin = bench.admin()
    tenant = wl.tenants[0]
    keys: dict[str, Any] = {"tenant": tenant, "admin": bench.server.admin_key, "receipts": [],
                            "graph_keys": bench.keys,
                            "seeds": [(t, int(s)) for t in wl.tenants for s in wl.seeds[t][:50].tolist()]}
    if decide_keys is None:
        decide_keys = prepare_policy(bench.server, wl.tenants[:4], create=False)
    keys["decide"] = decision_bodies(decide_keys, 4096, 0.9)
    for name, roles, scopes in (("op", ["operator"], ["read", "write"]), ("a1", ["security"], ["approve"]),
                                ("a2", ["security"], ["approve"]), ("reader", ["viewer"], ["read"])):
        keys[name] = admin.ok("POST", "/v1/admin/keys", {"tenant_id": tenant, "scopes": scopes,
                                                         "actor": f"user:{name}", "roles": roles}, status=201)["key"]
    return keys


def _flows(base: str, keys: dict[str, Any], rng: np.random.Generator) -> dict[str, Callable[..., Awaitable[None]]]:
    t = keys["tenant"]
    op, a1, a2, reader = keys["op"], keys["a1"], keys["a2"], keys["reader"]
    graph_keys, seeds = keys["graph_keys"], keys["seeds"]
    decide_reqs = keys["decide"]
    receipts: list[str] = keys["receipts"]

    async def q(session: HttpPool, i: int, body_of: Callable[[int], Any]) -> None:
        tenant, seed = seeds[i % len(seeds)]
        await _call(session, "POST", f"{base}/v1/tenants/{tenant}/graph/query", graph_keys[tenant], body_of(seed))

    async def decide(session: HttpPool, i: int) -> None:
        path, body, key = decide_reqs[i % len(decide_reqs)]
        await _call(session, "POST", base + path, key, orjson.loads(body))

    async def preflight_execute(session: HttpPool, i: int) -> None:
        body = {"action": "deploy", "resource": {"type": "service", "id": f"svc-{i % 500}"}, "payload": {"i": i}}
        pf = await _call(session, "POST", f"{base}/v1/tenants/{t}/actions/preflight", op, body, 201)
        got = await _call(session, "POST", f"{base}/v1/tenants/{t}/actions/{pf['preflight_id']}/execute", op, body)
        receipts.append(got["receipt_id"])

    async def approval(session: HttpPool, i: int) -> None:
        body = {"action": "graph.delete", "resource": {"type": "graph", "id": f"g{i}"},
                "payload": {"nodes": [10_000_000 + i]}}
        pf = await _call(session, "POST", f"{base}/v1/tenants/{t}/actions/preflight", op, body, 201)
        pid = pf["preflight_id"]
        # the two approvers act independently, so at the same time (not one after the other)
        await asyncio.gather(_call(session, "POST", f"{base}/v1/tenants/{t}/approvals/{pid}/grant", a1),
                             _call(session, "POST", f"{base}/v1/tenants/{t}/approvals/{pid}/grant", a2))
        got = await _call(session, "POST", f"{base}/v1/tenants/{t}/actions/{pid}/execute", op, body)
        receipts.append(got["receipt_id"])

    async def receipt_verify(session: HttpPool, i: int) -> None:
        if len(receipts) < 10:  # nothing issued yet to read: read the newest page instead
            await _call(session, "GET", f"{base}/v1/tenants/{t}/receipts?limit=5", reader)
            return
        rid = receipts[-1 - (i % min(len(receipts) - 5, 200)) - 5]  # issued some time ago
        await _call(session, "GET", f"{base}/v1/tenants/{t}/receipts/{rid}", reader)
        got = await _call(session, "GET", f"{base}/v1/tenants/{t}/receipts/{rid}/verify", reader)
        if not got["valid"]:
            raise RuntimeError(f"receipt {rid} does not verify")

    async def healthz(session: HttpPool, i: int) -> None:
        await _call(session, "GET", f"{base}/healthz", None)

    return {"q1": lambda s, i: q(s, i, q1_body), "q2": lambda s, i: q(s, i, q2_body), "decide": decide,
            "preflight_execute": preflight_execute, "approval": approval, "receipt_verify": receipt_verify,
            "healthz": healthz}


async def _until(intended: float) -> None:
    """Sleep until the open-loop arrival time `intended` (perf_counter seconds); late arrivals go at once."""
    delay = intended - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(timer_delay(delay, has_ms_timers(asyncio.get_running_loop())))


NO_ANSWER = "no answer within 30 s after the last arrival"


async def _finish(tasks: set[asyncio.Task[None]], timeout: float = 30.0) -> None:
    """Wait up to `timeout` for what is still running after the last arrival; cancel the rest (each
    records itself as an error: NO_ANSWER)."""
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _spawn(tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` as a task kept in `tasks` until it is done (awaited together at the end of a run)."""
    task = asyncio.create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def run_mix(base: str, keys: dict[str, Any], rate: float, duration: float, warmup: float,
                  max_inflight: int = 1024, seed: int = 5, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """Open loop: arrival i at start + i/rate, flow drawn by P1 shares, /healthz at the same total rate.
    `counts` gets "requests": every HTTP request sent, warm-up included."""
    rng = np.random.default_rng(seed)
    flows = _flows(base, keys, rng)
    names = list(P1)
    p = np.array([P1[n] for n in names])
    rec = Recorder()
    inflight = 0
    dropped: dict[str, int] = {}
    tasks: set[asyncio.Task[None]] = set()
    with frozen_heap():  # the generator's own full collections would count as server latency
        async with HttpPool(base) as session:
            async def one(flow: str, i: int, intended: float, record: bool) -> None:
                nonlocal inflight
                try:
                    await flows[flow](session, i)
                    if record:
                        rec.ok(flow, int((time.perf_counter() - intended) * 1e9))
                except asyncio.CancelledError:
                    if record:
                        rec.error(flow, NO_ANSWER)
                    raise
                except Exception as exc:  # noqa: BLE001 — every failure is counted per flow
                    if record:
                        rec.error(flow, f"{type(exc).__name__}: {exc}")
                finally:
                    inflight -= 1

            total = int((duration + warmup) * rate)
            picks = rng.choice(len(names), size=total, p=p)
            start = time.perf_counter() + 0.01
            for i in range(total):
                for flow in (names[picks[i]], "healthz"):
                    intended = start + i / rate
                    await _until(intended)
                    record = i >= warmup * rate
                    if inflight >= max_inflight:
                        if record:
                            dropped[flow] = dropped.get(flow, 0) + 1
                        continue
                    inflight += 1
                    _spawn(tasks, one(flow, i, intended, record))
            await _finish(tasks)
            if counts is not None:
                counts["requests"] = session.sent
    rows = {}
    for flow in [*names, "healthz"]:
        lat = np.array(rec.lat.get(flow, []), dtype=np.int64)
        pct = percentiles_us(lat)
        rows[flow] = {"flow": flow, "ok": len(lat), "errors": rec.errors.get(flow, 0), "dropped": dropped.get(flow, 0),
                      "p50_ms": pct["p50"] / 1e3, "p95_ms": pct["p95"] / 1e3, "p99_ms": pct["p99"] / 1e3,
                      "max_ms": pct["max"] / 1e3, "error_samples": rec.samples.get(flow, [])}
    return rows


# ---- actions:batch vs single calls: the same bursts of actions, open loop ------------------------------
def _deploy(mode: str, k: int, j: int) -> dict[str, Any]:
    """A non-hazardous action the example policy allows an operator without approvals."""
    return {"action": "deploy", "resource": {"type": "service", "id": f"svc-{(k * 31 + j) % 500}"},
            "payload": {"mode": mode, "burst": k, "item": j}}


async def _run_bursts(base: str, keys: dict[str, Any], mode: str, action_rate: float, burst: int, duration: float,
                      warmup: float, max_inflight: int, k0: int = 0) -> dict[str, Any]:
    """Burst k of `burst` actions is ready at start + k*burst/action_rate; "single" runs each as preflight +
    execute (2 round trips), "batch" sends the burst as one actions:batch request. Latency per action is from
    the burst's intended ready time (coordinated omission corrected); round trips counted in the window.
    Bursts are numbered from `k0` in the actions' payloads. The latencies themselves are under "lat_ns"."""
    t, op = keys["tenant"], keys["op"]
    receipts: list[str] = keys["receipts"]
    period = burst / action_rate
    total = max(int((duration + warmup) / period + 1e-9), 1)
    first = min(math.ceil(warmup / period - 1e-9), total - 1)  # the first measured burst
    rec = Recorder()
    inflight = trips = dropped = 0
    tasks: set[asyncio.Task[None]] = set()
    async with HttpPool(base) as session:
        async def single(k: int, j: int, intended: float, record: bool) -> None:
            nonlocal inflight, trips
            body = _deploy(mode, k0 + k, j)
            try:
                trips += record
                pf = await _call(session, "POST", f"{base}/v1/tenants/{t}/actions/preflight", op, body, 201)
                trips += record
                got = await _call(session, "POST", f"{base}/v1/tenants/{t}/actions/{pf['preflight_id']}/execute",
                                  op, body)
                receipts.append(got["receipt_id"])
                if record:
                    rec.ok(mode, int((time.perf_counter() - intended) * 1e9))
            except asyncio.CancelledError:
                if record:
                    rec.error(mode, NO_ANSWER)
                raise
            except Exception as exc:  # noqa: BLE001 — every failure is counted
                if record:
                    rec.error(mode, f"{type(exc).__name__}: {exc}")
            finally:
                inflight -= 1

        async def batch(k: int, intended: float, record: bool) -> None:
            nonlocal inflight, trips
            body = {"actions": [_deploy(mode, k0 + k, j) for j in range(burst)]}
            try:
                trips += record
                got = await _call(session, "POST", f"{base}/v1/tenants/{t}/actions:batch", op, body)
                ns = int((time.perf_counter() - intended) * 1e9)
                results = got["results"]
                for item in results:
                    if "receipt_id" in item:
                        receipts.append(item["receipt_id"])
                        if record:
                            rec.ok(mode, ns)
                    elif record:
                        rec.error(mode, f"item: {orjson.dumps(item).decode()}")
                for _ in range(burst - len(results)):
                    if record:
                        rec.error(mode, f"{len(results)} results for {burst} actions")
            except asyncio.CancelledError:
                if record:
                    for _ in range(burst):
                        rec.error(mode, NO_ANSWER)
                raise
            except Exception as exc:  # noqa: BLE001 — a failed request fails every action in it
                if record:
                    for _ in range(burst):
                        rec.error(mode, f"{type(exc).__name__}: {exc}")
            finally:
                inflight -= burst

        start = time.perf_counter() + 0.01
        for k in range(total):
            intended = start + k * period
            await _until(intended)
            record = k >= first
            if mode == "batch":
                if inflight + burst > max_inflight:
                    dropped += burst if record else 0
                    continue
                inflight += burst
                _spawn(tasks, batch(k, intended, record))
                continue
            for j in range(burst):
                if inflight >= max_inflight:
                    dropped += 1 if record else 0
                    continue
                inflight += 1
                _spawn(tasks, single(k, j, intended, record))
        await _finish(tasks)
    return {"mode": mode, "bursts": total - first, "lat_ns": np.array(rec.lat.get(mode, []), dtype=np.int64),
            "errors": rec.errors.get(mode, 0), "dropped": dropped, "round_trips": trips,
            "error_samples": rec.samples.get(mode, [])}


def _pooled(mode: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One mode's segments as one result: latencies pooled, counts summed."""
    lat = np.concatenate([p["lat_ns"] for p in parts])
    pct = percentiles_us(lat)
    errors, trips = sum(p["errors"] for p in parts), sum(p["round_trips"] for p in parts)
    return {"mode": mode, "segments": len(parts), "bursts": sum(p["bursts"] for p in parts), "actions": len(lat),
            "errors": errors, "dropped": sum(p["dropped"] for p in parts), "round_trips": trips,
            "round_trips_per_action": trips / max(len(lat) + errors, 1),
            "p50_ms": pct["p50"] / 1e3, "p95_ms": pct["p95"] / 1e3, "p99_ms": pct["p99"] / 1e3,
            "max_ms": pct["max"] / 1e3, "error_samples": [e for p in parts for e in p["error_samples"]][:3]}


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and not math.isnan(a) else float("nan")


async def run_batch_vs_single(base: str, keys: dict[str, Any], action_rate: float = ACTION_RATE, burst: int = BURST,
                              duration: float = 10.0, warmup: float = 2.0, max_inflight: int = 1024,
                              segments: int = 4) -> dict[str, Any]:
    """The same open-loop bursts (`action_rate` actions/s in bursts of `burst`) as single preflight+execute flows
    and as one actions:batch request per burst; ratios single/batch of round trips per action and of p95.

    Each mode runs `duration` seconds in all, as `segments` segments in alternation (single, batch, batch,
    single, ...: ABBA), each after its own warm-up of `warmup` s (at least one burst), pooled per mode: a
    slow minute of a shared host falls on both modes instead of deciding the comparison."""
    parts: dict[str, list[dict[str, Any]]] = {"single": [], "batch": []}
    seg = duration / segments
    k0 = 0
    for i in range(segments):
        for mode in (("single", "batch") if i % 2 == 0 else ("batch", "single")):
            part = await _run_bursts(base, keys, mode, action_rate, burst, seg, warmup, max_inflight, k0)
            k0 += int((seg + warmup) * action_rate / burst) + 2  # past every burst that segment numbered
            parts[mode].append(part)
    res = {mode: _pooled(mode, p) for mode, p in parts.items()}
    s, b = res["single"], res["batch"]
    rt_ratio = _ratio(s["round_trips_per_action"], b["round_trips_per_action"])
    p95_ratio = _ratio(s["p95_ms"], b["p95_ms"])
    return {"action_rate": action_rate, "burst": burst, "duration_s": duration, "warmup_s": warmup,
            "segments": segments, **res,
            "round_trips_single_over_batch": rt_ratio, "p95_single_over_batch": p95_ratio,
            # the acceptance: >= 10x fewer round trips and a lower p95 per action than single calls
            "acceptance": {"round_trips_10x_fewer": rt_ratio >= 10, "p95_lower": p95_ratio > 1}}


BVS_COLUMNS = ["mode", "actions", "errors", "dropped", "round_trips", "round_trips_per_action", "p50_ms", "p95_ms",
               "p99_ms", "max_ms"]


def batch_vs_single_summary(res: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Table rows (one per mode) and a one-line verdict of `run_batch_vs_single`'s result."""
    rows = [{k: v for k, v in res[m].items() if k != "error_samples"} for m in ("single", "batch")]
    acc = res["acceptance"]
    line = (f"batch vs single at {res['action_rate']:g} actions/s in bursts of {res['burst']}: "
            f"{res['round_trips_single_over_batch']:.1f}x fewer round trips per action "
            f"({'ok' if acc['round_trips_10x_fewer'] else 'FAIL'}: >= 10x), p95 single/batch "
            f"{res['p95_single_over_batch']:.2f}x ({'ok' if acc['p95_lower'] else 'FAIL'}: batch lower)")
    return rows, line


def _lag_summary(lags: list[float]) -> dict[str, Any]:
    pct = percentiles_us(np.array(lags))
    return {"receipts": len(lags), "lag_p50_ms": pct["p50"] / 1e3, "lag_p95_ms": pct["p95"] / 1e3,
            "lag_p99_ms": pct["p99"] / 1e3}


def issuance_lag(base: str, keys: dict[str, Any],
                 windows: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """Issuance lag from the receipts themselves (issued_at - executed_at) and DLQ depth: over every
    receipt, and per run for `windows` (label -> wall-clock start, end: receipts executed in it)."""
    from datetime import UTC, datetime

    from provgraph.bench.server import JsonClient

    url = base.rsplit(":", 1)
    client = JsonClient(int(url[1]), keys["reader"])
    lags: list[float] = []
    by_run: dict[str, list[float]] = {label: [] for label in windows or {}}
    for r in client.receipts(keys["tenant"]):
        if r["action"].startswith("admin."):  # the tenant's and its keys' creation: not the bench's
            continue
        ex = datetime.strptime(r["executed_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        iss = datetime.strptime(r["issued_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        lag = (iss - ex).total_seconds() * 1e9
        lags.append(lag)
        at = ex.timestamp()
        for label, (start, end) in (windows or {}).items():
            if start <= at <= end:
                by_run[label].append(lag)
    dlq = client.with_key(keys["admin"]).ok("GET", "/v1/admin/dlq")["depth"]
    return {**_lag_summary(lags), "dlq_depth": dlq,
            "by_run": {label: _lag_summary(v) for label, v in by_run.items() if v}}


def lag_lines(iss: dict[str, Any]) -> list[str]:
    """The issuance lag over every receipt and per run, for the report."""
    lines = [(f"issuance lag over {iss['receipts']} receipts: p50 {iss['lag_p50_ms']:.1f} ms, "
             f"p95 {iss['lag_p95_ms']:.1f} ms, p99 {iss['lag_p99_ms']:.1f} ms; DLQ depth {iss['dlq_depth']}")]
    for label, r in iss.get("by_run", {}).items():
        lines.append(f"  during {label}: {r['receipts']} receipts, p50 {r['lag_p50_ms']:.1f} ms, "
                     f"p95 {r['lag_p95_ms']:.1f} ms ({'ok' if r['lag_p95_ms'] <= 100 else 'over'}: p95 <= 100 ms), "
                     f"p99 {r['lag_p99_ms']:.1f} ms")
    return lines


COLUMNS = ["run", "flow", "ok", "errors", "dropped", "p50_ms", "p95_ms", "p99_ms", "max_ms"]
# The flags of the request path, each measured on its own by --ablate (the others stay on);
# service.http is a start-up flag: its variant restarts the server. actions.preflight_ack is not
# among them: both profiles have it at `durable`.
ABLATE = ("service.http", "service.write_answer", "service.dispatch", "runtime.gil_switch", "runtime.writer_priority",
          "runtime.gc", "runtime.write_coalesce", "runtime.group_window")


def collector_pauses(base: str, text: str | None = None) -> dict[str, dict[str, Any]]:
    """The server's cyclic-collector pauses so far, per generation (provgraph_gc_pause_seconds):
    count, total seconds, cumulative bucket counts by upper bound. `text`: a /metrics page already read."""
    if text is None:
        with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
    out: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "provgraph_gc_pause_seconds":
            continue
        for sample in family.samples:
            gen = out.setdefault(sample.labels["generation"], {"count": 0, "sum_s": 0.0, "buckets": {}})
            if sample.name.endswith("_count"):
                gen["count"] = int(sample.value)
            elif sample.name.endswith("_sum"):
                gen["sum_s"] = sample.value
            elif sample.name.endswith("_bucket"):
                gen["buckets"][float(sample.labels["le"])] = int(sample.value)
    return out


def pauses_between(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per generation over a run: collections, total pause, and the bound the longest stayed under."""
    out: dict[str, Any] = {}
    for gen, a in sorted(after.items()):
        b = before.get(gen, {"count": 0, "sum_s": 0.0, "buckets": {}})
        n = a["count"] - b["count"]
        bound = min((le for le, c in a["buckets"].items() if c - b["buckets"].get(le, 0) == n), default=math.inf)
        out[gen] = {"collections": n, "total_ms": (a["sum_s"] - b["sum_s"]) * 1e3,
                    "longest_le_ms": bound * 1e3 if n else 0.0}
    return out


def pauses_line(p: dict[str, Any]) -> str:
    return "server collector: " + "; ".join(
        f"gen {g}: {v['collections']} pauses, {v['total_ms']:.1f} ms in all, longest <= {v['longest_le_ms']:g} ms"
        for g, v in p.items())


WRITER_HISTOGRAMS = {"provgraph_store_commit_seconds": "commit", "provgraph_store_write_wait_seconds": "write_wait"}


def scrape(base: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """One /metrics read: the collector pauses (see collector_pauses), the writer's commit groups and jobs
    so far, and its latency histograms (cumulative bucket counts by upper bound)."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    writer: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("provgraph_store_commit_groups", "provgraph_store_commit_jobs"):
            writer[family.name.removeprefix("provgraph_store_commit_")] = family.samples[0].value
        elif family.name in WRITER_HISTOGRAMS:
            writer[WRITER_HISTOGRAMS[family.name]] = {float(s.labels["le"]): s.value for s in family.samples
                                                      if s.name.endswith("_bucket")}
    return collector_pauses(base, text), writer


def histogram_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """Count and p50/p99/p99.9 (the upper bound of the bucket each falls in, ms) of what a histogram
    observed between two scrapes."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    out: dict[str, Any] = {"count": int(total)}
    for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99), ("p999_ms", 0.999)):
        bound = next((b for b, c in zip(bounds, counts) if total and c >= q * total), math.inf)
        out[name] = bound * 1e3
    return out


def p1_run(base: str, keys: dict[str, Any], rate: float, duration: float, warmup: float) -> dict[str, Any]:
    """One P1 mix run: per-flow rows, the verdict, the server's collector pauses meanwhile, and its
    commit groups: per second and per request sent (each group is one commit, one fsync of the
    data), jobs per group, and the commit and write-wait latency (bucket bounds)."""
    pauses, writer = scrape(base)
    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    flows = uvloop.run(run_mix(base, keys, rate, duration, warmup, counts=counts))
    seconds = time.perf_counter() - t0
    pauses_after, writer_after = scrape(base)
    groups = writer_after["groups"] - writer["groups"]
    jobs = writer_after["jobs"] - writer["jobs"]
    commits = {"groups": int(groups), "jobs": int(jobs), "requests": counts["requests"], "seconds": seconds,
               "groups_per_s": groups / seconds, "groups_per_request": groups / max(counts["requests"], 1),
               "jobs_per_group": jobs / max(groups, 1)}
    for name in WRITER_HISTOGRAMS.values():
        commits[name] = histogram_quantiles(writer.get(name, {}), writer_after.get(name, {}))
    return {"rate": rate, "flows": flows, "verdict": p1_verdict(flows),
            "collector": pauses_between(pauses, pauses_after), "commits": commits}


def p1_verdict(flows: dict[str, Any]) -> dict[str, Any]:
    """The P1 target: every flow's p99 within 1.5x the /healthz p99 at the same rate + 10 ms, no errors,
    no dropped requests."""
    limit = 1.5 * flows["healthz"]["p99_ms"] + 10.0
    over = {f: round(flows[f]["p99_ms"], 2) for f in P1 if not flows[f]["p99_ms"] <= limit}
    errors = sum(r["errors"] for r in flows.values())
    dropped = sum(r["dropped"] for r in flows.values())
    return {"p99_limit_ms": limit, "flows_over": over, "errors": errors, "dropped": dropped,
            "floor_p50_ms": flows["healthz"]["p50_ms"], "floor_p99_ms": flows["healthz"]["p99_ms"],
            "met": not over and errors == 0 and dropped == 0}


def verdict_line(label: str, v: dict[str, Any]) -> str:
    over = ", ".join(f"{f} {p:.2f}" for f, p in v["flows_over"].items()) or "none"
    # the floor itself is shown: a saturated server "meets" a limit its own /healthz p99 makes huge
    return (f"  {label}: /healthz p50 {v['floor_p50_ms']:.2f} ms, p99 {v['floor_p99_ms']:.2f} ms -> p99 limit "
            f"{v['p99_limit_ms']:.2f} ms (1.5 x /healthz p99 + 10); over it: {over}; "
            f"errors {v['errors']}, dropped {v['dropped']} -> {'met' if v['met'] else 'NOT met'}")


def run_ablation(base: str, keys: dict[str, Any], bench: GraphBench, rate: float, duration: float, warmup: float,
                 rounds: int = 2) -> list[dict[str, Any]]:
    """The P1 mix with every flag on, then with each write-path flag alone at its baseline value, in
    alternation (`rounds` times), so each flag's effect is seen against the same machine state.
    Every run starts on a freshly restarted server (same data): service.http's variant needs a
    restart, and the others get one too, so no variant runs on an older process than another."""
    runs: list[dict[str, Any]] = []
    optimized, base_flags = profile_values("optimized"), profile_values("baseline")
    for rnd in range(rounds):
        for flag in (None, *ABLATE):
            flags = optimized if flag is None else {**optimized, flag: base_flags[flag]}
            bench.apply_flags(flags, restart=True)
            label = "all on" if flag is None else f"{flag}={base_flags[flag]}"
            run = p1_run(base, keys, rate, duration, warmup)
            runs.append({"round": rnd, "variant": label, **run})
            print(verdict_line(f"ablation {label} (round {rnd + 1})", run["verdict"]), flush=True)
            print("    " + pauses_line(run["collector"]), flush=True)
    bench.apply_flags(optimized)
    return runs


def repeat_line(label: str, run: dict[str, Any]) -> str:
    """One run of --p1-repeat: each flow's p99, the limit, drops and errors, the verdict, and the commit
    groups (per second, per request sent, jobs in each)."""
    v, c = run["verdict"], run["commits"]
    p99 = ", ".join(f"{f} {run['flows'][f]['p99_ms']:.1f}" for f in (*P1, "healthz"))
    return (f"  {label}: p99 ms {p99}; limit {v['p99_limit_ms']:.1f}; dropped {v['dropped']}, errors {v['errors']} -> "
            f"{'met' if v['met'] else 'NOT met'}; {c['groups_per_s']:.0f} commit groups/s, "
            f"{c['groups_per_request']:.3f} per request, {c['jobs_per_group']:.2f} jobs each; commit p50/p99/p99.9 "
            f"<= {_q(c, 'commit')} ms, a request's write queued->durable <= {_q(c, 'write_wait')} ms")


def _q(commits: dict[str, Any], name: str) -> str:
    h = commits.get(name, {})
    return "/".join(f"{h.get(k, math.nan):g}" for k in ("p50_ms", "p99_ms", "p999_ms"))


def run_repeat(base: str, keys: dict[str, Any], bench: GraphBench, rate: float, seconds: float, warmup: float,
               repeat: int, alternate: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The P1 verdict `repeat` times in a row on one server, flags at their defaults; with `alternate`
    (flag -> value), each run with the defaults is followed by one with those flags changed, so both
    see the same machine state, minute by minute."""
    optimized = profile_values("optimized")
    variants: list[tuple[str, dict[str, str]]] = [("defaults", optimized)]
    if alternate:
        variants.append((",".join(f"{k}={v}" for k, v in alternate.items()), {**optimized, **alternate}))
    runs: list[dict[str, Any]] = []
    for i in range(repeat):
        for label, flags in variants:
            bench.apply_flags(flags)
            run = p1_run(base, keys, rate, seconds, warmup)
            runs.append({"run": i + 1, "variant": label, **run})
            print(repeat_line(f"run {i + 1} {label}", run), flush=True)
    bench.apply_flags(optimized)
    return runs


def repeat_summary(runs: list[dict[str, Any]]) -> list[str]:
    """Per variant: runs that met the verdict, and the spread of the worst flow's p99 and of drops."""
    lines = []
    for variant in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == variant]
        worst = [max(r["flows"][f]["p99_ms"] for f in P1) for r in mine]
        drops = [r["verdict"]["dropped"] for r in mine]
        groups = [r["commits"]["groups_per_s"] for r in mine]
        lines.append(f"{variant}: met in {sum(r['verdict']['met'] for r in mine)} of {len(mine)} runs; worst flow "
                     f"p99 {min(worst):.1f}-{max(worst):.1f} ms; dropped {min(drops)}-{max(drops)}; "
                     f"commit groups/s {min(groups):.0f}-{max(groups):.0f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m provgraph.bench actions", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--receipts", type=int, default=None, help="in-process receipts")
    ap.add_argument("--action-rate", type=float, default=ACTION_RATE, help="actions/s, batch vs single")
    ap.add_argument("--burst", type=int, default=BURST, help="actions per burst (one actions:batch request)")
    ap.add_argument("--out", default="bench-results/actions")
    ap.add_argument("--ablate", action="store_true",
                    help=f"also run P1 with each of {', '.join(ABLATE)} alone at its baseline value")
    ap.add_argument("--ablate-duration", type=float, default=20.0, help="seconds per ablation run")
    ap.add_argument("--ablate-peak", type=float, default=3.0, help="ablation rate as a multiple of PEAK_RPS")
    ap.add_argument("--p1-repeat", type=int, default=0, metavar="N",
                    help="only run the P1 verdict N times in a row (at --p1-peak), each run's p99s and commit groups")
    ap.add_argument("--p1-seconds", type=float, default=60.0, help="seconds per --p1-repeat run")
    ap.add_argument("--p1-peak", type=float, default=3.0, help="--p1-repeat rate as a multiple of PEAK_RPS")
    ap.add_argument("--p1-alternate", action="append", default=[], metavar="FLAG=VALUE",
                    help="--p1-repeat: follow each run with one with this flag changed (repeatable)")
    a = ap.parse_args(argv)
    duration = a.duration or (4.0 if a.quick else 60.0)
    warmup = 1.0 if a.quick else 3.0
    out = Path(a.out)
    if a.p1_repeat > 0:
        return repeat_main(a.p1_repeat, a.p1_seconds, PEAK_RPS * a.p1_peak, warmup, a.quick,
                           parse_flag_assignments(a.p1_alternate), out)
    report: dict[str, Any] = {"inproc": inproc_receipts(a.receipts or (2_000 if a.quick else 20_000))}
    ip = report["inproc"]
    print(f"in-process, {ip['cores']} core: {ip['batch_512']['receipts_per_s']:,.0f} receipts/s signed+chained+committed "
          f"in batches of 512 ({ip['batch_512']['cpu_s_per_receipt_us']:.1f} µs CPU each); one by one "
          f"{ip['one_by_one']['receipts_per_s']:,.0f}/s ({ip['batch_over_single']:.1f}x)")
    nodes, edges = (5_000, 50_000) if a.quick else (200_000, 2_000_000)
    wl = generate_g1(nodes=nodes, edges=edges, tenants=20)
    bench = start_loaded_server(wl)
    rows: list[dict[str, Any]] = []
    windows: dict[str, tuple[float, float]] = {}  # run -> when it ran (its receipts' issuance lag)
    try:
        keys = action_keys(bench)
        base = f"http://127.0.0.1:{bench.server.port}"
        runs = [("baseline 1x", "off", 1), ("optimized 1x", "on", 1), ("optimized 3x", "on", 3)]
        if a.quick:
            runs = [("baseline 1x", "off", 1), ("optimized 1x", "on", 1)]
        for label, flags, factor in runs:
            bench.apply_flags(profile_values("baseline" if flags == "off" else "optimized"))
            rate = PEAK_RPS * factor
            print(f"  {label}: P1 mix at {rate} req/s + /healthz {rate}/s for {duration:g} s (flags {flags})")
            t0 = time.time()
            report[label] = p1_run(base, keys, rate, duration, warmup)
            windows[label] = (t0 + warmup, time.time())
            print(verdict_line(label, report[label]["verdict"]), flush=True)
            print("    " + pauses_line(report[label]["collector"]), flush=True)
            rows += [{"run": label, **{k: v for k, v in r.items() if k != "error_samples"}}
                     for r in report[label]["flows"].values()]
        bench.apply_flags(profile_values("optimized"))
        print(f"  batch vs single: {a.action_rate:g} actions/s in bursts of {a.burst} for {duration:g} s per mode "
              f"in 4 alternating segments (flags on)")
        report["batch_vs_single"] = uvloop.run(run_batch_vs_single(base, keys, a.action_rate, a.burst, duration,
                                                                    warmup))
        report["issuance"] = issuance_lag(base, keys, windows)
        if a.ablate:  # a diagnosis of the flags, after every measurement the targets are judged on
            report["ablation"] = run_ablation(base, keys, bench, PEAK_RPS * a.ablate_peak, a.ablate_duration, warmup)
            rows += [{"run": f"{a.ablate_peak:g}x {r['variant']} #{r['round'] + 1}",
                      **{k: v for k, v in f.items() if k != "error_samples"}}
                     for r in report["ablation"] for f in r["flows"].values()]
    finally:
        bench.close()
    print(format_table(rows, COLUMNS))
    for label, _, _ in runs:
        print(verdict_line(label, report[label]["verdict"]))
    bvs_rows, bvs_line = batch_vs_single_summary(report["batch_vs_single"])
    print()
    print(format_table(bvs_rows, BVS_COLUMNS))
    print(bvs_line)
    for line in lag_lines(report["issuance"]):
        print(line)
    write_json(out / "actions.json", report)
    (out / "actions.md").write_text("\n\n".join([to_markdown(rows, COLUMNS), to_markdown(bvs_rows, BVS_COLUMNS),
                                                  bvs_line, ""]))
    print(f"wrote {out / 'actions.json'}")
    return 0


def repeat_main(repeat: int, seconds: float, rate: float, warmup: float, quick: bool, alternate: dict[str, str],
                out: Path) -> int:
    """--p1-repeat: the P1 verdict run after run on one loaded server (the G1 graph; small with --quick)."""
    nodes, edges = (5_000, 50_000) if quick else (200_000, 2_000_000)
    bench = start_loaded_server(generate_g1(nodes=nodes, edges=edges, tenants=20))
    try:
        keys = action_keys(bench)
        base = f"http://127.0.0.1:{bench.server.port}"
        print(f"P1 mix at {rate:g} req/s + /healthz {rate:g}/s, {repeat} x {seconds:g} s"
              + (f", alternating with {alternate}" if alternate else ""), flush=True)
        runs = run_repeat(base, keys, bench, rate, seconds, warmup, repeat, alternate or None)
    finally:
        bench.close()
    for line in repeat_summary(runs):
        print(line)
    write_json(out / "p1_repeat.json", {"rate": rate, "seconds": seconds, "alternate": alternate, "runs": runs})
    print(f"wrote {out / 'p1_repeat.json'}")
    return 0
