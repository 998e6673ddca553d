"""The decision log keeps the newest entries per tenant up to its retention, newest first, tenants apart."""

from __future__ import annotations

import threading
from pathlib import Path

from provgraph.policy.decision_log import DecisionLog
from provgraph.store import Store, Txn, Writer


def test_retention_order_and_isolation(tmp_path: Path) -> None:
    store = Store(tmp_path, sync=False)
    writer = Writer(store)
    try:
        log = DecisionLog(store, writer, retention=50)
        for i in range(400):
            log.record(1, {"decision_id": f"a{i}", "n": i})
            if i % 3 == 0:
                log.record(2, {"decision_id": f"b{i}", "n": i})
            if i % 37 == 0:
                fut = log.flush()
                assert fut is not None
                fut.result()
        fut = log.flush()
        assert fut is not None
        fut.result()
        assert log.flush() is None  # nothing pending
        newest = log.query(1, limit=1000)
        assert len(newest) == 50  # retention kept at every flush
        assert [e["n"] for e in newest] == list(range(399, 399 - len(newest), -1))
        other = log.query(2, limit=1000)
        assert other and all(e["decision_id"].startswith("b") for e in other)
        assert log.query(3) == []
        page = log.query(1, limit=5)
        assert [e["n"] for e in page] == [399, 398, 397, 396, 395]
        following = log.query(1, limit=3, before_ns=page[-1]["ts_ns"])
        assert [e["n"] for e in following] == [394, 393, 392]
    finally:
        writer.close()
        store.close()


def test_retention_counts_survive_a_restart(tmp_path: Path) -> None:
    """Counts are taken when the log opens: a reopened log keeps the retention from its first flush."""
    for run in range(3):
        store = Store(tmp_path, sync=False)
        writer = Writer(store)
        try:
            log = DecisionLog(store, writer, retention=30)
            for i in range(25):
                log.record(7, {"run": run, "n": i})
                log.record(8, {"run": run, "n": i})
            fut = log.flush()
            assert fut is not None
            fut.result()
            for tenant in (7, 8):
                entries = log.query(tenant, limit=1000)
                assert len(entries) == min(30, 25 * (run + 1))
                assert entries[0] == {**entries[0], "run": run, "n": 24}  # the newest kept
        finally:
            writer.close()
            store.close()


def test_flush_waits_for_a_flush_already_in_flight(tmp_path: Path) -> None:
    """The periodic flusher may have taken the pending entries a moment before a reader's flush:
    the reader must still wait for them (it got None before, and read too early)."""
    store = Store(tmp_path)
    writer = Writer(store)
    started, gate = threading.Event(), threading.Event()

    def hold(txn: Txn) -> tuple[None, None]:
        started.set()
        gate.wait(10)
        return None, None

    try:
        log = DecisionLog(store, writer, retention=50)
        blocker = writer.submit(hold)
        assert started.wait(10)
        log.record(1, {"decision_id": "d1"})
        in_flight = log.flush()  # the periodic flusher
        assert in_flight is not None and not in_flight.done()
        assert log.flush() is in_flight  # a reader's flush with nothing pending
        gate.set()
        blocker.result(10)
        in_flight.result(10)
        assert [e["decision_id"] for e in log.query(1)] == ["d1"]
        assert log.flush() is None
    finally:
        gate.set()
        writer.close()


def _stored_counts(store: Store) -> dict[int, int]:
    with store.read() as txn:
        return {int.from_bytes(k, "big"): int.from_bytes(v, "big")
                for k, v in txn.cursor(db=store.db("decision_log_counts"))}


def _entries(store: Store) -> dict[int, int]:
    counts: dict[int, int] = {}
    with store.read() as txn:
        for key in txn.cursor(db=store.db("decision_log")).iternext(values=False):
            t = int.from_bytes(key[:4], "big")
            counts[t] = counts.get(t, 0) + 1
    return counts


def test_counts_are_stored_with_the_entries(tmp_path: Path) -> None:
    """Each flush stores the per-tenant counts in its own transaction, so a log opens without counting
    its entries; the stored counts always equal the entries, retention trims included."""
    store = Store(tmp_path, sync=False)
    writer = Writer(store)
    try:
        log = DecisionLog(store, writer, retention=40)
        assert _stored_counts(store) == {}
        for i in range(100):
            log.record(3, {"n": i})
            if i % 2:
                log.record(4, {"n": i})
            if i % 25 == 24:
                fut = log.flush()
                assert fut is not None
                fut.result()
                assert _stored_counts(store) == _entries(store)
        assert _stored_counts(store) == {3: 40, 4: 40}
    finally:
        writer.close()
        store.close()


def test_a_log_without_stored_counts_is_counted_once(tmp_path: Path) -> None:
    """A data dir written before counts were stored (entries, no counts) is counted when the log
    opens, and the counts are stored: retention holds from the first flush on."""
    store = Store(tmp_path, sync=False)
    writer = Writer(store)
    try:
        log = DecisionLog(store, writer, retention=30)
        for i in range(25):
            log.record(5, {"n": i})
        fut = log.flush()
        assert fut is not None
        fut.result()

        def forget_counts(txn: Txn) -> tuple[None, None]:  # as an older version left the data dir
            txn.drop(store.db("decision_log_counts"), delete=False)
            txn.delete(b"decision_log_counted", db=store.db("meta"))
            return None, None

        writer.submit(forget_counts).result()
        assert _stored_counts(store) == {} and _entries(store) == {5: 25}
        reopened = DecisionLog(store, writer, retention=30)
        assert _stored_counts(store) == {5: 25}
        for i in range(25):
            reopened.record(5, {"n": 100 + i})
        fut = reopened.flush()
        assert fut is not None
        fut.result()
        assert _entries(store) == _stored_counts(store) == {5: 30}
        assert [e["n"] for e in reopened.query(5, limit=3)] == [124, 123, 122]
    finally:
        writer.close()
        store.close()
