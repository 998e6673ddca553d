"""Receipt signing keys: generated on first start, seeds in files only the owner can read, rotatable."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any

import orjson

from provgraph._core import ReceiptSigner
from provgraph.store import Store, Txn

__all__ = ["KeyRing"]

_ACTIVE = b"active_signing_key"


class KeyRing:
    """The active signer plus every public key ever used (old receipts stay verifiable)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.path / "keys"
        self.dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)
        with store.read() as txn:
            active = txn.get(_ACTIVE, db=store.db("meta"))
        self.active = self._load(bytes(active).decode()) if active else self.rotate()

    def _seed_path(self, key_id: str) -> Path:
        return self.dir / f"{key_id}.seed"

    def _load(self, key_id: str) -> ReceiptSigner:
        signer = ReceiptSigner(bytes.fromhex(self._seed_path(key_id).read_text().strip()))
        if signer.key_id != key_id:
            raise RuntimeError(f"signing key file {key_id} holds another key ({signer.key_id})")
        return signer

    def rotate(self) -> ReceiptSigner:
        """A new active key; the old public keys stay listed for verification."""
        signer = ReceiptSigner()
        path = self._seed_path(signer.key_id)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(signer.seed.hex())
            f.flush()
            os.fsync(f.fileno())
        record = orjson.dumps({"key_id": signer.key_id, "alg": "Ed25519",
                               "public_key": base64.b64encode(signer.public_key).decode(),
                               "created_at": time.time()})

        def job(txn: Txn) -> None:
            txn.put(signer.key_id.encode(), record, db=self.store.db("signing_keys"))
            txn.put(_ACTIVE, signer.key_id.encode(), db=self.store.db("meta"))

        self.store.write_direct(job)
        self.active = signer
        return signer

    def public_keys(self) -> list[dict[str, Any]]:
        with self.store.read() as txn:
            rows = [orjson.loads(v) for _, v in txn.cursor(db=self.store.db("signing_keys"))]
        rows.sort(key=lambda r: r["created_at"])
        return [{"key_id": r["key_id"], "alg": r["alg"], "public_key": r["public_key"],
                 "active": r["key_id"] == self.active.key_id} for r in rows]

    def public_key_bytes(self) -> dict[str, bytes]:
        return {r["key_id"]: base64.b64decode(r["public_key"]) for r in self.public_keys()}
