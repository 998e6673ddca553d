"""The tenant and key registry: LMDB-backed, cached in memory; only BLAKE3 hashes of keys are stored."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import blake3
import orjson

from provgraph.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    InvalidArgumentError,
    UnauthorizedError,
    UnknownTenantError,
)
from provgraph.store import Store, Txn

__all__ = ["SCOPES", "KeyRecord", "Registry", "Tenant", "hash_key"]

SCOPES = ("read", "write", "approve", "admin")
TENANT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ADMIN_HASH = b"admin_key_hash"
_NEXT_TENANT = b"next_tenant_num"


def hash_key(key: str) -> bytes:
    return blake3.blake3(key.encode()).digest()


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    num: int  # the 4-byte partition prefix of every row of this tenant
    created_at: float


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    tenant_id: str | None  # None: the admin key
    scopes: frozenset[str]
    actor: str
    roles: tuple[str, ...] = field(default=())

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def require(self, scope: str, tenant_id: str | None = None) -> None:
        """403 unless the key has `scope` (admin implies all) on `tenant_id`."""
        if self.is_admin and self.tenant_id is None:
            return
        if tenant_id is not None and self.tenant_id != tenant_id:
            raise ForbiddenError("this key belongs to another tenant", {"tenant_id": tenant_id})
        if scope not in self.scopes and "admin" not in self.scopes:
            raise ForbiddenError(f"this key lacks the {scope!r} scope", {"required": scope})

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "tenant_id": self.tenant_id, "scopes": sorted(self.scopes),
                "actor": self.actor, "roles": list(self.roles)}


class Registry:
    """Tenants and keys. Reads are served from memory; writes go to LMDB first."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tenants: dict[str, Tenant] = {}
        self.keys: dict[bytes, KeyRecord] = {}
        with store.read() as txn:
            for k, v in txn.cursor(db=store.db("tenants")):
                rec = orjson.loads(v)
                self.tenants[k.decode()] = Tenant(k.decode(), rec["num"], rec["created_at"])
            for k, v in txn.cursor(db=store.db("keys")):
                self.keys[bytes(k)] = self._key_from_json(orjson.loads(v))

    @staticmethod
    def _key_from_json(rec: dict[str, Any]) -> KeyRecord:
        return KeyRecord(rec["key_id"], rec["tenant_id"], frozenset(rec["scopes"]), rec["actor"],
                         tuple(rec.get("roles", ())))

    # ---- admin key ---------------------------------------------------------------------
    def ensure_admin_key(self, configured: str | None) -> str | None:
        """Install the admin key. Returns a newly generated key (to print once), else None."""
        with self.store.read() as txn:
            stored = txn.get(_ADMIN_HASH, db=self.store.db("meta"))
        if configured:
            if stored == hash_key(configured):
                return None
            self._store_admin(hash_key(configured), replace=stored)
            return None
        if stored is not None:
            return None
        key = "pga_" + secrets.token_urlsafe(32)
        self._store_admin(hash_key(key), replace=None)
        return key

    def _store_admin(self, digest: bytes, replace: bytes | None) -> None:
        record = {"key_id": "admin", "tenant_id": None, "scopes": ["admin"], "actor": "admin", "roles": []}

        def job(txn: Txn) -> None:
            if replace is not None:
                txn.delete(replace, db=self.store.db("keys"))
            txn.put(_ADMIN_HASH, digest, db=self.store.db("meta"))
            txn.put(digest, orjson.dumps(record), db=self.store.db("keys"))

        self.store.write_direct(job)
        if replace is not None:
            self.keys.pop(replace, None)
        self.keys[digest] = self._key_from_json(record)

    # ---- lookups -----------------------------------------------------------------------
    def authenticate(self, header: str | None) -> KeyRecord:
        if not header or not header.startswith("Bearer "):
            raise UnauthorizedError("missing bearer key")
        rec = self.keys.get(hash_key(header[7:].strip()))
        if rec is None:
            raise UnauthorizedError("invalid key")
        return rec

    def tenant(self, tenant_id: str) -> Tenant:
        t = self.tenants.get(tenant_id)
        if t is None:
            raise UnknownTenantError(f"unknown tenant {tenant_id!r}", {"tenant_id": tenant_id})
        return t

    # ---- creation ----------------------------------------------------------------------
    def create_tenant(self, body: Any) -> Tenant:
        if not isinstance(body, dict) or not isinstance(body.get("tenant_id"), str):
            raise BadRequestError('expected {"tenant_id": "..."}')
        tid = body["tenant_id"]
        if not TENANT_ID.fullmatch(tid):
            raise InvalidArgumentError("tenant_id must match [a-z0-9][a-z0-9_-]{0,62}", {"tenant_id": tid})
        meta, tenants = self.store.db("meta"), self.store.db("tenants")

        def job(txn: Txn) -> Tenant:
            if txn.get(tid.encode(), db=tenants) is not None:
                raise ConflictError(f"tenant {tid!r} exists", {"tenant_id": tid})
            raw = txn.get(_NEXT_TENANT, db=meta)
            num = int(raw) if raw else 1
            txn.put(_NEXT_TENANT, str(num + 1).encode(), db=meta)
            t = Tenant(tid, num, time.time())
            txn.put(tid.encode(), orjson.dumps({"num": num, "created_at": t.created_at}), db=tenants)
            return t

        tenant = self.store.write_direct(job)
        self.tenants[tid] = tenant
        return tenant

    def create_key(self, body: Any) -> tuple[str, KeyRecord]:
        if not isinstance(body, dict):
            raise BadRequestError("body must be a JSON object")
        tid = body.get("tenant_id")
        if not isinstance(tid, str):
            raise BadRequestError("tenant_id is required")
        self.tenant(tid)
        scopes = body.get("scopes", ["read"])
        if not isinstance(scopes, list) or not scopes or not all(s in SCOPES for s in scopes):
            raise InvalidArgumentError(f"scopes must be a non-empty subset of {list(SCOPES)}", {"scopes": scopes})
        roles = body.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidArgumentError("roles must be a list of strings")
        key_id = secrets.token_hex(8)
        actor = body.get("actor", f"key:{key_id}")
        if not isinstance(actor, str) or not actor:
            raise InvalidArgumentError("actor must be a non-empty string")
        key = "pgk_" + secrets.token_urlsafe(32)
        rec = KeyRecord(key_id, tid, frozenset(scopes), actor, tuple(roles))
        digest = hash_key(key)
        self.store.write_direct(lambda txn: txn.put(digest, orjson.dumps(rec.to_json()), db=self.store.db("keys")))
        self.keys[digest] = rec
        return key, rec
