"""The decision log: OPA-style entries per tenant in LMDB, written in the background, with bounded retention."""

from __future__ import annotations

import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import orjson

from provgraph.store import Store, Txn, Writer
from provgraph.store.keys import prefix_end, tenant_prefix
from provgraph.store.records import Fresh, RecordCodecs

__all__ = ["DecisionLog"]

_KEY = struct.Struct(">IQI")  # tenant num, time ns, sequence
_COUNT = struct.Struct(">Q")
_COUNTED = b"decision_log_counted"  # in meta: decision_log_counts is complete

# Entries are stored in their compact form with records.storage=compact (provgraph_core::records:
# ~65 bytes for ~450 as JSON; docs/storage.md "Compact records"), else as JSON.


class DecisionLog:
    """Buffers entries in memory and flushes them in one write job; keeps at most `retention` per
    tenant. Retention is kept as entries come: each flush deletes as many of a tenant's oldest
    entries as take it over `retention` — work in proportion to what was written, never a scan of
    the whole log inside the writer (which holds the GIL: a 100k-entry scan stalled every request
    for ~50 ms). Per-tenant counts are stored with the entries (table decision_log_counts, same
    transaction) and read when the log opens; a data dir from before the table existed is counted
    once, then stored."""

    def __init__(self, store: Store, writer: Writer, retention: int = 100_000) -> None:
        self.store, self.writer, self.retention = store, writer, retention
        self.db = store.db("decision_log")
        self.records = RecordCodecs(store, b"d")
        self.compact = False  # flag records.storage: new entries are stored in their compact form
        self._pending: deque[tuple[bytes, bytes]] = deque()
        self._last: Future[int] | None = None  # the newest flush job submitted
        self._lock = threading.Lock()
        self._seq = 0
        self.dropped = 0
        self.counts_db = store.db("decision_log_counts")
        self._count: dict[int, int] = {}  # tenant -> entries stored (as committed)
        with store.read() as txn:
            stored = txn.get(_COUNTED, db=store.db("meta")) is not None
            if stored:
                for key, value in txn.cursor(db=self.counts_db):
                    self._count[int.from_bytes(key, "big")] = _COUNT.unpack(value)[0]
        if not stored:
            self._count = writer.submit(self._count_once).result()

    def _count_once(self, txn: Txn) -> tuple[dict[int, int], None]:
        """Count every tenant's entries (a data dir written before counts were stored) and store the
        counts, in the writer so that no flush runs meanwhile."""
        counts: dict[int, int] = {}
        for key in txn.cursor(db=self.db).iternext(values=False):
            t = int.from_bytes(key[:4], "big")
            counts[t] = counts.get(t, 0) + 1
        self._store_counts(txn, counts)
        txn.put(_COUNTED, b"1", db=self.store.db("meta"))
        return counts, None

    def _store_counts(self, txn: Txn, counts: dict[int, int]) -> None:
        cur = txn.cursor(db=self.counts_db)
        cur.putmulti([(tenant_prefix(t), _COUNT.pack(n)) for t, n in sorted(counts.items())])

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def record(self, tenant: int, entry: dict[str, Any]) -> None:
        self.record_json(tenant, orjson.dumps(entry))

    def record_json(self, tenant: int, entry: bytes) -> None:
        """record() of an entry already encoded (by the /decide fast path)."""
        with self._lock:
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            key = _KEY.pack(tenant, time.time_ns(), self._seq)
        self._pending.append((key, entry))
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

        compact = self.compact

        def job(txn: Txn) -> tuple[int, Callable[[], None]]:
            cur = txn.cursor(db=self.db)
            fresh: Fresh = []
            cur.putmulti([(key, self._encode(txn, key, raw, fresh)) for key, raw in items] if compact else items)
            counts = {t: self._count.get(t, 0) + n for t, n in tenants.items()}
            for t, count in counts.items():
                if count > self.retention:
                    counts[t] = count - self._delete_oldest(txn, t, count - self.retention)
            self._store_counts(txn, counts)

            def committed() -> None:  # counts follow what was committed (a failed group changes none)
                self._count.update(counts)
                self.records.committed(fresh)

            return len(items), committed

        self._last = self.writer.submit(job)
        return self._last

    def _encode(self, txn: Txn, key: bytes, raw: bytes, fresh: Fresh) -> bytes:
        """An entry as stored in compact mode: its compact form (with the dictionary entries it
        needs written in `txn`), or its JSON where the form cannot hold it."""
        tenant, ns, _ = _KEY.unpack(key)
        return self.records.stored(txn, tenant, self.records.of(tenant).encode_entry(raw, ns // 1000), raw, fresh)

    def _delete_oldest(self, txn: Txn, tenant: int, n: int) -> int:
        """Delete up to `n` of a tenant's oldest entries (keys sort by time); how many were."""
        lo = tenant_prefix(tenant)
        cur = txn.cursor(db=self.db)
        deleted = 0
        if cur.set_range(lo):
            while deleted < n and cur.key()[:4] == lo and cur.delete():  # delete moves to the next
                deleted += 1
        return deleted

    def query(self, tenant: int, limit: int = 100, before_ns: int | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        lo = tenant_prefix(tenant)
        start = _KEY.pack(tenant, before_ns, 0) if before_ns is not None else prefix_end(lo)
        out: list[dict[str, Any]] = []
        with self.store.read() as txn:
            codec = self.records.of(tenant)
            cur = txn.cursor(db=self.db)
            if not cur.set_range(start):
                if not cur.last():
                    return out
            elif not cur.prev():
                return out
            while len(out) < limit and cur.key()[:4] == lo:
                key, raw = cur.key(), cur.value()
                ns = _KEY.unpack(key)[1]
                try:
                    entry = orjson.loads(raw if raw[:1] == b"{" else codec.decode_entry(raw, ns // 1000))
                except ValueError as exc:  # a damaged row or dictionary: a server error, not the client's
                    raise RuntimeError(f"decision log entry of tenant {tenant} at {ns}: {exc}") from exc
                entry["ts_ns"] = ns  # page on with before_ns=<oldest ts_ns>
                out.append(entry)
                if not cur.prev():
                    break
        return out
