"""Preflight retention: the sweep removes what expired longer ago than the retention, and only that.

On a real LMDB with the real writer (the sweep's unit tests), and over HTTP against a real server
whose sweeper runs every 0.2 s (what a client sees before and after)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Server
from provgraph.actions.manager import ActionManager
from provgraph.store import Store, Writer, tenant_prefix
from test_contract_actions import (
    act,
    all_receipts,
    independent_verify,
    public_keys,
    setup_tenant,
    wait_receipt,
)

NOW = 2_000_000_000.0  # the sweeps' "now" (2033); rows are placed relative to it
TTL, RETENTION = 900.0, 3600.0


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Store, Writer, ActionManager]]:
    store = Store(tmp_path / "data")
    writer = Writer(store)
    # the sweep needs the store and the writer only
    manager = ActionManager(store, writer, None, None, None, TTL, RETENTION)  # type: ignore[arg-type]
    yield store, writer, manager
    writer.close()
    store.close()


def row_key(tenant: int, created: float) -> bytes:
    """Tenant prefix + a UUIDv7 whose time is `created` (what preflight ids are)."""
    rand = bytearray(os.urandom(10))
    rand[0] = 0x70 | (rand[0] & 0x0F)
    rand[2] = 0x80 | (rand[2] & 0x3F)
    return tenant_prefix(tenant) + int(created * 1000).to_bytes(6, "big") + bytes(rand)


def put_preflight(store: Store, tenant: int, created: float, ttl: float = TTL, idem: bytes | None = None) -> bytes:
    key = row_key(tenant, created)
    record: dict[str, Any] = {"created_at": created, "expires_ts": created + ttl, "status": "pending"}
    if idem is not None:
        record["idempotency_row"] = idem.hex()

    def write(txn: Any) -> None:
        txn.put(key, orjson.dumps(record), db=store.db("preflights"))
        if idem is not None:
            txn.put(idem, b'{"preflight_id": "x", "response": {}}', db=store.db("idempotency"))

    store.write_direct(write)
    return key


def stored(store: Store, table: str = "preflights") -> set[bytes]:
    with store.read() as txn:
        return {bytes(k) for k, _ in txn.cursor(db=store.db(table))}


def test_sweep_removes_only_preflights_past_their_retention(env: tuple[Store, Writer, ActionManager]) -> None:
    store, _, manager = env
    edge = NOW - RETENTION - TTL  # created before this: expired more than RETENTION ago
    gone = {put_preflight(store, t, edge - age) for t in (1, 2, 7) for age in (1, 60, 86_400)}
    kept = {put_preflight(store, t, edge + age) for t in (1, 2, 7) for age in (1, 60, RETENTION, RETENTION + TTL + 5)}
    # created long ago, but with a longer TTL (a restart with another --preflight-ttl): not expired long enough
    kept.add(put_preflight(store, 2, edge - 60, ttl=TTL + 120))
    assert manager.stored() == len(gone) + len(kept)
    assert asyncio.run(manager.sweep(NOW)) == len(gone) == 9
    assert stored(store) == kept and manager.stored() == len(kept)
    assert manager.swept == 9
    assert asyncio.run(manager.sweep(NOW)) == 0  # nothing more to do
    assert stored(store) == kept


def test_sweep_removes_the_idempotency_row_of_a_removed_execute(env: tuple[Store, Writer, ActionManager]) -> None:
    store, _, manager = env
    old_idem, new_idem = tenant_prefix(1) + b"o" * 32, tenant_prefix(1) + b"n" * 32
    put_preflight(store, 1, NOW - RETENTION - TTL - 10, idem=old_idem)
    kept = put_preflight(store, 1, NOW - 10, idem=new_idem)
    assert asyncio.run(manager.sweep(NOW)) == 1
    assert stored(store) == {kept}
    assert stored(store, "idempotency") == {new_idem}


def test_a_sweep_runs_as_small_write_jobs_and_still_removes_everything(
        env: tuple[Store, Writer, ActionManager]) -> None:
    store, writer, manager = env
    old = NOW - RETENTION - TTL - 1000
    for t in (3, 4):
        for i in range(250):
            put_preflight(store, t, old + i)
    kept = {put_preflight(store, t, NOW) for t in (3, 4)}
    groups = writer.groups
    assert asyncio.run(manager.sweep(NOW, budget=32)) == 500
    assert stored(store) == kept
    assert writer.groups - groups >= 500 // 32  # one job per 32 rows looked at, each its own commit here


def test_sweep_of_an_empty_table_and_of_the_last_tenant_number(env: tuple[Store, Writer, ActionManager]) -> None:
    store, _, manager = env
    assert asyncio.run(manager.sweep(NOW)) == 0
    last = 0xFFFFFFFF
    kept = put_preflight(store, last, NOW)
    put_preflight(store, last, NOW - RETENTION - TTL - 1)
    assert asyncio.run(manager.sweep(NOW)) == 1
    assert stored(store) == {kept}


# ---- over HTTP ---------------------------------------------------------------------------------------
@pytest.fixture
def sweeping(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "data", "pga_test_admin_key_0123456789",
               ["--preflight-ttl", "1", "--preflight-retention", "3", "--preflight-sweep-interval", "0.2"])
    s.start()
    yield s
    s.stop()


def metric(srv: Server, name: str) -> float:
    status, _, body = srv.api().raw("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def execute(api: Any, path: str, body: Any, idempotency_key: str) -> Any:
    status, got = api.call("POST", path, body, headers={"Idempotency-Key": idempotency_key})
    assert status == 200, got
    return got


def test_expired_preflights_are_swept_after_the_retention_receipts_stay(sweeping: Server) -> None:
    keys = setup_tenant(sweeping, "sweep")
    op, a1 = keys["op"], keys["a1"]
    base = f"/v1/tenants/{op.tenant}"
    body = act("deploy", "service", {"image": "v1"})
    t0 = time.monotonic()  # before either preflight is created: both are gone from the store at t0 + 4 s
    executed = op.ok("POST", f"{base}/actions/preflight", body, status=201)["preflight_id"]
    first = execute(op, f"{base}/actions/{executed}/execute", body, "k-1")
    pending_body = act("graph.delete", "graph", {"nodes": [9]})
    pending = op.ok("POST", f"{base}/actions/preflight", pending_body, status=201)
    t1 = time.monotonic()  # after both are created: both have expired at t1 + 1 s
    assert pending["required_approvers"] == 2
    granted = a1.ok("POST", f"{base}/approvals/{pending['preflight_id']}/grant")
    wait_receipt(op, first["receipt_id"])
    wait_receipt(op, granted["receipt_id"])
    # within the TTL: the Idempotency-Key repeats the first answer
    assert execute(op, f"{base}/actions/{executed}/execute", body, "k-1") == first
    time.sleep(max(0.0, t1 + 1.2 - time.monotonic()))  # expired, not past its retention: 410 and 409 as before
    assert time.monotonic() < t0 + 4, "too slow to see the expired preflights before their sweep"
    status, err = op.call("POST", f"{base}/approvals/{pending['preflight_id']}/grant", None)
    assert status == 410 and err["error"]["code"] == "preflight_expired"
    status, err = op.call("POST", f"{base}/actions/{executed}/execute", body)
    assert status == 409
    deadline = time.monotonic() + 10
    gone = (executed, pending["preflight_id"])  # each is swept by the first sweep after its own horizon
    while any(op.get(f"{base}/actions/{pf_id}")[0] != 404 for pf_id in gone) and time.monotonic() < deadline:
        time.sleep(0.1)
    # swept: both preflights are unknown now, and their Idempotency-Key is free again
    for pf_id in gone:
        status, err = op.get(f"{base}/actions/{pf_id}")
        assert status == 404 and err["error"]["code"] == "not_found"
    status, _ = op.call("POST", f"{base}/actions/{executed}/execute", body, headers={"Idempotency-Key": "k-1"})
    assert status == 404
    again = op.ok("POST", f"{base}/actions/preflight", body, status=201)["preflight_id"]
    reused = execute(op, f"{base}/actions/{again}/execute", body, "k-1")
    assert reused["receipt_id"] != first["receipt_id"]
    while metric(sweeping, "provgraph_preflights_swept_total") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # counted once the sweep that removed them returns
    assert metric(sweeping, "provgraph_preflights_swept_total") >= 2
    assert metric(sweeping, "provgraph_preflights_stored") == 1  # the one executed with the key reused
    # the receipts are the permanent record: all there, the chain intact
    wait_receipt(op, reused["receipt_id"])
    receipts = all_receipts(op)
    assert [r["receipt_id"] for r in receipts if not r["action"].startswith("admin.")] == [
        first["receipt_id"], granted["receipt_id"], reused["receipt_id"]]
    independent_verify(receipts, public_keys(op))
