"""The receipt pipeline: intents in the outbox are signed in batches, chained per tenant, committed once."""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from provgraph.actions.model import rfc3339
from provgraph.actions.signing import KeyRing
from provgraph.errors import InvalidArgumentError
from provgraph.store import Store, Txn, Writer
from provgraph.store.keys import prefix_end, tenant_prefix

__all__ = ["ZERO_HASH", "Issuer", "ReceiptLog", "intent_key", "put_intent"]

log = logging.getLogger(__name__)
ZERO_HASH = bytes(32)
_SEQ = struct.Struct(">Q")


def intent_key(tenant: int, receipt_id: str) -> bytes:
    return tenant_prefix(tenant) + uuid.UUID(receipt_id).bytes


def put_intent(store: Store, txn: Txn, tenant: int, intent: dict[str, Any], executed_ts: float) -> None:
    """`Issuer.put_intent` without an issuer (provgraph load, offline): the next server issues it at start."""
    record = {"receipt": intent, "attempts": 0, "executed_ts": executed_ts}
    txn.put(intent_key(tenant, intent["receipt_id"]), orjson.dumps(record), db=store.db("outbox"))


def receipt_key(tenant: int, seq: int) -> bytes:
    return tenant_prefix(tenant) + _SEQ.pack(seq)


class ReceiptLog:
    """Reads of issued receipts."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, tenant: int, receipt_id: str) -> bytes | None:
        try:
            rid = uuid.UUID(receipt_id).bytes
        except ValueError:
            return None
        with self.store.read() as txn:
            where = txn.get(rid, db=self.store.db("receipt_index"))
            if where is None or bytes(where[:4]) != tenant_prefix(tenant):
                return None  # another tenant's receipt does not exist for this one
            raw = txn.get(bytes(where), db=self.store.db("receipts"))
            return None if raw is None else bytes(raw)

    def by_seq(self, tenant: int, seq: int) -> bytes | None:
        with self.store.read() as txn:
            raw = txn.get(receipt_key(tenant, seq), db=self.store.db("receipts"))
            return None if raw is None else bytes(raw)

    def page(self, tenant: int, after_seq: int, limit: int) -> list[bytes]:
        out: list[bytes] = []
        hi = prefix_end(tenant_prefix(tenant))
        with self.store.read() as txn:
            cur = txn.cursor(db=self.store.db("receipts"))
            if cur.set_range(receipt_key(tenant, after_seq + 1)):
                for key, value in cur:
                    if bytes(key) >= hi or len(out) >= limit:
                        break
                    out.append(bytes(value))
        return out


@dataclass
class _Batch:
    """One tenant's intents on their way through signing and commit."""

    tenant: int
    keys: list[bytes]
    records: list[bytes]
    issued_at: float
    signed: list[tuple[int, bytes, bytes]] | None = None
    head: bytes = b""
    executed: list[float] = field(default_factory=list)
    commit: asyncio.Future[Any] | None = None


class Issuer:
    """Drains the outbox: batch → sign in Rust (GIL released) → chain → one commit. Failed intents are
    retried with backoff and after `max_attempts` moved to the dead-letter queue."""

    def __init__(self, store: Store, writer: Writer, keys: KeyRing, batch_max: int = 512, pipeline: int = 4,
                 max_attempts: int = 5, on_issued: Callable[[list[float]], None] = lambda lags: None,
                 linger_s: float = 0.01, inline_sign_max: int = 16) -> None:
        self.store, self.writer, self.keys = store, writer, keys
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
            else:
                try:
                    await asyncio.wait_for(self._event.wait(), timeout=0.5)
                except TimeoutError:
                    pass
                if (rest := last + self.linger_s - loop.time()) > 0:
                    await asyncio.sleep(rest)  # the time bound: let this interval's intents join
            self._event.clear()
            last = loop.time()
            ok = await self.drain()
            backoff = 0.0 if ok else min(max(backoff * 2, 0.01), 1.0)

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

    def _sign(self, tenant: int, records: list[bytes], issued_at: str) -> tuple[list[Any], bytes, list[float]]:
        if self.faults["sign"] > 0:
            self.faults["sign"] -= 1
            raise RuntimeError("injected signing failure")
        seq, head = self.heads.get(tenant, (0, ZERO_HASH))
        return self.keys.active.issue_outbox(head, seq + 1, records, issued_at)

    async def _issue_chunk(self, chunk: OrderedDict[int, tuple[list[bytes], list[bytes]]]) -> bool:
        loop = asyncio.get_running_loop()
        pending: _Batch | None = None  # signed, its commit submitted, not yet confirmed
        for tenant, (keys, records) in chunk.items():
            for i in range(0, len(keys), self.batch_max):
                batch = _Batch(tenant, keys[i:i + self.batch_max], records[i:i + self.batch_max], time.time())
                try:
                    if len(batch.records) <= self.inline_sign_max:
                        signed, head, executed = self._sign(tenant, batch.records, rfc3339(batch.issued_at))
                    else:
                        signed, head, executed = await loop.run_in_executor(
                            None, self._sign, tenant, batch.records, rfc3339(batch.issued_at))
                # Any signing failure (key, encoding, injected fault) fails the batch, never the loop.
                except Exception as exc:  # noqa: BLE001 — deliberate, see above
                    if pending is not None:
                        await self._confirm(pending)
                    await self._fail(batch, exc)
                    return False
                batch.signed, batch.head, batch.executed = signed, head, executed
                self.heads[tenant] = (signed[-1][0], head)  # provisional until committed
                if pending is not None and not await self._confirm(pending):
                    return False  # this batch was signed on an uncommitted head: dropped, still queued
                # background: no request waits for a receipt batch; it shares a request's commit
                # (fsync) rather than holding one of its own that requests would wait behind
                batch.commit = asyncio.wrap_future(
                    self.writer.submit(self._commit_job(tenant, batch.keys, signed, head), background=True))
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
            await self._fail(batch, exc)
            return False
        self.committed[batch.tenant] = (batch.signed[-1][0], batch.head)
        self.issued += len(batch.signed)
        self.on_issued([batch.issued_at - ts for ts in batch.executed])
        return True

    async def _fail(self, batch: _Batch, exc: Exception) -> None:
        self.failures += 1
        log.warning("issuing %d receipts of tenant %d failed: %s", len(batch.keys), batch.tenant, exc)
        await asyncio.wrap_future(self.writer.submit(self._failed_job(batch.keys, batch.records, str(exc))))

    def _commit_job(self, tenant: int, keys: list[bytes], signed: list[tuple[int, bytes, bytes]],
                    head: bytes) -> Any:
        def job(txn: Txn) -> tuple[None, None]:
            if self.faults["commit"] > 0:
                self.faults["commit"] -= 1
                raise RuntimeError("injected storage failure")
            receipts, index, outbox = (self.store.db(n) for n in ("receipts", "receipt_index", "outbox"))
            prefix = tenant_prefix(tenant)
            rows = [(prefix + _SEQ.pack(seq), rid, body) for seq, rid, body in signed]
            txn.cursor(db=receipts).putmulti([(rk, body) for rk, _, body in rows])
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
