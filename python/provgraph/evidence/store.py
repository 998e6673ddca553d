"""The evidence store: content-addressed blobs per tenant (docs/evidence.md).

A blob's address is the hex BLAKE3 of its bytes; the same bytes uploaded again are stored once per
tenant (tenants never share a blob: each one's data is its own to purge). Its record (table
``evidence``: tenant | hash (32 bytes) -> size, upload time, latest reference by a receipt, where
the bytes are, content type) is written in the same transaction as the bytes when they are small
(table ``evidence_blobs``, up to `inline_max`); larger ones go to a content-addressed file
``<data dir>/evidence/<tenant number, 8 hex>/<first 2 hex>/<hash>``, written and fsynced (file,
then directory) under a temporary name and renamed into place before the record commits, so a
record never names bytes that are not durable. A file whose record did not commit (a crash in
between) is an orphan with the same name its next upload would write: harmless, reused.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from provgraph.errors import InvalidArgumentError
from provgraph.store import Store, Txn, Writer
from provgraph.store.keys import tenant_prefix

__all__ = ["HOT", "EvidenceRecord", "EvidenceStore", "hash_bytes", "parse_hash", "record_size"]

HOT = "hot"
# size, uploaded (µs), latest reference by a receipt (µs, 0: none), where (0 inline, 1 file),
# then the content type (UTF-8, the rest of the value)
_RECORD = struct.Struct(">QQQB")
INLINE, FILE = 0, 1
# BLAKE3 of a large body is hashed off the event loop (blake3 releases the GIL)
_OFF_LOOP = 1 << 20


def hash_bytes(text: Any) -> bytes | None:
    """The 32 bytes of an evidence hash (64 lowercase hex digits of BLAKE3), or None for anything else."""
    if isinstance(text, str) and len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            return None
        return raw if raw.hex() == text else None
    return None


def parse_hash(text: Any) -> bytes:
    """`hash_bytes`, or a 422 for text that is not an evidence hash."""
    raw = hash_bytes(text)
    if raw is None:
        raise InvalidArgumentError("an evidence hash is 64 lowercase hex digits (BLAKE3)", {"hash": text})
    return raw


def record_size(value: bytes) -> int:
    """The size of the blob a stored evidence record describes."""
    return int(_RECORD.unpack_from(value)[0])


@dataclass(frozen=True)
class EvidenceRecord:
    hash: str
    size: int
    uploaded_us: int
    last_ref_us: int
    where: int
    content_type: str

    def to_value(self) -> bytes:
        return _RECORD.pack(self.size, self.uploaded_us, self.last_ref_us, self.where) + self.content_type.encode()

    @classmethod
    def from_value(cls, digest: bytes, value: bytes) -> EvidenceRecord:
        size, uploaded, last_ref, where = _RECORD.unpack_from(value)
        return cls(digest.hex(), size, uploaded, last_ref, where, value[_RECORD.size:].decode())

    def answer(self) -> dict[str, Any]:
        return {"hash": self.hash, "size": self.size, "tier": HOT}


class EvidenceStore:
    def __init__(self, store: Store, writer: Writer, data_dir: Path, inline_max: int = 64 << 10,
                 max_bytes: int = 32 << 20) -> None:
        self.store, self.writer = store, writer
        self.root = data_dir / "evidence"
        self.inline_max, self.max_bytes = inline_max, max_bytes
        self.records, self.blobs = store.db("evidence"), store.db("evidence_blobs")
        self.uploads = {"new": 0, "existing": 0}  # uploads since start, by outcome
        with store.read() as txn:  # the bytes held, kept up to date by uploads from now on
            self.bytes_held = sum(record_size(v) for _, v in txn.cursor(db=self.records))

    @staticmethod
    def key(tenant: int, digest: bytes) -> bytes:
        return tenant_prefix(tenant) + digest

    def path(self, tenant: int, digest: bytes) -> Path:
        h = digest.hex()
        return self.root / f"{tenant:08x}" / h[:2] / h

    # ---- upload --------------------------------------------------------------------------------
    async def put(self, tenant: int, data: bytes, content_type: str) -> tuple[EvidenceRecord, bool]:
        """Store `data` for `tenant`: (its record, whether it is new). Idempotent: the same bytes
        again answer the stored record and write nothing."""
        loop = asyncio.get_running_loop()
        if len(data) >= _OFF_LOOP:
            digest = await loop.run_in_executor(None, lambda: blake3.blake3(data, max_threads=1).digest())
        else:
            digest = blake3.blake3(data).digest()
        existing = self.get_record(tenant, digest)
        if existing is not None:
            self.uploads["existing"] += 1
            return existing, False
        where = INLINE if len(data) <= self.inline_max else FILE
        if where == FILE:
            await loop.run_in_executor(None, self._write_file, tenant, digest, data)
        record = EvidenceRecord(digest.hex(), len(data), time.time_ns() // 1000, 0, where, content_type[:200])
        stored, new = await asyncio.wrap_future(self.writer.submit(self._put_job(tenant, digest, record, data)))
        self.uploads["new" if new else "existing"] += 1
        if new:
            self.bytes_held += stored.size
        return stored, new

    def items(self) -> int:
        """Evidence items held (LMDB's count of the records table)."""
        with self.store.read() as txn:
            return int(txn.stat(self.records)["entries"])

    def _put_job(self, tenant: int, digest: bytes, record: EvidenceRecord, data: bytes) -> Any:
        key = self.key(tenant, digest)

        def job(txn: Txn) -> tuple[tuple[EvidenceRecord, bool], None]:
            stored = txn.get(key, db=self.records)
            if stored is not None:  # a concurrent upload of the same bytes committed first
                return (EvidenceRecord.from_value(digest, stored), False), None
            txn.put(key, record.to_value(), db=self.records)
            if record.where == INLINE:
                txn.put(key, data, db=self.blobs)
            return (record, True), None

        return job

    def _write_file(self, tenant: int, digest: bytes, data: bytes) -> None:
        """The blob's file, durable under its final name (write + fsync a temporary, rename, fsync
        the directory)."""
        final = self.path(tenant, digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        dfd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # ---- reads ---------------------------------------------------------------------------------
    def get_record(self, tenant: int, digest: bytes) -> EvidenceRecord | None:
        with self.store.read() as txn:
            value = txn.get(self.key(tenant, digest), db=self.records)
        return None if value is None else EvidenceRecord.from_value(digest, value)

    def read(self, tenant: int, record: EvidenceRecord) -> bytes:
        """The blob's bytes, wherever they are (checked against their hash)."""
        digest = bytes.fromhex(record.hash)
        if record.where == INLINE:
            with self.store.read() as txn:
                data = txn.get(self.key(tenant, digest), db=self.blobs)
        else:
            data = self.path(tenant, digest).read_bytes()
        if data is None or blake3.blake3(data).digest() != digest:
            raise RuntimeError(f"evidence {record.hash} of tenant {tenant}: stored bytes missing or damaged")
        return data

    # ---- references by actions -----------------------------------------------------------------
    def resolve(self, txn: Txn, tenant: int, hashes: list[str]) -> list[dict[str, Any]]:
        """The receipt's `evidence` ({hash, size} each, in order) of hashes an action names; 422
        for any the tenant has not stored."""
        out, unknown = [], []
        for h in hashes:
            value = txn.get(self.key(tenant, parse_hash(h)), db=self.records)
            if value is None:
                unknown.append(h)
            else:
                out.append({"hash": h, "size": record_size(value)})
        if unknown:
            raise InvalidArgumentError("unknown evidence: upload it first (PUT /v1/tenants/{t}/evidence)",
                                       {"unknown": unknown})
        return out

    def touch(self, txn: Txn, tenant: int, hashes: list[str], at_us: int) -> None:
        """Record a receipt's reference (in its execute's transaction): an item's age counts from
        the later of its upload and its latest reference."""
        for h in dict.fromkeys(hashes):
            key = self.key(tenant, bytes.fromhex(h))
            value = txn.get(key, db=self.records)
            if value is not None:
                size, uploaded, last, where = _RECORD.unpack_from(value)
                if at_us > last:
                    txn.put(key, _RECORD.pack(size, uploaded, at_us, where) + value[_RECORD.size:], db=self.records)
