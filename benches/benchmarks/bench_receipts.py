"""asv: receipt building blocks — RFC 8785 canonicalization, Ed25519 batch signing + chaining, chain verification."""

from __future__ import annotations

import os
from typing import Any


def _receipts(count: int) -> list[dict[str, Any]]:
    from provgraph._core import uuid7

    return [{"receipt_id": uuid7(), "tenant_id": "t1", "executed_at": "2026-11-26T07:00:00.000000Z",
             "actor": {"id": f"user:{i % 20}", "roles": ["operator"]}, "action": "deploy",
             "resource": {"type": "service", "id": f"svc-{i}"},
             "policy": {"bundle": "authz", "revision": "r1", "decision_id": str(i), "decision": "allow"},
             "preflight_id": uuid7(), "request_hash": os.urandom(32).hex(), "result_hash": os.urandom(32).hex(),
             "approvals": [], "evidence": [{"hash": os.urandom(32).hex(), "size": 1000 + i}],
             "issued_at": "2026-11-26T07:00:00.001000Z"} for i in range(count)]


class ReceiptPipeline:
    """Per batch of 256 receipts (~1.1 KB canonical each)."""

    timeout = 120

    def setup(self) -> None:
        import orjson
        from provgraph._core import ReceiptSigner

        self.receipts = _receipts(256)
        self.encoded = [orjson.dumps(r) for r in self.receipts]
        self.signer = ReceiptSigner(bytes(range(32)))
        signed, _ = self.signer.sign_batch(bytes(32), 1, self.encoded)
        self.signed = [body for _, _, _, body in signed]
        self.keys = {self.signer.key_id: self.signer.public_key}

    def time_canonicalize_256(self) -> None:
        from provgraph._core import canonicalize

        for r in self.receipts:
            canonicalize(r)

    def time_sign_and_chain_256(self) -> None:
        self.signer.sign_batch(bytes(32), 1, self.encoded)

    def time_sign_and_chain_one_by_one_256(self) -> None:
        head, seq = bytes(32), 1
        for body in self.encoded:
            _, head = self.signer.sign_batch(head, seq, [body])
            seq += 1

    def time_verify_chain_256(self) -> None:
        from provgraph._core import verify_chain

        report = verify_chain(self.signed, self.keys)
        assert report["ok"]
