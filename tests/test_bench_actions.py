"""bench actions against a real server: the batch-vs-single comparison counts its round trips and issues receipts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from conftest import Server
from provgraph.bench.actions import issuance_lag, lag_lines, p1_verdict, run_batch_vs_single
from provgraph.policy.bundle import load_example_bundle

TENANT = "bvs"


def test_batch_vs_single_round_trips_and_receipts(server: Server) -> None:
    admin = server.api()
    status, _, body = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(), {"Content-Type": "application/gzip"})
    assert status in (200, 201), body
    op = admin.new_tenant(TENANT, scopes=("read", "write"), actor="user:op", roles=("operator",))
    keys: dict[str, Any] = {"tenant": TENANT, "op": op.key, "receipts": [], "reader": op.key,
                            "admin": admin.key}
    burst, rate, duration = 5, 25.0, 2.0  # a burst every 0.2 s: 10 measured bursts per mode
    started = time.time()
    res = asyncio.run(run_batch_vs_single(f"http://127.0.0.1:{server.port}", keys, rate, burst, duration, 0.4))
    single, batch = res["single"], res["batch"]
    for mode in (single, batch):
        assert mode["errors"] == 0 and mode["dropped"] == 0, mode["error_samples"]
        assert mode["actions"] == mode["bursts"] * burst > 0
    assert single["round_trips"] == 2 * single["actions"]
    assert single["round_trips_per_action"] == 2.0
    assert batch["round_trips"] == batch["bursts"]
    assert batch["round_trips_per_action"] == 1 / burst
    assert res["round_trips_single_over_batch"] == 2 * burst
    # every action of both modes (warm-up included) got a receipt id, and every receipt is issued
    assert len(keys["receipts"]) == len(set(keys["receipts"])) >= single["actions"] + batch["actions"]
    pending = set(keys["receipts"])
    deadline = time.monotonic() + 10.0
    while pending and time.monotonic() < deadline:
        pending = {rid for rid in pending if op.get(f"/v1/tenants/{TENANT}/receipts/{rid}")[0] != 200}
        if pending:
            time.sleep(0.05)
    assert not pending, f"{len(pending)} receipts not readable after 10 s"
    # the issuance lag over every receipt, and per run window (one before any receipt: none in it)
    lag = issuance_lag(f"http://127.0.0.1:{server.port}", keys,
                       {"this run": (started, time.time()), "before": (started - 60, started - 30)})
    assert lag["receipts"] == len(keys["receipts"]) and lag["dlq_depth"] == 0
    assert lag["by_run"]["this run"]["receipts"] == lag["receipts"]
    assert "before" not in lag["by_run"]
    assert 0 <= lag["lag_p50_ms"] <= lag["lag_p95_ms"] <= lag["lag_p99_ms"]
    assert any("during this run" in line for line in lag_lines(lag))


def test_p1_verdict_applies_the_target_to_every_flow() -> None:
    def flows(p99: dict[str, float], errors: int = 0, dropped: int = 0) -> dict[str, Any]:
        return {f: {"p99_ms": v, "p50_ms": v / 4, "errors": errors if f == "approval" else 0,
                    "dropped": dropped if f == "q1" else 0} for f, v in p99.items()}

    ok = {"q1": 3.0, "q2": 3.0, "decide": 3.0, "preflight_execute": 16.0, "approval": 15.9, "receipt_verify": 4.0,
          "healthz": 4.0}
    v = p1_verdict(flows(ok))
    assert v["p99_limit_ms"] == 16.0 and v["flows_over"] == {} and v["met"]
    v = p1_verdict(flows({**ok, "approval": 16.5}))
    assert v["flows_over"] == {"approval": 16.5} and not v["met"]
    assert not p1_verdict(flows(ok, errors=1))["met"] and not p1_verdict(flows(ok, dropped=2))["met"]
    assert not p1_verdict(flows({**ok, "q2": float("nan")}))["met"]  # a flow with no answers is not a pass
    # the line shows the floor too: a saturated server "meets" the limit its own floor makes huge
    from provgraph.bench.actions import verdict_line

    saturated = p1_verdict(flows({f: 2000.0 for f in ok}))
    assert saturated["met"] and (saturated["floor_p50_ms"], saturated["floor_p99_ms"]) == (500.0, 2000.0)
    assert "/healthz p50 500.00 ms, p99 2000.00 ms -> p99 limit 3010.00 ms" in verdict_line("run", saturated)


def test_flows_without_an_answer_end_the_run_as_errors() -> None:
    """A request the server never answers must not hang or crash the run: after the grace period it is
    cancelled and counts as an error of its flow."""
    from provgraph.bench.actions import NO_ANSWER, Recorder, _finish, _spawn

    async def scenario() -> Recorder:
        rec = Recorder()
        tasks: set[asyncio.Task[None]] = set()

        async def flow(name: str, seconds: float) -> None:
            try:
                await asyncio.sleep(seconds)
                rec.ok(name, int(seconds * 1e9))
            except asyncio.CancelledError:
                rec.error(name, NO_ANSWER)
                raise

        _spawn(tasks, flow("quick", 0.01))
        _spawn(tasks, flow("stuck", 3600))
        await _finish(tasks, timeout=0.5)
        return rec

    rec = asyncio.run(scenario())
    assert list(rec.lat) == ["quick"] and rec.errors == {"stuck": 1} and rec.samples["stuck"] == [NO_ANSWER]


def test_collector_pauses_of_a_run(server: Server) -> None:
    """The P1 runs report the server's collector pauses between two scrapes of /metrics: a flag change
    to runtime.gc=frozen runs one full collection, which shows up as one generation-2 pause."""
    from provgraph.bench.actions import collector_pauses, pauses_between, pauses_line

    base = f"http://127.0.0.1:{server.port}"
    admin = server.api()
    before = collector_pauses(base)
    assert set(before) == {"0", "1", "2"}
    with admin.flags_set({"runtime.gc": "default"}):
        admin.ok("PUT", "/v1/admin/flags", {"runtime.gc": "frozen"})
    delta = pauses_between(before, collector_pauses(base))
    n = delta["2"]["collections"]
    assert n >= 1  # that one (and any the server ran by itself meanwhile)
    assert 0 < delta["2"]["total_ms"] <= n * delta["2"]["longest_le_ms"]
    assert f"gen 2: {n} pauses" in pauses_line(delta)
    unchanged = pauses_between(before, before)
    assert all(v == {"collections": 0, "total_ms": 0.0, "longest_le_ms": 0.0} for v in unchanged.values())


def test_p1_repeat_runs_alternate_and_report_commit_groups() -> None:
    """--p1-repeat: runs in a row on one loaded server, each followed by one with the alternate flag; each run
    reports its p99s, the verdict, and the commit groups it made (per second, per request sent); the
    server is back at its default flags afterwards."""
    from provgraph.bench.actions import action_keys, repeat_line, repeat_summary, run_repeat
    from provgraph.bench.graph_http import start_loaded_server
    from provgraph.bench.workloads import generate_g1
    from provgraph.flags import profile_values

    bench = start_loaded_server(generate_g1(nodes=2_000, edges=10_000, tenants=4), pin=False)
    try:
        keys = action_keys(bench)
        base = f"http://127.0.0.1:{bench.server.port}"
        runs = run_repeat(base, keys, bench, rate=40.0, seconds=1.5, warmup=0.3, repeat=2,
                          alternate={"runtime.group_window": "off"})
        assert [(r["run"], r["variant"]) for r in runs] == [(1, "defaults"), (1, "runtime.group_window=off"),
                                                            (2, "defaults"), (2, "runtime.group_window=off")]
        for run in runs:
            c = run["commits"]
            assert c["requests"] >= 2 * int(40.0 * 1.8) - 2  # every arrival and its /healthz, at least
            assert 0 < c["groups"] <= c["jobs"] and c["jobs_per_group"] == c["jobs"] / c["groups"]
            assert c["groups_per_s"] == c["groups"] / c["seconds"] > 0
            assert c["groups_per_request"] == c["groups"] / c["requests"]
            assert sum(f["ok"] for f in run["flows"].values()) > 0
            line = repeat_line("x", run)
            assert "preflight_execute" in line and "commit groups/s" in line and "limit" in line
        summary = repeat_summary(runs)
        assert [s.split(":")[0] for s in summary] == ["defaults", "runtime.group_window=off"]
        assert all("of 2 runs" in s for s in summary)
        assert bench.admin().ok("GET", "/v1/admin/flags")["flags"]["runtime.group_window"]["value"] == \
            profile_values("optimized")["runtime.group_window"]
    finally:
        bench.close()
