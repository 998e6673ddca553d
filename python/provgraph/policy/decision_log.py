"""The decision log: OPA-style entries per tenant in LMDB, written in the background, with bounded retention."""

from __future__ import annotations

import struct
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any

import orjson

from provgraph.store import Store, Txn, Writer
from provgraph.store.keys import prefix_end, tenant_prefix

__all__ = ["DecisionLog"]

_KEY = struct.Struct(">IQI")  # tenant num, time ns, sequence


class DecisionLog:
    """Buffers entries in memory and flushes them in one write job; keeps at most `retention` per tenant."""

    def __init__(self, store: Store, writer: Writer, retention: int = 100_000) -> None:
        self.store, self.writer, self.retention = store, writer, retention
        self.db = store.db("decision_log")
        self._pending: deque[tuple[bytes, bytes]] = deque()
        self._last: Future[int] | None = None  # the newest flush job submitted
        self._lock = threading.Lock()
        self._seq = 0
        self._written: dict[int, int] = {}  # tenant -> entries written since the last trim
        self.dropped = 0

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def record(self, tenant: int, entry: dict[str, Any]) -> None:
        with self._lock:
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            key = _KEY.pack(tenant, time.time_ns(), self._seq)
        self._pending.append((key, orjson.dumps(entry)))
        if len(self._pending) > 4 * self.retention:  # the writer is far behind: shed, and count it
            self._pending.popleft()
            self.dropped += 1

    def flush(self) -> Any:
        """Queue one write job with everything pending (called periodically). Returns a future that
        is done once every entry recorded so far is committed — this job's, or, with nothing
        pending, the last job still in flight (the writer commits in order) — or None."""
        items = []
        while self._pending:
            items.append(self._pending.popleft())
        if not items:
            last = self._last
            return last if last is not None and not last.done() else None
        tenants: dict[int, int] = {}
        for key, _ in items:
            t = _KEY.unpack(key)[0]
            tenants[t] = tenants.get(t, 0) + 1

        def job(txn: Txn) -> tuple[int, None]:
            cur = txn.cursor(db=self.db)
            cur.putmulti(items)
            for t, n in tenants.items():
                self._written[t] = self._written.get(t, 0) + n
                if self._written[t] >= max(1, self.retention // 10):
                    self._trim(txn, t)
                    self._written[t] = 0
            return len(items), None

        self._last = self.writer.submit(job)
        return self._last

    def _trim(self, txn: Txn, tenant: int) -> None:
        """Delete the oldest entries beyond `retention` for one tenant (keys sort by time)."""
        lo, hi = tenant_prefix(tenant), prefix_end(tenant_prefix(tenant))
        cur = txn.cursor(db=self.db)
        count = 0
        if cur.set_range(lo):
            for key in cur.iternext(values=False):
                if key >= hi:
                    break
                count += 1
        excess = count - self.retention
        if excess > 0 and cur.set_range(lo):
            for _ in range(excess):
                cur.delete()  # moves to the next entry

    def query(self, tenant: int, limit: int = 100, before_ns: int | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        lo = tenant_prefix(tenant)
        start = _KEY.pack(tenant, before_ns, 0) if before_ns is not None else prefix_end(lo)
        out: list[dict[str, Any]] = []
        with self.store.read() as txn:
            cur = txn.cursor(db=self.db)
            if not cur.set_range(start):
                if not cur.last():
                    return out
            elif not cur.prev():
                return out
            while len(out) < limit and cur.key()[:4] == lo:
                entry = orjson.loads(cur.value())
                entry["ts_ns"] = _KEY.unpack(cur.key())[1]  # page on with before_ns=<oldest ts_ns>
                out.append(entry)
                if not cur.prev():
                    break
        return out
