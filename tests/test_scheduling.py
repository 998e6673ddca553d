"""Fair scheduling (issue 15): heavy queries in the worker pool give the same answers as inline, a full
queue answers 503 overloaded with Retry-After, a query past its time budget 503, a traversal past the
work cap 422 naming the cap; deficit round robin splits the pool's CPU by weight; signals and the
bounded per-tenant /metrics series."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from conftest import Api
from provgraph._core import CsrGraph
from provgraph.bench.fairness import tenant_cpu
from provgraph.bench.server import JsonClient
from provgraph.errors import OverloadedError
from provgraph.graph.manager import GraphManager
from provgraph.graph.model import EdgeBatch
from provgraph.service.scheduling import (
    Activity,
    BulkGate,
    FairPool,
    Scheduler,
    TenantWindows,
    jain_index,
)
from provgraph.store import Store, Writer

QUERY = "/v1/tenants/{}/graph/query"
# the pool, the estimate and the work cap are the CSR engine's (the baseline profile's lmdb engine runs inline)
CSR = ["--flag", "graph.engine=csr"]


def load_graph(api: Api, tenant: str, nodes: int = 20_000, degree: int = 8, seed: int = 1) -> None:
    rng = random.Random(seed)
    src = [u for u in range(nodes) for _ in range(degree)]
    dst = [rng.randrange(nodes) for _ in src]
    api.ok("POST", f"/v1/tenants/{tenant}/graph/edges", {"src": src, "dst": dst})


def one_worker_server(server_factory: Any, queue_bound: int, *extra: str) -> Any:
    """A server whose pool has one worker and takes any traversal of over 1,000 edges (fair scheduling on)."""
    return server_factory([*CSR, "--flag", "scheduling.fair=on", "--heavy-work", "1000", "--pool-workers", "1",
                           "--queue-bound", str(queue_bound), *extra])


def heavy_spec(seed: int = 0) -> dict[str, Any]:
    return {"query": "neighborhood", "seed": seed, "depth": 8, "limit": 10_000_000}


def signals(admin: Api, tenant: str) -> dict[str, Any]:
    return dict(admin.ok("GET", f"/v1/admin/tenants/{tenant}/signals"))


def answered_or_queue_full(answers: list[tuple[int, dict[str, str], bytes]], answered: int) -> list[int]:
    """The statuses of a burst of raw answers: each 200 or 503 overloaded queue_full with Retry-After 1,
    at least one 503 and `answered` 200s."""
    statuses = [s for s, _, _ in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1 and statuses.count(200) >= answered, statuses
    for status, headers, body in answers:
        if status == 503:
            assert headers["retry-after"] == "1"
            err = orjson.loads(body)["error"]
            assert err["code"] == "overloaded" and err["details"]["reason"] == "queue_full"
    return statuses


def test_heavy_queries_run_in_the_pool_with_the_inline_answers(server_factory: Any) -> None:
    admin = server_factory([*CSR, "--flag", "scheduling.fair=on", "--heavy-work", "5000"]).api()
    t = admin.new_tenant("hv")
    load_graph(admin, "hv")
    specs = [heavy_spec(s) for s in range(5)] + [
        {"query": "topn", "seed": 3, "n": 5},  # cheap: inline
        {"query": "path", "src": 1, "dst": 777, "max_depth": 8},
        {"query": "topdegree", "seed": 2, "depth": 4, "n": 3},
        {"query": "neighborhood", "seed": 4, "depth": 6, "explain": True},
    ]
    pooled = [t.ok("POST", QUERY.format("hv"), s) for s in specs[:5]]
    assert signals(admin, "hv")["heavy"] == 5  # each whole-graph traversal went to the pool
    pooled.append(t.ok("POST", QUERY.format("hv"), specs[5]))
    assert signals(admin, "hv")["heavy"] == 5  # topn never does
    pooled += [t.ok("POST", QUERY.format("hv"), s) for s in specs[6:]]
    heavy = signals(admin, "hv")["heavy"]
    # the pool's CPU is the tenant's: its counter grows by about what the queries' plans say they took
    cpu0 = tenant_cpu(admin)["hv"]
    micros = sum(t.ok("POST", QUERY.format("hv"), {**heavy_spec(s), "explain": True})["plan"]["micros"]
                 for s in range(5, 10))
    assert tenant_cpu(admin)["hv"] - cpu0 >= 0.3 * micros / 1e6
    heavy = signals(admin, "hv")["heavy"]
    with admin.flags_set({"scheduling.fair": "off"}):
        inline = [t.ok("POST", QUERY.format("hv"), s) for s in specs]
        assert signals(admin, "hv")["heavy"] == heavy  # off: nothing more went to the pool
    for a, b in zip(pooled, inline, strict=True):
        for answer in (a, b):  # timing, and the snapshot a background rebuild may have swapped since
            for volatile in ("micros", "snapshot_version", "delta_rows"):
                answer.get("plan", {}).pop(volatile, None)
        assert a == b
    # the pool's errors are the inline ones: an unknown seed, a bad field
    assert t.post(QUERY.format("hv"), heavy_spec(10**9))[0] == 404
    assert t.post(QUERY.format("hv"), {**heavy_spec(), "depth": 9})[0] == 422


def test_work_cap_is_422_naming_the_cap_inline_and_in_the_pool(server_factory: Any) -> None:
    admin = server_factory([*CSR, "--max-visited", "500", "--heavy-work", "5000"]).api()
    t = admin.new_tenant("cap")
    load_graph(admin, "cap", nodes=5000)
    for fair in ("off", "on"):
        with admin.flags_set({"scheduling.fair": fair}):
            for spec in (heavy_spec(), {"query": "topdegree", "seed": 0, "depth": 4},
                         {"query": "path", "src": 0, "dst": 10**6 % 5000, "max_depth": 8}):
                status, err = t.post(QUERY.format("cap"), spec)
                if spec["query"] == "path" and status == 200:
                    continue  # found within the cap: a path BFS stops at its destination
                assert status == 422, (fair, spec, err)
                assert err["error"]["code"] == "work_cap"
                assert err["error"]["details"]["cap"] == 500
                assert "500" in err["error"]["message"]
            # under the cap: answered
            assert t.ok("POST", QUERY.format("cap"), {"query": "neighborhood", "seed": 0, "depth": 2})["count"] > 0


def test_full_queue_and_time_budget_answer_503_with_retry_after(server_factory: Any) -> None:
    server = one_worker_server(server_factory, 1)
    admin = server.api()
    t = admin.new_tenant("q")
    load_graph(admin, "q", nodes=100_000, degree=10)
    key = t.key

    def one(i: int) -> tuple[int, dict[str, str], bytes]:
        client = JsonClient(server.port, key)
        return client.raw("POST", QUERY.format("q"), orjson.dumps(heavy_spec(i)))

    with ThreadPoolExecutor(24) as ex:
        got = list(ex.map(one, range(24)))
    statuses = answered_or_queue_full(got, answered=1)
    sig = signals(admin, "q")
    assert sig["shed"] == statuses.count(503)
    assert sig["heavy"] == statuses.count(200)
    assert sig["queue_wait_ms"]["p99"] is not None
    # a time budget shorter than any wait: refused unrun, 503 naming the reason
    slow = server_factory([*CSR, "--flag", "scheduling.fair=on", "--heavy-work", "1000", "--time-budget", "0.000001"],
                          data_dir=server.data_dir.parent / "other").api()
    t2 = slow.new_tenant("tb")
    load_graph(slow, "tb", nodes=2000)
    status, err = t2.post(QUERY.format("tb"), heavy_spec())
    assert status == 503 and err["error"]["code"] == "overloaded"
    assert err["error"]["details"]["reason"] == "time_budget"
    assert t2.ok("POST", QUERY.format("tb"), {"query": "topn", "seed": 1})["results"]  # cheap: inline, answered


def test_deficit_round_robin_splits_the_pool_by_weight() -> None:
    """Three tenants with weights 1:2:4, each kept backlogged with native queries (the GIL released):
    the pool's CPU divided by weight is even (Jain's index >= 0.95)."""
    rng = np.random.default_rng(5)
    n = 200_000
    src = np.repeat(np.arange(n, dtype=np.int64), 6)
    dst = rng.integers(0, n, len(src), dtype=np.int64)
    g = CsrGraph.from_edges(src, dst, np.full(len(src), 0.5, np.float32), np.zeros(len(src), np.uint8))
    pool = FairPool(workers=2, queue_bound=64, time_budget_s=60, nice=0)
    pool.start()
    weights = {"a": 1.0, "b": 2.0, "c": 4.0}
    stop = threading.Event()

    def feed(tenant: str, fut: Future[Any] | None = None) -> None:
        if not stop.is_set():
            seed = int(rng.integers(0, n))
            f = pool.submit(tenant, weights[tenant], lambda: g.neighborhood_size(seed, depth=3, limit=10**7))
            f.add_done_callback(lambda done: feed(tenant, done))

    for tenant in weights:
        for _ in range(6):
            feed(tenant)
    time.sleep(0.3)  # past the start, every queue backlogged
    before = dict(pool.pool_ns)
    time.sleep(2.0)
    after = dict(pool.pool_ns)
    stop.set()
    pool.close()
    used = {t: after[t] - before.get(t, 0) for t in weights}
    index = jain_index([used[t] / weights[t] for t in weights])
    assert index >= 0.95, (used, index)
    assert used["c"] > used["b"] > used["a"]


def test_queue_bound_and_close_refuse_with_overloaded() -> None:
    pool = FairPool(workers=0, queue_bound=2, total_bound=3)
    pool.submit("a", 1, lambda: 1)
    pool.submit("a", 1, lambda: 2)
    with pytest.raises(OverloadedError):
        pool.submit("a", 1, lambda: 3)
    pool.submit("b", 1, lambda: 4)
    with pytest.raises(OverloadedError):  # the pool's total bound
        pool.submit("c", 1, lambda: 5)
    assert pool.shed == {"a": 1, "c": 1}
    queued = [t.future for q in pool.queues.values() for t in q.tasks]
    pool.close()
    assert all(isinstance(f.exception(), OverloadedError) for f in queued)


def test_victim_inflation_compares_the_last_window_with_the_best() -> None:
    now = [0.0]
    windows = TenantWindows(seconds=10, count=5, clock=lambda: now[0])
    sched = Scheduler(workers=0)
    sched.windows = windows
    for _ in range(50):
        windows.observe("latency", "v", 0.001)
    now[0] = 10.0
    for _ in range(50):
        windows.observe("latency", "v", 0.004)
    sig = sched.signals({}, {})
    assert 3.0 <= sig["v"]["victim_inflation"] <= 5.0
    assert sig["v"]["weight"] == 1.0


def test_signals_rank_the_tenant_that_held_the_pool_and_metrics_stay_bounded(server_factory: Any) -> None:
    server = one_worker_server(server_factory, 64)
    admin = server.api()
    noisy = admin.new_tenant("noisy")
    load_graph(admin, "noisy", nodes=100_000, degree=10)
    quiet = admin.new_tenant("quiet")
    load_graph(admin, "quiet", nodes=3000)
    admin.ok("PUT", "/v1/admin/tenants/quiet/quota", {"weight": 4})

    def run(api_key: str, tenant: str, count: int) -> None:
        client = JsonClient(server.port, api_key)
        for i in range(count):
            client.ok("POST", QUERY.format(tenant), heavy_spec(i))

    with ThreadPoolExecutor(6) as ex:
        futures = [ex.submit(run, noisy.key or "", "noisy", 6) for _ in range(5)]
        futures.append(ex.submit(run, quiet.key or "", "quiet", 20))
        for f in futures:
            f.result()
    ranked = admin.ok("GET", "/v1/admin/signals")["tenants"]
    assert ranked[0]["tenant_id"] == "noisy", ranked
    assert ranked[0]["harm"] > 0
    by_id = {r["tenant_id"]: r for r in ranked}
    assert by_id["quiet"]["weight"] == 4
    assert by_id["noisy"]["cpu_share"] > by_id["quiet"]["cpu_share"]
    assert abs(sum(r["cpu_share"] for r in ranked) - 1.0) < 0.01
    assert admin.get("/v1/admin/tenants/nobody/signals")[0] == 404
    assert noisy.get("/v1/admin/signals")[0] == 403
    # a dozen more tenants with work: the per-tenant series name at most 10, the rest are "other"
    for i in range(12):
        t = admin.new_tenant(f"t{i}")
        t.ok("POST", f"/v1/tenants/t{i}/graph/edges", {"src": [1], "dst": [2]})
        t.ok("POST", QUERY.format(f"t{i}"), {"query": "topn", "seed": 1})
    status, text = admin.get("/metrics")
    assert status == 200
    lines = [ln for ln in text.decode().splitlines() if ln.startswith("provgraph_tenant_cpu_seconds_total{")]
    labels = {ln.split('tenant="')[1].split('"')[0] for ln in lines}
    assert "noisy" in labels and "other" in labels and len(labels) == 11, labels


def test_concurrency_quota_429s_beyond_the_slots_and_frees_them_whatever_the_answer(server_factory: Any) -> None:
    server = one_worker_server(server_factory, 64, "--flag", "admission.quota=on")
    admin = server.api()
    t = admin.new_tenant("cc")
    load_graph(admin, "cc", nodes=100_000, degree=10)
    admin.ok("PUT", "/v1/admin/tenants/cc/quota", {"rps": 1000, "burst": 1000, "concurrency": 2})
    barrier = threading.Barrier(8)

    def one(i: int) -> tuple[int, Any]:
        client = JsonClient(server.port, t.key)
        barrier.wait()
        return client.call("POST", QUERY.format("cc"), heavy_spec(i))

    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(one, range(8)))
    statuses = [s for s, _ in got]
    assert set(statuses) <= {200, 429} and statuses.count(200) >= 2 and statuses.count(429) >= 1, statuses
    for status, body in got:
        if status == 429:
            assert body["error"]["details"]["reason"] == "concurrency"
    # every slot came back, whatever the answer was: one at a time, each request is admitted
    admin.ok("PUT", "/v1/admin/tenants/cc/quota", {"rps": 1000, "burst": 1000, "concurrency": 1})
    for spec, want in ((heavy_spec(1), 200), ({"query": "topn", "seed": 10**9}, 404),
                       ({"query": "topn", "seed": 1, "n": -1}, 422), ({"query": "nope"}, 400),
                       ({"query": "topn", "seed": 2}, 200)) * 3:
        assert t.post(QUERY.format("cc"), spec)[0] == want, spec


def test_bulk_gate_serves_turns_by_weight_bounds_its_queues_and_skips_cancelled_waiters() -> None:
    """Three tenants kept backlogged with bulk jobs of the same reported CPU, weights 1:2:4, one slot:
    the turns they get divided by weight are even; a full queue refuses at once (503, counted as
    shed); a waiter cancelled before its turn (its client gone) takes no slot and runs nothing."""
    async def main() -> None:
        gate = BulkGate(slots=1, queue_bound=8, total_bound=64)
        weights = {"a": 1.0, "b": 2.0, "c": 4.0}
        done: dict[str, int] = dict.fromkeys(weights, 0)
        stop = asyncio.Event()

        async def client(tenant: str) -> None:
            while not stop.is_set():
                async with gate.turn(tenant, weights[tenant]) as turn:
                    turn.add(1_000_000)  # 1 ms of CPU each
                    done[tenant] += 1
                    await asyncio.sleep(0)

        tasks = [asyncio.create_task(client(t)) for t in weights for _ in range(4)]
        while sum(done.values()) < 1400:
            await asyncio.sleep(0.001)
        stop.set()
        await asyncio.gather(*tasks)
        assert jain_index([done[t] / w for t, w in weights.items()]) >= 0.95, done
        assert done["c"] > done["b"] > done["a"]
        assert gate.running == 0 and gate.drr.queued == 0
        # bounds: the one slot held, 8 queued, the 9th refused at once
        hold = asyncio.Event()

        async def holder() -> None:
            async with gate.turn("a", 1.0):
                await hold.wait()

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        waiters = [asyncio.create_task(holder()) for _ in range(8)]
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError) as err:
            async with gate.turn("a", 1.0):
                pass
        assert err.value.details["reason"] == "queue_full" and gate.shed == {"a": 1}
        for w in waiters[:4]:  # cancelled while queued: skipped when their turn comes
            w.cancel()
        hold.set()
        await asyncio.gather(first, *waiters[4:])
        assert all(w.cancelled() for w in waiters[:4])
        assert gate.running == 0 and gate.drr.queued == 0

    asyncio.run(main())


def test_harm_is_pool_time_while_another_tenants_requests_are_in_flight() -> None:
    """A pool task of one tenant counts as harm when another tenant has a request in flight at its
    start or starts one while it runs, and not when it runs alone (or beside its own tenant's)."""
    activity = Activity()
    windows = TenantWindows()
    pool = FairPool(workers=1, nice=0, windows=windows, activity=activity)
    pool.start()
    try:
        def run(fn: Any) -> None:
            pool.submit("noisy", 1.0, fn).result(10)

        def spin() -> None:
            end = time.thread_time() + 0.005
            while time.thread_time() < end:
                pass

        activity.begin("noisy")  # its own request in flight: no harm
        run(spin)
        assert sum(w.harm_ns.get("noisy", 0) for w in windows.ring) == 0
        activity.begin("victim")  # another tenant's request in flight at the task's start
        run(spin)
        activity.end("victim")
        harm1 = sum(w.harm_ns.get("noisy", 0) for w in windows.ring)
        assert harm1 > 0

        def spin_while_a_victim_arrives() -> None:
            spin()
            activity.begin("victim")
            activity.end("victim")

        run(spin_while_a_victim_arrives)  # another tenant's request started (and ended) while it ran
        assert sum(w.harm_ns.get("noisy", 0) for w in windows.ring) > harm1
        harm2 = sum(w.harm_ns.get("noisy", 0) for w in windows.ring)
        run(spin)  # alone again
        assert sum(w.harm_ns.get("noisy", 0) for w in windows.ring) == harm2
    finally:
        pool.close()


def test_bulk_writes_and_batches_beyond_the_bulk_queue_answer_503_and_write_nothing(server_factory: Any) -> None:
    """With scheduling.fair on, bulk graph writes and large actions:batch take turns of the bulk gate
    (two at a time); with every commit slowed (fault injection) and a queue bound of 1, a burst of
    them overflows: 503 overloaded queue_full with Retry-After, and exactly the answered ones are
    written (the stats count their edges; the receipts their actions)."""
    from test_contract_actions import act, setup_tenant, wait_receipt

    server = server_factory([*CSR, "--flag", "scheduling.fair=on", "--queue-bound", "1", "--enable-fault-injection"])
    admin = server.api()
    keys = setup_tenant(server, "bw")
    op = keys["op"]
    big = [act("deploy", "service", {"n": i}, rid=f"s{i}") for i in range(150)]
    big[70] = act("graph.delete", "graph", {"nodes": [1]})  # needs approvals, across a slice boundary
    big[100] = {"action": 5}  # malformed
    got = op.ok("POST", "/v1/tenants/bw/actions:batch", {"actions": big})["results"]  # one at a time: answered
    assert got[70]["status"] == "pending_approval" and got[100]["error"]["code"] == "bad_request"
    assert sum("receipt_id" in r for r in got) == 148
    wait_receipt(op, got[-1]["receipt_id"])
    assert admin.ok("PUT", "/v1/admin/faults", {"commit_delay_ms": 300})["faults"]["commit_delay_ms"] == 300

    def edges(i: int) -> tuple[int, dict[str, str], bytes]:
        body = orjson.dumps({"src": [i * 1000 + j for j in range(64)], "dst": [i * 1000 + j + 1 for j in range(64)]})
        return JsonClient(server.port, op.key).raw("POST", "/v1/tenants/bw/graph/edges", body)

    def batch(i: int) -> tuple[int, dict[str, str], bytes]:
        body = orjson.dumps({"actions": [act("deploy", "service", {"b": i, "n": j}, rid=f"b{i}.{j}")
                                         for j in range(64)]})
        return JsonClient(server.port, op.key).raw("POST", "/v1/tenants/bw/actions:batch", body)

    with ThreadPoolExecutor(12) as ex:
        futures = [ex.submit(edges, i) for i in range(6)] + [ex.submit(batch, i) for i in range(6)]
        answers = [f.result() for f in futures]
    admin.ok("PUT", "/v1/admin/faults", {"commit_delay_ms": 0})
    statuses = answered_or_queue_full(answers, answered=2)
    written = sum(s == 200 for s, _, _ in answers[:6])
    assert op.ok("GET", "/v1/tenants/bw/graph/stats")["edges"] == 64 * written
    executed = [r for s, _, b in answers[6:] if s == 200 for r in orjson.loads(b)["results"]]
    assert len(executed) == 64 * sum(s == 200 for s, _, _ in answers[6:])
    for r in executed:
        wait_receipt(op, r["receipt_id"])
    sig = signals(admin, "bw")
    assert sig["shed"] == statuses.count(503)
    assert sig["bulk"] == 1 + statuses.count(200)  # the first batch, and every answered bulk job
    assert sig["heavy"] == 0  # no heavy query
    receipts = op.receipts("bw", page=500)
    assert sum(r["action"] == "deploy" for r in receipts) == 148 + len(executed)


def test_snapshot_rebuilds_run_at_the_pool_priority_when_scheduling_is_fair(tmp_path: Path) -> None:
    """A rebuild (hundreds of ms of CPU on a large tenant) runs at GraphManager.rebuild_nice: with
    scheduling.fair on, the heavy pool's nice 19, below the event loop; off, the process's own again
    (raising a priority back needs CAP_SYS_NICE: checked where this runs as root)."""
    store = Store(tmp_path, sync=False)
    writer = Writer(store)
    gm = GraphManager(store, writer, rebuild_min_delta=1, rebuild_fraction=0.0)
    gm.load_tenant(1)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        tid = gm._pool.submit(threading.get_native_id).result()  # the one rebuild thread

        def write_and_rebuild(i: int) -> None:
            before = gm.rebuilds
            batch = EdgeBatch(np.array([i, i + 1], np.int64), np.array([i + 2, i + 3], np.int64),
                              np.full(2, 0.5, np.float32), np.zeros(2, np.uint8))
            gm.write_edges(1, batch).result()
            deadline = time.monotonic() + 10
            while gm.rebuilds == before:
                assert time.monotonic() < deadline, "no rebuild within 10 s"
                time.sleep(0.005)

        gm.rebuild_nice = 19
        write_and_rebuild(0)
        assert os.getpriority(os.PRIO_PROCESS, tid) == 19
        gm.rebuild_nice = None
        write_and_rebuild(10)
        if os.geteuid() == 0:
            assert os.getpriority(os.PRIO_PROCESS, tid) == base
        assert gm.graph(1).edge_count == 4
    finally:
        gm.close()
        writer.close()
        store.close()


def test_signals_of_a_tenant_without_recent_work_have_every_field(server_factory: Any) -> None:
    admin = server_factory().api()
    admin.new_tenant("idle")
    admin.ok("PUT", "/v1/admin/tenants/idle/quota", {"weight": 3})
    sig = signals(admin, "idle")
    assert sig == {"tenant_id": "idle", "cpu_share": 0.0, "weight": 3, "queue_wait_ms": {"p50": None, "p99": None},
                   "throttled": 0, "shed": 0, "heavy": 0, "bulk": 0, "victim_inflation": 1.0, "harm": 0.0}
