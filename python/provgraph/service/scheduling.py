"""Fair scheduling (flag scheduling.fair): heavy graph queries off the event loop, in a bounded pool of
low-priority worker threads that serves per-tenant queues by deficit round robin weighted by quota;
per-tenant CPU accounting (the loop's part of each request and the pool's tasks); and the
noisy-neighbor signals built on it (docs/scheduling.md).

Every query gets a work estimate before it runs (the native `estimate_work`: edges it will read).
At or under `heavy_work` it runs inline on the loop, as with the flag off: the fast path stays
fast. Over it, it waits in its tenant's queue for a worker. Deficit round robin, charged in
measured thread CPU time: a tenant's turn adds `quantum x weight` to its deficit, and a task's
actual CPU is taken from it when it ends, so with every tenant backlogged the pool's CPU splits in
proportion to the weights whatever the tasks cost. Queues are bounded (503 `overloaded` beyond);
a task that waited past the time budget is refused unrun (503), and one that runs past it stops
(the native deadline, 503); a traversal past the work cap fails (422 `work_cap`, deterministic).

Bulk jobs (graph writes of many rows, large `actions:batch` requests) take a turn of the bulk gate
first: the same deficit round robin by weight, on the event loop, a few jobs at a time, so one
tenant's bulk load cannot fill the writer ahead of everyone else's; their writer-thread CPU is
charged to the tenant like the pool's."""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from provgraph._core import set_query_budget
from provgraph.errors import OverloadedError

__all__ = ["ACCOUNT_KEY", "LATENCY_BOUNDS", "Account", "Activity", "BulkGate", "BulkTurn", "DeficitRoundRobin",
           "FairPool", "Scheduler", "TenantWindows", "jain_index", "lower_thread_priority"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Latency histogram bounds (seconds): factor 1.25 from 20 µs to ~100 s, for queue waits and the
# per-tenant request latency behind victim inflation.
LATENCY_BOUNDS: tuple[float, ...] = tuple(2e-5 * 1.25**i for i in range(70))


def _bucket(seconds: float) -> int:
    return bisect.bisect_left(LATENCY_BOUNDS, seconds)


def _quantile(counts: list[int], q: float) -> float | None:
    """The upper bound of the bucket holding quantile `q` of `counts` (None when empty)."""
    total = sum(counts)
    if total == 0:
        return None
    rank, acc = q * total, 0
    for i, c in enumerate(counts):
        acc += c
        if acc >= rank and c:
            return LATENCY_BOUNDS[min(i, len(LATENCY_BOUNDS) - 1)]
    return LATENCY_BOUNDS[-1]


def jain_index(values: list[float]) -> float:
    """Jain's fairness index of `values`: (sum x)^2 / (n * sum x^2); 1.0 is perfectly even."""
    if not values or not any(values):
        return 1.0
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


@dataclass
class _Window:
    """One window of per-tenant counters and histograms."""

    start: float
    cpu_ns: dict[str, int] = field(default_factory=dict)  # loop + pool thread CPU
    pool_ns: dict[str, int] = field(default_factory=dict)  # pool thread CPU
    harm_ns: dict[str, int] = field(default_factory=dict)  # pool CPU used while others' work waited
    latency: dict[str, list[int]] = field(default_factory=dict)  # request latency histogram
    wait: dict[str, list[int]] = field(default_factory=dict)  # pool queue wait histogram


class TenantWindows:
    """Per-tenant counters in a ring of `count` windows of `seconds` each (the signals read the
    recent ones; older windows fall off, so the memory is bounded by tenants x windows)."""

    def __init__(self, seconds: float = 10.0, count: int = 30, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self.ring: collections.deque[_Window] = collections.deque(maxlen=count)
        self.lock = threading.Lock()

    def current(self) -> _Window:
        now = self.clock()
        if self.ring and now - self.ring[-1].start < self.seconds:
            return self.ring[-1]
        start = now if not self.ring else self.ring[-1].start + self.seconds * int(
            (now - self.ring[-1].start) // self.seconds)
        self.ring.append(_Window(start))
        return self.ring[-1]

    def add_cpu(self, tenant: str, ns: int, pool: bool = False, harm: bool = False) -> None:
        with self.lock:
            w = self.current()
            w.cpu_ns[tenant] = w.cpu_ns.get(tenant, 0) + ns
            if pool:
                w.pool_ns[tenant] = w.pool_ns.get(tenant, 0) + ns
                if harm:
                    w.harm_ns[tenant] = w.harm_ns.get(tenant, 0) + ns

    def record_request(self, tenant: str, cpu_ns: int, seconds: float) -> None:
        """A request of `tenant` ended: its loop CPU and its latency, under one lock."""
        with self.lock:
            w = self.current()
            w.cpu_ns[tenant] = w.cpu_ns.get(tenant, 0) + cpu_ns
            counts = w.latency.get(tenant)
            if counts is None:
                counts = w.latency[tenant] = [0] * (len(LATENCY_BOUNDS) + 1)
            counts[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1

    def observe(self, kind: str, tenant: str, seconds: float) -> None:
        with self.lock:
            hists = getattr(self.current(), kind)
            counts = hists.get(tenant)
            if counts is None:
                counts = hists[tenant] = [0] * (len(LATENCY_BOUNDS) + 1)
            counts[_bucket(seconds)] += 1

    def recent(self, seconds: float) -> list[_Window]:
        """The windows that started within the last `seconds` (the current one included)."""
        now = self.clock()
        with self.lock:
            return [w for w in self.ring if now - w.start < seconds + self.seconds]


class Activity:
    """Which tenants have work in flight: requests admitted and not answered yet, counted on the event
    loop (`begin` when a tenant route admits a request, `end` when it is answered or gone). Worker
    threads read it to tell whether other tenants' work waited while a task of theirs ran (the
    signals' `harm`): plain int reads, no lock."""

    __slots__ = ("active", "active_total", "started", "started_total")

    def __init__(self) -> None:
        self.active: dict[str, int] = {}
        self.active_total = 0
        self.started: dict[str, int] = {}
        self.started_total = 0

    def begin(self, tenant: str) -> None:
        self.active[tenant] = self.active.get(tenant, 0) + 1
        self.active_total += 1
        self.started[tenant] = self.started.get(tenant, 0) + 1
        self.started_total += 1

    def end(self, tenant: str) -> None:
        self.active[tenant] = self.active.get(tenant, 0) - 1
        self.active_total -= 1

    def mark(self, tenant: str) -> tuple[bool, int]:
        """At a task's start: whether another tenant has work in flight, and how many requests other
        tenants have started so far (for `others_waited` at its end)."""
        return (self.active_total - self.active.get(tenant, 0) > 0,
                self.started_total - self.started.get(tenant, 0))

    def others_waited(self, tenant: str, mark: tuple[bool, int]) -> bool:
        """Another tenant's work was in flight at some moment since `mark`: at the mark, or started
        after it."""
        busy, started = mark
        return busy or self.started_total - self.started.get(tenant, 0) > started


@dataclass
class _Queue:
    weight: float
    tasks: collections.deque[Any] = field(default_factory=collections.deque)
    deficit: float = 0.0  # ns of CPU this tenant may still use in its turn
    running: int = 0
    cost_ns: float = 1e6  # running mean of its tasks' CPU, charged when one starts, settled at its end


class DeficitRoundRobin:
    """Per-tenant FIFO queues served by deficit round robin, weighted, charged in CPU time: a
    tenant's turn adds `quantum_ns x weight` to its deficit; a task taken is charged its tenant's
    running mean cost at once and settled to its actual cost when it ends (`settle`), so with every
    tenant backlogged the CPU splits in proportion to the weights whatever the tasks cost. Not
    thread-safe: its owner serializes the calls (a lock, or the event loop)."""

    def __init__(self, quantum_ns: float = 2e6) -> None:
        self.quantum_ns = quantum_ns
        self.queues: dict[str, _Queue] = {}
        self.ring: collections.deque[str] = collections.deque()  # tenants with queued tasks, in turn order
        self.queued = 0

    def queue(self, tenant: str, weight: float) -> _Queue:
        q = self.queues.get(tenant)
        if q is None:
            q = self.queues[tenant] = _Queue(weight)
        q.weight = weight
        return q

    def push(self, q: _Queue, tenant: str, task: Any) -> None:
        if not q.tasks:
            self.ring.append(tenant)
        q.tasks.append(task)
        self.queued += 1

    def pop(self) -> Any:
        """The next task (the ring is not empty)."""
        while True:
            tenant = self.ring[0]
            q = self.queues[tenant]
            if q.deficit > 0:
                task = q.tasks.popleft()
                self.queued -= 1
                q.deficit -= q.cost_ns  # charged now at its expected cost, settled when it ends
                q.running += 1
                if not q.tasks:
                    self.ring.popleft()
                    q.deficit = min(q.deficit, 0.0)  # no credit banked while idle; a debt stays
                elif q.deficit <= 0:
                    self.ring.rotate(-1)
                return task
            q.deficit += self.quantum_ns * q.weight
            if q.deficit <= 0:  # still in debt: the next tenant's turn
                self.ring.rotate(-1)

    def settle(self, tenant: str, used_ns: int) -> None:
        """A task taken by `pop` ended, having used `used_ns`: the actual cost replaces the charge."""
        q = self.queues[tenant]
        q.running -= 1
        q.deficit += q.cost_ns - used_ns
        q.cost_ns += (used_ns - q.cost_ns) / 8

    def others_waiting(self, tenant: str) -> bool:
        return any(t != tenant for t in self.ring)

    def drain(self) -> list[Any]:
        """Every queued task, removed."""
        pending = [t for q in self.queues.values() for t in q.tasks]
        for q in self.queues.values():
            q.tasks.clear()
        self.ring.clear()
        self.queued = 0
        return pending


@dataclass
class _Task:
    tenant: str
    fn: Callable[[], Any]
    future: Future[Any]
    enqueued: float
    kind: str


def _queue_full(tenant: str, queued: int, bound: int, total_bound: int, what: str) -> OverloadedError:
    """503 for a full queue: the tenant's own (`queued` at `bound`) or the server's (`total_bound`)."""
    which = f"the tenant's bound of {bound}" if queued >= bound else f"the server's bound of {total_bound}"
    return OverloadedError(f"{what} queue full ({which})", 1,
                           {"tenant_id": tenant, "reason": "queue_full", "queued": queued})


class FairPool:
    """A bounded pool of worker threads serving per-tenant FIFO queues by deficit round robin.

    `submit` returns a Future or raises OverloadedError when the tenant's queue (or the pool's
    total) is at its bound. Workers run at `nice` (lowered priority: the loop's cheap requests go
    first even on one core). Each task runs under the native query budget: the work cap, and what
    is left of the time budget after its wait."""

    def __init__(self, workers: int = 2, queue_bound: int = 16, total_bound: int = 256,
                 time_budget_s: float = 5.0, max_visited: int | None = None, quantum_ns: float = 2e6,
                 nice: int = 19, windows: TenantWindows | None = None, activity: Activity | None = None) -> None:
        self.workers, self.queue_bound, self.total_bound = workers, queue_bound, total_bound
        self.time_budget_s, self.max_visited, self.nice = time_budget_s, max_visited, nice
        self.windows = windows or TenantWindows()
        self.activity = activity or Activity()
        self.drr = DeficitRoundRobin(quantum_ns)
        self.queues, self.ring = self.drr.queues, self.drr.ring
        self.cond = threading.Condition()
        self.threads: list[threading.Thread] = []
        self.closed = False
        # counters per tenant (only grow)
        self.shed: dict[str, int] = {}
        self.heavy: dict[str, int] = {}
        self.timed_out: dict[str, int] = {}
        self.pool_ns: dict[str, int] = {}
        self.priority = "normal"

    @property
    def queued(self) -> int:
        return self.drr.queued

    # ---- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"provgraph-heavy-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def close(self, timeout: float = 5.0) -> None:
        with self.cond:
            self.closed = True
            pending = self.drr.drain()
            self.cond.notify_all()
        for task in pending:
            task.future.set_exception(OverloadedError("server shutting down", 1))
        for t in self.threads:
            t.join(timeout)
        self.threads.clear()

    # ---- submission ---------------------------------------------------------------------
    def submit(self, tenant: str, weight: float, fn: Callable[[], T], kind: str = "query") -> Future[T]:
        fut: Future[T] = Future()
        with self.cond:
            if self.closed:
                raise OverloadedError("server shutting down", 1)
            q = self.drr.queue(tenant, weight)
            if len(q.tasks) >= self.queue_bound or self.drr.queued >= self.total_bound:
                self.shed[tenant] = self.shed.get(tenant, 0) + 1
                raise _queue_full(tenant, len(q.tasks), self.queue_bound, self.total_bound, "heavy-work")
            self.heavy[tenant] = self.heavy.get(tenant, 0) + 1
            self.drr.push(q, tenant, _Task(tenant, fn, fut, time.monotonic(), kind))
            self.cond.notify()
        return fut

    # ---- workers ------------------------------------------------------------------------
    def _work(self) -> None:
        if self.nice:
            self.priority = lower_thread_priority(self.nice)
        cpu_ns = time.thread_time_ns
        activity = self.activity
        while True:
            with self.cond:
                while not self.ring and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                task: _Task = self.drr.pop()
                waiting = self.drr.others_waiting(task.tenant)
            mark = activity.mark(task.tenant)
            waited = time.monotonic() - task.enqueued
            self.windows.observe("wait", task.tenant, waited)
            left = self.time_budget_s - waited
            c0 = cpu_ns()
            if left <= 0:
                self.timed_out[task.tenant] = self.timed_out.get(task.tenant, 0) + 1
                task.future.set_exception(OverloadedError(
                    f"query waited {waited:.3f} s for a worker, past the time budget of {self.time_budget_s:g} s",
                    1, {"reason": "time_budget", "waited_s": round(waited, 3)}))
            else:
                set_query_budget(self.max_visited, left)
                try:
                    result = task.fn()
                except BaseException as exc:  # noqa: BLE001 - the caller's future gets it
                    task.future.set_exception(exc)
                else:
                    task.future.set_result(result)
                finally:
                    set_query_budget(None, None)
            used = cpu_ns() - c0
            with self.cond:
                self.drr.settle(task.tenant, used)
                waiting = waiting or self.drr.others_waiting(task.tenant)
                self.pool_ns[task.tenant] = self.pool_ns.get(task.tenant, 0) + used
            harm = waiting or activity.others_waited(task.tenant, mark)
            self.windows.add_cpu(task.tenant, used, pool=True, harm=harm)


class BulkTurn:
    """A bulk job's turn (BulkGate.turn): `add` the CPU the job used (from any thread) as it goes."""

    __slots__ = ("mark", "ns", "tenant")

    def __init__(self, tenant: str, mark: tuple[bool, int]) -> None:
        self.tenant, self.mark, self.ns = tenant, mark, 0

    def add(self, ns: int) -> None:
        self.ns += ns


class BulkGate:
    """Bulk jobs (graph writes of BULK_ROWS rows or more, actions:batch of BULK_ACTIONS items or more)
    take turns through per-tenant queues served by the same weighted deficit round robin as the
    pool, `slots` jobs at a time, charged the CPU they report (the writer thread's staging and
    publishing of a graph write, the loop's preparation of a batch). With every tenant's bulk work
    backlogged, the writer's bulk time splits by weight, and a small write never queues behind more
    than `slots` bulk jobs. On the event loop only (no lock). Bounded like the pool: beyond
    `queue_bound` per tenant or `total_bound` in all, 503 `overloaded` (`queue_full`)."""

    def __init__(self, slots: int = 2, queue_bound: int = 16, total_bound: int = 256, quantum_ns: float = 2e6,
                 windows: TenantWindows | None = None, activity: Activity | None = None) -> None:
        self.slots, self.queue_bound, self.total_bound = slots, queue_bound, total_bound
        self.drr = DeficitRoundRobin(quantum_ns)
        self.windows = windows or TenantWindows()
        self.activity = activity or Activity()
        self.running = 0
        # counters per tenant (only grow)
        self.jobs: dict[str, int] = {}
        self.shed: dict[str, int] = {}
        self.bulk_ns: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def turn(self, tenant: str, weight: float) -> AsyncIterator[BulkTurn]:
        """Wait for `tenant`'s turn (OverloadedError at once when its queue is full); the body is the
        job; its reported CPU settles the turn when the body ends, however it ends."""
        q = self.drr.queue(tenant, weight)
        if len(q.tasks) >= self.queue_bound or self.drr.queued >= self.total_bound:
            self.shed[tenant] = self.shed.get(tenant, 0) + 1
            raise _queue_full(tenant, len(q.tasks), self.queue_bound, self.total_bound, "bulk-job")
        self.jobs[tenant] = self.jobs.get(tenant, 0) + 1
        waiter: asyncio.Future[BulkTurn] = asyncio.get_running_loop().create_future()
        enqueued = time.monotonic()
        self.drr.push(q, tenant, (tenant, waiter))
        self._wake()
        try:
            turn = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted as it was cancelled: give it back
                self._end(waiter.result())
            raise
        self.windows.observe("wait", tenant, time.monotonic() - enqueued)
        try:
            yield turn
        finally:
            self._end(turn)

    def _wake(self) -> None:
        while self.running < self.slots and self.drr.ring:
            tenant, waiter = self.drr.pop()
            if waiter.cancelled():  # its request is gone: nothing ran
                self.drr.settle(tenant, 0)
                continue
            self.running += 1
            waiter.set_result(BulkTurn(tenant, self.activity.mark(tenant)))

    def _end(self, turn: BulkTurn) -> None:
        tenant, used = turn.tenant, turn.ns
        self.running -= 1
        self.drr.settle(tenant, used)
        self.bulk_ns[tenant] = self.bulk_ns.get(tenant, 0) + used
        harm = self.drr.others_waiting(tenant) or self.activity.others_waited(tenant, turn.mark)
        self.windows.add_cpu(tenant, used, pool=True, harm=harm)
        self._wake()


def lower_thread_priority(nice: int) -> str:
    """Lower the calling thread's CPU priority below the event loop's (Linux: per thread) to `nice`.
    Returns what it set, "normal" when that was not allowed.

    Not SCHED_IDLE, though it would put the loop further ahead: a worker holds the GIL for moments
    (between native calls), and a SCHED_IDLE thread preempted in such a moment runs again only when
    no normal thread wants the core, while the loop waits for the GIL behind it: with a snapshot
    rebuild or a bulk write running, the A1 drill measured 40-60 ms stalls of every request (healthz
    p99 40.9 ms against 2.3 ms at nice 19)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        return f"nice {nice}"
    except (OSError, AttributeError) as exc:  # not allowed, or no per-thread priority here
        log.info("cannot lower the priority of %s (%s)", threading.current_thread().name, exc)
        return "normal"


class Account:
    """The loop's thread CPU of one request: counted from its start, paused over its waits (the
    worker pool, the writer), resumed after, and charged to its tenant when it ends."""

    __slots__ = ("activity", "ns", "release_fn", "since", "tenant")

    def __init__(self) -> None:
        self.tenant: str | None = None
        self.ns = 0
        self.since = time.thread_time_ns()
        self.release_fn: Callable[[], None] | None = None  # set by admission: frees the concurrency slot
        self.activity: Activity | None = None  # set by admission: the tenant's work in flight

    def begin(self, tenant: str, activity: Activity) -> None:
        """The request is its tenant's (a tenant route, at admission): in flight until `release`."""
        if self.activity is None:
            self.tenant, self.activity = tenant, activity
            activity.begin(tenant)

    def release(self) -> None:
        """The request is answered (or gone): free its tenant's concurrency slot and end its
        activity, once."""
        fn, self.release_fn = self.release_fn, None
        if fn is not None:
            fn()
        activity, self.activity = self.activity, None
        if activity is not None and self.tenant is not None:
            activity.end(self.tenant)

    def pause(self) -> None:
        if self.since:
            self.ns += time.thread_time_ns() - self.since
            self.since = 0

    def resume(self) -> None:
        if not self.since:
            self.since = time.thread_time_ns()

    def total(self) -> int:
        self.pause()
        return self.ns


# where aiohttp's web.Request holds its Account (the lean front end's request has a slot)
ACCOUNT_KEY = web.RequestKey("provgraph.account", Account)


class Scheduler:
    """What the service schedules and accounts by: the flag, the pool, the windows, the signals."""

    def __init__(self, workers: int = 2, heavy_work: int = 500_000, queue_bound: int = 16,
                 time_budget_s: float = 5.0, max_visited: int | None = 5_000_000, nice: int = 19,
                 bulk_slots: int = 2) -> None:
        self.fair = True
        self.heavy_work = heavy_work
        self.windows = TenantWindows()
        self.activity = Activity()
        self.pool = FairPool(workers=workers, queue_bound=queue_bound, time_budget_s=time_budget_s,
                             max_visited=max_visited, nice=nice, windows=self.windows, activity=self.activity)
        self.bulk = BulkGate(slots=bulk_slots, queue_bound=queue_bound, windows=self.windows, activity=self.activity)
        self.max_visited = max_visited
        self.cpu_ns: dict[str, int] = {}  # the loop's part, per tenant, since start (only grows)

    def cpu_totals(self) -> dict[str, int]:
        """Thread CPU per tenant since start: the loop's, the pool's and the writer's for its bulk
        jobs (only grows)."""
        with self.pool.cond:
            pool = dict(self.pool.pool_ns)
        loop, bulk = dict(self.cpu_ns), dict(self.bulk.bulk_ns)
        return {t: loop.get(t, 0) + pool.get(t, 0) + bulk.get(t, 0) for t in loop.keys() | pool.keys() | bulk.keys()}

    def bulk_turn(self, tenant: str, weight: float, rows: int, bulk_at: int
                  ) -> contextlib.AbstractAsyncContextManager[BulkTurn | None]:
        """A bulk job's turn of the gate when scheduling is fair and the job has at least `bulk_at`
        rows (items); otherwise no turn (None): the job goes at once, as with the flag off."""
        if self.fair and rows >= bulk_at:
            return self.bulk.turn(tenant, weight)
        return contextlib.nullcontext()

    def set_fair(self, value: str) -> None:
        self.fair = value == "on"

    @property
    def max_work(self) -> int | None:
        """The work estimate over which a query goes to the pool (None: flag off, all inline)."""
        return self.heavy_work if self.fair else None

    def submit(self, tenant: str, weight: float, fn: Callable[[], T], kind: str) -> Future[T]:
        return self.pool.submit(tenant, weight, fn, kind)

    # ---- accounting --------------------------------------------------------------------
    def charge(self, account: Account, seconds: float) -> None:
        """A request ended: its loop CPU and its latency go to its tenant (none: not a tenant route)."""
        tenant = account.tenant
        if tenant is None:
            return
        ns = account.total()
        self.cpu_ns[tenant] = self.cpu_ns.get(tenant, 0) + ns
        self.windows.record_request(tenant, ns, seconds)

    # ---- signals -----------------------------------------------------------------------
    def signals(self, weights: dict[str, float], throttled: dict[str, int], span_s: float = 60.0
                ) -> dict[str, dict[str, Any]]:
        """Per tenant (every tenant seen in the last `span_s` or with counts): cpu_share (of all
        tenants' CPU over the span), weight, queue_wait_ms p50/p99, throttled, shed, heavy,
        victim_inflation (p99 latency of the last window over the lowest p99 of the windows kept,
        1.0 without enough samples) and harm (the share of worker time, the pool's and the
        writer's bulk jobs', a tenant used while other tenants' work waited: queued for a worker or
        the bulk gate, or requests in flight)."""
        recent = self.windows.recent(span_s)
        with self.windows.lock:
            ring = list(self.windows.ring)
            cpu: dict[str, int] = collections.Counter()
            harm: dict[str, int] = collections.Counter()
            waits: dict[str, list[int]] = {}
            pool_total = 0
            for w in recent:
                for t, ns in w.cpu_ns.items():
                    cpu[t] += ns
                for t, ns in w.harm_ns.items():
                    harm[t] += ns
                pool_total += sum(w.pool_ns.values())
                for t, counts in w.wait.items():
                    acc = waits.setdefault(t, [0] * len(counts))
                    for i, c in enumerate(counts):
                        acc[i] += c
            inflation = {t: self._inflation(ring, t) for w in ring for t in w.latency}
        total_cpu = sum(cpu.values())
        pool, bulk = self.pool, self.bulk
        tenants = (set(cpu) | set(waits) | set(pool.shed) | set(pool.heavy) | set(bulk.jobs) | set(throttled)
                   | set(inflation))
        out: dict[str, dict[str, Any]] = {}
        for t in sorted(tenants):
            wait = waits.get(t, [])
            p50, p99 = _quantile(wait, 0.5), _quantile(wait, 0.99)
            out[t] = {
                "cpu_share": round(cpu.get(t, 0) / total_cpu, 4) if total_cpu else 0.0,
                "weight": weights.get(t, 1.0),
                "queue_wait_ms": {"p50": round(p50 * 1e3, 3) if p50 is not None else None,
                                  "p99": round(p99 * 1e3, 3) if p99 is not None else None},
                "throttled": throttled.get(t, 0),
                "shed": pool.shed.get(t, 0) + pool.timed_out.get(t, 0) + bulk.shed.get(t, 0),
                "heavy": pool.heavy.get(t, 0),
                "bulk": bulk.jobs.get(t, 0),
                "victim_inflation": inflation.get(t, 1.0),
                "harm": round(harm.get(t, 0) / pool_total, 4) if pool_total else 0.0,
            }
        return out

    @staticmethod
    def _inflation(ring: list[_Window], tenant: str, min_samples: int = 20) -> float:
        p99s = []
        for w in ring:
            counts = w.latency.get(tenant)
            if counts is not None and sum(counts) >= min_samples:
                p99s.append(_quantile(counts, 0.99))
        if len(p99s) < 2 or ring[-1].latency.get(tenant) is None or sum(ring[-1].latency[tenant]) < min_samples:
            return 1.0
        base = min(p for p in p99s if p is not None)
        now = p99s[-1]
        return round(now / base, 3) if base and now else 1.0
