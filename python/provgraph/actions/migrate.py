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

from provgraph.actions.pipeline import (
    PACKS,
    ReceiptCodecs,
    alone,
    dict_key,
    pack_budget,
    put_packed,
    receipt_key,
)
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
class Run:
    """Consecutive receipts of one tenant that a chunk rewrites: the rows as planned (key, value),
    and what replaces them: to compact, the compact form of each receipt (packed in the job); to
    full, the (key, JSON) row of each."""

    tenant: int
    first: int  # seq of its first receipt
    rows: list[tuple[bytes, bytes]]
    forms: list[bytes] = field(default_factory=list)
    full: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def receipts(self) -> int:
        """Receipts it rewrites."""
        return len(self.forms) + len(self.full)


@dataclass
class Chunk:
    """One chunk of a migration: what its write job writes, and the state after it."""

    runs: list[Run]
    entries: dict[int, tuple[int, list[bytes]]]  # tenant -> (id of the first entry added, the entries)
    after: Migration

    def job(self, store: Store, codecs: ReceiptCodecs) -> Any:
        runs, entries, state = self.runs, self.entries, self.after
        budget = pack_budget(store)

        def job(txn: Txn) -> tuple[int, None]:
            receipts, dual = store.db("receipts"), store.db(_DUAL_TABLE)
            cur = txn.cursor(db=receipts)
            for run in runs:
                now = [(k, txn.get(k, db=receipts)) for k, _ in run.rows]
                if state.to == "compact":
                    if now != run.rows:  # only a migration rewrites stored rows, and one runs at a time
                        state.errors.append(f"tenant {run.tenant} seq {run.first}: rows changed while the chunk "
                                            "was planned; left as they are (run the migration again)")
                        continue
                    written = set(put_packed(cur, run.tenant, run.first, run.forms, budget))
                    for key, _ in run.rows:
                        if key not in written:
                            txn.delete(key, db=receipts)
                    for seq in range(run.first, run.first + len(run.forms)):
                        txn.delete(receipt_key(run.tenant, seq), db=dual)
                else:
                    full = run.full
                    if now != run.rows:  # the issuer filled the chain's last pack meanwhile: expand it as it is
                        live = [(v, _SEQ.unpack(k[4:12])[0]) for k, v in now if v is not None]
                        full = [(receipt_key(run.tenant, q), j) for q, j in codecs.rows(run.tenant, live)]
                    cur.putmulti(full)  # a pack's key is its first receipt's: overwritten by that row
            for tenant, (first, added) in entries.items():
                txn.cursor(db=store.db("receipt_dict")).putmulti(
                    [(dict_key(tenant, first + i), e) for i, e in enumerate(added)])
            txn.put(MIGRATION_KEY, orjson.dumps(state.to_json()), db=store.db("meta"))
            return sum(r.receipts for r in runs), None

        return job


def _runs(scanned: list[tuple[bytes, bytes]], to: str, budget: int) -> list[Run]:
    """The rows of `scanned` not in the target form, as runs of consecutive receipts of one tenant
    (to compact: a pack ends a run, since packs are the target form, and so does a compact form too
    big for a pack, kept as a row of its own; to full: each row is a run)."""
    runs: list[Run] = []
    prev: tuple[int, int] | None = None  # (tenant, next seq) the last run would continue with
    for key, value in scanned:
        tenant, seq = struct.unpack(">I", key[:4])[0], _SEQ.unpack(key[4:12])[0]
        if to == "compact":
            if value[:1] in PACKS or (value[:1] != b"{" and alone(value, budget)):
                prev = None
                continue
            if prev == (tenant, seq):
                runs[-1].rows.append((key, value))
            else:
                runs.append(Run(tenant, seq, [(key, value)]))
            prev = (tenant, seq + 1)
        elif value[:1] != b"{":
            runs.append(Run(tenant, seq, [(key, value)]))
    return runs


def plan(store: Store, codecs: ReceiptCodecs, state: Migration, limit: int) -> Chunk:
    """The next chunk of `state`: up to `limit` rows from its next key, the ones not in the target form
    converted (their dictionary entries are added to `codecs` in memory: keep or roll them back with
    the chunk's commit). To compact, full rows are encoded (the codec returns a compact form only
    once it decoded back to the stored bytes) and every receipt not yet in a pack is packed; to
    full, compact rows and packs are reconstructed."""
    scanned: list[tuple[bytes, bytes]] = []
    with store.read() as txn:
        cur = txn.cursor(db=store.db("receipts"))
        if cur.set_range(state.next_key):
            for key, value in cur:
                if bytes(key) >= state.end_key or len(scanned) >= limit:
                    break
                scanned.append((bytes(key), bytes(value)))
    runs = _runs(scanned, state.to, pack_budget(store))
    entries: dict[int, tuple[int, list[bytes]]] = {}
    for run in runs:
        codec = codecs.codec(run.tenant)
        if state.to == "compact":
            full = [(v, run.first + i) for i, (_, v) in enumerate(run.rows) if v[:1] == b"{"]
            forms, first, added = codec.encode("", full) if full else ([], 0, [])
            encoded = iter(forms)
            run.forms = [next(encoded) if v[:1] == b"{" else v for _, v in run.rows]
            if added:
                have = entries.get(run.tenant)
                entries[run.tenant] = (have[0], have[1] + added) if have else (first, added)
        else:
            rows = [(v, _SEQ.unpack(k[4:12])[0]) for k, v in run.rows]
            run.full = [(receipt_key(run.tenant, q), j) for q, j in codecs.rows(run.tenant, rows)]
    after = Migration.from_json(state.to_json())
    after.scanned += len(scanned)
    after.migrated += sum(r.receipts for r in runs)
    if len(scanned) < limit:
        after.state, after.finished_at, after.next_key = "done", time.time(), state.end_key
    else:
        after.next_key = scanned[-1][0] + b"\x00"  # the key right after the last one scanned
    return Chunk(runs, entries, after)


def run_offline(store: Store, state: Migration, limit: int = 1000, progress: Any = None) -> Migration:
    """Run `state` to its end on a store no server has open (provgraph receipts migrate)."""
    codecs = ReceiptCodecs(store)
    while state.state == "running":
        chunk = plan(store, codecs, state, limit)
        job = chunk.job(store, codecs)

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
