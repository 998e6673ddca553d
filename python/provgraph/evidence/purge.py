"""Purge with proof (docs/evidence.md "Purge"): a tenant's evidence past its retention is removed only
with a signed purge manifest that commits to every item removed by an RFC 6962 Merkle root, recorded
as an `evidence.purge` receipt in the tenant's chain whose `result_hash` is that root.

One write transaction holds the whole purge: the manifest and its items (table ``purges``), a
tombstone per item (table ``evidence_purged``: later reads answer 410 naming the manifest), the
removal of every record and small blob, and the receipt intent. So either the manifest exists and
every item in it is gone, or nothing happened. Blob files of removed records are unlinked after the
commit; a crash before that leaves files no record names, which the next start removes
(`remove_orphans`).
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from provgraph._core import canonicalize, uuid7
from provgraph.actions.model import hash_hex
from provgraph.actions.pipeline import Issuer
from provgraph.actions.signing import KeyRing
from provgraph.clock import rfc3339
from provgraph.evidence import merkle
from provgraph.evidence.store import FILE, EvidenceRecord, EvidenceStore
from provgraph.store import Txn
from provgraph.store.keys import scan_prefix, tenant_prefix
from provgraph.tenancy import KeyRecord, Tenant
from provgraph.tenancy.retention import DAY_US, Retention

__all__ = ["PURGE_ACTION", "Purger", "check_bundle", "leaf_bytes", "manifest_leaves"]

PURGE_ACTION = "evidence.purge"


def leaf_bytes(tenant_id: str, item: dict[str, Any]) -> bytes:
    """A leaf of a purge tree: the RFC 8785 bytes of {"hash", "kind", "size", "tenant_id"}."""
    return canonicalize({"hash": item["hash"], "kind": item["kind"], "size": item["size"], "tenant_id": tenant_id})


def manifest_leaves(manifest: dict[str, Any], items: list[dict[str, Any]]) -> list[bytes]:
    return [leaf_bytes(manifest["tenant_id"], i) for i in items]


class Purger:
    def __init__(self, evidence: EvidenceStore, keyring: KeyRing, issuer: Issuer) -> None:
        self.evidence, self.keyring, self.issuer = evidence, keyring, issuer
        self.store = evidence.store
        self.purges, self.tombstones = self.store.db("purges"), self.store.db("evidence_purged")

    async def purge(self, actor: KeyRecord, tenant: Tenant, policy: Retention, before_us: int, reason: str,
                    as_of_us: int, request: dict[str, Any]) -> dict[str, Any]:
        """Purge `tenant`'s evidence whose age counts from before `before_us` and is at least the
        policy's `purge_after_days` at `as_of_us`; nothing younger. Returns the signed manifest."""
        manifest, files = await asyncio.wrap_future(self.evidence.writer.submit(
            self._job(actor, tenant, policy, before_us, reason, as_of_us, request)))
        self.evidence.bytes_held -= manifest["bytes"]
        for path in files:  # the records are gone: nothing names these bytes any more
            path.unlink(missing_ok=True)
        return manifest

    def _job(self, actor: KeyRecord, tenant: Tenant, policy: Retention, before_us: int, reason: str,
             as_of_us: int, request: dict[str, Any]) -> Callable[[Txn], tuple[tuple[dict[str, Any], list[Any]],
                                                                                 Callable[[], None]]]:
        ev = self.evidence

        def job(txn: Txn) -> tuple[tuple[dict[str, Any], list[Any]], Callable[[], None]]:
            now = time.time()
            prefix = tenant_prefix(tenant.num)
            chosen: list[EvidenceRecord] = []
            for key, value in scan_prefix(txn.cursor(db=ev.records), prefix):
                record = EvidenceRecord.from_value(key[4:], value)
                basis = max(record.uploaded_us, record.last_ref_us)
                if basis < before_us and policy.purgeable((as_of_us - basis) / DAY_US):
                    chosen.append(record)
            chosen.sort(key=lambda r: r.hash)
            items = [{"hash": r.hash, "kind": "evidence", "size": r.size} for r in chosen]
            leaves = [leaf_bytes(tenant.tenant_id, i) for i in items]
            manifest_id = uuid7()
            signer = self.keyring.active
            manifest: dict[str, Any] = {
                "manifest_id": manifest_id, "tenant_id": tenant.tenant_id, "kinds": ["evidence"],
                "window": {"before": _rfc3339_us(before_us)}, "as_of": _rfc3339_us(as_of_us), "reason": reason,
                "retention": policy.to_json(), "item_count": len(items), "bytes": sum(r.size for r in chosen),
                "merkle_root": merkle.root(leaves).hex(), "tree_size": len(leaves), "created_at": rfc3339(now),
                "signer": {"key_id": signer.key_id, "alg": "Ed25519"},
            }
            manifest["signature"] = base64.b64encode(signer.sign(canonicalize(manifest))).decode()
            mid = uuid.UUID(manifest_id).bytes
            txn.put(prefix + mid, orjson.dumps({"manifest": manifest, "items": items}), db=self.purges)
            files = []
            for r in chosen:
                digest = bytes.fromhex(r.hash)
                txn.delete(prefix + digest, db=ev.records)
                if r.where == FILE:
                    files.append(ev.path(tenant.num, digest))
                else:
                    txn.delete(prefix + digest, db=ev.blobs)
                txn.put(prefix + digest, mid, db=self.tombstones)
            resource = {"type": "purge", "id": manifest_id}
            self.issuer.put_intent(txn, tenant.num, {
                "receipt_id": uuid7(), "tenant_id": tenant.tenant_id, "executed_at": rfc3339(now),
                "actor": {"id": actor.actor, "roles": list(actor.roles)}, "action": PURGE_ACTION,
                "resource": resource, "policy": None, "preflight_id": None,
                "request_hash": hash_hex({"action": PURGE_ACTION, "resource": resource, "payload": request}),
                "result_hash": manifest["merkle_root"], "approvals": [], "evidence": [],
            }, now)
            return (manifest, files), self.issuer.notify

        return job

    # ---- reads ---------------------------------------------------------------------------------
    def get(self, tenant: int, manifest_id: str) -> dict[str, Any] | None:
        """{"manifest", "items"} of a purge of `tenant`, or None."""
        try:
            mid = uuid.UUID(manifest_id).bytes
        except ValueError:
            return None
        with self.store.read() as txn:
            raw = txn.get(tenant_prefix(tenant) + mid, db=self.purges)
        if raw is None:
            return None
        stored: dict[str, Any] = orjson.loads(raw)
        return stored

    def purged_by(self, tenant: int, digest: bytes) -> str | None:
        """The manifest id that purged `digest` from `tenant`, if one did."""
        with self.store.read() as txn:
            mid = txn.get(tenant_prefix(tenant) + digest, db=self.tombstones)
        return None if mid is None else str(uuid.UUID(bytes=bytes(mid)))

    def remove_orphans(self) -> int:
        """Unlink the blob files of purged items that no record names (a purge interrupted between
        its commit and its unlinks); how many."""
        removed = 0
        with self.store.read() as txn:
            stale = [(int.from_bytes(k[:4], "big"), bytes(k[4:])) for k, _ in txn.cursor(db=self.tombstones)
                     if txn.get(bytes(k), db=self.evidence.records) is None]
        for tenant, digest in stale:
            path = self.evidence.path(tenant, digest)
            if path.exists():
                path.unlink()
                removed += 1
        return removed


def _rfc3339_us(us: int) -> str:
    return rfc3339(us / 1e6)



def check_bundle(bundle: dict[str, Any]) -> list[str]:
    """What is wrong with a purge bundle ({"manifest", "items", "proofs": {hash: proof}, "keys":
    [{key_id, public_key}]}, what `provgraph verify-purge --save` writes), offline: the manifest's
    signature, its root and sizes against its items, and every inclusion proof. Empty: it holds."""
    from provgraph._core import verify_receipt

    manifest, items, proofs = bundle["manifest"], bundle["items"], bundle.get("proofs", {})
    problems = []
    keys = {k["key_id"]: base64.b64decode(k["public_key"]) for k in bundle["keys"]}
    key = keys.get(manifest.get("signer", {}).get("key_id"))
    if key is None:
        problems.append("the manifest's signing key is not among the keys")
    else:
        try:
            verify_receipt(orjson.dumps(manifest), key)
        except ValueError as exc:
            problems.append(f"the manifest's signature does not verify: {exc}")
    hashes = [i["hash"] for i in items]
    if hashes != sorted(set(hashes)):
        problems.append("items are not in hash order, or one is listed twice")
    leaves = manifest_leaves(manifest, items)
    root = merkle.root(leaves).hex()
    if root != manifest["merkle_root"] or len(items) != manifest["tree_size"] or len(items) != manifest["item_count"]:
        problems.append("the items do not give the manifest's merkle_root, tree_size and item_count")
    for i, item in enumerate(items):
        proof = proofs.get(item["hash"])
        if proof is None:
            problems.append(f"no proof for {item['hash']}")
            continue
        path = [bytes.fromhex(p) for p in proof["audit_path"]]
        if proof["tree_size"] != manifest["tree_size"] or not merkle.verify_inclusion(
                leaves[i], proof["leaf_index"], proof["tree_size"], path, bytes.fromhex(manifest["merkle_root"])):
            problems.append(f"the proof of {item['hash']} does not verify against the manifest's root")
    return problems
