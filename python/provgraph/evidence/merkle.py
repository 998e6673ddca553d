"""RFC 6962 §2.1 Merkle trees (SHA-256, leaf prefix 0x00, node prefix 0x01): the tree hash of a list
of leaves, the audit path of one leaf, and its verification (RFC 9162 §2.1.3.2). Purge and erasure
manifests commit to the items they removed with this root, so that anyone can check with any RFC
6962 library that an item was in a manifest (docs/evidence.md)."""

from __future__ import annotations

import hashlib

__all__ = ["audit_path", "leaf_hash", "root", "verify_inclusion"]


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(hashes: list[bytes]) -> bytes:
    """MTH over leaf hashes, bottom-up (the same tree as the recursive definition)."""
    level = hashes
    while len(level) > 1:
        # pairing left to right and carrying an odd last node up gives RFC 6962's unbalanced tree
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]): SHA-256 of the empty string for no leaves."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    return _mth([leaf_hash(d) for d in leaves])


def audit_path(leaves: list[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of leaf `index`: the sibling hashes from the leaf up."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} of a tree of {len(leaves)}")
    hashes = [leaf_hash(d) for d in leaves]

    def path(m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*path(m, lo, lo + k), _mth(hashes[lo + k:hi])]
        return [*path(m - k, lo + k, hi), _mth(hashes[lo:lo + k])]

    return path(index, 0, len(hashes))


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], expected_root: bytes) -> bool:
    """Whether `path` proves `leaf` is leaf `index` of the tree of `size` leaves whose root is
    `expected_root` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root
