"""RFC 6962 Merkle trees (provgraph.evidence.merkle) against an independent implementation,
pymerkle (RFC 9162 trees, SHA-256, 0x00/0x01 prefixes): the same roots, the same audit paths,
our proofs accepted by its verifier, and tampered proofs refused by both."""

from __future__ import annotations

import hashlib
import random

import pytest
from provgraph.evidence.merkle import audit_path, leaf_hash, root, verify_inclusion
from pymerkle import InclusionProof, InmemoryTree, InvalidProof
from pymerkle import verify_inclusion as reference_verify


def _reference(leaves: list[bytes]) -> InmemoryTree:
    tree = InmemoryTree(algorithm="sha256")
    for leaf in leaves:
        tree.append_entry(leaf)
    return tree


def _their_proof(tree: InmemoryTree, index: int, size: int, our_path: list[bytes]) -> InclusionProof:
    """pymerkle's proof of `index` with its path replaced by ours (its path is the leaf's hash and
    then the audit path): what its verifier checks are our hashes."""
    data = tree.prove_inclusion(index + 1, size).serialize()
    data["path"] = [data["path"][0], *(h.hex() for h in our_path)]
    return InclusionProof.deserialize(data)


@pytest.mark.parametrize("seed", [1, 2])
def test_roots_and_proofs_match_an_independent_implementation(seed: int) -> None:
    rng = random.Random(seed)
    for n in [*range(1, 40), 64, 65, 100, rng.randrange(100, 700)]:
        leaves = [rng.randbytes(rng.randrange(0, 90)) for _ in range(n)]
        tree = _reference(leaves)
        ours = root(leaves)
        assert ours == tree.get_root(), n
        for m in sorted(rng.sample(range(n), min(n, 12))):
            path = audit_path(leaves, m)
            assert verify_inclusion(leaves[m], m, n, path, ours)
            assert [bytes.fromhex(h) for h in tree.prove_inclusion(m + 1, n).serialize()["path"][1:]] == path
            reference_verify(leaf_hash(leaves[m]), ours, _their_proof(tree, m, n, path))  # raises if not


def test_tampered_proofs_fail_in_both() -> None:
    leaves = [b"item %d" % i for i in range(13)]
    tree, r, m = _reference(leaves), root(leaves), 6
    path = audit_path(leaves, m)
    bad_path = [path[0][:-1] + bytes([path[0][-1] ^ 1]), *path[1:]]
    assert not verify_inclusion(leaves[m], m, 13, bad_path, r)
    with pytest.raises(InvalidProof):
        reference_verify(leaf_hash(leaves[m]), r, _their_proof(tree, m, 13, bad_path))
    assert not verify_inclusion(b"item 99", m, 13, path, r)  # another leaf
    assert not verify_inclusion(leaves[m], m + 1, 13, path, r)  # another index
    last = audit_path(leaves, 12)  # the size is signed in the manifest; where it shapes the path, it is checked
    assert verify_inclusion(leaves[12], 12, 13, last, r) and not verify_inclusion(leaves[12], 12, 14, last, r)
    assert not verify_inclusion(leaves[m], m, 13, path[:-1], r)  # a path cut short
    assert not verify_inclusion(leaves[m], m, 13, path, hashlib.sha256(b"x").digest())
    assert not verify_inclusion(leaves[m], 13, 13, path, r)
    with pytest.raises(IndexError):
        audit_path(leaves, 13)


def test_the_empty_tree_and_one_leaf() -> None:
    assert root([]) == hashlib.sha256(b"").digest()
    assert root([b"a"]) == leaf_hash(b"a") == hashlib.sha256(b"\x00a").digest()
    assert audit_path([b"a"], 0) == [] and verify_inclusion(b"a", 0, 1, [], root([b"a"]))
