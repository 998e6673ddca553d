"""The decision log keeps the newest entries per tenant up to its retention, newest first, tenants apart."""

from __future__ import annotations

from pathlib import Path

from provgraph.policy.decision_log import DecisionLog
from provgraph.store import Store, Writer


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
        # trimming runs every retention/10 entries, so at most that many beyond the retention remain
        assert 50 <= len(newest) <= 55
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
