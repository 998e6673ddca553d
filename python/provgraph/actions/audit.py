"""The audit trail: every admin change becomes a receipt, signed and chained by the receipt pipeline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson

from provgraph._core import uuid7
from provgraph.actions.model import hash_hex, rfc3339
from provgraph.actions.pipeline import Issuer, put_intent
from provgraph.store import Store, Txn, Writer
from provgraph.store.migrations import UNAUDITED_KEY
from provgraph.tenancy import KeyRecord, Tenant
from provgraph.tenancy.registry import ADMIN_TENANT, AuditStage

__all__ = ["OPERATOR", "Audit", "offline_stager"]

# The actor of changes made outside the API: the admin key installed or replaced at start from
# PROVGRAPH_ADMIN_KEY (or generated) by whoever runs the server.
OPERATOR = KeyRecord("operator", None, frozenset({"admin"}), "operator", ())


class Audit:
    """Issues admin-change receipts through the same outbox, signer and chains as action receipts.

    A receipt of an admin change has the shape of every receipt (docs/receipts.md): `action` is
    "admin.<what>.<verb>", `resource` {type, id}, `actor` the admin key's actor, `policy` and
    `preflight_id` null, `request_hash` BLAKE3 of RFC 8785 {action, resource, payload: change} and
    `result_hash` BLAKE3 of {"payload_hash": BLAKE3 of the change}. The change never holds a secret.
    It goes to the chain of the tenant it concerns, else to the reserved tenant `_admin`."""

    def __init__(self, issuer: Issuer, writer: Writer) -> None:
        self.issuer, self.writer = issuer, writer

    @staticmethod
    def intent(actor: KeyRecord, action: str, tenant: Tenant | None, resource: dict[str, Any],
               change: Any, now: float) -> dict[str, Any]:
        """The receipt of one change, as the outbox holds it (the issuer adds seq, chain and signature)."""
        tenant = tenant or ADMIN_TENANT
        resource = {"type": resource["type"], "id": resource.get("id")}
        return {
            "receipt_id": uuid7(), "tenant_id": tenant.tenant_id, "executed_at": rfc3339(now),
            "actor": {"id": actor.actor, "roles": list(actor.roles)}, "action": action, "resource": resource,
            "policy": None, "preflight_id": None,
            "request_hash": hash_hex({"action": action, "resource": resource, "payload": change}),
            "result_hash": hash_hex({"payload_hash": hash_hex(change)}), "approvals": [], "evidence": [],
        }

    def stage(self, txn: Txn, actor: KeyRecord, action: str, tenant: Tenant | None, resource: dict[str, Any],
              change: Any) -> str:
        """Queue the receipt in `txn`, the transaction that makes the change: both commit or neither.
        Call `notify` after the commit (else the issuer finds it within its idle wake-up, 0.5 s)."""
        now = time.time()
        intent = self.intent(actor, action, tenant, resource, change, now)
        self.issuer.put_intent(txn, (tenant or ADMIN_TENANT).num, intent, now)
        receipt_id: str = intent["receipt_id"]
        return receipt_id

    def stager(self, actor: KeyRecord) -> AuditStage:
        """`stage` bound to an actor, for components that make the change in their own transaction
        (the registry): they call it with (txn, action, tenant, resource, change)."""

        def staged(txn: Txn, action: str, tenant: Tenant | None, resource: dict[str, Any], change: Any) -> None:
            self.stage(txn, actor, action, tenant, resource, change)

        return staged

    def notify(self) -> None:
        self.issuer.notify()

    async def record(self, actor: KeyRecord, action: str, resource: dict[str, Any], change: Any,
                     tenant: Tenant | None = None) -> str:
        """Record a change already made elsewhere (flags, bundles, signing keys) in its own write;
        returns once the receipt is durable in the outbox, with its receipt_id."""

        def job(txn: Txn) -> tuple[str, Callable[[], None]]:
            return self.stage(txn, actor, action, tenant, resource, change), self.issuer.notify

        receipt_id: str = await asyncio.wrap_future(self.writer.submit(job))
        return receipt_id

    async def record_migrations(self, store: Store) -> int:
        """Turn the migrations an open of the data dir did (by any process: serve, load, verify,
        backup) into `admin.migration` receipts in the `_admin` chain, in the transaction that
        clears the store's list of them; how many."""

        def job(txn: Txn) -> tuple[int, Callable[[], None] | None]:
            meta = store.db("meta")
            raw = txn.get(UNAUDITED_KEY, db=meta)
            if raw is None:
                return 0, None
            done = orjson.loads(bytes(raw))
            for m in done:
                self.stage(txn, OPERATOR, "admin.migration", None,
                           {"type": "data_dir", "id": f"format_version:{m['to_version']}"}, m)
            txn.delete(UNAUDITED_KEY, db=meta)
            return len(done), self.issuer.notify

        count: int = await asyncio.wrap_future(self.writer.submit(job))
        return count


def offline_stager(store: Store, actor: KeyRecord = OPERATOR) -> AuditStage:
    """A stage for registry changes made with no server running (provgraph load creating a tenant):
    the receipt waits in the outbox and the next server start issues it before it listens."""

    def staged(txn: Txn, action: str, tenant: Tenant | None, resource: dict[str, Any], change: Any) -> None:
        now = time.time()
        put_intent(store, txn, (tenant or ADMIN_TENANT).num,
                   Audit.intent(actor, action, tenant, resource, change, now), now)

    return staged
