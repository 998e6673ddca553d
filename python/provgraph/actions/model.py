"""Action requests: parsing, the request hash, timestamps, and the receipt skeleton."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provgraph._core import canonical_hash, canonicalize
from provgraph.clock import rfc3339
from provgraph.errors import BadRequestError
from provgraph.evidence.store import hash_bytes
from provgraph.policy.manager import parse_decision_request

__all__ = ["MAX_EVIDENCE", "ActionRequest", "hash_hex", "parse_action", "rfc3339"]




def hash_hex(value: Any) -> str:
    """Hex BLAKE3 of the RFC 8785 form of `value`."""
    return canonical_hash(value).hex()


@dataclass(frozen=True)
class ActionRequest:
    action: str
    resource: dict[str, Any]  # type, id, attributes (attributes go to the policy only)
    payload: Any
    context: dict[str, Any]
    evidence: tuple[str, ...] = ()  # evidence hashes the action references (the receipt lists them)

    @property
    def request_hash(self) -> str:
        """BLAKE3 of the RFC 8785 form of {action, resource, payload} (and `evidence` when the action
        names any): what execute must repeat."""
        body = {"action": self.action, "resource": self.resource, "payload": self.payload}
        if self.evidence:
            body["evidence"] = list(self.evidence)
        return hash_hex(body)

    def decide_body(self) -> dict[str, Any]:
        return {"action": self.action, "resource": self.resource, "context": self.context}

    def receipt_resource(self) -> dict[str, Any]:
        return {"type": self.resource["type"], "id": self.resource.get("id")}



MAX_EVIDENCE = 100  # evidence references per action


def parse_action(body: Any) -> ActionRequest:
    """Validate like /decide (action, resource, context), plus the payload and the evidence list
    (hashes of evidence the tenant uploaded; whether each is stored is checked where it is used)."""
    action, _, context = parse_decision_request(body)
    resource = body["resource"]  # as sent: the request hash covers exactly what the client sent
    payload = body.get("payload", {})
    try:
        canonicalize(payload)  # JSON that RFC 8785 can express (no NaN, no huge ints)
    except ValueError as exc:
        raise BadRequestError(f"payload is not canonicalizable JSON: {exc}", {"field": "payload"}) from None
    evidence = body.get("evidence", [])
    if not isinstance(evidence, list) or len(evidence) > MAX_EVIDENCE or not all(
            hash_bytes(h) is not None for h in evidence):
        raise BadRequestError(f"evidence must be a list of at most {MAX_EVIDENCE} evidence hashes (64 lowercase "
                              "hex digits)", {"field": "evidence"})
    if len(set(evidence)) != len(evidence):
        raise BadRequestError("evidence names a hash twice", {"field": "evidence"})
    return ActionRequest(action, resource, payload, context, tuple(evidence))


