"""A tenant's quota: its admission rate (a token bucket: rps and burst), its concurrency and its weight
in the fair queues. A tenant without one is not rate-limited and has weight 1."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from provgraph.errors import BadRequestError, InvalidArgumentError

__all__ = ["DEFAULT_QUOTA", "QUOTA_BOUNDS", "Quota", "parse_quota", "quota_from_json"]

# Each field: (lowest, highest) accepted; rps is a number, the others integers.
QUOTA_BOUNDS: dict[str, tuple[float, float]] = {
    "rps": (0.001, 1_000_000.0),
    "burst": (1, 1_000_000),
    "concurrency": (1, 100_000),
    "weight": (1, 1_000),
}


@dataclass(frozen=True)
class Quota:
    rps: float  # tokens added per second
    burst: int  # the bucket's size: requests admitted at once after a quiet spell
    concurrency: int  # requests of the tenant in flight at once (enforced with the fair queues)
    weight: int  # share of the worker pool against other backlogged tenants

    def to_json(self) -> dict[str, Any]:
        return {"rps": self.rps, "burst": self.burst, "concurrency": self.concurrency, "weight": self.weight}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Quota:
        """From `to_json`'s shape (checked values: a stored record or a parsed body)."""
        return cls(rps=float(raw["rps"]), burst=int(raw["burst"]), concurrency=int(raw["concurrency"]),
                   weight=int(raw["weight"]))


# What a PUT omits takes these (API.md: "omitted fields take the server default").
DEFAULT_QUOTA = Quota(rps=100.0, burst=200, concurrency=64, weight=1)


def parse_quota(body: Any) -> Quota:
    """A full replace from a request body: 400 for a body that is not an object, an unknown field or a
    value of the wrong type; 422 for a value out of its bounds (QUOTA_BOUNDS)."""
    if not isinstance(body, dict):
        raise BadRequestError('expected {"rps", "burst", "concurrency", "weight"}')
    unknown = sorted(set(body) - set(QUOTA_BOUNDS))
    if unknown:
        raise BadRequestError(f"unknown quota field {unknown[0]!r}", {"field": unknown[0], "known": list(QUOTA_BOUNDS)})
    values = DEFAULT_QUOTA.to_json()
    for name, value in body.items():
        integer = name != "rps"
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if not ok_type or isinstance(value, bool) or (not integer and not math.isfinite(value)):
            kind = "an integer" if integer else "a number"
            raise BadRequestError(f"quota field {name} must be {kind}", {"field": name})
        lo, hi = QUOTA_BOUNDS[name]
        if not lo <= value <= hi:
            raise InvalidArgumentError(f"quota field {name} must be in {lo:g}..{hi:g}",
                                       {"field": name, "value": value})
        values[name] = value
    return Quota.from_json(values)


def quota_from_json(raw: Any) -> Quota | None:
    """The quota of a stored tenant record (None when it has none: records written before quotas)."""
    return None if raw is None else Quota.from_json(raw)
