"""Tests for the open-loop load generator, report helpers and k6 scripts (against stub servers)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from provgraph.bench.graph_http import K6_SCRIPTS
from provgraph.bench.loadgen import Flow, FlowResult, HttpPool, health_flow, run, side_by_side
from provgraph.bench.report import format_table, percentiles_us, to_markdown, write_json

K6_SCRIPT = K6_SCRIPTS / "graph.js"

# A tiny aiohttp server run in a subprocess (its own core/GIL). Prints "PORT <n>" when ready.
SERVER = r'''
import asyncio, hashlib, json, os, sys
from aiohttp import web

SEEDS = {}
if os.environ.get("SEEDS_FILE"):
    with open(os.environ["SEEDS_FILE"]) as fh:
        for t in json.load(fh)["tenants"]:
            SEEDS[t["tenant"]] = (t["key"], set(t["seeds"]))
stall_counts = {}
stall_locks = {}

async def healthz(request):
    return web.Response(text="ok")

async def slow(request):
    await asyncio.sleep(0.02)
    return web.Response(text="slow")

async def err(request):
    return web.Response(status=500, text="boom")

async def post(request):
    raw = await request.read()
    try:
        doc = json.loads(raw)
        intact = hashlib.sha256(doc["data"].encode()).hexdigest() == doc["sha"]
    except Exception:
        intact = False
    return web.json_response(doc if intact else {"error": "corrupt"}, status=200 if intact else 400)

async def stall(request):
    # The 10th request on a key holds a lock for 300 ms; every request on that key waits for it.
    key = request.match_info["key"]
    n = stall_counts[key] = stall_counts.get(key, 0) + 1
    lock = stall_locks.setdefault(key, asyncio.Lock())
    if n == 10:
        async with lock:
            await asyncio.sleep(0.3)
    else:
        async with lock:
            pass
    return web.Response(text="ok")

async def graph_query(request):
    tenant = request.match_info["tenant"]
    if tenant not in SEEDS:
        return web.json_response({"error": "unknown tenant"}, status=404)
    key, seeds = SEEDS[tenant]
    if request.headers.get("Authorization") != "Bearer " + key:
        return web.json_response({"error": "unauthorized"}, status=401)
    try:
        q = json.loads(await request.read())
    except ValueError:
        return web.json_response({"error": "bad json"}, status=400)
    ok = isinstance(q.get("seed"), int) and q["seed"] in seeds
    if q.get("query") == "topn":
        ok = ok and q.get("hops") == 2 and q.get("n") == 10
        ok = ok and q.get("edge_types") == [0, 1, 2, 3, 4]
    elif q.get("query") == "neighborhood":
        ok = ok and q.get("depth") == 3 and q.get("limit") == 50000
    else:
        ok = False
    if not ok:
        return web.json_response({"error": "bad query", "got": q}, status=400)
    return web.json_response({"tenant": tenant, "query": q["query"], "items": [1, 2, 3]})

async def main():
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/slow", slow)
    app.router.add_get("/err", err)
    app.router.add_post("/post", post)
    app.router.add_get("/stall/{key}", stall)
    app.router.add_post("/v1/tenants/{tenant}/graph/query", graph_query)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print("PORT", port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
'''


def _start_server(env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ)
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"test server failed to start: {line!r}")
    return proc, int(line.split()[1])


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    proc, port = _start_server()
    try:
        yield port
    finally:
        _stop(proc)


def _get(name: str, path: str, weight: float = 1.0, expect: Any = 200) -> Flow:
    return Flow(name, weight, lambda i: ("GET", path, None, {}), expect)


# --- loadgen -----------------------------------------------------------------------------


def test_counts_and_shares(server: int) -> None:
    flows = [health_flow(3.0), _get("slow", "/slow", 1.0)]
    res = run("127.0.0.1", server, flows, rate=400, duration_s=1.0, seed=7)
    total = sum(r.sent + r.dropped for r in res.values())
    assert abs(total - 400) <= 2
    assert res["healthz"].errors == 0 and res["slow"].errors == 0
    assert res["healthz"].dropped == 0 and res["slow"].dropped == 0
    share = res["healthz"].sent / total
    assert 0.65 <= share <= 0.85, share
    assert res["slow"].p50_ms >= 20.0
    assert res["healthz"].ok == res["healthz"].sent
    assert res["healthz"].achieved_rps > 200
    rows = side_by_side(res)
    slow_row = next(r for r in rows if r["name"] == "slow")
    assert slow_row["p99_vs_floor"] is not None and slow_row["p99_vs_floor"] > 1.0
    assert slow_row["p50_minus_floor_ms"] > 15.0
    # seeded: same seed -> same assignment of arrivals to flows
    again = run("127.0.0.1", server, flows, rate=400, duration_s=0.3, seed=7)
    again2 = run("127.0.0.1", server, flows, rate=400, duration_s=0.3, seed=7)
    arrivals = [r["slow"].sent + r["slow"].dropped for r in (again, again2)]
    assert arrivals[0] == arrivals[1]


def test_errors_counted(server: int) -> None:
    flows = [
        _get("err", "/err"),
        _get("err_expected", "/err", expect=500),
        _get("wrong_expect", "/healthz", expect=(201, 204)),
        health_flow(1.0),
    ]
    res = run("127.0.0.1", server, flows, rate=200, duration_s=0.6)
    assert res["err"].sent > 0 and res["err"].errors == res["err"].sent and res["err"].ok == 0
    assert res["err"].error_samples and "status 500" in res["err"].error_samples[0]
    assert len(res["err"].error_samples) <= 5
    assert res["err_expected"].errors == 0 and res["err_expected"].ok == res["err_expected"].sent
    assert res["wrong_expect"].errors == res["wrong_expect"].sent > 0
    assert "status 200" in res["wrong_expect"].error_samples[0]
    assert math.isnan(res["err"].p99_ms)
    assert res["healthz"].errors == 0


def test_io_errors_when_nothing_listens() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening -> connection refused
        res = run("127.0.0.1", port, [health_flow(1.0)], rate=100, duration_s=0.2)
    r = res["healthz"]
    assert r.sent + r.dropped == 20 and r.errors == r.sent and r.ok == 0
    assert r.error_samples[0].startswith("connect:")


def test_coordinated_omission_is_corrected(server: int) -> None:
    # One 300 ms stall early in the run; few requests are in flight at any time, but every
    # arrival scheduled during the stall is charged from its intended send time.
    res = run("127.0.0.1", server, [_get("stall", "/stall/co")], rate=200, duration_s=1.5)
    r = res["stall"]
    assert r.errors == 0 and r.dropped == 0
    assert r.p99_ms >= 250.0, r
    assert r.max_ms >= 280.0
    assert r.p50_ms < 250.0


def test_dropped_when_no_connection_free(server: int) -> None:
    res = run("127.0.0.1", server, [_get("slow", "/slow")], rate=300, duration_s=1.0,
              max_inflight=1)
    r = res["slow"]
    assert abs(r.sent + r.dropped - 300) <= 2
    assert r.dropped >= 150, r
    assert r.errors == 0 and r.ok == r.sent > 10


def test_post_bodies_arrive_intact(server: int) -> None:
    def build(i: int) -> tuple[str, str, bytes | None, dict[str, str]]:
        data = f"{i}-" + "x" * (i % 5000) + "é"
        body = json.dumps({"i": i, "data": data, "sha": hashlib.sha256(data.encode()).hexdigest()})
        return "POST", "/post", body.encode(), {"Content-Type": "application/json"}

    res = run("127.0.0.1", server, [Flow("post", 1.0, build)], rate=200, duration_s=0.5,
              prebuild=64)
    r = res["post"]
    assert r.sent > 90 and r.errors == 0 and r.ok == r.sent, r.error_samples



def test_http_pool_round_trips_reuses_connections_and_fails_cleanly(server: int) -> None:
    """The chained-flow client: bodies and statuses come back intact, concurrent requests get their own
    connection and idle ones are reused, an error status is an answer, a dead server an exception."""
    import asyncio

    async def scenario() -> None:
        async with HttpPool(f"http://127.0.0.1:{server}") as pool:
            for i in (0, 1, 4999, 70_000):  # several TCP segments at the large end
                data = f"{i}-" + "x" * i + "é"
                doc = {"i": i, "data": data, "sha": hashlib.sha256(data.encode()).hexdigest()}
                status, body = await pool.request("POST", f"http://127.0.0.1:{server}/post",
                                                  orjson.dumps(doc), {"Content-Type": "application/json"})
                assert status == 200 and orjson.loads(body) == doc
            assert await pool.request("GET", "/err") == (500, b"boom")
            answers = await asyncio.gather(*(pool.request("GET", "/slow") for _ in range(8)))
            assert answers == [(200, b"slow")] * 8
            assert len(pool.idle) == 8  # eight at once: eight connections, all kept
            assert await pool.request("GET", "/healthz") == (200, b"ok")
            assert len(pool.idle) == 8  # a sequential request reuses one
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            async with HttpPool(f"http://127.0.0.1:{s.getsockname()[1]}") as dead:
                with pytest.raises(OSError):
                    await dead.request("GET", "/healthz")
        with pytest.raises(ValueError):
            HttpPool("https://127.0.0.1:1")

    asyncio.run(scenario())

def test_warmup_not_recorded(server: int) -> None:
    res = run("127.0.0.1", server, [health_flow(1.0)], rate=200, duration_s=0.5, warmup_s=0.25)
    r = res["healthz"]
    assert r.sent + r.dropped == 100 and r.ok == r.sent


def test_stdlib_event_loop(server: int) -> None:
    res = run("127.0.0.1", server, [health_flow(1.0)], rate=200, duration_s=0.5, use_uvloop=False)
    r = res["healthz"]
    assert r.sent + r.dropped == 100 and r.ok == r.sent and r.errors == 0
    assert r.p99_ms > 0 and r.send_lag_p99_ms >= 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        run("127.0.0.1", 1, [], rate=10, duration_s=1)
    with pytest.raises(ValueError):
        run("127.0.0.1", 1, [health_flow(1.0), health_flow(1.0)], rate=10, duration_s=1)
    with pytest.raises(ValueError):
        side_by_side({"x": FlowResult("x")})


# --- report -------------------------------------------------------------------------------


def test_report_helpers(tmp_path: Path) -> None:
    rows = [
        {"name": "healthz", "p99_ms": 1.234, "sent": 1000, "ratio": None},
        {"name": "q1", "p99_ms": float("nan"), "sent": 12345, "ratio": 2.5},
    ]
    cols = ["name", "sent", "p99_ms", "ratio"]
    table = format_table(rows, cols)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].split() == cols
    assert len({len(ln) for ln in lines[:2]}) == 1
    assert "12,345" in table and "1.23" in table and " -" in table
    md = to_markdown(rows, cols)
    assert md.splitlines()[0] == "| name | sent | p99_ms | ratio |"
    assert md.splitlines()[1] == "|---|---:|---:|---:|"
    out = tmp_path / "sub" / "r.json"
    write_json(out, {"rows": rows, "arr": np.arange(3), "res": FlowResult("x", sent=1)})
    doc = orjson.loads(out.read_bytes())
    assert doc["arr"] == [0, 1, 2] and doc["rows"][1]["p99_ms"] is None
    assert doc["res"]["sent"] == 1 and b"\n  " in out.read_bytes()
    p = percentiles_us(np.arange(1, 1001, dtype=np.int64) * 1000)
    assert p["p50"] == pytest.approx(500.5) and p["max"] == 1000.0 and p["p99"] > p["p95"]
    assert math.isnan(percentiles_us(np.array([], dtype=np.int64))["p99"])


# --- k6 -------------------------------------------------------------------------------------


def _k6_binary() -> str | None:
    found = shutil.which("k6")
    if found:
        return found
    try:
        import k6
    except ImportError:
        return None
    for cand in Path(os.path.dirname(k6.__file__)).rglob("k6*"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def test_k6_graph_script(tmp_path: Path) -> None:
    k6 = _k6_binary()
    if k6 is None:
        pytest.skip("k6 binary not installed")
    seeds = {
        "tenants": [
            {"tenant": f"t{n:02d}", "key": f"key-{n}-secret",
             "seeds": [n * 100 + j for j in range(5)]}
            for n in range(3)
        ]
    }
    seeds_file = tmp_path / "seeds.json"
    seeds_file.write_text(json.dumps(seeds))
    summary = tmp_path / "summary.json"
    proc, port = _start_server({"SEEDS_FILE": str(seeds_file)})
    try:
        env = dict(os.environ)
        env.update(
            BASE_URL=f"http://127.0.0.1:{port}", RATE="20", DURATION="2s",
            SEEDS_FILE=str(seeds_file), SUMMARY_FILE=str(summary), PRE_VUS="4", MAX_VUS="20",
            GOMAXPROCS="4", K6_NO_USAGE_REPORT="true",
        )
        cp = subprocess.run(
            [k6, "run", "--quiet", "--no-usage-report", str(K6_SCRIPT)],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )
    finally:
        _stop(proc)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    doc = json.loads(summary.read_text())
    for name in ("q1", "q2", "healthz"):
        sc = doc["scenarios"][name]
        assert sc["requests"] > 0, doc
        assert sc["failed_rate"] == 0, doc
        for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
            assert isinstance(sc[k], (int, float)) and sc[k] > 0, (name, k, doc)
        assert sc["dropped_iterations"] == 0
    assert doc["http_req_failed_rate"] == 0
    assert doc["thresholds_ok"] is True


def test_open_loop_waits_round_up_to_whole_milliseconds_on_uvloop() -> None:
    """uvloop rounds timers to milliseconds (a sub-ms sleep would spin): waits there are whole ms, up."""
    import asyncio

    import uvloop
    from provgraph.bench.loadgen import has_ms_timers, timer_delay

    for factory, ms in ((uvloop.new_event_loop, True), (asyncio.new_event_loop, False)):
        loop = factory()
        try:
            assert has_ms_timers(loop) is ms
        finally:
            loop.close()
    assert timer_delay(0.0003, True) == 0.001 and timer_delay(0.0021, True) == 0.003
    assert timer_delay(0.0003, False) == 0.0003
