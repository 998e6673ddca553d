"""The group-commit writer on a real LMDB: durable and applied-only answers, ordering, failures."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest
from provgraph.store import Store, Txn, Writer


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data")
    yield s
    s.close()


def hold(writer: Writer) -> tuple[threading.Event, Any]:
    """Occupy the writer with a group of its own until the returned event is set, so the jobs
    queued meanwhile form the next group together."""
    started, gate = threading.Event(), threading.Event()

    def job(txn: lmdb.Transaction) -> tuple[bool, None]:
        started.set()
        return gate.wait(10), None

    fut = writer.submit(job)
    assert started.wait(10)
    return gate, fut


class GroupFailure(BaseException):
    """Fails a whole group (Exceptions only roll back their own job)."""


def put(store: Store, key: bytes, after: Any = None) -> Any:
    def job(txn: lmdb.Transaction) -> tuple[bytes, Any]:
        txn.put(key, b"v", db=store.db("outbox"))
        return key, after

    return job


def read(store: Store, key: bytes) -> bytes | None:
    with store.read() as txn:
        raw = txn.get(key, db=store.db("outbox"))
        return None if raw is None else bytes(raw)


def test_applied_answer_then_commit_and_order(store: Store) -> None:
    writer = Writer(store)
    committed = threading.Event()
    try:
        gate, blocker = hold(writer)
        early = writer.submit(put(store, b"a", committed.set), durable=False)
        later = writer.submit(lambda txn: (txn.get(b"a", db=store.db("outbox")), None))
        gate.set()
        assert early.result(10) == b"a"
        assert bytes(later.result(10)) == b"v"  # a later write sees the applied-only one
        assert committed.wait(10)  # its post-commit step still runs
        assert read(store, b"a") == b"v"
        assert blocker.result(10) is True
    finally:
        writer.close()


def test_group_failure_after_an_applied_answer(store: Store) -> None:
    """The documented risk of durable=False: answered, then the group fails, the write is gone."""
    writer = Writer(store)
    lost: list[str] = []
    try:
        gate, blocker = hold(writer)  # the next two form one group
        early = writer.submit(put(store, b"x"), durable=False, on_lost=lambda: lost.append("x"))

        def boom(txn: lmdb.Transaction) -> tuple[None, None]:
            raise GroupFailure()

        doomed = writer.submit(boom)
        gate.set()
        assert blocker.result(10) is True
        assert early.result(10) == b"x"
        with pytest.raises(GroupFailure):
            doomed.result(10)
        assert read(store, b"x") is None
        assert lost == ["x"]  # its owner learns the answered write is gone
        # the writer keeps working after a failed group
        assert writer.submit(put(store, b"y")).result(10) == b"y"
        assert read(store, b"y") == b"v"
    finally:
        writer.close()


def test_on_lost_is_called_for_a_failed_job_only(store: Store) -> None:
    writer = Writer(store)
    lost: list[str] = []
    try:
        def bad(txn: lmdb.Transaction) -> tuple[None, None]:
            raise ValueError("bad job")

        failed = writer.submit(bad, durable=False, on_lost=lambda: lost.append("bad"))
        fine = writer.submit(put(store, b"ok"), on_lost=lambda: lost.append("ok"))
        with pytest.raises(ValueError, match="bad job"):
            failed.result(10)
        assert fine.result(10) == b"ok"
        assert lost == ["bad"]
    finally:
        writer.close()


def test_applied_only_group_shares_the_next_durable_commit(store: Store) -> None:
    """An applied-only job is answered at once; its group waits (up to defer_s) for a durable job and
    commits both in one transaction; readers see it once that commit lands."""
    writer = Writer(store, defer_s=5.0)
    try:
        early = writer.submit(put(store, b"p"), durable=False)
        assert early.result(10) == b"p"  # answered while its commit waits
        groups = writer.groups
        assert read(store, b"p") is None  # not committed yet: readers don't see it
        durable = writer.submit(put(store, b"d"))
        assert durable.result(10) == b"d"
        assert writer.groups == groups + 1  # one commit for both
        assert read(store, b"p") == b"v" and read(store, b"d") == b"v"
    finally:
        writer.close()


def test_applied_only_group_commits_by_itself_after_defer(store: Store) -> None:
    """With no durable write coming, an applied-only group still commits, after defer_s."""
    writer = Writer(store, defer_s=0.05)
    committed = threading.Event()
    try:
        assert writer.submit(put(store, b"q", committed.set), durable=False).result(10) == b"q"
        assert committed.wait(10)
        assert read(store, b"q") == b"v" and writer.groups == 1
    finally:
        writer.close()


def test_close_commits_a_deferred_group(store: Store) -> None:
    writer = Writer(store, defer_s=30.0)
    assert writer.submit(put(store, b"c"), durable=False).result(10) == b"c"
    writer.close()  # the stop sentinel ends the wait: the group commits before the writer stops
    assert read(store, b"c") == b"v"


def visible(writer: Writer, store: Store, key: bytes) -> bytes | None:
    with store.read() as txn:
        raw = writer.get(txn, "outbox", key)
        return None if raw is None else bytes(raw)


def test_shadowed_rows_show_from_submit_until_the_commit(store: Store) -> None:
    """A job answered early (durable=False) may shadow the rows it writes: `get` shows them from the
    submit on, before the job is applied, and the committed row once its group commits."""
    writer = Writer(store, defer_s=5.0)
    try:
        gate, blocker = hold(writer)  # nothing of the next job is applied yet
        shadow = b"shadowed"
        early = writer.submit(put(store, b"s"), durable=False, shadow={("outbox", b"s"): shadow})
        assert visible(writer, store, b"s") == shadow and read(store, b"s") is None
        gate.set()
        assert blocker.result(10) is True and early.result(10) == b"s"
        assert visible(writer, store, b"s") == shadow  # applied, its commit waits for a durable job
        assert writer.submit(put(store, b"d")).result(10) == b"d"  # the shared commit
        assert visible(writer, store, b"s") == b"v" == read(store, b"s")  # the committed row now
        assert writer._shadow == {}
    finally:
        writer.close()


def test_shadowed_rows_go_when_the_job_is_lost(store: Store) -> None:
    """A shadowed job that fails, alone or with its group, stops showing; a later job's shadow of the
    same row stays until that job's own commit."""
    writer = Writer(store)
    try:
        def bad(txn: lmdb.Transaction) -> tuple[None, None]:
            raise ValueError("bad job")

        failed = writer.submit(bad, durable=False, shadow={("outbox", b"f"): b"never"})
        with pytest.raises(ValueError):
            failed.result(10)
        assert visible(writer, store, b"f") is None

        gate, blocker = hold(writer)
        doomed_row = writer.submit(put(store, b"g"), durable=False, shadow={("outbox", b"g"): b"first"})

        def boom(txn: lmdb.Transaction) -> tuple[None, None]:
            raise GroupFailure()

        doomed = writer.submit(boom)
        gate.set()
        assert blocker.result(10) is True and doomed_row.result(10) == b"g"
        with pytest.raises(GroupFailure):
            doomed.result(10)
        assert visible(writer, store, b"g") is None  # the group failed: not shown, not stored

        gate, blocker = hold(writer)
        first = writer.submit(put(store, b"h"), durable=False, shadow={("outbox", b"h"): b"one"})
        second = writer.submit(put(store, b"h"), durable=False, shadow={("outbox", b"h"): b"two"})
        assert visible(writer, store, b"h") == b"two"  # the newest shadow of a row
        gate.set()
        assert blocker.result(10) is True and first.result(10) == second.result(10) == b"h"
        assert writer.submit(put(store, b"z")).result(10) == b"z"
        assert visible(writer, store, b"h") == b"v" and writer._shadow == {}
    finally:
        writer.close()


def test_jobs_coalesced_in_one_loop_turn_share_one_group(store: Store) -> None:
    """runtime.write_coalesce=turn: jobs submitted with coalesce=True during one event-loop turn are
    queued when the turn ends, together, so they commit in one group — the two grants of a dual
    control approval arrive in the same turn and used to start a group each."""
    import asyncio

    writer = Writer(store)
    order: list[bytes] = []

    def note(key: bytes) -> Any:
        def job(txn: lmdb.Transaction) -> tuple[bytes, None]:
            txn.put(key, b"v", db=store.db("outbox"))
            order.append(key)
            return key, None

        return job

    async def one_turn(keys: list[bytes]) -> int:
        before = writer.groups
        futs = [writer.submit(note(k), coalesce=True) for k in keys]
        assert len(writer._turn) == len(keys)  # held until the turn ends: the writer has not seen them
        done = await asyncio.gather(*(asyncio.wrap_future(f) for f in futs))
        assert done == keys
        return writer.groups - before

    try:
        assert asyncio.run(one_turn([b"c1", b"c2", b"c3"])) == 1
        assert order == [b"c1", b"c2", b"c3"]
        assert all(read(store, k) == b"v" for k in order)  # committed
        writer.coalesce = False  # the flag off: each job queued at once, as without coalesce
        gate, blocker = hold(writer)  # so the jobs below queue up behind a group and
        futs = [writer.submit(note(k), coalesce=True) for k in (b"d1", b"d2")]
        assert writer._turn == []  # went straight to the queue
        gate.set()
        assert [f.result(10) for f in futs] == [b"d1", b"d2"]
        assert blocker.result(10) is True
    finally:
        writer.close()


def test_coalesced_jobs_keep_their_order_before_later_turns(store: Store) -> None:
    """A job coalesced in one turn is applied before any job submitted in a later turn (what the
    preflight's early answer relies on: its execute comes in a later request); outside a running
    loop coalesce has no turn to wait for and queues at once."""
    import asyncio

    writer = Writer(store)
    seen: list[bytes | None] = []

    async def turns() -> None:
        first = writer.submit(put(store, b"k"), durable=False, coalesce=True)
        await asyncio.sleep(0)  # the next turn
        later = writer.submit(lambda txn: (seen.append(txn.get(b"k", db=store.db("outbox"))), None))
        await asyncio.wrap_future(later)
        assert first.done()

    try:
        asyncio.run(turns())
        assert seen == [b"v"]
        direct = writer.submit(put(store, b"x"), coalesce=True)  # no running loop here
        assert direct.result(10) == b"x"
    finally:
        writer.close()


def test_close_writes_what_the_closing_turn_coalesced(store: Store) -> None:
    import asyncio

    writer = Writer(store)

    async def submit_and_close() -> Any:
        fut = writer.submit(put(store, b"last"), coalesce=True)
        writer.close()  # in the same turn: the job is queued before the stop
        return fut

    fut = asyncio.run(submit_and_close())
    assert fut.result(10) == b"last"
    assert read(store, b"last") == b"v"


# ---- the group window (flag runtime.group_window=adaptive) ------------------------------------------------
def test_window_is_zero_when_idle_widens_with_depth_and_is_bounded(store: Store) -> None:
    writer = Writer(store, window_max_s=0.004, window_step_s=0.001, slow_commit_s=0.01)
    try:
        assert writer.window_for(1, idle=True) == 0.0  # idle: commit at once
        assert writer.window_for(5, idle=True) == 0.0  # with whatever came along (one loop turn's writes)
        assert writer.window_for(1, idle=False) == 0.0  # one job at a time, commits fast: nothing to gather
        widths = [writer.window_for(depth, idle=False) for depth in range(2, 9)]
        assert widths == sorted(widths) and widths[0] > 0  # wider the deeper the queue
        assert max(widths) == writer.window_max_s  # and never past the bound
        writer.window = False  # the flag off: no window at any depth
        assert [writer.window_for(depth, idle=False) for depth in (1, 5, 100)] == [0.0, 0.0, 0.0]
    finally:
        writer.close()


def test_an_idle_writer_commits_at_once(store: Store) -> None:
    """A lone job on an idle writer is not held for a window, however wide the window may get."""
    writer = Writer(store, window_max_s=30.0, window_step_s=30.0)
    try:
        for i in range(3):
            assert writer.submit(put(store, b"i%d" % i)).result(10) == b"i%d" % i
        assert writer.groups == 3 and writer.windowed == 0

        async def one_turn() -> list[Any]:  # a burst from one loop turn reaches the idle writer together
            futs = [writer.submit(put(store, b"t%d" % i), coalesce=True) for i in range(3)]
            return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futs)))

        assert asyncio.run(one_turn()) == [b"t0", b"t1", b"t2"]  # well before a window of 30 s would end
        assert writer.groups == 4 and writer.windowed == 0
    finally:
        writer.close()


def test_a_deep_queue_gathers_for_a_bounded_window_in_order_and_nothing_is_durable_early(store: Store) -> None:
    """Jobs queued behind a busy group open a window: jobs arriving within it join the same group (one
    commit), are applied in submit order, and none is acknowledged as durable, nor visible to readers,
    before the group's commit; an applied-only one is answered within the window. The window ends on
    time: the group commits without waiting for more."""
    window = 2.0  # long enough that the late job surely arrives within it
    writer = Writer(store, window_max_s=window, window_step_s=window)
    order: list[bytes] = []
    applied = threading.Event()

    def note(key: bytes, last: bool = False) -> Any:
        def job(txn: lmdb.Transaction) -> tuple[bytes, None]:
            txn.put(key, b"v", db=store.db("outbox"))
            order.append(key)
            if last:
                applied.set()
            return key, None

        return job

    try:
        groups = writer.groups
        gate, blocker = hold(writer)
        queued = [writer.submit(note(b"q1")), writer.submit(note(b"q2"), durable=False),
                  writer.submit(note(b"q3", last=True))]
        gate.set()
        assert blocker.result(10) is True
        assert applied.wait(10)  # the three are applied; the group is in its window
        assert queued[1].result(10) == b"q2"  # applied-only: answered before the commit
        late = writer.submit(note(b"q4"))  # arrives within the window: joins the group
        assert not queued[0].done() and not queued[2].done()  # durable ones wait for the commit
        assert read(store, b"q1") is None  # not committed: readers don't see it yet
        # the window ends by itself (nothing more arrives): answered within the 10 s of result()
        assert [f.result(10) for f in (*queued, late)] == [b"q1", b"q2", b"q3", b"q4"]
        assert order == [b"q1", b"q2", b"q3", b"q4"]
        assert writer.groups == groups + 2  # the held group, then one commit for the four
        assert writer.windowed == 1 and 0 < writer.window_wait_s
        assert all(read(store, k) == b"v" for k in order)
    finally:
        writer.close()


def test_without_the_window_a_late_job_commits_in_a_group_of_its_own(store: Store) -> None:
    """The flag off (runtime.group_window=off): the queued jobs commit as soon as they are applied, and a
    job arriving after that starts the next group."""
    writer = Writer(store, window_max_s=5.0, window_step_s=5.0)
    writer.window = False
    try:
        groups = writer.groups
        gate, blocker = hold(writer)
        first = [writer.submit(put(store, b"o1")), writer.submit(put(store, b"o2"))]
        gate.set()
        assert blocker.result(10) is True and [f.result(10) for f in first] == [b"o1", b"o2"]
        assert writer.submit(put(store, b"o3")).result(10) == b"o3"
        assert writer.groups == groups + 3 and writer.windowed == 0  # held, queued two, late one
    finally:
        writer.close()


def test_slow_commits_widen_the_window_to_one_commit(store: Store) -> None:
    """With commits slower than slow_commit_s (an injected delay, as on a slow disk), even a group of one
    queued job waits about one commit's time for more, up to the bound; an idle writer still does not."""
    writer = Writer(store, window_max_s=0.5, window_step_s=0.0, slow_commit_s=0.02)
    try:
        assert writer.window_for(1, idle=False) == 0.0
        writer.commit_delay = lambda: 0.05
        for i in range(12):  # the moving average of commit times follows the slow disk
            writer.submit(put(store, b"s%d" % i)).result(10)
        assert writer.commit_s >= writer.slow_commit_s
        assert writer.slow_commit_s <= writer.window_for(1, idle=False) <= writer.window_max_s
        assert writer.window_for(1, idle=True) == 0.0
        assert writer.window_for(50, idle=False) <= writer.window_max_s
    finally:
        writer.close()


def test_close_ends_a_window(store: Store) -> None:
    """The stop sentinel ends a window at once: what the group holds commits, then the writer stops (a
    window of 60 s would outlast close's 30 s wait for the thread and the futures' 10 s)."""
    writer = Writer(store, window_max_s=60.0, window_step_s=60.0)
    gate, blocker = hold(writer)
    futs = [writer.submit(put(store, b"w1")), writer.submit(put(store, b"w2"))]
    gate.set()
    assert blocker.result(10) is True
    writer.close()
    assert [f.result(10) for f in futs] == [b"w1", b"w2"]
    assert read(store, b"w1") == read(store, b"w2") == b"v"


def test_a_background_job_shares_a_request_commit_while_requests_write(store: Store) -> None:
    """runtime.group_window=adaptive: a background job (a receipt batch: no request waits for it) arriving
    while requests write does not commit alone: its group waits (up to defer_s) for a request's write and
    they share the commit; it is answered only once committed. With no request writing lately it commits
    at once, and with the flag off it commits alone, as any durable job."""
    writer = Writer(store, defer_s=30.0)
    try:
        assert writer.submit(put(store, b"r0")).result(10) == b"r0"  # a request's write: requests are writing
        groups = writer.groups
        bg = writer.submit(put(store, b"b1"), background=True)
        time.sleep(0.1)  # well past any window, still within defer_s
        assert not bg.done() and read(store, b"b1") is None  # held open, not acknowledged before its commit
        assert writer.submit(put(store, b"r1")).result(10) == b"r1"
        assert bg.result(10) == b"b1" and writer.groups == groups + 1  # one commit for both
        time.sleep(writer.busy_s * 2)  # no request writing lately
        # not held (defer_s is 30 s) for a request that is not coming
        assert writer.submit(put(store, b"b2"), background=True).result(10) == b"b2"
        writer.window = False
        assert writer.submit(put(store, b"r2")).result(10) == b"r2"
        groups = writer.groups
        assert writer.submit(put(store, b"b3"), background=True).result(10) == b"b3"
        assert writer.groups == groups + 1  # the flag off: committed at once, alone
    finally:
        writer.close()


def test_bulk_jobs_are_applied_unboosted_under_fair_scheduling(store: Store) -> None:
    """A boosted writer (runtime.writer_priority=high) runs a group holding a bulk job at the process's
    own priority when bulk_at_base is set (scheduling.fair=on), and is boosted again for the next
    group; without it, or for a small job, the boost stays."""
    w = Writer(store)
    try:
        boosted = w.set_priority(5)
        native = w._native_id or 0

        def seen(txn: Txn) -> tuple[int, None]:
            return os.getpriority(os.PRIO_PROCESS, native), None

        base, high = w.base_nice, w.base_nice - (5 if boosted else 0)
        w.bulk_at_base = True
        assert w.submit(seen, bulk=True).result(10) == base
        assert w.submit(seen).result(10) == high
        assert w.nice == high
        w.bulk_at_base = False
        assert w.submit(seen, bulk=True).result(10) == high
    finally:
        w.set_priority(0)
        w.close()
