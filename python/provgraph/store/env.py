"""The LMDB environment and its single group-commit writer thread."""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import lmdb

from provgraph.store.migrations import (
    FORMAT_VERSION,
    FORMAT_VERSION_KEY,
    AppliedMigration,
    check_version,
    parse_version,
    run_migrations,
)

__all__ = ["LATENCY_BUCKETS", "TABLES", "LatencyCounts", "Store", "Txn", "WriteJob", "Writer"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# A transaction on the store. Every transaction here is opened with buffers=False (py-lmdb's
# default), so reads and cursors yield bytes, never memoryview; py-lmdb's stubs only know that
# when the transaction's type says so. (A string: lmdb.Transaction isn't subscriptable at runtime.)
Txn: TypeAlias = "lmdb.Transaction[bytes]"

# name -> purpose; docs/storage.md is the full index map.
TABLES: dict[str, str] = {
    "meta": "server-wide settings: admin key hash, counters, format_version (docs/storage.md)",
    "tenants": "tenant id -> tenant record",
    "keys": "BLAKE3(api key) -> key record",
    "nodes": "tenant|node -> node type + attributes",
    "out": "tenant|src -> packed out-adjacency row",
    "in": "tenant|dst -> packed sorted source ids",
    "bundles": "name 0x00 revision -> raw bundle (.tar.gz)",
    "bundle_meta": "name 0x00 revision -> bundle revision record (digest, times, manifest)",
    "bundle_active": "name -> active revision",
    "decision_log": "tenant|time ns|seq -> decision log entry",
    "decision_log_counts": "tenant (4 bytes) -> entries in decision_log (8 bytes BE); written with them",
    "preflights": "tenant|preflight id (16 bytes) -> preflight record (decision, approvals, execution)",
    "idempotency": "tenant|BLAKE3(Idempotency-Key) -> first execute answer",
    "outbox": "tenant|receipt id (16 bytes, UUIDv7: time-ordered) -> receipt intent",
    "dlq": "tenant|receipt id -> receipt intent that failed K times, with the last error",
    "receipts": "tenant|seq (8 bytes BE) -> signed receipt: RFC 8785 JSON with signature, or its compact form",
    "receipts_compact": "tenant|seq -> compact form of the full receipt in receipts (receipts.storage=dual)",
    "receipt_dict": "tenant|entry id (4 bytes BE) -> receipt dictionary entry (append-only)",
    "record_dict": "tenant|kind (p: preflights, d: decision log)|id (4 bytes BE) -> a repeated value of "
                   "compact records, as JSON text (append-only)",
    "evidence": "tenant|BLAKE3 of the bytes (32) -> size, uploaded and latest reference (µs), where the bytes "
                "are (LMDB or a file), content type",
    "evidence_blobs": "tenant|BLAKE3 (32) -> the bytes of a small evidence blob (larger ones are files)",
    "purges": "tenant|manifest id (16 bytes, UUIDv7) -> the signed purge manifest and its items in leaf order",
    "evidence_purged": "tenant|BLAKE3 (32) -> the id of the manifest that purged it (reads answer 410)",
    "receipt_index": "receipt id (16 bytes) -> tenant|seq",
    "chain_heads": "tenant (4 bytes) -> seq (8 bytes BE) + BLAKE3 of the last signed bytes (32)",
    "signing_keys": "key id -> public key record (seeds live in <data-dir>/keys, mode 0600)",
}

# A write job runs inside a (nested) write transaction and returns its result plus an
# optional callback run after the group's commit is durable (e.g. publish to the in-memory
# graph) — so an acknowledged write is both durable and visible.
WriteJob: TypeAlias = Callable[[Txn], tuple[T, Callable[[], None] | None]]


class Store:
    """One LMDB environment with a named sub-database per table."""

    def __init__(self, path: Path, map_size: int = 1 << 30, sync: bool = True) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.env = lmdb.open(
            str(path / "lmdb"),
            map_size=map_size,
            max_dbs=32,
            max_readers=512,
            sync=sync,
            metasync=sync,
            subdir=True,
            readahead=False,
        )
        self.dbs: dict[str, Any] = {}
        self._grow_lock = threading.Lock()
        try:
            # what the open migrated, oldest first (empty for a current or a new data dir)
            self.migrations: list[AppliedMigration] = self._open_tables()
        except BaseException:
            self.env.close()
            raise
        if self.migrations:
            log.warning("data dir %s: migrated format version %d -> %d: %s", path,
                        self.migrations[0].from_version, self.migrations[-1].to_version,
                        "; ".join(m.description for m in self.migrations))

    def _open_tables(self) -> list[AppliedMigration]:
        """Open every table, first checking the data dir's format version: a newer one is refused
        before anything is written, an older one is migrated in the same write transaction that
        creates this code's tables (all of it or none), a new data dir is stamped current."""
        with self.env.begin() as txn:
            # a new environment has no sub-database yet (their names are the main database's keys)
            new = self.env.stat()["entries"] == 0
            try:
                meta = self.env.open_db(b"meta", txn=txn, create=False)
                raw = txn.get(FORMAT_VERSION_KEY, db=meta)
            except lmdb.NotFoundError:
                raw = None
        version = FORMAT_VERSION if new else parse_version(raw, str(self.path))
        check_version(version, str(self.path))

        def job(txn: Txn) -> list[AppliedMigration]:
            self.dbs = {name: self.env.open_db(name.encode(), txn=txn) for name in TABLES}
            if version == FORMAT_VERSION and not new:
                return []
            return run_migrations(self, txn, version)

        return self.write_direct(job)

    def db(self, name: str) -> Any:
        return self.dbs[name]

    def read(self) -> Txn:
        return self.env.begin(write=False)

    def entries(self, table: str) -> int:
        """Rows in `table` as committed (LMDB keeps the count: no scan)."""
        with self.read() as txn:
            return int(txn.stat(self.db(table))["entries"])

    def grow(self) -> None:
        """Double the map size (LMDB refuses writes past it)."""
        with self._grow_lock:
            new = self.env.info()["map_size"] * 2
            log.warning("LMDB map full; growing map to %d bytes", new)
            self.env.set_mapsize(new)

    def write_direct(self, job: Callable[[Txn], T]) -> T:
        """Run one write transaction on the calling thread, growing the map if needed."""
        while True:
            txn = self.env.begin(write=True)
            try:
                result = job(txn)
                txn.commit()
                return result
            except lmdb.MapFullError:
                txn.abort()
                self.grow()
            except BaseException:
                txn.abort()
                raise

    def close(self) -> None:
        self.env.close()


# Upper bounds (seconds) of the writer's latency histograms: a commit's fsync lives between 100 µs and
# tens of ms on a healthy disk; the long tail is what a slow one adds.
LATENCY_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2, 6.4e-2, 0.128, 0.256, 0.512, 1.024)


class LatencyCounts:
    """A fixed-bucket histogram kept by one thread and read by others (a scrape): counts per bucket
    (the last is +Inf), their sum in seconds. Reads are not atomic across fields; a scrape may see one
    observation counted and its seconds not yet added, which the next scrape corrects."""

    __slots__ = ("counts", "sum_s")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum_s = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum_s += seconds


@dataclass
class _Pending:
    job: Callable[[Txn], tuple[Any, Callable[[], None] | None]]
    future: Future[Any]
    durable: bool = True
    on_lost: Callable[[], None] | None = None
    shadow: dict[tuple[str, bytes], bytes] | None = None
    background: bool = False
    submitted: float = 0.0  # time.monotonic() at submit
    bulk: bool = False  # CPU-heavy to apply (a bulk graph write): applied at the process's priority

    @property
    def urgent(self) -> bool:
        """A request waits for this job's commit."""
        return self.durable and not self.background


class Writer:
    """The one writer: queued jobs are applied in one transaction per group, one fsync each.

    Each job runs in a nested transaction, so a job that raises is rolled back alone and
    its caller gets the exception; the others in the group still commit.
    """

    def __init__(self, store: Store, max_group: int = 256, defer_s: float = 0.005, window_max_s: float = 0.002,
                 window_step_s: float = 0.0005, slow_commit_s: float = 0.004) -> None:
        self.store = store
        self.max_group = max_group
        # A group of applied-only jobs (durable=False: already answered) keeps its transaction open
        # up to `defer_s` for a durable job to share its commit (one fsync for both), and commits
        # at once when one comes.
        self.defer_s = defer_s
        # The group window (flag runtime.group_window=adaptive): see window_for.
        self.window = True
        self.window_max_s = window_max_s
        self.window_step_s = window_step_s
        self.slow_commit_s = slow_commit_s
        # "Requests writing lately": a request's write committed within this long (background jobs).
        self.busy_s = 0.05
        self.commit_s = 0.0  # moving average of a group's commit (write + fsync), seconds
        # When a group last committed a job a request waited for (see _gather: background jobs).
        self._last_urgent = -math.inf
        self.windowed = 0  # groups that waited for a window, and how long in all
        self.window_wait_s = 0.0
        # Fault injection (tests and drills only): each commit takes this much longer (seconds, drawn
        # per commit), as on a disk whose fsync is slow.
        self.commit_delay: Callable[[], float] | None = None
        self._stopping = False
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._shadow: dict[tuple[str, bytes], bytes] = {}  # see submit(shadow=)
        self._shadow_lock = threading.Lock()
        # submit(coalesce=True) on the event loop: jobs held until the end of the loop's turn
        self.coalesce = True  # flag runtime.write_coalesce (turn: True, off: False)
        self.bulk_at_base = False  # flag scheduling.fair: bulk jobs are applied unboosted (see submit)
        self._boosted: int | None = None  # the boost to restore after a group that held a bulk job
        self._turn: list[_Pending] = []
        self._thread = threading.Thread(target=self._run, name="provgraph-writer", daemon=True)
        self.groups = 0
        self.jobs = 0
        # txn.commit() of each group (the write of its pages and the fsyncs), and, for each job a
        # request waits for (urgent), the time from submit to its durable answer
        self.commit_latency = LatencyCounts()
        self.wait_latency = LatencyCounts()
        self._thread.start()
        self._native_id = self._thread.native_id
        # Linux only: elsewhere a thread id is not a process id to setpriority.
        self._linux = sys.platform.startswith("linux") and self._native_id is not None
        # the writer thread's nice value in effect; it starts with the process's own
        self.base_nice = self.nice = os.getpriority(os.PRIO_PROCESS, 0) if self._linux else 0

    def set_priority(self, boost: int) -> bool:
        """Run the writer thread `boost` nice levels above the process (0: as the process); False,
        and unchanged, where this process may not.

        Each group waits twice for the CPU (to start, and after its fsync) and every write
        request waits for the group; where the server shares one core with its event loop, a
        higher priority lets the writer run as soon as it can instead of after the loop's time
        slice. Raising priority needs CAP_SYS_NICE or an RLIMIT_NICE that allows it."""
        nice = self.base_nice - boost
        if nice == self.nice:
            return True
        if not self._linux:
            return False
        return self._set_nice(nice)

    def _set_nice(self, nice: int) -> bool:
        try:
            os.setpriority(os.PRIO_PROCESS, self._native_id or 0, nice)
        except OSError as exc:
            log.warning("writer thread priority (nice %d) not applied: %s", nice, exc)
            return False
        self.nice = nice
        return True

    def submit(self, job: WriteJob[T], durable: bool = True, on_lost: Callable[[], None] | None = None,
               shadow: dict[tuple[str, bytes], bytes] | None = None, coalesce: bool = False,
               background: bool = False, bulk: bool = False) -> Future[T]:
        """Queue `job`; its future resolves once the group is committed (fsync included). With
        `durable=False` it resolves as soon as the job is applied inside the group's transaction:
        writes queued after that see it (the writer applies jobs in order), readers see it once the
        group commits, and a crash before that commit loses it. For records whose loss is harmless
        to the caller (e.g. a preflight: its execute answers 404 and the client asks again).
        `shadow`: rows the job writes, {(table, key): value}, that `get` shows from now on, before
        the job is even applied (read-your-writes for a job answered early), until its group commits
        (then the committed rows show) or it is lost. `on_lost` is called (on the writer thread) if
        the job is not committed after all: it failed, or its group did.

        `coalesce` (called on an event loop's thread, with the flag runtime.write_coalesce=turn):
        the job is queued at the end of the loop's current turn, together with every other job
        submitted this way in that turn, so they are applied in one group and share its commit (one
        fsync) instead of the first one starting a group alone (the writer wakes at once, and on one
        core preempts the loop) and the others waiting for its commit to start theirs. Queue order
        among coalesced jobs, and their order before any job submitted in a later turn, is kept. The
        caller must not block on the future in the same turn (awaiting it is fine).

        `background` (with runtime.group_window=adaptive): no request waits for this job (e.g. a batch
        of receipts), so while requests are writing it does not hold a commit of its own: its group
        stays open up to `defer_s` for a request's write to share the commit, as an applied-only
        group does. Its future still resolves only once it is durable; with no request writing
        lately, it commits at once.

        `bulk` (with `bulk_at_base`, flag scheduling.fair=on): the job costs CPU in proportion to its
        size (a bulk graph write: its row merges, its pages, its publish step), so the writer runs
        the group that holds it at the process's own priority, not boosted (runtime.writer_priority):
        a boosted thread staging a tenant's bulk write would hold the core the event loop shares
        with it, ahead of every tenant's requests."""
        fut: Future[T] = Future()
        if shadow:
            with self._shadow_lock:
                self._shadow.update(shadow)
        pending = _Pending(job, fut, durable, on_lost, shadow, background, time.monotonic(), bulk)
        if coalesce and self.coalesce:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on a loop: nothing ends a turn here
                loop = None
            if loop is not None:
                self._turn.append(pending)
                if len(self._turn) == 1:
                    loop.call_soon(self._end_turn)
                return fut
        self._queue.put(pending)
        return fut

    def _end_turn(self) -> None:
        """Queue the jobs coalesced during the loop turn that just ended, in submit order."""
        turn, self._turn = self._turn, []
        for pending in turn:
            self._queue.put(pending)

    def get(self, txn: Txn, table: str, key: bytes) -> bytes | None:
        """A row as a reader sees it with read-your-writes: a shadowed write not committed yet (see
        `submit`), else what `txn` holds."""
        value = self._shadow.get((table, key))
        return value if value is not None else txn.get(key, db=self.store.db(table))

    def _unshadow(self, pending: _Pending) -> None:
        """The job's shadowed rows are committed or lost: stop showing them (not a later job's
        shadow of the same row)."""
        if pending.shadow:
            with self._shadow_lock:
                for row, value in pending.shadow.items():
                    if self._shadow.get(row) is value:
                        del self._shadow[row]

    def _lost(self, pending: _Pending) -> None:
        self._unshadow(pending)
        if pending.on_lost is not None:
            try:
                pending.on_lost()
            except Exception:
                log.exception("on_lost hook failed")

    def close(self) -> None:
        self._end_turn()  # anything coalesced in the closing turn is still written
        self._queue.put(None)
        self._thread.join(timeout=30)

    def window_for(self, depth: int, idle: bool) -> float:
        """How long a group of `depth` jobs (those queued when the writer took the first) stays open
        for more (flag runtime.group_window=adaptive), 0 with the flag off.

        Each group pays one commit (fsync), and every write that arrives meanwhile waits for all of
        it before its own group starts: at load, a few ms of gathering turns several groups into one,
        so fewer fsyncs in all, and less of the time spent in one that a request must wait out. The
        window widens with the depth (jobs queued while the last group ran: the arrival rate per
        commit) and, when commits are slow (moving average over `slow_commit_s`), to one commit's
        time, which is what the next job would wait anyway; it never exceeds `window_max_s`. An idle
        writer (its first job found it waiting: whatever came with it, e.g. one loop turn's writes,
        says nothing of a rate) commits at once."""
        if not self.window or idle:
            return 0.0
        slow = self.commit_s >= self.slow_commit_s
        wait = self.window_step_s * (depth - 1)
        if slow:
            wait = max(wait, self.commit_s)
        return min(self.window_max_s, wait)

    def _run(self) -> None:
        while not self._stopping:
            try:
                first = self._queue.get_nowait()
                idle = False
            except queue.Empty:
                first = self._queue.get()
                idle = True
            if first is None:
                return
            group = [first]
            self._take(group)
            self._commit_group(group, self.window_for(len(group), idle))

    def _take(self, group: list[_Pending], timeout: float | None = None) -> None:
        """Add queued jobs to `group` (up to max_group): those already queued, or, with `timeout`, the
        first to arrive within it and those queued with it. The stop sentinel ends the writer after
        this group."""
        while len(group) < self.max_group and not self._stopping:
            try:
                item = self._queue.get(timeout=timeout) if timeout is not None else self._queue.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._stopping = True
                return
            group.append(item)
            timeout = None

    def _apply(self, txn: Txn, group: list[_Pending],
               outcomes: list[tuple[bool, Any, Callable[[], None] | None]]) -> None:
        """Apply the jobs of `group` not applied yet, each in a nested transaction of `txn`."""
        for pending in group[len(outcomes):]:
            if pending.bulk and self.bulk_at_base and self._boosted is None and self.nice != self.base_nice:
                # the rest of this group (its other jobs, the commit, the publish steps) runs at the
                # process's priority too; _commit_group restores the boost when the group is done
                self._boosted = self.nice
                self._set_nice(self.base_nice)
            child = self.store.env.begin(write=True, parent=txn)
            try:
                result, after = pending.job(child)
                child.commit()
                outcomes.append((True, result, after))
                if not pending.durable and not pending.future.done():
                    pending.future.set_result(result)  # applied; the commit follows
            except lmdb.MapFullError:
                child.abort()
                raise
            # The job's own failure, whatever it is: roll back only it; its caller gets it.
            except Exception as exc:  # noqa: BLE001 — deliberate, see above
                child.abort()
                outcomes.append((False, exc, None))

    def _gather(self, txn: Txn, group: list[_Pending],
                outcomes: list[tuple[bool, Any, Callable[[], None] | None]], window: float) -> None:
        """Keep the group open for more jobs, applying each as it comes: for `window` seconds, and,
        while no request waits for its commit, up to `defer_s` for one that does to share the commit
        (which, once the window is over, commits at once). That wait is for a group of applied-only
        jobs (answered already), and, with the window on and requests writing lately, for one of
        background jobs: a commit (fsync) no request needs would delay every request behind it."""
        start = time.monotonic()
        urgent = any(p.urgent if self.window else p.durable for p in group)
        while len(group) < self.max_group and not self._stopping:
            if urgent:
                end = start + window
            elif any(not p.durable for p in group) or start - self._last_urgent < self.busy_s:
                end = start + max(window, self.defer_s)
            else:  # only background jobs, no request writing lately: nothing to wait for
                end = start + window
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            size = len(group)
            self._take(group, timeout=remaining)
            if len(group) == size:
                break
            urgent = urgent or any(p.urgent if self.window else p.durable for p in group[size:])
            self._apply(txn, group, outcomes)
        if urgent:
            self._last_urgent = time.monotonic()
        if window > 0:
            self.windowed += 1
            self.window_wait_s += time.monotonic() - start

    def _commit_group(self, group: list[_Pending], window: float = 0.0) -> None:
        try:
            self._commit_group_once(group, window)
        finally:
            if self._boosted is not None:  # a bulk job ran unboosted (see _apply): boosted again
                self._set_nice(self._boosted)
                self._boosted = None

    def _commit_group_once(self, group: list[_Pending], window: float) -> None:
        while True:
            outcomes: list[tuple[bool, Any, Callable[[], None] | None]] = []
            txn = self.store.env.begin(write=True)
            try:
                self._apply(txn, group, outcomes)
                self._gather(txn, group, outcomes, window)
                t0 = time.monotonic()
                if self.commit_delay is not None:
                    time.sleep(self.commit_delay())
                txn.commit()
                took = time.monotonic() - t0
                self.commit_s += 0.2 * (took - self.commit_s)
                self.commit_latency.observe(took)
            except lmdb.MapFullError:
                txn.abort()
                self.store.grow()
                continue
            # Whatever failed the group goes to every caller's future: none may hang.
            except BaseException as exc:  # noqa: BLE001 — deliberate, see above
                txn.abort()
                for pending in group:
                    if pending.future.done():  # answered when applied: its write is lost
                        log.error("write group failed after a non-durable job was answered: %s", exc)
                    else:
                        pending.future.set_exception(exc)
                    self._lost(pending)
                return
            break
        self.groups += 1
        self.jobs += len(group)
        for pending, (ok, value, after) in zip(group, outcomes):
            answered = pending.future.done()  # when applied (durable=False)
            if not ok:  # failed alone, rolled back
                pending.future.set_exception(value)
                self._lost(pending)
                continue
            self._unshadow(pending)  # committed: the rows themselves show now
            try:
                if after is not None:
                    after()
            except Exception as exc:  # durable, but publishing failed: report, never hide
                log.exception("post-commit step failed")
                if not answered:
                    pending.future.set_exception(exc)
                continue
            if not answered:
                pending.future.set_result(value)
                if pending.urgent:
                    self.wait_latency.observe(time.monotonic() - pending.submitted)
