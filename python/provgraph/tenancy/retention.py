"""A tenant's retention policy for evidence and receipts (docs/evidence.md "Retention"): ages, not
durations. An item's age counts from the later of its upload and its latest reference by a receipt;
it is hot while its age is under `hot_days`, warm under `warm_days`, cold after, and may be purged
from `purge_after_days` on (only through a signed purge manifest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provgraph.errors import BadRequestError, InvalidArgumentError

__all__ = ["DEFAULT_RETENTION", "FIELDS", "TIERS", "Retention", "parse_retention", "retention_from_json"]

FIELDS = ("hot_days", "warm_days", "purge_after_days")
TIERS = ("hot", "warm", "cold")
DAY_US = 86_400_000_000
_MAX_DAYS = 36_500  # a hundred years


@dataclass(frozen=True)
class Retention:
    hot_days: int
    warm_days: int
    purge_after_days: int

    def to_json(self) -> dict[str, int]:
        return {"hot_days": self.hot_days, "warm_days": self.warm_days, "purge_after_days": self.purge_after_days}

    def age_days(self, uploaded_us: int, last_ref_us: int, as_of_us: int) -> float:
        """An item's age at `as_of`: from the later of its upload and its latest reference."""
        return (as_of_us - max(uploaded_us, last_ref_us)) / DAY_US

    def tier(self, age_days: float) -> str:
        """The tier an item of this age belongs in."""
        if age_days < self.hot_days:
            return "hot"
        return "warm" if age_days < self.warm_days else "cold"

    def purgeable(self, age_days: float) -> bool:
        return age_days >= self.purge_after_days


# The server's default (WORKLOADS.md E1: hot < 30 days, warm < 120, cold after, purge at 365).
DEFAULT_RETENTION = Retention(hot_days=30, warm_days=120, purge_after_days=365)


def parse_retention(body: Any) -> Retention:
    """A full replace from a request body (omitted fields take DEFAULT_RETENTION's): 400 for a body
    that is not an object, an unknown field or a value that is not an integer; 422 for values out
    of bounds: hot_days 30-90, warm_days above hot_days, purge_after_days at least warm_days, all at
    most 36,500."""
    if not isinstance(body, dict):
        raise BadRequestError('expected {"hot_days", "warm_days", "purge_after_days"}')
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequestError(f"unknown retention field {unknown[0]!r}", {"field": unknown[0], "known": list(FIELDS)})
    values = DEFAULT_RETENTION.to_json()
    for name, value in body.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadRequestError(f"retention field {name} must be an integer (days)", {"field": name})
        values[name] = value
    hot, warm, purge = (values[f] for f in FIELDS)
    for name, ok, rule in (("hot_days", 30 <= hot <= 90, "30..90"),
                           ("warm_days", hot < warm <= _MAX_DAYS, f"above hot_days ({hot}), at most {_MAX_DAYS}"),
                           ("purge_after_days", warm <= purge <= _MAX_DAYS,
                            f"at least warm_days ({warm}), at most {_MAX_DAYS}")):
        if not ok:
            raise InvalidArgumentError(f"retention field {name} must be {rule}", {"field": name, "value": values[name]})
    return Retention(hot, warm, purge)


def retention_from_json(raw: dict[str, Any] | None) -> Retention | None:
    return None if raw is None else Retention(int(raw["hot_days"]), int(raw["warm_days"]), int(raw["purge_after_days"]))
