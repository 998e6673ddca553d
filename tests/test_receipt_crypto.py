"""Signed receipts through the binding, checked by an INDEPENDENT verifier.

The verifier below uses only the standard library, PyNaCl (Ed25519), the `blake3`
package and the `rfc8785` package — no provgraph code — and follows the public recipe
of API.md ("Actions and receipts"): remove `signature`, RFC 8785 the rest, verify the
base64 signature with the key named by `signer.key_id` (= hex(BLAKE3(public key))[:16]);
`prev_hash` = hex BLAKE3 of the previous receipt's signed bytes, 64 zeros for seq 1.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import blake3
import nacl.exceptions
import nacl.signing
import orjson
import pytest
import rfc8785
from provgraph._core import ReceiptSigner, uuid7, verify_chain, verify_receipt
from provgraph.errors import InvalidArgumentError

ZERO = "0" * 64


# ---------------------------------------------------------------- independent verifier
class Bad(Exception):
    """A receipt or chain that fails independent verification."""


def ind_key_id(public_key: bytes) -> str:
    return blake3.blake3(public_key).hexdigest()[:16]


def ind_verify(receipt_json: bytes, public_keys: dict[str, bytes]) -> bytes:
    """Verify one receipt; return BLAKE3 of its signed bytes."""
    try:
        obj = json.loads(receipt_json)
    except ValueError as e:
        raise Bad(f"bad JSON: {e}") from e
    if not isinstance(obj, dict) or not isinstance(obj.get("signature"), str):
        raise Bad("missing signature")
    sig_b64 = obj.pop("signature")
    signer = obj.get("signer")
    if not isinstance(signer, dict) or signer.get("alg") != "Ed25519":
        raise Bad("bad signer")
    key = public_keys.get(str(signer.get("key_id")))
    if key is None:
        raise Bad("unknown key_id")
    try:
        sig = base64.b64decode(sig_b64, validate=True)
    except binascii.Error as e:
        raise Bad("bad base64") from e
    signed = rfc8785.dumps(obj)
    try:
        nacl.signing.VerifyKey(key).verify(signed, sig)
    except (nacl.exceptions.BadSignatureError, ValueError) as e:
        raise Bad("signature mismatch") from e
    return blake3.blake3(signed).digest()


def ind_verify_chain(receipts: list[bytes], public_keys: dict[str, bytes]) -> tuple[int | None, str | None]:
    """(None, None) if the chain is intact, else (position seq, reason)."""
    prev, tenant = ZERO, None
    for i, raw in enumerate(receipts, start=1):
        try:
            h = ind_verify(raw, public_keys)
        except Bad as e:
            return i, str(e)
        obj = json.loads(raw)
        tenant = tenant or obj["tenant_id"]
        if obj["tenant_id"] != tenant:
            return i, "tenant"
        if obj["seq"] != i:
            return i, "seq"
        if obj["prev_hash"] != prev:
            return i, "prev_hash"
        prev = h.hex()
    return None, None


# ---------------------------------------------------------------- helpers
def make_receipt(i: int, tenant: str = "tenant-a") -> dict[str, Any]:
    def h(x: int) -> str:
        return str(blake3.blake3(str(x).encode()).hexdigest())

    return {
        "receipt_id": uuid7(),
        "tenant_id": tenant,
        "executed_at": "2025-06-01T12:34:56.123456Z",
        "issued_at": "2025-06-01T12:34:56.130001Z",
        "actor": {"id": f"user:{i % 5}", "roles": ["writer", "analyst"]},
        "action": "graph.write",
        "resource": {"type": "node", "id": f"n{i}"},
        "policy": {"bundle": "default", "revision": "r7", "decision_id": uuid7(), "decision": "allow"},
        "preflight_id": uuid7(),
        "request_hash": h(i),
        "result_hash": h(-i),
        "approvals": [{"actor": "user:bob", "at": "2025-06-01T12:30:00.000001Z", "receipt_id": uuid7()}],
        "evidence": [{"hash": h(i * 7), "size": 1000 + i}],
        # Values that exercise RFC 8785: non-ASCII, escapes, doubles, UTF-16 key order.
        "note": "Grüße \u2028 \"q\" \\ \x01 \U0001F600",
        "metrics": {"score": 0.1 + i / 3, "big": 1e21, "small": 1e-7, "neg": -0.0},
        "\ue000": 1,
        "\U0001F600": 2,
    }


def sign(signer: ReceiptSigner, receipts: list[dict[str, Any]], prev: bytes = bytes(32),
         next_seq: int = 1) -> tuple[list[tuple[int, str, bytes, bytes]], bytes]:
    return signer.sign_batch(prev, next_seq, [orjson.dumps(r) for r in receipts])


def both_fail_at(receipts: list[bytes], keys: dict[str, bytes], seq: int, reason: str) -> None:
    """Both verifiers reject the chain at the same position."""
    report = verify_chain(receipts, keys)
    assert not report["ok"]
    assert report["first_bad_seq"] == seq, report
    assert report["checked"] == seq - 1
    assert report["reason"].startswith(reason), report
    assert ind_verify_chain(receipts, keys)[0] == seq


def tamper(raw: bytes, fn: Any) -> bytes:
    obj = json.loads(raw)
    fn(obj)
    return rfc8785.dumps(obj)


@pytest.fixture(scope="module")
def signer() -> ReceiptSigner:
    return ReceiptSigner()


@pytest.fixture(scope="module")
def chain(signer: ReceiptSigner) -> list[bytes]:
    rows: list[tuple[int, str, bytes, bytes]] = []
    head, seq = bytes(32), 1
    for size in (1, 50, 13, 136):  # 200 receipts in uneven batches
        out, head = sign(signer, [make_receipt(seq + j) for j in range(size)], head, seq)
        rows += out
        seq += size
    return [r[3] for r in rows]


# ---------------------------------------------------------------- tests
def test_rfc8032_vector_1() -> None:
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    s = ReceiptSigner(seed)
    assert s.seed == seed
    assert s.public_key.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert s.key_id == ind_key_id(s.public_key)
    assert nacl.signing.SigningKey(seed).verify_key.encode() == s.public_key


def test_sign_batch_output_matches_the_independent_recipe(signer: ReceiptSigner) -> None:
    inputs = [make_receipt(i) for i in range(1, 11)]
    rows, head = sign(signer, inputs)
    keys = {signer.key_id: signer.public_key}
    prev = ZERO
    for (seq, rid, signed_hash, raw), src in zip(rows, inputs, strict=True):
        obj = json.loads(raw)
        assert raw == rfc8785.dumps(obj)  # stored form is canonical
        assert seq == obj["seq"] and rid == obj["receipt_id"] == src["receipt_id"]
        assert obj["prev_hash"] == prev
        assert obj["signer"] == {"key_id": signer.key_id, "alg": "Ed25519"}
        assert {k: v for k, v in obj.items() if k not in ("seq", "prev_hash", "signer", "signature")} == src
        assert ind_verify(raw, keys) == signed_hash
        assert verify_receipt(raw, signer.public_key) == signed_hash
        # The signature is deterministic Ed25519: PyNaCl signs the same bytes identically.
        del obj["signature"]
        assert nacl.signing.SigningKey(signer.seed).sign(rfc8785.dumps(obj)).signature == \
            base64.b64decode(json.loads(raw)["signature"])
        prev = signed_hash.hex()
    assert head == rows[-1][2]


def test_chain_verifies_in_both(signer: ReceiptSigner, chain: list[bytes]) -> None:
    keys = {signer.key_id: signer.public_key}
    report = verify_chain(chain, keys)
    assert report["ok"] and report["checked"] == 200 and report["first_bad_seq"] is None
    assert report["reason"] is None
    assert ind_verify_chain(chain, keys) == (None, None)
    # A page verifies from the previous page's head.
    page = verify_chain(chain[100:150], keys, start_seq=101, prev_hash=ind_verify(chain[99], keys))
    assert page["ok"] and page["head"] == ind_verify(chain[149], keys)


@pytest.mark.parametrize("field", [
    "receipt_id", "tenant_id", "seq", "executed_at", "issued_at", "actor", "action", "resource",
    "policy", "preflight_id", "request_hash", "result_hash", "approvals", "evidence", "note",
    "metrics", "prev_hash",
])
def test_tampered_field_fails_in_both(signer: ReceiptSigner, chain: list[bytes], field: str) -> None:
    def change(o: dict[str, Any]) -> None:
        v = o[field]
        o[field] = (v + "x" if isinstance(v, str) else v + 1 if isinstance(v, int)
                    else v + [None] if isinstance(v, list) else {**v, "x": 1})
    bad = list(chain)
    bad[41] = tamper(chain[41], change)
    keys = {signer.key_id: signer.public_key}
    both_fail_at(bad, keys, 42, "signature mismatch")
    with pytest.raises(InvalidArgumentError, match="signature mismatch"):
        verify_receipt(bad[41], signer.public_key)
    with pytest.raises(Bad, match="signature mismatch"):
        ind_verify(bad[41], keys)


def test_tampered_signature_nested_value_and_encoding(signer: ReceiptSigner, chain: list[bytes]) -> None:
    keys = {signer.key_id: signer.public_key}

    def flip_sig(o: dict[str, Any]) -> None:
        sig = bytearray(base64.b64decode(o["signature"]))
        sig[10] ^= 1
        o["signature"] = base64.b64encode(bytes(sig)).decode()

    def nested(o: dict[str, Any]) -> None:
        o["policy"]["decision"] = "deny"

    for fn in (flip_sig, nested):
        bad = list(chain)
        bad[9] = tamper(chain[9], fn)
        both_fail_at(bad, keys, 10, "signature mismatch")
    bad = list(chain)
    bad[9] = tamper(chain[9], lambda o: o.update(signature="not base64!"))
    both_fail_at(bad, keys, 10, "bad signature")
    bad[9] = tamper(chain[9], lambda o: o.pop("signature"))
    both_fail_at(bad, keys, 10, "missing signature")
    with pytest.raises(InvalidArgumentError, match="bad JSON"):
        verify_receipt(b"{", signer.public_key)


def test_reorder_gap_and_duplicate(signer: ReceiptSigner, chain: list[bytes]) -> None:
    keys = {signer.key_id: signer.public_key}
    swapped = list(chain)
    swapped[19], swapped[20] = swapped[20], swapped[19]
    both_fail_at(swapped, keys, 20, "seq mismatch: expected 20, got 21")
    gap = chain[:19] + chain[20:]
    both_fail_at(gap, keys, 20, "seq mismatch: expected 20, got 21")
    dup = chain[:20] + chain[19:]
    both_fail_at(dup, keys, 21, "seq mismatch: expected 21, got 20")


def test_wrong_prev_hash_validly_signed(signer: ReceiptSigner, chain: list[bytes]) -> None:
    keys = {signer.key_id: signer.public_key}
    fork, _ = sign(signer, [make_receipt(i) for i in range(31, 36)], blake3.blake3(b"fork").digest(), 31)
    bad = chain[:30] + [r[3] for r in fork]
    both_fail_at(bad, keys, 31, "prev_hash mismatch")
    assert ind_verify_chain(bad, keys) == (31, "prev_hash")


def test_wrong_key_and_tenant(signer: ReceiptSigner, chain: list[bytes]) -> None:
    other = ReceiptSigner()
    both_fail_at(chain, {signer.key_id: other.public_key}, 1, "signature mismatch")
    both_fail_at(chain, {other.key_id: other.public_key}, 1, "unknown key_id")
    with pytest.raises(InvalidArgumentError, match="signature mismatch"):
        verify_receipt(chain[0], other.public_key)
    keys = {signer.key_id: signer.public_key}
    head = ind_verify(chain[4], keys)
    foreign, _ = sign(signer, [make_receipt(6, tenant="tenant-b")], head, 6)
    both_fail_at(chain[:5] + [foreign[0][3]], keys, 6, "tenant_id mismatch")


def test_key_rotation(signer: ReceiptSigner) -> None:
    new = ReceiptSigner()
    assert new.key_id != signer.key_id
    rows_a, head = sign(signer, [make_receipt(i) for i in range(1, 6)])
    rows_b, head2 = sign(new, [make_receipt(i) for i in range(6, 11)], head, 6)
    receipts = [r[3] for r in rows_a + rows_b]
    assert [json.loads(r)["signer"]["key_id"] for r in receipts] == [signer.key_id] * 5 + [new.key_id] * 5
    both = {signer.key_id: signer.public_key, new.key_id: new.public_key}
    report = verify_chain(receipts, both)
    assert report["ok"] and report["checked"] == 10 and report["head"] == head2
    assert ind_verify_chain(receipts, both) == (None, None)
    both_fail_at(receipts, {signer.key_id: signer.public_key}, 6, "unknown key_id")
    # A restored signer (same seed) keeps the key id.
    assert ReceiptSigner(new.seed).key_id == new.key_id


def test_bad_inputs(signer: ReceiptSigner) -> None:
    r = make_receipt(1)
    with pytest.raises(InvalidArgumentError, match="zero bytes for seq 1"):
        sign(signer, [r], prev=b"\x01" * 32)
    with pytest.raises(InvalidArgumentError, match="only valid for seq 1"):
        sign(signer, [r], next_seq=2)
    with pytest.raises(InvalidArgumentError, match="32 bytes"):
        signer.sign_batch(b"short", 1, [orjson.dumps(r)])
    with pytest.raises(InvalidArgumentError, match="receipt 1: .*receipt_id"):
        sign(signer, [r, {"tenant_id": "t"}])
    with pytest.raises(InvalidArgumentError, match="set by the issuer"):
        sign(signer, [{**r, "seq": 1}])
    with pytest.raises(InvalidArgumentError, match="not a JSON object"):
        signer.sign_batch(bytes(32), 1, [b"[1]"])
    with pytest.raises(InvalidArgumentError, match="duplicate"):
        signer.sign_batch(bytes(32), 1, [b'{"receipt_id":"a","tenant_id":"t","a":1,"a":2}'])
    with pytest.raises(InvalidArgumentError, match="seed must be 32 bytes"):
        ReceiptSigner(b"x")
    assert sign(signer, []) == ([], bytes(32))


def test_uuid7() -> None:
    ids = [uuid7() for _ in range(500)]
    assert ids == sorted(ids) and len(set(ids)) == 500
    assert all(len(u) == 36 and u[14] == "7" and u[19] in "89ab" for u in ids)
