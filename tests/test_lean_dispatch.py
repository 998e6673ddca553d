"""service.dispatch=eager: the lean front end runs a request's coroutine on the spot and hands it to
a Task only if it waits (run_eagerly). What a Task would do must still hold: results, waits on
futures, exceptions, cancellation, and a context of its own per request."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest
from provgraph.service.lean import run_eagerly

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def test_a_coroutine_that_never_waits_runs_to_the_end_at_once_without_a_task() -> None:
    async def main() -> None:
        done: list[str] = []

        async def answer() -> None:
            done.append("answered")

        before = len(asyncio.all_tasks())
        run_eagerly(asyncio.get_running_loop(), answer())
        assert done == ["answered"]  # before the caller goes on: no loop turn
        assert len(asyncio.all_tasks()) == before

    asyncio.run(main())


def test_a_coroutine_that_waits_goes_on_in_a_task_with_every_value_sent_back() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        steps: list[Any] = []
        first: asyncio.Future[int] = loop.create_future()

        async def answer() -> None:
            steps.append("start")
            steps.append(await first)
            await asyncio.sleep(0)  # a bare yield (None) is a reschedule, as in a Task
            steps.append(await asyncio.wrap_future(loop.run_in_executor(None, lambda: 7)))
            steps.append("end")

        run_eagerly(loop, answer())
        assert steps == ["start"]  # ran up to its first wait, on the spot
        first.set_result(5)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if steps[-1] == "end":
                break
        assert steps == ["start", 5, 7, "end"]

    asyncio.run(main())


def test_an_exception_from_a_future_is_raised_inside_the_coroutine() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        caught: list[str] = []

        async def answer() -> None:
            try:
                await fut
            except KeyError as exc:
                caught.append(str(exc))

        run_eagerly(loop, answer())
        fut.set_exception(KeyError("boom"))
        await asyncio.sleep(0.01)
        assert caught == ["'boom'"]

    asyncio.run(main())


@pytest.mark.parametrize("started", [False, True], ids=["before-its-first-step", "while-it-waits"])
def test_cancelling_the_task_that_took_over_cancels_the_coroutine(started: bool) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        seen: list[str] = []

        async def answer() -> None:
            try:
                await fut
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
            finally:
                seen.append("finally")

        mine = asyncio.all_tasks()
        run_eagerly(loop, answer())
        (task,) = asyncio.all_tasks() - mine
        if started:
            await asyncio.sleep(0.01)  # the Task has taken over and waits on fut
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen == ["cancelled", "finally"]  # delivered even before the Task's first step
        # as a Task does: once it waits on a future, cancelling it cancels that future
        assert fut.cancelled() == started

    asyncio.run(main())


def test_each_request_gets_its_own_context() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        seen: list[str] = []

        async def answer(name: str, wait: bool) -> None:
            VAR.set(name)
            if wait:
                await fut
            seen.append(VAR.get())

        run_eagerly(loop, answer("a", True))
        run_eagerly(loop, answer("b", False))
        assert VAR.get() == "unset"  # nothing leaked into the caller's context
        fut.set_result(None)
        await asyncio.sleep(0.01)
        assert seen == ["b", "a"]  # the waiting one kept its own value across the hand-over

    asyncio.run(main())


def test_a_bug_that_escapes_the_coroutine_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async def answer() -> None:
            raise RuntimeError("a bug")

        run_eagerly(asyncio.get_running_loop(), answer())

    asyncio.run(main())
    assert "answering a request failed" in caplog.text and "a bug" in caplog.text
