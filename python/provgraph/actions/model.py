"""Action requests: parsing, the request hash, timestamps, and the receipt skeleton."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provgraph._core import canonical_hash, canonicalize
from provgraph.clock import rfc3339
from provgraph.errors import BadRequestError
from provgraph.policy.manager import parse_decision_request

__all__ = ["ActionRequest", "hash_hex", "parse_action", "rfc3339"]




def hash_hex(value: Any) -> str:
    """Hex BLAKE3 of the RFC 8785 form of `value`."""
    return canonical_hash(value).hex()


@dataclass(frozen=True)
class ActionRequest:
    action: str
    resource: dict[str, Any]  # type, id, attributes (attributes go to the policy only)
    payload: Any
    context: dict[str, Any]

    @property
    def request_hash(self) -> str:
        """BLAKE3 of the RFC 8785 form of {action, resource, payload}: what execute must repeat."""
        return hash_hex({"action": self.action, "resource": self.resource, "payload": self.payload})

    def decide_body(self) -> dict[str, Any]:
        return {"action": self.action, "resource": self.resource, "context": self.context}

    def receipt_resource(self) -> dict[str, Any]:
        return {"type": self.resource["type"], "id": self.resource.get("id")}

    def evidence(self) -> list[dict[str, Any]]:
        """Evidence references named by the payload (`payload.evidence`: [{hash, size}])."""
        ev = self.payload.get("evidence", []) if isinstance(self.payload, dict) else []
        return [{"hash": e["hash"], "size": e["size"]} for e in ev]


def parse_action(body: Any) -> ActionRequest:
    """Validate like /decide (action, resource, context), plus the payload and its evidence."""
    action, _, context = parse_decision_request(body)
    resource = body["resource"]  # as sent: the request hash covers exactly what the client sent
    payload = body.get("payload", {})
    try:
        canonicalize(payload)  # JSON that RFC 8785 can express (no NaN, no huge ints)
    except ValueError as exc:
        raise BadRequestError(f"payload is not canonicalizable JSON: {exc}", {"field": "payload"}) from None
    evidence = payload.get("evidence", []) if isinstance(payload, dict) else []
    if not isinstance(evidence, list) or not all(
            isinstance(e, dict) and isinstance(e.get("hash"), str) and type(e.get("size")) is int
            for e in evidence):
        raise BadRequestError("payload.evidence must be a list of {hash: str, size: int}",
                              {"field": "payload.evidence"})
    return ActionRequest(action, resource, payload, context)


