"""The receipt pipeline: intents in the outbox are signed in batches, chained per tenant, committed once."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import lmdb
import orjson

from provgraph.actions.model import rfc3339
from provgraph.actions.signing import KeyRing
from provgraph.store import Store, Writer
from provgraph.store.keys import prefix_end, tenant_prefix

__all__ = ["Issuer", "ReceiptLog", "intent_key", "ZERO_HASH"]

log = logging.getLogger(__name__)
ZERO_HASH = bytes(32)
_SEQ = struct.Struct(">Q")


def intent_key(tenant: int, receipt_id: str) -> bytes:
    return tenant_prefix(tenant) + uuid.UUID(receipt_id).bytes


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


class Issuer:
    """Drains the outbox: batch → sign in Rust (GIL released) → chain → one commit. Failed intents are
    retried with backoff and after `max_attempts` moved to the dead-letter queue."""

    def __init__(self, store: Store, writer: Writer, keys: KeyRing, batch_max: int = 512,
                 max_attempts: int = 5, on_issued: Callable[[list[float]], None] = lambda lags: None) -> None:
        self.store, self.writer, self.keys = store, writer, keys
        self.batch_max, self.max_attempts = batch_max, max_attempts
        self.on_issued = on_issued
        self.heads: dict[int, tuple[int, bytes]] = {}
        with store.read() as txn:
            for k, v in txn.cursor(db=store.db("chain_heads")):
                self.heads[struct.unpack(">I", bytes(k))[0]] = (_SEQ.unpack(bytes(v[:8]))[0], bytes(v[8:40]))
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

    def put_intent(self, txn: lmdb.Transaction, tenant: int, intent: dict[str, Any], executed_ts: float) -> None:
        """Queue a receipt (every field but seq, prev_hash, issued_at, signer, signature) in the outbox."""
        record = {"receipt": intent, "attempts": 0, "executed_ts": executed_ts}
        txn.put(intent_key(tenant, intent["receipt_id"]), orjson.dumps(record), db=self.store.db("outbox"))

    def depth(self, table: str = "outbox") -> int:
        with self.store.read() as txn:
            return int(txn.stat(self.store.db(table))["entries"])

    # ---- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        assert self._event is not None
        backoff = 0.0
        while True:
            if backoff:
                await asyncio.sleep(backoff)
            else:
                try:
                    await asyncio.wait_for(self._event.wait(), timeout=0.5)
                except TimeoutError:
                    pass
            self._event.clear()
            ok = await self.drain()
            backoff = 0.0 if ok else min(max(backoff * 2, 0.01), 1.0)

    async def drain(self) -> bool:
        """Issue everything in the outbox; False if a batch failed (the caller backs off)."""
        while True:
            batch = self._read_outbox()
            if not batch:
                return True
            for tenant, intents in batch.items():
                if not await self._issue(tenant, intents):
                    return False

    def _read_outbox(self) -> OrderedDict[int, list[tuple[bytes, dict[str, Any]]]]:
        groups: OrderedDict[int, list[tuple[bytes, dict[str, Any]]]] = OrderedDict()
        n = 0
        with self.store.read() as txn:
            for key, value in txn.cursor(db=self.store.db("outbox")):
                k = bytes(key)
                groups.setdefault(struct.unpack(">I", k[:4])[0], []).append((k, orjson.loads(value)))
                n += 1
                if n >= self.batch_max:
                    break
        return groups

    def _sign(self, tenant: int, receipts: list[dict[str, Any]]) -> tuple[list[Any], bytes]:
        if self.faults["sign"] > 0:
            self.faults["sign"] -= 1
            raise RuntimeError("injected signing failure")
        seq, head = self.heads.get(tenant, (0, ZERO_HASH))
        return self.keys.active.sign_batch(head, seq + 1, [orjson.dumps(r) for r in receipts])

    async def _issue(self, tenant: int, intents: list[tuple[bytes, dict[str, Any]]]) -> bool:
        issued_at = time.time()
        receipts = [{**rec["receipt"], "issued_at": rfc3339(issued_at)} for _, rec in intents]
        loop = asyncio.get_running_loop()
        try:
            signed, head = await loop.run_in_executor(None, self._sign, tenant, receipts)
            await asyncio.wrap_future(self.writer.submit(self._commit_job(tenant, intents, signed, head)))
        except Exception as exc:
            self.failures += 1
            log.warning("issuing %d receipts of tenant %d failed: %s", len(intents), tenant, exc)
            await asyncio.wrap_future(self.writer.submit(self._failed_job(intents, str(exc))))
            return False
        self.heads[tenant] = (signed[-1][0], head)
        self.issued += len(signed)
        self.on_issued([issued_at - rec["executed_ts"] for _, rec in intents])
        return True

    def _commit_job(self, tenant: int, intents: list[tuple[bytes, dict[str, Any]]], signed: list[Any],
                    head: bytes) -> Any:
        def job(txn: lmdb.Transaction) -> tuple[None, None]:
            if self.faults["commit"] > 0:
                self.faults["commit"] -= 1
                raise RuntimeError("injected storage failure")
            receipts, index, outbox = (self.store.db(n) for n in ("receipts", "receipt_index", "outbox"))
            for (key, _), (seq, receipt_id, _, body) in zip(intents, signed):
                rk = receipt_key(tenant, seq)
                txn.put(rk, body, db=receipts)
                txn.put(uuid.UUID(receipt_id).bytes, rk, db=index)
                txn.delete(key, db=outbox)
            txn.put(tenant_prefix(tenant), _SEQ.pack(signed[-1][0]) + head, db=self.store.db("chain_heads"))
            return None, None

        return job

    def _failed_job(self, intents: list[tuple[bytes, dict[str, Any]]], error: str) -> Any:
        def job(txn: lmdb.Transaction) -> tuple[int, None]:
            moved = 0
            for key, rec in intents:
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
        wanted = None if receipt_ids is None else {uuid.UUID(r).bytes for r in receipt_ids}

        def job(txn: lmdb.Transaction) -> tuple[int, Callable[[], None]]:
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
