"""Service configuration: defaults, environment variables, and the flag registry the service starts with."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from provgraph.errors import BadRequestError
from provgraph.flags import FlagRegistry
from provgraph.tenancy.retention import DEFAULT_RETENTION, Retention

__all__ = ["Config", "parse_flag_assignments"]


def parse_flag_assignments(items: list[str]) -> dict[str, str]:
    """CLI `--flag name=value` items as {name: value} (checked when a FlagRegistry takes them)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise BadRequestError(f"flag {item!r} is not name=value")
        out[name.strip()] = value.strip()
    return out


@dataclass
class Config:
    data_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("PROVGRAPH_DATA_DIR", "./provgraph-data"))
    )
    host: str = "127.0.0.1"
    port: int = 8080
    admin_key: str | None = field(default_factory=lambda: os.environ.get("PROVGRAPH_ADMIN_KEY"))
    # the one flag registry of the service (provgraph.flags): its profile, overrides and current values
    flags: FlagRegistry = field(default_factory=FlagRegistry)
    # LMDB: initial map size; it grows (doubling) on MapFullError instead of failing.
    map_size: int = 1 << 30
    # fsync on each group commit; tests of durability rely on it.
    sync: bool = True
    max_body_bytes: int = 64 << 20
    # Evidence (docs/evidence.md): an upload over evidence_max_bytes gets 413 (keep it at most
    # max_body_bytes); blobs up to evidence_inline_max live in LMDB, larger ones in files.
    evidence_max_bytes: int = 32 << 20
    evidence_inline_max: int = 64 << 10
    # The retention policy of a tenant that has none of its own (PUT /v1/admin/tenants/{t}/retention).
    default_retention: Retention = DEFAULT_RETENTION
    # Overlay rows that trigger a background snapshot rebuild: max(absolute, fraction * nodes).
    rebuild_min_delta: int = 20_000
    rebuild_fraction: float = 0.05
    # Group commit: at most this many queued requests in one LMDB transaction.
    group_commit_max: int = 256
    # An applied-only group (preflights with actions.preflight_ack=queued|applied, already answered) waits
    # this long for a durable write to share its commit (one fsync for both).
    group_commit_defer_s: float = 0.005
    # runtime.group_window=adaptive: a group stays open for more jobs at load, for at most
    # group_window_max_s; group_window_step_s more per job queued behind the first; a commit slower
    # than group_window_slow_s on average widens it to one commit's time (see Writer.window_for).
    group_window_max_s: float = 0.002
    group_window_step_s: float = 0.0005
    group_window_slow_s: float = 0.004
    # Policy: the bundle whose data.provgraph.authz.decision answers /decide, and the cache.
    policy_bundle: str = "authz"
    decision_cache_entries: int = 100_000
    decision_cache_ttl_s: float = 5.0
    decision_log_retention: int = 100_000
    # The longest a bundle download may wait for a change (OPA long polling).
    long_poll_max_s: float = 300.0
    # Actions: how long a preflight can be executed; failed receipt batches retried this often
    # before their intents go to the dead-letter queue; drills may inject failures.
    preflight_ttl_s: float = 900.0
    # Expired preflights (and their executes' Idempotency-Key rows) are removed this long after they
    # expire, by a sweep every preflight_sweep_interval_s; until then execute answers 410 or 409.
    preflight_retention_s: float = 86_400.0
    preflight_sweep_interval_s: float = 30.0
    issuer_max_attempts: int = 5
    # The time bound of a receipt batch: at most one outbox drain starts per interval (idle: at once).
    issuer_linger_s: float = 0.01
    fault_injection: bool = False
    # A bearer token /metrics requires (per-tenant series name customers); None: /metrics is open.
    metrics_token: str | None = field(default_factory=lambda: os.environ.get("PROVGRAPH_METRICS_TOKEN") or None)
    # Fair scheduling (flag scheduling.fair, docs/scheduling.md): queries estimated to read more than
    # heavy_work edges run in a pool of pool_workers threads (at nice pool_nice), at most queue_bound
    # queued per tenant; a query that waits or runs past time_budget_s answers 503; a traversal that
    # reaches more than max_visited nodes answers 422 (None: no cap).
    heavy_work: int = 500_000
    pool_workers: int = 2
    pool_nice: int = 19
    # receipts a migration between forms rewrites per write job (POST /v1/admin/receipts/migrate)
    migrate_chunk: int = 500
    queue_bound: int = 16
    time_budget_s: float = 5.0
    max_visited: int | None = 5_000_000

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
