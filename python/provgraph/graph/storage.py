"""Graph tables in LMDB: node rows, packed out-adjacency rows and the in-adjacency index."""

from __future__ import annotations

from typing import Any

import numpy as np

from provgraph._core import merge_adjacency, union_ids
from provgraph.graph.model import ADJ, DeleteBatch, EdgeBatch, NodeBatch
from provgraph.store.env import Txn
from provgraph.store.keys import decode_node_key, node_key, node_keys, prefix_end, tenant_prefix

__all__ = ["GraphTables", "TenantArrays"]

_EMPTY_ADJ = np.zeros(0, dtype=ADJ)
_EMPTY_IDS = np.zeros(0, dtype=np.int64)
_NODE_DEFAULT = b"\x00"  # node value: 1 type byte + orjson attributes (may be empty)

TenantArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _row(raw: bytes | None) -> np.ndarray:
    return np.frombuffer(raw, dtype=ADJ) if raw else _EMPTY_ADJ


def _ids(raw: bytes | None) -> np.ndarray:
    return np.frombuffer(raw, dtype="<i8") if raw else _EMPTY_IDS


def _group_bounds(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start/end offsets of runs of equal values in a sorted array."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    return starts, ends


class GraphTables:
    """Reads and writes one tenant's graph rows inside a caller's transaction."""

    def __init__(self, dbs: dict[str, Any]) -> None:
        self.nodes, self.out, self.inn = dbs["nodes"], dbs["out"], dbs["in"]

    # ---- reads -------------------------------------------------------------------------
    def out_row(self, txn: Txn, tenant: int, node: int) -> np.ndarray:
        return _row(txn.get(node_key(tenant, node), db=self.out))

    def node_type(self, txn: Txn, tenant: int, node: int) -> int | None:
        raw = txn.get(node_key(tenant, node), db=self.nodes)
        return None if raw is None else raw[0]

    def node_attrs(self, txn: Txn, tenant: int, node: int) -> bytes | None:
        raw = txn.get(node_key(tenant, node), db=self.nodes)
        return None if raw is None else bytes(raw[1:])

    def load_tenant(self, txn: Txn, tenant: int) -> TenantArrays:
        """All nodes and edges of a tenant as arrays for a CSR build (src, dst, w, type, nodes, types)."""
        lo, hi = tenant_prefix(tenant), prefix_end(tenant_prefix(tenant))
        ids, types = [], []
        cur = txn.cursor(db=self.nodes)
        if cur.set_range(lo):
            for key, val in cur:
                if key >= hi:
                    break
                ids.append(decode_node_key(key))
                types.append(val[0])
        srcs, rows = [], []
        cur = txn.cursor(db=self.out)
        if cur.set_range(lo):
            for key, val in cur:
                if key >= hi:
                    break
                row = np.frombuffer(val, dtype=ADJ)
                srcs.append(np.full(len(row), decode_node_key(key), dtype=np.int64))
                rows.append(row)
        adj = np.concatenate(rows) if rows else _EMPTY_ADJ
        src = np.concatenate(srcs) if srcs else _EMPTY_IDS
        return (src, np.ascontiguousarray(adj["dst"]), np.ascontiguousarray(adj["w"]),
                np.ascontiguousarray(adj["t"]), np.array(ids, dtype=np.int64), np.array(types, dtype=np.uint8))

    # ---- writes ------------------------------------------------------------------------
    def put_nodes(self, txn: Txn, tenant: int, batch: NodeBatch) -> None:
        keys = node_keys(tenant, batch.ids)
        for key, t, attrs in zip(keys, batch.types.tolist(), batch.attrs):
            txn.put(key, bytes((t,)) + attrs, db=self.nodes)

    def ensure_nodes(self, txn: Txn, tenant: int, ids: np.ndarray) -> None:
        """Create nodes that don't exist yet (type 0, no attributes); `ids` sorted and unique."""
        txn.cursor(db=self.nodes).putmulti(((k, _NODE_DEFAULT) for k in node_keys(tenant, ids)),
                                           overwrite=False)

    def put_edges(self, txn: Txn, tenant: int, batch: EdgeBatch) -> None:
        """Upsert edges: merge into out rows (new values win) and add new sources to in rows.

        Rows that don't exist yet (the bulk case) are written as slices of one packed buffer;
        only existing rows pay for a merge.
        """
        b = batch.dedup_last()  # sorted by (src, dst)
        new = np.empty(len(b), dtype=ADJ)
        new["dst"], new["w"], new["t"] = b.dst, b.w, b.etype
        blob, size = new.tobytes(), ADJ.itemsize
        starts, ends = _group_bounds(b.src)
        by_dst = np.argsort(b.dst, kind="stable")  # b is sorted by (src, dst): this is (dst, src) order
        dst_sorted = b.dst[by_dst]
        self.ensure_nodes(txn, tenant, np.union1d(b.src[starts], np.unique(dst_sorted)))
        fresh = np.ones(len(b), dtype=bool)  # pairs that did not exist before: new in-index entries
        get, put, out = txn.get, txn.put, self.out
        for key, s, e in zip(node_keys(tenant, b.src[starts]), starts.tolist(), ends.tolist()):
            old_raw = get(key, db=out)
            if old_raw is None:
                put(key, blob[s * size:e * size], db=out)
                continue
            merged, mask = merge_adjacency(old_raw, blob[s * size:e * size])  # one native call per row
            put(key, merged, db=out)
            fresh[s:e] = np.frombuffer(mask, dtype=bool)
        keep = fresh[by_dst]
        self._add_in(txn, tenant, dst_sorted[keep], b.src[by_dst][keep])

    def _add_in(self, txn: Txn, tenant: int, dst: np.ndarray, src: np.ndarray) -> None:
        """Add (dst <- src) entries; `dst` sorted, `src` sorted within each dst."""
        srcs = np.ascontiguousarray(src, dtype="<i8")
        blob, size = srcs.tobytes(), 8
        starts, ends = _group_bounds(dst)
        get, put, inn = txn.get, txn.put, self.inn
        for key, s, e in zip(node_keys(tenant, dst[starts]), starts.tolist(), ends.tolist()):
            old = get(key, db=inn)
            if old is None:
                put(key, blob[s * size:e * size], db=inn)
            else:
                put(key, union_ids(old, blob[s * size:e * size]), db=inn)

    def _remove_in(self, txn: Txn, tenant: int, dst: int, srcs: np.ndarray) -> None:
        key = node_key(tenant, dst)
        old = _ids(txn.get(key, db=self.inn))
        if len(old) == 0:
            return
        kept = old[~np.isin(old, srcs)]
        if len(kept):
            txn.put(key, kept.tobytes(), db=self.inn)
        else:
            txn.delete(key, db=self.inn)

    def _remove_out(self, txn: Txn, tenant: int, src: int, dsts: np.ndarray) -> int:
        key = node_key(tenant, src)
        old = _row(txn.get(key, db=self.out))
        if len(old) == 0:
            return 0
        keep = ~np.isin(old["dst"], dsts)
        removed = len(old) - int(keep.sum())
        if removed:
            if keep.any():
                txn.put(key, old[keep].tobytes(), db=self.out)
            else:
                txn.delete(key, db=self.out)
        return removed

    def delete(self, txn: Txn, tenant: int, batch: DeleteBatch) -> tuple[int, int]:
        """Delete edges, then nodes with every edge into or out of them. Returns (edges, nodes) removed."""
        edges_removed = 0
        for s, d in zip(batch.src.tolist(), batch.dst.tolist()):
            n = self._remove_out(txn, tenant, s, np.array([d], dtype=np.int64))
            if n:
                self._remove_in(txn, tenant, d, np.array([s], dtype=np.int64))
                edges_removed += n
        nodes_removed = 0
        for node in np.unique(batch.nodes).tolist():
            key = node_key(tenant, node)
            if not txn.delete(key, db=self.nodes):
                continue
            nodes_removed += 1
            me = np.array([node], dtype=np.int64)
            out_row = _row(txn.get(key, db=self.out))
            for d in out_row["dst"].tolist():
                if d != node:
                    self._remove_in(txn, tenant, d, me)
            in_row = _ids(txn.get(key, db=self.inn))
            for s in in_row.tolist():
                if s != node:
                    self._remove_out(txn, tenant, s, me)
            edges_removed += len(out_row) + int(np.sum(in_row != node))
            txn.delete(key, db=self.out)
            txn.delete(key, db=self.inn)
        return edges_removed, nodes_removed
