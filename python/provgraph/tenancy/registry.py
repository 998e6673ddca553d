"""The tenant and key registry: LMDB-backed, cached in memory; only BLAKE3 hashes of keys are stored."""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import blake3
import orjson

from provgraph.clock import rfc3339
from provgraph.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    InvalidArgumentError,
    NotFoundError,
    UnauthorizedError,
    UnknownTenantError,
)
from provgraph.store import Store, Txn
from provgraph.tenancy.quota import Quota, parse_quota, quota_from_json
from provgraph.tenancy.retention import Retention, parse_retention, retention_from_json

__all__ = ["ADMIN_KEY_ID", "ADMIN_TENANT", "MAX_GRACE_S", "SCOPES", "AuditStage", "KeyRecord", "Registry", "Tenant",
           "hash_key"]

log = logging.getLogger(__name__)

SCOPES = ("read", "write", "approve", "admin")
TENANT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ADMIN_HASH = b"admin_key_hash"
_NEXT_TENANT = b"next_tenant_num"
_ADMIN_RETIRED = b"admin_key_retired"  # BLAKE3 digests (32 bytes each) of admin keys rotated or replaced
_LAST_USED = b"key_last_used"  # {key_id: unix time} as JSON, rewritten by flush_usage
ADMIN_KEY_ID = "admin"
MAX_GRACE_S = 30 * 86_400


def hash_key(key: str) -> bytes:
    return blake3.blake3(key.encode()).digest()


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    num: int  # the 4-byte partition prefix of every row of this tenant
    created_at: float
    quota: Quota | None = None  # None: not rate-limited, weight 1 (PUT /v1/admin/tenants/{t}/quota)
    retention: Retention | None = None  # None: the server's default (PUT /v1/admin/tenants/{t}/retention)

    @property
    def weight(self) -> float:
        """Its weight in the fair queues: its quota's, 1 without a quota."""
        return self.quota.weight if self.quota is not None else 1.0


def _tenant_of(tenant_id: str, rec: dict[str, Any]) -> Tenant:
    """A tenant from its stored record."""
    return Tenant(tenant_id, rec["num"], rec["created_at"], quota_from_json(rec.get("quota")),
                  retention_from_json(rec.get("retention")))


# The reserved tenant whose receipt chain records admin changes that concern no single tenant. Its
# id fails TENANT_ID (a leading underscore), so no tenant can be created with it, and its partition
# number 0 is one the tenant counter never hands out (it starts at 1).
ADMIN_TENANT = Tenant("_admin", 0, 0.0)


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    tenant_id: str | None  # None: the admin key
    scopes: frozenset[str]
    actor: str
    roles: tuple[str, ...] = field(default=())
    created_at: float | None = None  # None: a key stored before creation times were kept
    expires_at: float | None = None  # set on a rotated-out secret: the end of its grace period

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
        """The key's public description (what audit receipts hash): never the secret or its hash."""
        return {"key_id": self.key_id, "tenant_id": self.tenant_id, "scopes": sorted(self.scopes),
                "actor": self.actor, "roles": list(self.roles)}

    def stored(self) -> bytes:
        return orjson.dumps({**self.to_json(), "created_at": self.created_at, "expires_at": self.expires_at})


# Staged by every registry change inside its own write transaction, so the change and its audit
# receipt commit together: (txn, action, the tenant concerned or None for the _admin chain, the
# resource {type, id}, the change to hash). provgraph.actions.audit.Audit.stager makes one.
AuditStage = Callable[[Txn, str, "Tenant | None", dict[str, Any], Any], None]


def _no_audit(txn: Txn, action: str, tenant: Tenant | None, resource: dict[str, Any], change: Any) -> None:
    """For callers outside the server (provgraph load): there is no receipt pipeline to stage in."""


class Registry:
    """Tenants and keys. Reads are served from memory; writes go to LMDB first, then to memory, so a
    failed write changes nothing and a committed revocation holds from the very next request."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tenants: dict[str, Tenant] = {}
        self.keys: dict[bytes, KeyRecord] = {}
        # key_id -> when it last authenticated, at the resolution of `clock` (see `tick`); kept in
        # memory and written by `flush_usage` in one row, so the hot path does one dict store.
        self.last_used: dict[str, float] = {}
        self._flushed: dict[str, float] = {}
        self.clock = time.time()
        # Registry writes come from executor threads: one change at a time, so a change reads the
        # memory state no other change is rewriting.
        self._lock = threading.Lock()
        with store.read() as txn:
            for k, v in txn.cursor(db=store.db("tenants")):
                rec = orjson.loads(v)
                self.tenants[k.decode()] = _tenant_of(k.decode(), rec)
            for k, v in txn.cursor(db=store.db("keys")):
                self.keys[bytes(k)] = self._key_from_json(orjson.loads(v))
            used = txn.get(_LAST_USED, db=store.db("meta"))
        if used is not None:
            self.last_used = {k: float(v) for k, v in orjson.loads(used).items()}
            self._flushed = dict(self.last_used)

    @staticmethod
    def _key_from_json(rec: dict[str, Any]) -> KeyRecord:
        return KeyRecord(rec["key_id"], rec["tenant_id"], frozenset(rec["scopes"]), rec["actor"],
                         tuple(rec.get("roles", ())), rec.get("created_at"), rec.get("expires_at"))

    # ---- admin key ---------------------------------------------------------------------
    def ensure_admin_key(self, configured: str | None, audit: AuditStage = _no_audit) -> str | None:
        """Install the admin key. Returns a newly generated key (to print once), else None.

        `configured` (PROVGRAPH_ADMIN_KEY) replaces the stored admin key only when it is a key never
        used before: an admin key that a rotation (or an earlier replacement) retired is ignored
        with a warning, so a restart with a stale environment never brings a rotated-out key back.
        A secret still in its rotation grace period keeps working until the grace ends."""
        with self.store.read() as txn:
            stored = txn.get(_ADMIN_HASH, db=self.store.db("meta"))
            retired = bytes(txn.get(_ADMIN_RETIRED, db=self.store.db("meta")) or b"")
        stored = None if stored is None else bytes(stored)
        if configured:
            digest = hash_key(configured)
            if digest == stored:
                return None
            rec = self.keys.get(digest)
            if rec is not None and rec.key_id == ADMIN_KEY_ID and (rec.expires_at or 0.0) > time.time():
                log.warning("PROVGRAPH_ADMIN_KEY is a rotated-out admin key; it works until its grace "
                            "period ends (%s), then only the rotated admin key does", rfc3339(rec.expires_at or 0))
                return None
            if any(retired[i:i + 32] == digest for i in range(0, len(retired), 32)):
                log.warning("PROVGRAPH_ADMIN_KEY is an admin key retired by a rotation: ignored; the rotated "
                            "admin key stays. Set PROVGRAPH_ADMIN_KEY to the current admin key, or to a new "
                            "key to replace it")
                return None
            self._store_admin(digest, stored, "admin.key.replace" if stored else "admin.key.create", audit)
            return None
        if stored is not None:
            return None
        key = "pga_" + secrets.token_urlsafe(32)
        self._store_admin(hash_key(key), None, "admin.key.create", audit)
        return key

    def _store_admin(self, digest: bytes, replace: bytes | None, action: str, audit: AuditStage) -> None:
        now = time.time()
        rec = KeyRecord(ADMIN_KEY_ID, None, frozenset({"admin"}), "admin", (), now)
        keys, meta = self.store.db("keys"), self.store.db("meta")
        self._lock.acquire()
        old = [d for d, r in self.keys.items() if r.key_id == ADMIN_KEY_ID]

        def job(txn: Txn) -> None:
            for d in old:
                txn.delete(d, db=keys)
            if replace is not None:
                retired = bytes(txn.get(_ADMIN_RETIRED, db=meta) or b"")
                txn.put(_ADMIN_RETIRED, retired + replace, db=meta)
            txn.put(_ADMIN_HASH, digest, db=meta)
            txn.put(digest, rec.stored(), db=keys)
            audit(txn, action, None, {"type": "api_key", "id": ADMIN_KEY_ID},
                  {**rec.to_json(), "source": "PROVGRAPH_ADMIN_KEY" if action == "admin.key.replace" else "start"})

        try:
            self.store.write_direct(job)
            for d in old:
                self.keys.pop(d, None)
            self.keys[digest] = rec
        finally:
            self._lock.release()

    # ---- lookups -----------------------------------------------------------------------
    def authenticate(self, header: str | None) -> KeyRecord:
        if not header or not header.startswith("Bearer "):
            raise UnauthorizedError("missing bearer key")
        rec = self.keys.get(hash_key(header[7:].strip()))
        if rec is None or (rec.expires_at is not None and rec.expires_at <= time.time()):
            raise UnauthorizedError("invalid key")
        self.last_used[rec.key_id] = self.clock
        return rec

    def weights(self) -> dict[str, float]:
        """Each tenant's fair-queue weight: its quota's, 1 without one."""
        return {tid: t.weight for tid, t in self.tenants.items()}

    def tenant(self, tenant_id: str) -> Tenant:
        t = self.tenants.get(tenant_id)
        if t is None:
            raise UnknownTenantError(f"unknown tenant {tenant_id!r}", {"tenant_id": tenant_id})
        return t

    def chain_tenant(self, tenant_id: str) -> Tenant:
        """A tenant whose receipt chain can be read: every tenant, and the reserved `_admin`."""
        return ADMIN_TENANT if tenant_id == ADMIN_TENANT.tenant_id else self.tenant(tenant_id)

    # ---- last use --------------------------------------------------------------------------
    def tick(self) -> None:
        """Advance the coarse clock that `authenticate` stamps last use with (the server ticks it
        every second, so the hot path reads an attribute instead of the system clock)."""
        self.clock = time.time()

    def flush_usage(self) -> int:
        """Write the last-use times if any changed since the last flush; returns how many changed."""
        with self._lock:
            now = dict(self.last_used)
            changed = sum(1 for k, v in now.items() if self._flushed.get(k) != v)
            if not changed and now.keys() == self._flushed.keys():
                return 0
            self.store.write_direct(lambda txn: txn.put(_LAST_USED, orjson.dumps(now), db=self.store.db("meta")))
            self._flushed = now
            return changed

    # ---- creation ----------------------------------------------------------------------
    def create_tenant(self, body: Any, audit: AuditStage = _no_audit) -> Tenant:
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
            audit(txn, "admin.tenant.create", t, {"type": "tenant", "id": tid}, {"tenant_id": tid})
            return t

        with self._lock:
            tenant = self.store.write_direct(job)
            self.tenants[tid] = tenant
        return tenant

    def set_quota(self, tenant_id: str, body: Any, audit: AuditStage = _no_audit) -> Quota:
        """Replace the tenant's quota (fields the body omits take DEFAULT_QUOTA's), in its stored record
        with its audit receipt in the same transaction; admission reads it from the next request on.
        Returns the quota stored."""
        quota = parse_quota(body)
        self._replace(tenant_id, "quota", quota.to_json(), "admin.tenant.quota", audit)
        return quota

    def set_retention(self, tenant_id: str, body: Any, audit: AuditStage = _no_audit) -> Retention:
        """Replace the tenant's retention policy (fields the body omits take DEFAULT_RETENTION's), in
        its stored record with its audit receipt in the same transaction. Returns the policy stored."""
        retention = parse_retention(body)
        self._replace(tenant_id, "retention", retention.to_json(), "admin.tenant.retention", audit)
        return retention

    def _replace(self, tenant_id: str, field: str, value: dict[str, Any], action: str, audit: AuditStage) -> None:
        """Set one field of a tenant's stored record, with the change's audit receipt, in one
        transaction; the tenant in memory follows."""
        tenants = self.store.db("tenants")

        def job(txn: Txn) -> Tenant:
            raw = txn.get(tenant_id.encode(), db=tenants)
            if raw is None:
                raise UnknownTenantError(f"unknown tenant {tenant_id!r}", {"tenant_id": tenant_id})
            rec = {**orjson.loads(raw), field: value}
            t = _tenant_of(tenant_id, rec)
            txn.put(tenant_id.encode(), orjson.dumps(rec), db=tenants)
            audit(txn, action, t, {"type": "tenant", "id": tenant_id}, {"tenant_id": tenant_id, field: value})
            return t

        with self._lock:
            self.tenants[tenant_id] = self.store.write_direct(job)

    def create_key(self, body: Any, audit: AuditStage = _no_audit) -> tuple[str, KeyRecord]:
        if not isinstance(body, dict):
            raise BadRequestError("body must be a JSON object")
        tid = body.get("tenant_id")
        if not isinstance(tid, str):
            raise BadRequestError("tenant_id is required")
        tenant = self.tenant(tid)
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
        rec = KeyRecord(key_id, tid, frozenset(scopes), actor, tuple(roles), time.time())
        digest = hash_key(key)

        def job(txn: Txn) -> None:
            txn.put(digest, rec.stored(), db=self.store.db("keys"))
            audit(txn, "admin.key.create", tenant, {"type": "api_key", "id": key_id}, rec.to_json())

        with self._lock:
            self.store.write_direct(job)
            self.keys[digest] = rec
        return key, rec

    # ---- listing, revocation, rotation -----------------------------------------------------
    def _rows(self, key_id: str) -> list[tuple[bytes, KeyRecord]]:
        rows = [(d, r) for d, r in self.keys.items() if r.key_id == key_id]
        if not rows:
            raise NotFoundError(f"unknown key {key_id!r}", {"key_id": key_id})
        return rows

    def list_keys(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        """Every key (the admin key first, with tenant_id null), or one tenant's keys; each with the
        end of its previous secret's grace period when one is still running."""
        if tenant_id is not None:
            self.tenant(tenant_id)
        now = time.time()
        current: dict[str, KeyRecord] = {}
        grace: dict[str, float] = {}
        for rec in list(self.keys.values()):
            if tenant_id is not None and rec.tenant_id != tenant_id:
                continue
            if rec.expires_at is None:
                current[rec.key_id] = rec
            elif rec.expires_at > now:
                grace[rec.key_id] = max(grace.get(rec.key_id, 0.0), rec.expires_at)
        out = []
        for rec in sorted(current.values(), key=lambda r: (r.tenant_id is not None, r.tenant_id or "",
                                                            r.created_at or 0.0, r.key_id)):
            used = self.last_used.get(rec.key_id)
            out.append({**rec.to_json(),
                        "created_at": None if rec.created_at is None else rfc3339(rec.created_at),
                        "last_used_at": None if used is None else rfc3339(used),
                        "grace_until": rfc3339(grace[rec.key_id]) if rec.key_id in grace else None})
        return out

    def tenant_of_key(self, rec: KeyRecord) -> Tenant | None:
        """The tenant whose chain records changes of this key (None: the admin key, the _admin chain)."""
        return None if rec.tenant_id is None else self.tenants.get(rec.tenant_id)

    def revoke_key(self, key_id: str, audit: AuditStage = _no_audit) -> KeyRecord:
        """Delete every secret of the key (its current one and any still in a grace period)."""
        with self._lock:
            rows = self._rows(key_id)
            rec = next((r for _, r in rows if r.expires_at is None), rows[0][1])
            if rec.tenant_id is None:
                raise ConflictError("the admin key cannot be revoked (the server would have none): rotate it "
                                    "with a grace_s of 0 to end the current secret at once", {"key_id": key_id})

            def job(txn: Txn) -> None:
                for d, _ in rows:
                    txn.delete(d, db=self.store.db("keys"))
                audit(txn, "admin.key.revoke", self.tenant_of_key(rec), {"type": "api_key", "id": key_id},
                      {"key_id": key_id, "tenant_id": rec.tenant_id})

            self.store.write_direct(job)
            for d, _ in rows:
                self.keys.pop(d, None)
            self.last_used.pop(key_id, None)
        return rec

    def rotate_key(self, key_id: str, body: Any, audit: AuditStage = _no_audit) -> tuple[str, KeyRecord, float]:
        """A new secret for the same key (scopes, actor, roles kept); the current secret keeps working
        for `grace_s` seconds (0: ends now). Secrets already in a grace period keep their own end.
        Returns (new secret, record, end of the old secret's grace)."""
        if not isinstance(body, dict) or "grace_s" not in body:
            raise BadRequestError('expected {"grace_s": seconds}', {"field": "grace_s"})
        grace = body["grace_s"]
        if type(grace) not in (int, float) or not 0 <= grace <= MAX_GRACE_S:
            raise BadRequestError(f"grace_s must be a number of seconds from 0 to {MAX_GRACE_S}",
                                  {"field": "grace_s", "max": MAX_GRACE_S})
        with self._lock:
            rows = self._rows(key_id)
            cur = next(((d, r) for d, r in rows if r.expires_at is None), None)
            if cur is None:  # only secrets in a grace period left: cannot happen, rotation keeps one current
                raise NotFoundError(f"unknown key {key_id!r}", {"key_id": key_id})
            old_digest, rec = cur
            now = time.time()
            until = now + float(grace)
            expired = [d for d, r in rows if r.expires_at is not None and r.expires_at <= now]
            secret = ("pga_" if rec.tenant_id is None else "pgk_") + secrets.token_urlsafe(32)
            digest = hash_key(secret)
            old = replace(rec, expires_at=until)
            keys, meta = self.store.db("keys"), self.store.db("meta")

            def job(txn: Txn) -> None:
                for d in expired:
                    txn.delete(d, db=keys)
                if grace > 0:
                    txn.put(old_digest, old.stored(), db=keys)
                else:
                    txn.delete(old_digest, db=keys)
                txn.put(digest, rec.stored(), db=keys)
                if rec.tenant_id is None:
                    retired = bytes(txn.get(_ADMIN_RETIRED, db=meta) or b"")
                    txn.put(_ADMIN_RETIRED, retired + old_digest, db=meta)
                    txn.put(_ADMIN_HASH, digest, db=meta)
                audit(txn, "admin.key.rotate", self.tenant_of_key(rec), {"type": "api_key", "id": key_id},
                      {"key_id": key_id, "tenant_id": rec.tenant_id, "grace_s": grace, "grace_until": rfc3339(until)})

            self.store.write_direct(job)
            for d in expired:
                self.keys.pop(d, None)
            self.keys[digest] = rec
            if grace > 0:
                self.keys[old_digest] = old
            else:
                self.keys.pop(old_digest, None)
        return secret, rec, until
