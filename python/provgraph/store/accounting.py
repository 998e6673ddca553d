"""Storage accounting from real bytes (GET /v1/admin/storage, docs/storage.md "Accounting"): per table,
LMDB's pages in use times the page size; per tenant and table, rows and value bytes; per tenant's
receipts, their count, the form they are stored in and their bytes stored against their full JSON."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from provgraph.store.env import TABLES, Store, Txn

__all__ = ["TENANT_TABLES", "storage_report", "table_pages"]

# Tables whose keys start with the tenant's 4-byte number (docs/storage.md).
TENANT_TABLES = ("nodes", "out", "in", "decision_log", "preflights", "idempotency", "outbox", "dlq", "receipts",
                 "receipts_compact", "receipt_dict", "record_dict", "evidence", "evidence_blobs",
                 "purges", "evidence_purged")
_SEQ = struct.Struct(">Q")


# (tenant number, [(stored value, seq)]) -> the bytes of those receipts as full JSON
FullBytes = Callable[[int, list[tuple[bytes, int]]], int]


def table_pages(store: Store, txn: Txn) -> dict[str, dict[str, int]]:
    """Per table: rows, and LMDB pages in use (branch, leaf, overflow) and their bytes."""
    out: dict[str, dict[str, int]] = {}
    for name in TABLES:
        st = txn.stat(store.db(name))
        pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
        out[name] = {"rows": st["entries"], "pages": pages, "bytes": pages * st["psize"]}
    return out


def _evidence_hot(store: Store, txn: Txn) -> dict[int, dict[str, int]]:
    """Per tenant: evidence items and their bytes (every item is hot until tiering moves it)."""
    from provgraph.evidence.store import record_size  # evidence builds on store, not the reverse

    out: dict[int, dict[str, int]] = {}
    for key, value in txn.cursor(db=store.db("evidence")):
        s = out.setdefault(int.from_bytes(key[:4], "big"), {"items": 0, "bytes": 0})
        s["items"] += 1
        s["bytes"] += record_size(value)
    return out


def _purged(store: Store, txn: Txn) -> dict[int, dict[str, int]]:
    """Per tenant: evidence items purged and their bytes, from the purge manifests."""
    import orjson

    out: dict[int, dict[str, int]] = {}
    for key, value in txn.cursor(db=store.db("purges")):
        manifest = orjson.loads(value)["manifest"]
        s = out.setdefault(int.from_bytes(key[:4], "big"), {"items": 0, "bytes": 0})
        s["items"] += manifest["item_count"]
        s["bytes"] += manifest["bytes"]
    return out


def _no_receipts() -> dict[str, int]:
    return {"count": 0, "full_rows": 0, "compact_rows": 0, "packs": 0, "bytes_stored": 0, "bytes_full": 0}


def storage_report(store: Store, tenants: dict[int, str], full_bytes: FullBytes) -> dict[str, Any]:
    """The storage report of every table and tenant, read in one transaction (a full scan of the
    tenant tables: run it off the event loop)."""
    # imported here: actions builds on store, not the reverse
    from provgraph.actions.pipeline import PACKS, row_count

    per: dict[int, dict[str, dict[str, int]]] = {num: {} for num in tenants}
    receipts: dict[int, dict[str, int]] = {num: _no_receipts() for num in tenants}
    with store.read() as txn:
        tables = table_pages(store, txn)
        evidence = _evidence_hot(store, txn)
        purged = _purged(store, txn)
        for name in TENANT_TABLES:
            for key, value in txn.cursor(db=store.db(name)):
                num = struct.unpack(">I", bytes(key[:4]))[0]
                row = per.setdefault(num, {}).setdefault(name, {"rows": 0, "value_bytes": 0})
                row["rows"] += 1
                row["value_bytes"] += len(value)
        pending: dict[int, list[tuple[bytes, int]]] = {}
        for key, value in txn.cursor(db=store.db("receipts")):
            num = struct.unpack(">I", bytes(key[:4]))[0]
            r = receipts.setdefault(num, _no_receipts())
            r["bytes_stored"] += len(value)
            if value[:1] == b"{":
                r["count"] += 1
                r["full_rows"] += 1
                r["bytes_full"] += len(value)
            else:
                n = row_count(value)  # a pack holds n receipts, a compact row one
                r["count"] += n
                r["compact_rows"] += n
                r["packs"] += value[:1] in PACKS
                pending.setdefault(num, []).append((bytes(value), _SEQ.unpack(bytes(key[4:12]))[0]))
                if len(pending[num]) >= 256:
                    r["bytes_full"] += full_bytes(num, pending.pop(num))
        for num, rows in pending.items():
            receipts[num]["bytes_full"] += full_bytes(num, rows)
    out_tenants: dict[str, Any] = {}
    for num, tid in sorted(tenants.items(), key=lambda kv: kv[1]):
        r = receipts.get(num, _no_receipts())
        dual = per.get(num, {}).get("receipts_compact", {}).get("rows", 0)
        mode = ("dual" if dual else "full") if r["compact_rows"] == 0 else "compact" if r["full_rows"] == 0 \
            else "mixed"
        stored = r["bytes_stored"] + per.get(num, {}).get("receipts_compact", {}).get("value_bytes", 0) + \
            per.get(num, {}).get("receipt_dict", {}).get("value_bytes", 0)
        out_tenants[tid] = {
            "receipts": {"count": r["count"], "mode": mode if r["count"] else "none", "bytes_full": r["bytes_full"],
                         "bytes_stored": stored, "full_rows": r["full_rows"], "compact_rows": r["compact_rows"],
                         "packs": r["packs"]},
            "tables": {name: per.get(num, {}).get(name, {"rows": 0, "value_bytes": 0}) for name in TENANT_TABLES},
            "tiers": {"hot": evidence.get(num, {"items": 0, "bytes": 0})},
            "purged": purged.get(num, {"items": 0, "bytes": 0}),
        }
    totals = {"rows": sum(t["rows"] for t in tables.values()),
              "bytes_in_pages": sum(t["bytes"] for t in tables.values()),
              "receipts": sum(r["receipts"]["count"] for r in out_tenants.values()),
              "receipt_bytes_full": sum(r["receipts"]["bytes_full"] for r in out_tenants.values()),
              "receipt_bytes_stored": sum(r["receipts"]["bytes_stored"] for r in out_tenants.values()),
              "evidence_items": sum(r["tiers"]["hot"]["items"] for r in out_tenants.values()),
              "evidence_bytes": sum(r["tiers"]["hot"]["bytes"] for r in out_tenants.values())}
    return {"tenants": out_tenants, "tables": tables, "totals": totals}
