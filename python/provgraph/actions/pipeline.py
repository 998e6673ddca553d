"""The receipt pipeline: intents in the outbox are signed in batches, chained per tenant, committed once."""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from provgraph._core import ReceiptCodec, receipt_pack
from provgraph.actions.model import rfc3339
from provgraph.actions.signing import KeyRing
from provgraph.errors import InvalidArgumentError
from provgraph.store import Store, Txn, Writer
from provgraph.store.keys import prefix_end, scan_prefix, tenant_prefix

__all__ = ["CHAIN", "PACK", "PACKS", "ZERO_HASH", "Issuer", "ReceiptCodecs", "ReceiptLog", "alone", "dict_key", "intent_key", "pack_budget",
           "prev_of", "put_intent", "put_packed", "row_before", "row_count", "row_holding"]

log = logging.getLogger(__name__)
ZERO_HASH = bytes(32)
_SEQ = struct.Struct(">Q")
_ENTRY = struct.Struct(">I")
_COUNT = struct.Struct("<H")
PACK = b"\x02"  # the first byte of a pack value
CHAIN = b"\x03"  # ... of a chain pack (its forms' prev_hash elided; docs/receipts.md "Packs")
PACKS = (PACK, CHAIN)
_PREV_KEY = b'"prev_hash":"'


def intent_key(tenant: int, receipt_id: str) -> bytes:
    return tenant_prefix(tenant) + uuid.UUID(receipt_id).bytes


def put_intent(store: Store, txn: Txn, tenant: int, intent: dict[str, Any], executed_ts: float) -> None:
    """`Issuer.put_intent` without an issuer (provgraph load, offline): the next server issues it at start."""
    record = {"receipt": intent, "attempts": 0, "executed_ts": executed_ts}
    txn.put(intent_key(tenant, intent["receipt_id"]), orjson.dumps(record), db=store.db("outbox"))


def receipt_key(tenant: int, seq: int) -> bytes:
    return tenant_prefix(tenant) + _SEQ.pack(seq)


def dict_key(tenant: int, entry_id: int) -> bytes:
    return tenant_prefix(tenant) + _ENTRY.pack(entry_id)


def row_count(value: bytes) -> int:
    """Receipts in a stored row: a pack's count, else 1."""
    kind = value[:1]
    return int(_COUNT.unpack_from(value, 1 if kind == PACK else 33)[0]) if kind in PACKS else 1


def prev_of(body: bytes) -> bytes:
    """The raw prev_hash of a signed receipt's canonical JSON (the issuer's own output)."""
    at = body.index(_PREV_KEY) + len(_PREV_KEY)
    return bytes.fromhex(body[at:at + 64].decode())


def row_before(cur: Any, tenant: int, seq: int) -> tuple[int, bytes] | None:
    """The tenant's last row keyed before `seq` (the seq of its key, its value), the cursor on it."""
    ok = cur.prev() if cur.set_range(receipt_key(tenant, seq)) else cur.last()
    if not ok:
        return None
    key = bytes(cur.key())
    if key[:4] != tenant_prefix(tenant):
        return None
    return int(_SEQ.unpack(key[4:12])[0]), bytes(cur.value())


def row_holding(cur: Any, tenant: int, seq: int) -> tuple[int, bytes] | None:
    """The row holding the receipt `seq` of `tenant`: its own, or the pack it is in (one seek and
    at most one step back: a pack is keyed by its first seq)."""
    key = receipt_key(tenant, seq)
    if cur.set_range(key) and bytes(cur.key()) == key:
        return seq, bytes(cur.value())
    before = row_before(cur, tenant, seq)
    if before is not None and before[0] + row_count(before[1]) > seq:
        return before
    return None


def alone(form: bytes, budget: int) -> bool:
    """A compact form too big for a pack of its own (pack header 3 bytes + one end 2): stored as a
    row by itself (the rule of provgraph_core::receipt::pack::extend)."""
    return len(form) + 5 > budget


def pack_budget(store: Store) -> int:
    """The largest pack value that fills one LMDB overflow page (the page less its header)."""
    return int(store.env.stat()["psize"]) - 16


def put_packed(cur: Any, tenant: int, first_seq: int, forms: list[bytes], budget: int,
               prevs: list[bytes] | None = None) -> list[bytes]:
    """Store the compact forms of receipts `first_seq`, `first_seq + 1`, ... of `tenant` in packs
    (docs/receipts.md, "Packs"), the tenant's pack ending right before them filled first if it has
    room and is of the same kind (rewritten in place). With `prevs` (each receipt's prev_hash, the
    forms encoded with it elided) they go in chain packs. Returns the keys written. Runs inside
    the write transaction of `cur`, so it always sees the pack as committed by the writes before it."""
    open_value = None
    before = row_before(cur, tenant, first_seq)
    kind = PACK if prevs is None else CHAIN
    if before is not None:
        seq, value = before
        if value[:1] == kind and seq + row_count(value) == first_seq and len(value) < budget:
            open_value = value
    puts = [(receipt_key(tenant, first_seq + i), v) for i, v in receipt_pack(open_value, forms, budget, prevs)]
    cur.putmulti(puts)
    return [k for k, _ in puts]


class ReceiptCodecs:
    """Each tenant's receipt dictionary (table receipt_dict: tenant|entry id -> entry), loaded on
    first use; the compact form of its receipts and back (provgraph._core.ReceiptCodec). Entries a
    batch added in memory are kept only once that batch is committed (`keep`); `rollback` drops
    the rest, so the dictionary in memory never names an entry LMDB will not have."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._codecs: dict[int, ReceiptCodec] = {}
        self._committed: dict[int, int] = {}  # tenant -> entries committed
        self._lock = threading.Lock()

    def codec(self, tenant: int) -> ReceiptCodec:
        codec = self._codecs.get(tenant)
        if codec is not None:
            return codec
        with self._lock:
            codec = self._codecs.get(tenant)
            if codec is None:
                entries = list[bytes]()
                with self.store.read() as txn:
                    for key, value in scan_prefix(txn.cursor(db=self.store.db("receipt_dict")), tenant_prefix(tenant)):
                        if _ENTRY.unpack(key[4:])[0] != len(entries):
                            raise RuntimeError(f"tenant {tenant}: receipt dictionary has a gap at {len(entries)}")
                        entries.append(value)
                codec = ReceiptCodec(entries)
                self._committed[tenant] = len(entries)
                self._codecs[tenant] = codec
        return codec

    def keep(self, tenant: int, length: int) -> None:
        """The entries of `tenant` up to `length` are committed."""
        with self._lock:
            self._committed[tenant] = max(self._committed.get(tenant, 0), length)

    def rollback(self) -> None:
        """Forget every entry not committed (their batches were not)."""
        with self._lock:
            for tenant, codec in self._codecs.items():
                codec.truncate(self._committed.get(tenant, 0))

    def rows(self, tenant: int, rows: list[tuple[bytes, int]], want: int | None = None) -> list[tuple[int, bytes]]:
        """The receipts of stored rows `(value, seq of its key)` as `(seq, stored JSON)`: packs
        expanded, compact forms reconstructed (only `want`'s, with `want`)."""
        return self.codec(tenant).decode_rows("", rows, want)

    def decode(self, tenant: int, seq: int, value: bytes) -> bytes:
        """A stored receipt value as served: full JSON as it is, a compact form reconstructed."""
        if value[:1] == b"{":
            return value
        return bytes(self.codec(tenant).decode(value, "", seq))


class ReceiptLog:
    """Reads of issued receipts, byte-identical whatever form they are stored in (full JSON, a
    compact form, or a pack of compact forms: see ReceiptCodecs and `put_packed`). In dual mode
    (receipts.storage=dual) every read also checks that the compact copy (table receipts_compact)
    reconstructs to the bytes served; a mismatch is counted and logged, and the full receipt is
    served."""

    def __init__(self, store: Store, codecs: ReceiptCodecs | None = None) -> None:
        self.store = store
        self.codecs = codecs or ReceiptCodecs(store)
        self.check_dual = False
        self.dual_checked = 0
        self.dual_mismatches = 0

    def _served(self, txn: Txn, tenant: int, rows: list[tuple[bytes, int]], want: int | None = None
                ) -> list[tuple[int, bytes]]:
        out = self.codecs.rows(tenant, rows, want)
        if self.check_dual:
            for seq, body in out:
                self._check_dual(txn, tenant, seq, body)
        return out

    def _check_dual(self, txn: Txn, tenant: int, seq: int, body: bytes) -> None:
        compact = txn.get(receipt_key(tenant, seq), db=self.store.db("receipts_compact"))
        if compact is None:
            return
        self.dual_checked += 1
        try:
            same = self.codecs.decode(tenant, seq, bytes(compact)) == body
        except Exception:  # noqa: BLE001 - a compact copy that fails to decode is a mismatch
            same = False
        if not same:
            self.dual_mismatches += 1
            log.error("receipt compaction mismatch: tenant %d seq %d: the compact copy does not "
                      "reconstruct the stored receipt (docs/runbooks/compaction-failure.md)", tenant, seq)

    def _one(self, txn: Txn, tenant: int, seq: int) -> bytes | None:
        row = row_holding(txn.cursor(db=self.store.db("receipts")), tenant, seq)
        if row is None:
            return None
        got = self._served(txn, tenant, [(row[1], row[0])], seq)
        return got[0][1] if got else None

    def get(self, tenant: int, receipt_id: str) -> bytes | None:
        try:
            rid = uuid.UUID(receipt_id).bytes
        except ValueError:
            return None
        with self.store.read() as txn:
            where = txn.get(rid, db=self.store.db("receipt_index"))
            if where is None or bytes(where[:4]) != tenant_prefix(tenant):
                return None  # another tenant's receipt does not exist for this one
            return self._one(txn, tenant, _SEQ.unpack(bytes(where[4:12]))[0])

    def by_seq(self, tenant: int, seq: int) -> bytes | None:
        with self.store.read() as txn:
            return self._one(txn, tenant, seq)

    def page(self, tenant: int, after_seq: int, limit: int) -> list[bytes]:
        rows: list[tuple[bytes, int]] = []
        hi = prefix_end(tenant_prefix(tenant))
        with self.store.read() as txn:
            cur = txn.cursor(db=self.store.db("receipts"))
            held = row_holding(cur, tenant, after_seq + 1)  # a pack may start before after_seq + 1
            start = receipt_key(tenant, held[0] if held is not None else after_seq + 1)
            n = 0
            if cur.set_range(start):
                for key, value in cur:
                    k = bytes(key)
                    if k >= hi or n >= limit:
                        break
                    seq = _SEQ.unpack(k[4:12])[0]
                    rows.append((bytes(value), seq))
                    n += row_count(value) - max(0, after_seq + 1 - seq)  # those after after_seq
            out = [body for seq, body in self._served(txn, tenant, rows) if seq > after_seq]
        return out[:limit]


@dataclass
class _Batch:
    """One tenant's intents on their way through signing and commit."""

    tenant: int
    keys: list[bytes]
    records: list[bytes]
    issued_at: float
    signed: list[tuple[int, bytes, bytes]] | None = None
    # receipts.storage compact/dual: each receipt's compact form, and the dictionary entries the batch
    # added (the id of the first, the entries)
    compact: list[bytes] | None = None
    entries: tuple[int, list[bytes]] = (0, [])
    head: bytes = b""
    executed: list[float] = field(default_factory=list)
    commit: asyncio.Future[Any] | None = None


class Issuer:
    """Drains the outbox: batch → sign in Rust (GIL released) → chain → one commit. Failed intents are
    retried with backoff and after `max_attempts` moved to the dead-letter queue."""

    def __init__(self, store: Store, writer: Writer, keys: KeyRing, batch_max: int = 512, pipeline: int = 4,
                 max_attempts: int = 5, on_issued: Callable[[list[float]], None] = lambda lags: None,
                 linger_s: float = 0.01, inline_sign_max: int = 16, codecs: ReceiptCodecs | None = None) -> None:
        self.store, self.writer, self.keys = store, writer, keys
        self.codecs = codecs or ReceiptCodecs(store)
        self.storage = "full"  # flag receipts.storage: the form new receipts are stored in
        self.pack_budget = pack_budget(store)
        self.batch_max, self.pipeline, self.max_attempts = batch_max, pipeline, max_attempts
        # Batches are bounded by size (batch_max) and by time: at most one drain starts per `linger_s`,
        # so under load the intents of that interval share one signing call and one commit (one
        # fsync), while an idle server issues at once.
        self.linger_s = linger_s
        # Rust signs without the GIL; a batch up to this size (~40 µs a receipt) is signed on the
        # event loop's thread, where a hop to a worker thread would cost more than the signing; a
        # larger one on a worker, so the loop keeps serving meanwhile.
        self.inline_sign_max = inline_sign_max
        self.on_issued = on_issued
        # Chain heads (last seq, BLAKE3 of its signed bytes) per tenant: `committed` as in LMDB,
        # `heads` including batches signed whose commit is still pending.
        self.committed: dict[int, tuple[int, bytes]] = {}
        with store.read() as txn:
            for k, v in txn.cursor(db=store.db("chain_heads")):
                self.committed[struct.unpack(">I", bytes(k))[0]] = (_SEQ.unpack(bytes(v[:8]))[0], bytes(v[8:40]))
        self.heads = dict(self.committed)
        # A receipt migration between forms (provgraph.actions.migrate), run between batches; one
        # left running by a crash or a stop resumes here.
        from provgraph.actions.migrate import Migration

        self.migration: Migration | None = Migration.load(store)
        self.migrate_chunk = 500
        self.migrate_failures = 0
        self.faults = {"sign": 0, "commit": 0}  # injected failures (tests and drills only)
        self.issued = 0
        self.failures = 0
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- wake-ups ------------------------------------------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._event = loop, asyncio.Event()

    def notify(self) -> None:
        """Called from the writer thread after an intent is durable."""
        if self._loop is not None and self._event is not None:
            self._loop.call_soon_threadsafe(self._event.set)

    def put_intent(self, txn: Txn, tenant: int, intent: dict[str, Any], executed_ts: float) -> None:
        """Queue a receipt (every field but seq, prev_hash, issued_at, signer, signature) in the outbox."""
        put_intent(self.store, txn, tenant, intent, executed_ts)

    def depth(self, table: str = "outbox") -> int:
        return self.store.entries(table)

    # ---- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        assert self._event is not None
        loop = asyncio.get_running_loop()
        backoff = 0.0
        last = -math.inf  # when the last drain started (loop time)
        while True:
            if backoff:
                await asyncio.sleep(backoff)
            elif not self.migrating:
                try:
                    await asyncio.wait_for(self._event.wait(), timeout=0.5)
                except TimeoutError:
                    pass
                if (rest := last + self.linger_s - loop.time()) > 0:
                    await asyncio.sleep(rest)  # the time bound: let this interval's intents join
            self._event.clear()
            last = loop.time()
            ok = await self.drain()
            if ok and self.migrating:  # one chunk of the migration, then the outbox again
                ok = await self._migrate_step()
            backoff = 0.0 if ok else min(max(backoff * 2, 0.01), 1.0)

    # ---- receipt migration (provgraph.actions.migrate) -------------------------------------------
    @property
    def migrating(self) -> bool:
        return self.migration is not None and self.migration.state == "running"

    def start_migration(self, migration: Any) -> Any:
        """The write job that stores `migration` as the running one (the caller stages its audit
        receipt in the same transaction); it starts once that is committed (`migration_started`)."""
        from provgraph.actions.migrate import MIGRATION_KEY

        def job(txn: Txn) -> tuple[None, None]:
            txn.put(MIGRATION_KEY, orjson.dumps(migration.to_json()), db=self.store.db("meta"))
            return None, None

        return job

    def migration_started(self, migration: Any) -> None:
        self.migration, self.migrate_failures = migration, 0
        self.notify()

    async def _migrate_step(self) -> bool:
        """Plan the next chunk off the loop (reads, encodes), commit it with the state after it."""
        from provgraph.actions.migrate import MIGRATION_KEY, plan

        state = self.migration
        assert state is not None
        loop = asyncio.get_running_loop()
        try:
            chunk = await loop.run_in_executor(None, plan, self.store, self.codecs, state, self.migrate_chunk)
            await asyncio.wrap_future(self.writer.submit(chunk.job(self.store, self.codecs), background=True))
        # Any failure (a receipt that does not decode, storage) is recorded; five in a row fail it.
        except Exception as exc:  # noqa: BLE001 — deliberate, see above
            self.codecs.rollback()
            self.migrate_failures += 1
            state.errors.append(f"{type(exc).__name__}: {exc}")
            log.warning("receipt migration %s: a chunk failed (%d in a row): %s", state.job_id,
                        self.migrate_failures, exc)
            if self.migrate_failures >= 5:
                state.state, state.finished_at = "failed", time.time()
                raw = orjson.dumps(state.to_json())
                try:
                    await asyncio.wrap_future(self.writer.submit(
                        lambda txn: (txn.put(MIGRATION_KEY, raw, db=self.store.db("meta")), None)))
                except Exception:
                    log.exception("could not record the failed receipt migration")
            return False
        for tenant, (first, added) in chunk.entries.items():
            self.codecs.keep(tenant, first + len(added))
        self.migrate_failures = 0
        self.migration = chunk.after
        if chunk.after.state == "done":
            log.info("receipt migration %s to %s done: %d of %d receipts rewritten", state.job_id, state.to,
                     chunk.after.migrated, chunk.after.scanned)
        return True

    async def drain(self) -> bool:
        """Issue everything in the outbox; False if a batch failed (the caller backs off).

        Pipelined: up to `pipeline` batches are read at once; batch k+1 is signed (in Rust, without
        the GIL) while batch k commits, since k's chain head is known once k is signed. A read
        happens only when no commit is pending, so an intent is never read twice."""
        while True:
            chunk = self._read_outbox(self.batch_max * self.pipeline)
            if not chunk:
                return True
            if not await self._issue_chunk(chunk):
                return False

    def _read_outbox(self, limit: int) -> OrderedDict[int, tuple[list[bytes], list[bytes]]]:
        """Up to `limit` intents in key order, by tenant: (outbox keys, raw records). The records
        are parsed in Rust, where they are signed."""
        groups: OrderedDict[int, tuple[list[bytes], list[bytes]]] = OrderedDict()
        n = 0
        with self.store.read() as txn:
            for key, value in txn.cursor(db=self.store.db("outbox")):
                k = bytes(key)
                keys, records = groups.setdefault(struct.unpack(">I", k[:4])[0], ([], []))
                keys.append(k)
                records.append(bytes(value))
                n += 1
                if n >= limit:
                    break
        return groups

    def _sign(self, tenant: int, records: list[bytes], issued_at: str, storage: str
              ) -> tuple[list[Any], bytes, list[float], list[bytes] | None, tuple[int, list[bytes]]]:
        """Sign `records` on the tenant's chain; with `storage` compact or dual, also their compact
        forms (each checked to reconstruct its receipt byte for byte, else kept whole) and the
        dictionary entries they added."""
        if self.faults["sign"] > 0:
            self.faults["sign"] -= 1
            raise RuntimeError("injected signing failure")
        seq, head = self.heads.get(tenant, (0, ZERO_HASH))
        signed, new_head, executed = self.keys.active.issue_outbox(head, seq + 1, records, issued_at)
        if storage == "full":
            return signed, new_head, executed, None, (0, [])
        # compact: forms leave prev_hash out (chain packs give it back); dual: each form stands alone
        compact, first, added = self.codecs.codec(tenant).encode("", [(body, s) for s, _, body in signed],
                                                                 elide_prev=storage == "compact")
        return signed, new_head, executed, compact, (first, added)

    async def _issue_chunk(self, chunk: OrderedDict[int, tuple[list[bytes], list[bytes]]]) -> bool:
        loop = asyncio.get_running_loop()
        pending: _Batch | None = None  # signed, its commit submitted, not yet confirmed
        for tenant, (keys, records) in chunk.items():
            for i in range(0, len(keys), self.batch_max):
                batch = _Batch(tenant, keys[i:i + self.batch_max], records[i:i + self.batch_max], time.time())
                storage = self.storage
                try:
                    if len(batch.records) <= self.inline_sign_max:
                        signed, head, executed, compact, entries = self._sign(
                            tenant, batch.records, rfc3339(batch.issued_at), storage)
                    else:
                        signed, head, executed, compact, entries = await loop.run_in_executor(
                            None, self._sign, tenant, batch.records, rfc3339(batch.issued_at), storage)
                # Any signing failure (key, encoding, injected fault) fails the batch, never the loop.
                except Exception as exc:  # noqa: BLE001 — deliberate, see above
                    if pending is not None:
                        await self._confirm(pending)
                    await self._fail(batch, exc)
                    return False
                batch.signed, batch.head, batch.executed = signed, head, executed
                batch.compact, batch.entries = compact, entries
                self.heads[tenant] = (signed[-1][0], head)  # provisional until committed
                if pending is not None and not await self._confirm(pending):
                    return False  # this batch was signed on an uncommitted head: dropped, still queued
                # background: no request waits for a receipt batch; it shares a request's commit
                # (fsync) rather than holding one of its own that requests would wait behind
                batch.commit = asyncio.wrap_future(self.writer.submit(self._commit_job(batch, storage), background=True))
                pending = batch
        return pending is None or await self._confirm(pending)

    async def _confirm(self, batch: _Batch) -> bool:
        """Wait for a batch's commit. On failure the chain heads go back to the committed ones
        (batches signed after it are dropped: their intents are still in the outbox)."""
        assert batch.commit is not None and batch.signed is not None
        try:
            await batch.commit
        # Any commit failure rolls the heads back and fails the batch, never the loop.
        except Exception as exc:  # noqa: BLE001 — deliberate, see above
            self.heads = dict(self.committed)
            self.codecs.rollback()  # entries of this batch and of any signed after it
            await self._fail(batch, exc)
            return False
        self.committed[batch.tenant] = (batch.signed[-1][0], batch.head)
        first, added = batch.entries
        if added:
            self.codecs.keep(batch.tenant, first + len(added))
        self.issued += len(batch.signed)
        self.on_issued([batch.issued_at - ts for ts in batch.executed])
        return True

    async def _fail(self, batch: _Batch, exc: Exception) -> None:
        self.failures += 1
        log.warning("issuing %d receipts of tenant %d failed: %s", len(batch.keys), batch.tenant, exc)
        await asyncio.wrap_future(self.writer.submit(self._failed_job(batch.keys, batch.records, str(exc))))

    def _commit_job(self, batch: _Batch, storage: str) -> Any:
        """The batch's receipts in the form `storage` says (full JSON; compact; or both, dual), with
        the dictionary entries they added, their index rows, the outbox rows gone and the new head."""
        tenant, keys, signed, head = batch.tenant, batch.keys, batch.signed, batch.head
        assert signed is not None
        compact = batch.compact

        def job(txn: Txn) -> tuple[None, None]:
            if self.faults["commit"] > 0:
                self.faults["commit"] -= 1
                raise RuntimeError("injected storage failure")
            receipts, index, outbox = (self.store.db(n) for n in ("receipts", "receipt_index", "outbox"))
            prefix = tenant_prefix(tenant)
            rows = [(prefix + _SEQ.pack(seq), rid, body) for seq, rid, body in signed]
            if compact is not None and storage == "compact":
                put_packed(txn.cursor(db=receipts), tenant, signed[0][0], compact, self.pack_budget,
                           [prev_of(body) for _, _, body in signed])
            else:
                txn.cursor(db=receipts).putmulti([(rk, body) for rk, _, body in rows])
            if compact is not None and storage == "dual":
                txn.cursor(db=self.store.db("receipts_compact")).putmulti(
                    [(rk, c) for (rk, _, _), c in zip(rows, compact, strict=True)])
            first, added = batch.entries
            if added:
                txn.cursor(db=self.store.db("receipt_dict")).putmulti(
                    [(dict_key(tenant, first + i), e) for i, e in enumerate(added)])
            txn.cursor(db=index).putmulti([(rid, rk) for rk, rid, _ in rows])
            for key in keys:
                txn.delete(key, db=outbox)
            txn.put(prefix, _SEQ.pack(signed[-1][0]) + head, db=self.store.db("chain_heads"))
            return None, None

        return job

    def _failed_job(self, keys: list[bytes], records: list[bytes], error: str) -> Any:
        def job(txn: Txn) -> tuple[int, None]:
            moved = 0
            for key, raw in zip(keys, records):
                rec = orjson.loads(raw)
                rec = {**rec, "attempts": rec["attempts"] + 1, "last_error": error}
                if rec["attempts"] >= self.max_attempts:
                    txn.delete(key, db=self.store.db("outbox"))
                    txn.put(key, orjson.dumps(rec), db=self.store.db("dlq"))
                    moved += 1
                else:
                    txn.put(key, orjson.dumps(rec), db=self.store.db("outbox"))
            return moved, None

        return job

    # ---- dead-letter queue -----------------------------------------------------------------------
    def dlq(self, limit: int = 1000) -> list[dict[str, Any]]:
        out = []
        with self.store.read() as txn:
            for key, value in txn.cursor(db=self.store.db("dlq")):
                rec = orjson.loads(value)
                out.append({"tenant": struct.unpack(">I", bytes(key[:4]))[0], **rec})
                if len(out) >= limit:
                    break
        return out

    def replay_job(self, receipt_ids: list[str] | None) -> Any:
        """Move DLQ entries (all, or the given receipt ids) back to the outbox with fresh attempts."""
        try:
            wanted = None if receipt_ids is None else {uuid.UUID(r).bytes for r in receipt_ids}
        except ValueError:
            raise InvalidArgumentError("receipt_ids must be receipt ids (UUIDs)",
                                       {"receipt_ids": receipt_ids}) from None

        def job(txn: Txn) -> tuple[int, Callable[[], None]]:
            moved = []
            for key, value in txn.cursor(db=self.store.db("dlq")):
                k = bytes(key)
                if wanted is None or k[4:] in wanted:
                    moved.append((k, orjson.loads(value)))
            for k, rec in moved:
                txn.delete(k, db=self.store.db("dlq"))
                txn.put(k, orjson.dumps({"receipt": rec["receipt"], "attempts": 0,
                                         "executed_ts": rec["executed_ts"]}), db=self.store.db("outbox"))
            return len(moved), self.notify

        return job
