"""The admin area: tenants (their quotas and admission), API keys (their last-use times) and the flag
registry's routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from provgraph._core import set_query_budget
from provgraph.service.admission import Admission
from provgraph.service.http import in_background
from provgraph.service.keys import ADMISSION, CONFIG, METRICS, REGISTRY, SCHEDULER
from provgraph.service.routes_admin import add_admin_routes
from provgraph.service.scheduling import Scheduler

__all__ = ["setup_admin"]

log = logging.getLogger(__name__)

USAGE_TICK_S = 1.0  # the resolution of last_used_at
USAGE_FLUSH_S = 60.0  # how often changed last-use times are written (and at shutdown)


async def key_usage_ctx(app: web.Application) -> AsyncIterator[None]:
    """Tick the registry's coarse clock every USAGE_TICK_S and write changed last-use times every
    USAGE_FLUSH_S and at shutdown (a crash loses at most that interval of last-use times)."""
    registry = app[REGISTRY]
    loop = asyncio.get_running_loop()

    async def ticker() -> None:
        since_flush = 0.0
        while True:
            await asyncio.sleep(USAGE_TICK_S)
            registry.tick()
            since_flush += USAGE_TICK_S
            if since_flush >= USAGE_FLUSH_S:
                since_flush = 0.0
                try:
                    await loop.run_in_executor(None, registry.flush_usage)
                except Exception:  # logged; the next interval writes them
                    log.exception("writing key last-use times failed")

    async with in_background(ticker()):
        yield
    await loop.run_in_executor(None, registry.flush_usage)


async def admission_ctx(app: web.Application) -> AsyncIterator[None]:
    """Admission follows flag admission.quota while the app runs; its 429s are counted in /metrics."""
    admission = app[ADMISSION]
    stop = app[CONFIG].flags.subscribe("admission.quota", admission.set_enabled)
    app[METRICS].read_counter("provgraph_admission_throttled", "Requests answered 429 rate_limited (over quota)",
                              lambda: sum(admission.throttled.values()))
    yield
    stop()


async def scheduling_ctx(app: web.Application) -> AsyncIterator[None]:
    """The heavy-work pool runs while the app does and follows flag scheduling.fair; queries on the
    loop's thread run under the work cap too; the per-tenant signals go to /metrics (top K)."""
    sched, config = app[SCHEDULER], app[CONFIG]
    stop = config.flags.subscribe("scheduling.fair", sched.set_fair)
    sched.pool.start()
    set_query_budget(config.max_visited, None)
    registry, admission = app[REGISTRY], app[ADMISSION]
    app[METRICS].read_tenant_signals(lambda: sched.signals(registry.weights(), admission.throttled),
                                     sched.cpu_totals)
    yield
    stop()
    set_query_budget(None, None)
    await asyncio.get_running_loop().run_in_executor(None, sched.pool.close)


def setup_admin(app: web.Application) -> None:
    config = app[CONFIG]
    app[SCHEDULER] = sched = Scheduler(workers=config.pool_workers, heavy_work=config.heavy_work,
                                       queue_bound=config.queue_bound, time_budget_s=config.time_budget_s,
                                       max_visited=config.max_visited, nice=config.pool_nice)
    app[ADMISSION] = Admission(sched.activity)
    app.cleanup_ctx.append(admission_ctx)
    app.cleanup_ctx.append(scheduling_ctx)
    app.cleanup_ctx.append(key_usage_ctx)
    add_admin_routes(app.router)
