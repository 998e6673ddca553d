"""Graph write batches: parsing and validation of rows, columns and NDJSON into numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from provgraph.errors import BadRequestError, InvalidArgumentError

__all__ = [
    "ADJ",
    "DeleteBatch",
    "EdgeBatch",
    "NodeBatch",
    "parse_delete",
    "parse_edges",
    "parse_ndjson_edges",
    "parse_nodes",
    "validate_edge_arrays",
]

# One packed out-adjacency entry as stored in LMDB (13 bytes, rows sorted by dst).
ADJ = np.dtype([("dst", "<i8"), ("w", "<f4"), ("t", "u1")])
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass(frozen=True)
class EdgeBatch:
    src: np.ndarray  # int64
    dst: np.ndarray  # int64
    w: np.ndarray  # float32
    etype: np.ndarray  # uint8

    def __len__(self) -> int:
        return len(self.src)

    def dedup_last(self) -> EdgeBatch:
        """Keep the last occurrence of each (src, dst) pair, ordered by (src, dst)."""
        s, d = self.src, self.dst
        if len(s) <= 1 or bool(np.all((s[1:] > s[:-1]) | ((s[1:] == s[:-1]) & (d[1:] > d[:-1])))):
            return self  # already sorted and unique (e.g. a chunk of a bulk load)
        # two stable argsorts (dst, then src): (src, dst) order with later occurrences last,
        # several times faster than np.lexsort on large batches
        by_dst = np.argsort(d, kind="stable")
        order = by_dst[np.argsort(s[by_dst], kind="stable")]
        s, d = s[order], d[order]
        last = np.ones(len(s), dtype=bool)
        last[:-1] = (s[1:] != s[:-1]) | (d[1:] != d[:-1])
        keep = order[last]
        return EdgeBatch(self.src[keep], self.dst[keep], self.w[keep], self.etype[keep])


@dataclass(frozen=True)
class NodeBatch:
    ids: np.ndarray  # int64
    types: np.ndarray  # uint8
    attrs: list[bytes]  # orjson-encoded attributes, b"" when none


@dataclass(frozen=True)
class DeleteBatch:
    nodes: np.ndarray  # int64
    src: np.ndarray  # int64
    dst: np.ndarray  # int64


def _int_array(values: Any, name: str, lo: int = I64_MIN, hi: int = I64_MAX) -> np.ndarray:
    """A list of JSON integers as int64 (vectorized; floats, strings and bools are rejected)."""
    if not isinstance(values, list):
        raise BadRequestError(f"{name} must be a list of integers", {"field": name})
    if not values:
        return np.zeros(0, dtype=np.int64)
    try:
        arr = np.array(values)
    except (ValueError, OverflowError):
        raise BadRequestError(f"{name} must contain only integers", {"field": name}) from None
    if arr.ndim != 1 or arr.dtype.kind != "i":
        # floats, strings, objects, or ints outside int64 (numpy widens those to float/uint/object)
        bad = next((v for v in values if type(v) is not int or not I64_MIN <= v <= I64_MAX), None)
        if bad is None or type(bad) is not int:
            raise BadRequestError(f"{name} must contain only integers", {"field": name, "value": bad})
        raise InvalidArgumentError(f"{name} value {bad} outside int64", {"field": name})
    if lo != I64_MIN or hi != I64_MAX:
        out = (arr < lo) | (arr > hi)
        if out.any():
            v = int(arr[np.flatnonzero(out)[0]])
            raise InvalidArgumentError(f"{name} value {v} outside [{lo}, {hi}]", {"field": name})
    return arr.astype(np.int64, copy=False)


def _weights(values: Any) -> np.ndarray:
    if not isinstance(values, list):
        raise BadRequestError("w must be a list of numbers", {"field": "w"})
    if not values:
        return np.zeros(0, dtype=np.float64)
    arr = np.array(values)
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        raise BadRequestError("w must contain only numbers", {"field": "w"})
    return arr.astype(np.float64, copy=False)


def validate_edge_arrays(src: np.ndarray, dst: np.ndarray, w: np.ndarray, etype: np.ndarray) -> EdgeBatch:
    """Check lengths and ranges; weights must be in (0, 1] after float32 rounding."""
    n = len(src)
    if not (len(dst) == len(w) == len(etype) == n):
        raise BadRequestError("src, dst, type and w must have the same length",
                              {"lengths": [len(src), len(dst), len(etype), len(w)]})
    w32 = np.asarray(w, dtype=np.float32)
    bad = ~((w32 > 0) & (w32 <= 1))  # NaN fails both comparisons
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidArgumentError("edge weight must be in (0, 1]",
                                   {"index": i, "w": float(np.asarray(w)[i])})
    et = np.asarray(etype)
    if n and (et.min() < 0 or et.max() > 255):
        i = int(np.flatnonzero((et < 0) | (et > 255))[0])
        raise InvalidArgumentError("edge type must be in 0..255", {"index": i, "type": int(et[i])})
    return EdgeBatch(np.ascontiguousarray(src, dtype=np.int64), np.ascontiguousarray(dst, dtype=np.int64),
                     np.ascontiguousarray(w32), np.ascontiguousarray(et, dtype=np.uint8))


def parse_edges(body: Any) -> EdgeBatch:
    """Rows `{"edges": [{src, dst, type, w}]}` or columns `{"src": [...], "dst": [...], ...}`."""
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    if "edges" in body:
        rows = body["edges"]
        if not isinstance(rows, list):
            raise BadRequestError("edges must be a list")
        src, dst, w, et = [], [], [], []
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or "src" not in row or "dst" not in row:
                raise BadRequestError("each edge needs src and dst", {"index": i})
            src.append(row["src"])
            dst.append(row["dst"])
            w.append(row.get("w", 1.0))
            et.append(row.get("type", 0))
    elif "src" in body and "dst" in body:
        src, dst = body["src"], body["dst"]
        n = len(src) if isinstance(src, list) else 0
        w = body.get("w", [1.0] * n)
        et = body.get("type", [0] * n)
    else:
        raise BadRequestError("expected {\"edges\": [...]} or columns {\"src\", \"dst\", \"type\", \"w\"}")
    return validate_edge_arrays(_int_array(src, "src"), _int_array(dst, "dst"), _weights(w),
                                _int_array(et, "type"))


def parse_ndjson_edges(raw: bytes) -> EdgeBatch:
    """One edge object per line (large loads)."""
    rows = []
    for lineno, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(f"invalid JSON on line {lineno}", {"line": lineno, "reason": str(exc)}) from None
    return parse_edges({"edges": rows})


def parse_nodes(body: Any) -> NodeBatch:
    if not isinstance(body, dict) or not isinstance(body.get("nodes"), list):
        raise BadRequestError("expected {\"nodes\": [...]}")
    ids, types, attrs = [], [], []
    for i, row in enumerate(body["nodes"]):
        if not isinstance(row, dict) or "id" not in row:
            raise BadRequestError("each node needs an id", {"index": i})
        ids.append(row["id"])
        types.append(row.get("type", 0))
        a = row.get("attrs")
        if a is not None and not isinstance(a, dict):
            raise BadRequestError("attrs must be an object", {"index": i})
        attrs.append(orjson.dumps(a) if a else b"")
    id_arr = _int_array(ids, "id")
    type_arr = _int_array(types, "type", 0, 255).astype(np.uint8)
    return NodeBatch(id_arr, type_arr, attrs)


def parse_delete(body: Any) -> DeleteBatch:
    if not isinstance(body, dict) or not ({"nodes", "edges"} & body.keys()):
        raise BadRequestError("expected {\"nodes\": [...], \"edges\": [[src, dst], ...]}")
    nodes = _int_array(body.get("nodes", []), "nodes")
    pairs = body.get("edges", [])
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise BadRequestError("edges must be a list of [src, dst] pairs")
    src = _int_array([p[0] for p in pairs], "edges.src")
    dst = _int_array([p[1] for p in pairs], "edges.dst")
    return DeleteBatch(nodes, src, dst)
