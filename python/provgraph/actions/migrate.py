"""Migrating stored receipts between their full and compact forms (docs/receipts.md, "Compact form"):
`POST /v1/admin/receipts/migrate` (online, run by the issuer between its batches) and `provgraph
receipts migrate` (offline, server stopped).

A migration scans the receipts table in key order, a bounded chunk at a time. Each chunk is one write
job: every row not yet in the target form is replaced in place by it (to compact: the compact form,
which the codec returns only after it reconstructed the stored bytes exactly, so nothing is dropped
before it is verified; to full: the reconstructed JSON), together with the dictionary entries the
chunk added and the migration's state row (meta `receipts_migration`: where the next chunk starts).
A crash loses at most the chunk in flight, whose rows are still in their old form: the next start
resumes from the state row. Rows already in the target form are skipped, so running a migration
twice changes nothing, and reads are byte-identical throughout (a row of either form reads the same)."""

from __future__ import annotations

import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from provgraph.actions.pipeline import ReceiptCodecs, dict_key
from provgraph.store import Store, Txn
from provgraph.store.keys import prefix_end, tenant_prefix

__all__ = ["MIGRATION_KEY", "Chunk", "Migration", "run_offline"]

MIGRATION_KEY = b"receipts_migration"
_SEQ = struct.Struct(">Q")
TARGETS = ("compact", "full")
_DUAL_TABLE = "receipts_compact"


@dataclass
class Migration:
    """A migration's state, as stored in its meta row."""

    job_id: str
    to: str
    tenant_id: str | None  # None: every tenant
    tenant_num: int | None
    next_key: bytes
    end_key: bytes
    state: str = "running"  # running | done | failed
    migrated: int = 0
    scanned: int = 0
    total: int = 0
    errors: list[str] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float | None = None

    @classmethod
    def start(cls, store: Store, to: str, tenant_id: str | None, tenant_num: int | None) -> Migration:
        lo = tenant_prefix(tenant_num) if tenant_num is not None else b""
        hi = prefix_end(lo) if tenant_num is not None else b"\xff" * 13
        with store.read() as txn:
            total = _count(txn, store, lo, hi)
        return cls(str(uuid.uuid4()), to, tenant_id, tenant_num, lo, hi, total=total, started_at=time.time())

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "to": self.to, "tenant_id": self.tenant_id, "tenant_num": self.tenant_num,
                "next_key": self.next_key.hex(), "end_key": self.end_key.hex(), "state": self.state,
                "migrated": self.migrated, "scanned": self.scanned, "total": self.total, "errors": self.errors[-20:],
                "started_at": self.started_at, "finished_at": self.finished_at}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Migration:
        return cls(d["job_id"], d["to"], d["tenant_id"], d["tenant_num"], bytes.fromhex(d["next_key"]),
                   bytes.fromhex(d["end_key"]), d["state"], d["migrated"], d["scanned"], d["total"],
                   list(d["errors"]), d["started_at"], d["finished_at"])

    @classmethod
    def load(cls, store: Store) -> Migration | None:
        with store.read() as txn:
            raw = txn.get(MIGRATION_KEY, db=store.db("meta"))
        return None if raw is None else cls.from_json(orjson.loads(raw))

    def answer(self) -> dict[str, Any]:
        """What GET /v1/admin/receipts/migrate answers."""
        return {"state": self.state, "job_id": self.job_id, "to": self.to, "tenant_id": self.tenant_id,
                "migrated": self.migrated, "remaining": max(0, self.total - self.scanned),
                "errors": list(self.errors)}


def _count(txn: Txn, store: Store, lo: bytes, hi: bytes) -> int:
    n = 0
    cur = txn.cursor(db=store.db("receipts"))
    if cur.set_range(lo):
        for key in cur.iternext(values=False):
            if bytes(key) >= hi:
                break
            n += 1
    return n


@dataclass
class Chunk:
    """One chunk of a migration: what its write job writes, and the state after it."""

    rows: list[tuple[bytes, bytes]]
    entries: dict[int, tuple[int, list[bytes]]]  # tenant -> (id of the first entry added, the entries)
    after: Migration

    def job(self, store: Store) -> Any:
        rows, entries, state = self.rows, self.entries, self.after

        def job(txn: Txn) -> tuple[int, None]:
            if rows:
                txn.cursor(db=store.db("receipts")).putmulti(rows)
                if state.to == "compact":
                    for key, _ in rows:
                        txn.delete(key, db=store.db(_DUAL_TABLE))
            for tenant, (first, added) in entries.items():
                txn.cursor(db=store.db("receipt_dict")).putmulti(
                    [(dict_key(tenant, first + i), e) for i, e in enumerate(added)])
            txn.put(MIGRATION_KEY, orjson.dumps(state.to_json()), db=store.db("meta"))
            return len(rows), None

        return job


def plan(store: Store, codecs: ReceiptCodecs, state: Migration, limit: int) -> Chunk:
    """The next chunk of `state`: up to `limit` rows from its next key, the ones not in the target form
    converted (their dictionary entries are added to `codecs` in memory: keep or roll them back with
    the chunk's commit)."""
    scanned: list[tuple[bytes, bytes]] = []
    with store.read() as txn:
        cur = txn.cursor(db=store.db("receipts"))
        if cur.set_range(state.next_key):
            for key, value in cur:
                if bytes(key) >= state.end_key or len(scanned) >= limit:
                    break
                scanned.append((bytes(key), bytes(value)))
    by_tenant: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in scanned:
        if (value[:1] == b"{") == (state.to == "compact"):  # not in the target form yet
            by_tenant.setdefault(struct.unpack(">I", key[:4])[0], []).append((key, value))
    rows: list[tuple[bytes, bytes]] = []
    entries: dict[int, tuple[int, list[bytes]]] = {}
    for tenant, items in by_tenant.items():
        codec = codecs.codec(tenant)
        if state.to == "compact":
            forms, first, added = codec.encode("", [(v, _SEQ.unpack(k[4:12])[0]) for k, v in items])
            # a receipt the codec keeps whole (escape form) stays as full JSON
            rows += [(k, f) for (k, _), f in zip(items, forms, strict=True) if f[:1] == b"\x01"]
            if added:
                entries[tenant] = (first, added)
        else:
            full = codec.decode_many("", [(v, _SEQ.unpack(k[4:12])[0]) for k, v in items])
            rows += [(k, j) for (k, _), j in zip(items, full, strict=True)]
    after = Migration.from_json(state.to_json())
    after.scanned += len(scanned)
    after.migrated += len(rows)
    if len(scanned) < limit:
        after.state, after.finished_at, after.next_key = "done", time.time(), state.end_key
    else:
        after.next_key = scanned[-1][0] + b"\x00"  # the key right after the last one scanned
    return Chunk(rows, entries, after)


def run_offline(store: Store, state: Migration, limit: int = 1000, progress: Any = None) -> Migration:
    """Run `state` to its end on a store no server has open (provgraph receipts migrate)."""
    codecs = ReceiptCodecs(store)
    while state.state == "running":
        chunk = plan(store, codecs, state, limit)
        job = chunk.job(store)

        def write(txn: Txn, job: Any = job) -> int:
            return int(job(txn)[0])

        try:
            store.write_direct(write)
        except BaseException:
            codecs.rollback()
            raise
        for tenant, (first, added) in chunk.entries.items():
            codecs.keep(tenant, first + len(added))
        state = chunk.after
        if progress is not None:
            progress(state)
    return state
