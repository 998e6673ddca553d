"""The receipt issuer in-process on a real LMDB: pipelined batches (batch k+1 signed while k
commits), failures in the middle of a pipeline, several tenants, one chain each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from provgraph._core import uuid7, verify_chain
from provgraph.actions.pipeline import Issuer, ReceiptLog
from provgraph.actions.signing import KeyRing
from provgraph.store import Store, Writer


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Store, Writer, KeyRing]]:
    store = Store(tmp_path / "data")
    writer = Writer(store)
    yield store, writer, KeyRing(store)
    writer.close()
    store.close()


def intent(tenant: str, i: int) -> dict[str, Any]:
    return {"receipt_id": uuid7(), "tenant_id": tenant, "executed_at": "2026-11-26T07:00:00.000000Z",
            "actor": {"id": "user:op", "roles": ["operator"]}, "action": "deploy",
            "resource": {"type": "service", "id": f"svc-{i}"},
            "policy": {"bundle": "authz", "revision": "r1", "decision_id": str(i), "decision": "allow"},
            "preflight_id": uuid7(), "request_hash": f"{i:064x}", "result_hash": f"{i:064x}", "approvals": []}


def queue(store: Store, issuer: Issuer, per_tenant: dict[int, int]) -> dict[int, list[str]]:
    ids: dict[int, list[str]] = {}
    items = [(t, intent(f"t{t}", i)) for t, n in per_tenant.items() for i in range(n)]
    for t, it in items:
        ids.setdefault(t, []).append(it["receipt_id"])
    store.write_direct(lambda txn: [issuer.put_intent(txn, t, it, time.time()) for t, it in items])
    return ids


def chain_ok(store: Store, keys: KeyRing, tenant: int, expected_ids: list[str]) -> None:
    receipts = ReceiptLog(store).page(tenant, 0, 100_000)
    assert len(receipts) == len(expected_ids)
    report = verify_chain(receipts, keys.public_key_bytes())
    assert report["ok"], report
    log = ReceiptLog(store)
    assert all(log.get(tenant, rid) is not None for rid in expected_ids)
    with store.read() as txn:
        assert txn.stat(store.db("outbox"))["entries"] == 0


@pytest.mark.parametrize("inline_sign_max", [16, 0], ids=["signed-on-the-loop", "signed-on-a-worker"])
def test_pipelined_batches_of_several_tenants(parts: tuple[Store, Writer, KeyRing], inline_sign_max: int) -> None:
    store, writer, keys = parts
    issuer = Issuer(store, writer, keys, batch_max=7, pipeline=3, inline_sign_max=inline_sign_max)
    lags: list[float] = []
    issuer.on_issued = lags.extend
    ids = queue(store, issuer, {1: 50, 2: 23, 3: 1})
    assert asyncio.run(issuer.drain()) is True
    assert issuer.issued == 74 and len(lags) == 74 and all(lag >= 0 for lag in lags)
    for t, expected in ids.items():
        chain_ok(store, keys, t, expected)
    # the chain continues across drains and across a restart of the issuer
    more = queue(store, issuer, {1: 9})
    assert asyncio.run(issuer.drain()) is True
    again = Issuer(store, writer, keys, batch_max=4, pipeline=2)
    last = queue(store, again, {1: 5})
    assert asyncio.run(again.drain()) is True
    chain_ok(store, keys, 1, ids[1] + more[1] + last[1])


@pytest.mark.parametrize("fault", ["commit", "sign"])
def test_failure_inside_a_pipeline_issues_each_once(parts: tuple[Store, Writer, KeyRing], fault: str) -> None:
    """A failure while a later batch is already signed on the failed batch's head: heads go back to
    the committed ones, nothing is issued twice or skipped, the chain stays unbroken."""
    store, writer, keys = parts
    issuer = Issuer(store, writer, keys, batch_max=5, pipeline=4, max_attempts=3)
    ids = queue(store, issuer, {1: 40})
    assert asyncio.run(issuer.drain()) is True  # a first chunk fully issued
    ids2 = queue(store, issuer, {1: 40})
    issuer.faults[fault] = 1
    assert asyncio.run(issuer.drain()) is False
    committed = issuer.committed[1][0]
    assert issuer.heads[1] == issuer.committed[1]
    assert 40 <= committed < 80
    assert asyncio.run(issuer.drain()) is True
    assert issuer.issued == 80 and issuer.failures == 1
    with store.read() as txn:
        assert txn.stat(store.db("dlq"))["entries"] == 0
    chain_ok(store, keys, 1, ids[1] + ids2[1])


def test_time_bound_lets_intents_of_one_interval_share_a_batch(parts: tuple[Store, Writer, KeyRing]) -> None:
    """Idle, an intent is issued at once; intents that arrive within `linger_s` of the last drain
    wait for the interval's end and go out together: one signing call, one commit."""
    store, writer, keys = parts
    issuer = Issuer(store, writer, keys, linger_s=1.0)
    batches: list[int] = []
    issuer.on_issued = lambda lags: batches.append(len(lags))

    async def until(cond: Any) -> None:
        for _ in range(1000):
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the issuer did not get there in 10 s")

    async def scenario() -> dict[int, list[str]]:
        issuer.bind(asyncio.get_running_loop())
        task = asyncio.create_task(issuer.run())
        first = queue(store, issuer, {1: 1})
        issuer.notify()
        await until(lambda: issuer.issued == 1)
        assert batches == [1]
        groups = writer.groups
        later: dict[int, list[str]] = {1: []}
        for _ in range(5):  # five executions 10 ms apart, each notifying
            later[1] += queue(store, issuer, {1: 1})[1]
            issuer.notify()
            await asyncio.sleep(0.01)
        await until(lambda: issuer.issued == 6)
        assert batches == [1, 5]
        assert writer.groups == groups + 1  # the five receipts: one commit
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return {1: first[1] + later[1]}

    ids = asyncio.run(scenario())
    chain_ok(store, keys, 1, ids[1])
