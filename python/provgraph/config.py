"""Service configuration: defaults, environment variables and the optimization flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from provgraph.errors import InvalidArgumentError

__all__ = ["DEFAULT_FLAGS", "FLAG_CHOICES", "STARTUP_FLAGS", "Config", "apply_gc_flag", "apply_runtime_flags",
           "baseline_flags", "runtime_part"]

# Every optimization sits behind a flag; the first choice is the optimized path and the
# baseline ("rollback") value is given by `baseline_flags`.
FLAG_CHOICES: dict[str, tuple[str, ...]] = {
    "graph.engine": ("csr", "lmdb"),
    "policy.cache": ("on", "off"),
    "policy.vm": ("on", "off"),
    "runtime.gil_switch": ("fast", "default"),
    "runtime.writer_priority": ("high", "normal"),
    "runtime.gc": ("frozen", "default"),
    "runtime.write_coalesce": ("turn", "off"),
    "runtime.group_window": ("adaptive", "off"),
    "actions.preflight_ack": ("queued", "durable", "applied"),
    "orchestration.batching": ("on", "off"),
    "service.http": ("lean", "aiohttp"),
    "service.write_answer": ("callback", "await"),
    "service.dispatch": ("eager", "task"),
}
# Flags read once, when the server starts (`provgraph serve --flag name=value`): changing one at run
# time is refused (409); the others apply at once on PUT /v1/admin/flags.
STARTUP_FLAGS = frozenset({"service.http"})
DEFAULT_FLAGS: dict[str, str] = {name: choices[0] for name, choices in FLAG_CHOICES.items()}
BASELINE_FLAGS: dict[str, str] = {"graph.engine": "lmdb", "policy.cache": "off", "policy.vm": "off",
                                  "runtime.gil_switch": "default", "runtime.writer_priority": "normal",
                                  "runtime.gc": "default", "runtime.write_coalesce": "off",
                                  "runtime.group_window": "off",
                                  "actions.preflight_ack": "durable",
                                  "orchestration.batching": "off", "service.http": "aiohttp",
                                  "service.write_answer": "await", "service.dispatch": "task"}

# runtime.gil_switch: how long a thread may hold the GIL while another waits for it. Python's
# default (5 ms) makes a request wait up to 5 ms whenever the group-commit writer thread and the
# event loop both have Python work; 0.1 ms keeps that hand-over short (a write waits for it twice:
# to start its group, and after the fsync).
GIL_SWITCH_INTERVAL_S = {"fast": 0.0001, "default": 0.005}
# runtime.writer_priority: nice levels the group-commit writer thread runs above the process
# (see Writer.set_priority).
WRITER_BOOST = {"high": 10, "normal": 0}


class _Prioritized(Protocol):
    coalesce: bool
    window: bool

    def set_priority(self, boost: int) -> bool: ...


def apply_runtime_flags(flags: dict[str, str], writer: _Prioritized | None = None) -> None:
    """Process-wide settings that flags control (applied at start and on every flag change);
    `writer`: the group-commit writer, once it runs."""
    import sys

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S[flags.get("runtime.gil_switch", "fast")])
    if writer is not None:
        writer.set_priority(WRITER_BOOST[flags.get("runtime.writer_priority", "high")])
        writer.coalesce = flags.get("runtime.write_coalesce", "turn") == "turn"
        writer.window = flags.get("runtime.group_window", "adaptive") == "adaptive"


# runtime.gc: Python's cyclic collector walks every tracked object in a full (generation 2)
# collection, on whichever thread allocates, usually the event loop's. A serving process holds ~50k
# of them from start-up (modules, routes, handlers, the loaded state): 35-90 ms per full collection
# on this kind of machine, about one a minute at 3x peak, and every request in flight waits for it.
# "frozen" moves the heap that start-up built into the permanent generation (gc.freeze), so a full
# collection walks only what was made since (<= 10 ms measured). Applied once the server has started
# and when the flag is turned on at run time (one full collection first, so no garbage is frozen);
# "default" (and the server's clean-up) unfreezes. Cycles among frozen objects that become garbage
# later are only collected after an unfreeze: start-up objects live as long as the process.


def apply_gc_flag(flags: dict[str, str]) -> None:
    """Freeze the heap built so far (runtime.gc=frozen) or hand it back to the collector (default)."""
    import gc

    if flags.get("runtime.gc", "frozen") == "frozen":
        gc.collect()
        gc.freeze()
    else:
        gc.unfreeze()


def runtime_part(flags: dict[str, str]) -> dict[str, str]:
    """The flags of `flags` that PUT /v1/admin/flags can change on a running server."""
    return {k: v for k, v in flags.items() if k not in STARTUP_FLAGS}


def baseline_flags() -> dict[str, str]:
    """The unoptimized path: every flag at its rollback value."""
    return dict(BASELINE_FLAGS)


def validate_flags(flags: dict[str, Any]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for name, value in flags.items():
        if name not in FLAG_CHOICES:
            raise InvalidArgumentError(f"unknown flag {name!r}", {"known": sorted(FLAG_CHOICES)})
        if value not in FLAG_CHOICES[name]:
            raise InvalidArgumentError(
                f"flag {name} must be one of {list(FLAG_CHOICES[name])}", {"flag": name}
            )
        clean[name] = str(value)
    return clean


@dataclass
class Config:
    data_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("PROVGRAPH_DATA_DIR", "./provgraph-data"))
    )
    host: str = "127.0.0.1"
    port: int = 8080
    admin_key: str | None = field(default_factory=lambda: os.environ.get("PROVGRAPH_ADMIN_KEY"))
    flags: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FLAGS))
    # LMDB: initial map size; it grows (doubling) on MapFullError instead of failing.
    map_size: int = 1 << 30
    # fsync on each group commit; tests of durability rely on it.
    sync: bool = True
    max_body_bytes: int = 64 << 20
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

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.flags = {**DEFAULT_FLAGS, **validate_flags(self.flags)}

    @staticmethod
    def parse_flag_assignments(items: list[str]) -> dict[str, str]:
        """Parse CLI `--flag name=value` items."""
        out: dict[str, str] = {}
        for item in items:
            name, sep, value = item.partition("=")
            if not sep:
                raise InvalidArgumentError(f"flag {item!r} is not name=value")
            out[name.strip()] = value.strip()
        return validate_flags(out)
