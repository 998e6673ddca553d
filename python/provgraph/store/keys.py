"""Key encodings: every row key starts with its tenant's 4-byte partition prefix."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["decode_node_key", "node_key", "node_keys", "prefix_end", "scan_prefix", "tenant_prefix"]

_SIGN = 1 << 63
_NODE = struct.Struct(">IQ")


def tenant_prefix(tenant_num: int) -> bytes:
    return struct.pack(">I", tenant_num)


def node_key(tenant_num: int, node_id: int) -> bytes:
    """Tenant prefix + node id as big-endian with the sign bit flipped (sorts like int64)."""
    return _NODE.pack(tenant_num, (node_id + _SIGN) & 0xFFFFFFFFFFFFFFFF)


def decode_node_key(key: bytes) -> int:
    return int(_NODE.unpack(key)[1]) - _SIGN


def node_keys(tenant_num: int, ids: np.ndarray) -> list[bytes]:
    """Vectorized `node_key` for an int64 array."""
    raw = np.empty(len(ids), dtype=[("t", ">u4"), ("n", ">u8")])
    raw["t"] = tenant_num
    raw["n"] = ids.astype(np.int64).view(np.uint64) ^ np.uint64(_SIGN)
    blob = raw.tobytes()
    return [blob[i : i + 12] for i in range(0, len(blob), 12)]


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with `prefix`."""
    return (int.from_bytes(prefix, "big") + 1).to_bytes(len(prefix), "big")


def scan_prefix(cursor: Any, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The rows of an LMDB `cursor` whose keys start with `prefix`, in key order."""
    if cursor.set_range(prefix):
        for key, value in cursor:
            if not bytes(key).startswith(prefix):
                return
            yield bytes(key), bytes(value)
