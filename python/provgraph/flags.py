"""The flag registry: every optimization flag declared once, its two profiles, and its one delivery path."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

from provgraph.errors import BadRequestError, ConflictError

__all__ = ["FLAGS", "KINDS", "PROFILES", "SPECS", "Flag", "FlagKind", "FlagRegistry", "Profile", "apply_gc",
           "profile_values", "subscribe_process", "subscribe_writer"]

FlagKind = Literal["speed", "durability", "storage", "fairness", "cost"]
KINDS: tuple[str, ...] = get_args(FlagKind)
Profile = Literal["optimized", "baseline"]
PROFILES: tuple[str, ...] = get_args(Profile)


@dataclass(frozen=True)
class Flag:
    """One flag. `default` is its value in the optimized profile, `baseline` in the baseline
    (rollback) profile; `startup` flags are read once when the server starts; `kind` is what the
    optimized value trades or changes: speed (latency or throughput; the description names the
    price), durability (what a crash may lose), storage (what is kept, in memory or on disk),
    fairness (who runs first), cost (resources paid for)."""

    name: str
    choices: tuple[str, ...]
    default: str
    baseline: str
    kind: FlagKind
    description: str
    startup: bool = False


# The one source. Descriptions stay one line and carry no measured figures (bench output has those).
FLAGS: tuple[Flag, ...] = (
    Flag("graph.engine", ("csr", "lmdb"), "csr", "lmdb", "speed",
         "graph queries run on the in-memory CSR snapshot plus its write overlay (memory per tenant) "
         "instead of reading LMDB adjacency rows; both engines give identical results"),
    Flag("policy.cache", ("on", "off"), "on", "off", "speed",
         "decisions are cached per tenant, actor, roles and input until their TTL or the next bundle "
         "activation; a cached answer can be up to the TTL older than the data it was decided on"),
    Flag("policy.vm", ("on", "off"), "on", "off", "speed",
         "rules are evaluated on regorus's bytecode VM instead of its interpreter (same decisions; "
         "a rule the VM cannot run falls back to the interpreter)"),
    Flag("runtime.gil_switch", ("fast", "default"), "fast", "default", "speed",
         "a 0.1 ms GIL switch interval instead of Python's 5 ms, so a request does not wait out the "
         "writer thread's time slice; costs more thread switches"),
    Flag("runtime.writer_priority", ("high", "normal"), "high", "normal", "fairness",
         "the group-commit writer thread runs 10 nice levels above the process, ahead of the event "
         "loop; needs root or CAP_SYS_NICE, otherwise it stays normal (provgraph_store_writer_nice)"),
    Flag("runtime.gc", ("frozen", "default"), "frozen", "default", "storage",
         "once started, the heap start-up built is frozen (gc.freeze), so a full collection walks only "
         "what was made since; cycles among start-up objects are never freed while frozen"),
    Flag("runtime.write_coalesce", ("turn", "off"), "turn", "off", "speed",
         "writes requested during one event-loop turn are queued together when it ends and share a "
         "commit group; no durability trade: each is still answered after its own commit"),
    Flag("runtime.group_window", ("adaptive", "off"), "adaptive", "off", "speed",
         "at load a commit group stays open up to 2 ms for more writes (wider with queue depth or slow "
         "commits) and receipt batches share a request's commit: fewer fsyncs; an idle writer commits at once"),
    Flag("actions.preflight_ack", ("durable", "applied", "queued"), "durable", "durable", "durability",
         "when a preflight is answered: after its fsync (durable), once applied before the fsync "
         "(applied), or once queued for the writer (queued); the last two lose it in a crash"),
    Flag("receipts.storage", ("compact", "dual", "full"), "compact", "full", "storage",
         "new receipts are stored in their compact form (a template from the tenant's dictionary plus "
         "raw ids, hashes, signature), checked at write time to reconstruct byte for byte, instead of "
         "as full JSON; dual stores both and checks every read; reads are byte-identical in every mode"),
    Flag("records.storage", ("compact", "json"), "compact", "json", "storage",
         "new preflights and decision log entries are stored in a compact form (derived fields left "
         "out, repeated values as references into the tenant's record dictionary, ids and hashes as "
         "raw bytes), checked at write time to decode to the same record, instead of as JSON; reads "
         "are the same in both modes"),
    Flag("orchestration.batching", ("on", "off"), "on", "off", "speed",
         "the actions of one actions:batch request run concurrently and their writes share commit "
         "groups, instead of one after another"),
    Flag("service.http", ("lean", "aiohttp", "granian"), "lean", "aiohttp", "speed",
         "the same application served by the lean HTTP/1.1 front end on httptools instead of "
         "aiohttp's own server (or granian's, through RSGI)", startup=True),
    Flag("service.write_answer", ("callback", "await"), "callback", "await", "speed",
         "lean front end: an execute, grant or reject is answered from the loop callback its commit "
         "schedules instead of by resuming the handler (one loop turn instead of two)"),
    Flag("admission.quota", ("on", "off"), "on", "off", "fairness",
         "a tenant with a quota is admitted through its token bucket (rps, burst) and answered 429 "
         "rate_limited with Retry-After beyond it; off admits every request (tenants without a quota "
         "are never limited)"),
    Flag("scheduling.fair", ("on", "off"), "on", "off", "fairness",
         "graph queries estimated heavy run in a low-priority worker pool, per-tenant queues served by "
         "weighted deficit round robin, instead of inline on the event loop ahead of everyone's cheap requests"),
    Flag("service.dispatch", ("eager", "task"), "eager", "task", "fairness",
         "lean front end: a request runs on the spot, in the read that completed it, up to its "
         "handler's first wait, ahead of callbacks already queued, instead of in its own Task"),
)
SPECS: dict[str, Flag] = {f.name: f for f in FLAGS}


def profile_values(profile: str) -> dict[str, str]:
    """Every flag's value in `profile` ("optimized": the defaults, "baseline": the rollback values)."""
    if profile not in PROFILES:
        raise BadRequestError(f"profile must be one of {list(PROFILES)}", {"profile": profile})
    return {f.name: f.default if profile == "optimized" else f.baseline for f in FLAGS}


def _validate(changes: Mapping[str, Any]) -> dict[str, str]:
    """`changes` checked whole: every name known and every value one of its choices."""
    unknown = sorted(name for name in changes if name not in SPECS)
    if unknown:
        raise BadRequestError(f"unknown flag {unknown[0]!r}", {"flag": unknown[0], "known": sorted(SPECS)})
    for name, value in changes.items():
        if value not in SPECS[name].choices:
            raise BadRequestError(f"flag {name} must be one of {list(SPECS[name].choices)}",
                                  {"flag": name, "value": value, "choices": list(SPECS[name].choices)})
    return {name: str(value) for name, value in changes.items()}


Subscriber = Callable[[str], None]


class FlagRegistry:
    """The current value of every flag, started from a profile plus overrides. Components read a
    value where they use it (`flags[name]`); process-wide effects subscribe to the flags they
    follow and are called with the new value on every change (`subscribe`)."""

    def __init__(self, profile: str = "optimized", overrides: Mapping[str, Any] | None = None) -> None:
        self._values = {**profile_values(profile), **_validate(overrides or {})}
        self._subscribers: dict[str, list[Subscriber]] = {}

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def values(self) -> dict[str, str]:
        return dict(self._values)

    @property
    def profile(self) -> str:
        """The profile every value matches ("optimized" or "baseline"), else "custom"."""
        for profile in PROFILES:
            if self._values == profile_values(profile):
                return profile
        return "custom"

    def describe(self) -> dict[str, Any]:
        """What GET /v1/admin/flags and `provgraph flags --json` show."""
        return {"profile": self.profile, "flags": {
            f.name: {"value": self._values[f.name], "default": f.default, "baseline": f.baseline,
                     "choices": list(f.choices), "startup": f.startup, "kind": f.kind,
                     "description": f.description} for f in FLAGS}}

    def update(self, changes: Mapping[str, Any]) -> dict[str, str]:
        """Apply `changes` ({name: value}) at run time, all or nothing: an unknown flag or a value
        not among its choices is a 400, a new value for a start-up flag a 409 (its current value
        is accepted, so a whole {name: value} set can be PUT back). Returns the flags whose
        value changed; their subscribers have been called."""
        clean = _validate(changes)
        for name in sorted(clean):
            if SPECS[name].startup and clean[name] != self._values[name]:
                raise ConflictError(f"flag {name} is read at start: restart with `provgraph serve --flag "
                                    f"{name}={clean[name]}`", {"flag": name, "current": self._values[name]})
        changed = {name: value for name, value in clean.items() if value != self._values[name]}
        self._values.update(changed)
        for name, value in changed.items():
            for fn in list(self._subscribers.get(name, ())):
                fn(value)
        return changed

    def subscribe(self, name: str, fn: Subscriber) -> Callable[[], None]:
        """Call `fn(value)` now and on every change of flag `name`; returns the unsubscribe."""
        if name not in SPECS:
            raise KeyError(name)
        subscribers = self._subscribers.setdefault(name, [])
        subscribers.append(fn)
        fn(self._values[name])

        def unsubscribe() -> None:
            subscribers.remove(fn)

        return unsubscribe


# runtime.gil_switch: how long a thread may hold the GIL while another waits for it. At Python's
# default a request waits up to a whole interval whenever the group-commit writer thread and the
# event loop both have Python work; a short one keeps that hand-over short (a write waits for it
# twice: to start its group, and after the fsync).
GIL_SWITCH_INTERVAL_S = {"fast": 0.0001, "default": 0.005}
# runtime.writer_priority: nice levels the group-commit writer thread runs above the process
# (see Writer.set_priority).
WRITER_BOOST = {"high": 10, "normal": 0}


def _set_switch_interval(value: str) -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S[value])


# runtime.gc: Python's cyclic collector walks every tracked object in a full (generation 2)
# collection, on whichever thread allocates, usually the event loop's. A serving process holds tens
# of thousands of them from start-up (modules, routes, handlers, the loaded state), and every
# request in flight waits for the walk. "frozen" moves the heap that start-up built into the
# permanent generation (gc.freeze), so a full collection walks only what was made since. Applied once
# the server has started and when the flag is turned on at run time (one full collection first, so
# no garbage is frozen); "default" (and the server's clean-up) unfreezes. Cycles among frozen objects
# that become garbage later are only collected after an unfreeze: start-up objects live as long as
# the process.
def apply_gc(value: str) -> None:
    """Freeze the heap built so far (runtime.gc=frozen) or hand it back to the collector (default)."""
    if value == "frozen":
        gc.collect()
        gc.freeze()
    else:
        gc.unfreeze()


def subscribe_process(flags: FlagRegistry) -> Callable[[], None]:
    """The process-wide effects of `flags` from now on: the GIL switch interval and, as the heap
    built so far is what it freezes, runtime.gc (call this once start-up is done). The returned
    call stops following them and hands the heap back to the collector."""
    stops = [flags.subscribe("runtime.gil_switch", _set_switch_interval), flags.subscribe("runtime.gc", apply_gc)]

    def stop() -> None:
        for s in stops:
            s()
        apply_gc("default")

    return stop


class _Writer(Protocol):
    coalesce: bool
    window: bool
    bulk_at_base: bool

    def set_priority(self, boost: int) -> bool: ...


def subscribe_writer(flags: FlagRegistry, writer: _Writer) -> Callable[[], None]:
    """The group-commit writer follows runtime.writer_priority, runtime.write_coalesce,
    runtime.group_window and scheduling.fair (bulk jobs unboosted) from now on; the returned call
    stops it following them."""

    def priority(value: str) -> None:
        writer.set_priority(WRITER_BOOST[value])

    def coalesce(value: str) -> None:
        writer.coalesce = value == "turn"

    def window(value: str) -> None:
        writer.window = value == "adaptive"

    def fair(value: str) -> None:
        writer.bulk_at_base = value == "on"

    stops = [flags.subscribe("runtime.writer_priority", priority),
             flags.subscribe("runtime.write_coalesce", coalesce),
             flags.subscribe("runtime.group_window", window),
             flags.subscribe("scheduling.fair", fair)]

    def stop() -> None:
        for s in stops:
            s()

    return stop
