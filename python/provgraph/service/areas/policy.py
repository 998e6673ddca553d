"""The policy area: bundles and their activation, /decide with the decision cache, the decision log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from provgraph._core import policy_vm_fallbacks
from provgraph.policy.manager import PolicyManager
from provgraph.service.http import in_background
from provgraph.service.keys import CONFIG, METRICS, POLICY, STORE, WRITER
from provgraph.service.routes_policy import add_policy_routes

__all__ = ["setup_policy"]

LOG_FLUSH_S = 0.1  # how often the decision log's buffered entries are written


async def policy_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the active bundle revisions, then flush the decision log every LOG_FLUSH_S while the app
    runs, and once more on shutdown."""
    config, metrics = app[CONFIG], app[METRICS]
    pm = PolicyManager(app[STORE], app[WRITER], config.policy_bundle, config.decision_cache_entries,
                       config.decision_cache_ttl_s, config.decision_log_retention,
                       on_eval_error=metrics.policy_eval_errors.inc, flags=config.flags)
    app[POLICY] = pm
    stop_records_flag = config.flags.subscribe("records.storage", lambda v: setattr(pm.log, "compact", v == "compact"))
    metrics.on_scrape(lambda: metrics.policy_cache_entries.set(pm.cache.stats()["entries"]))
    metrics.read_counter("provgraph_policy_decision_log_dropped",
                         "Decision log entries shed because the writer fell behind", lambda: pm.log.dropped)
    metrics.read_counter("provgraph_policy_vm_fallbacks",
                         "Evaluations the bytecode VM failed and the interpreter redid", policy_vm_fallbacks)
    metrics.read_counters("provgraph_policy_cache_events", "Decision cache events (entries is a gauge)",
                          "event", lambda: {k: v for k, v in pm.cache.stats().items() if k != "entries"})

    async def flusher() -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_S)
            fut = pm.log.flush()
            if fut is not None:
                await asyncio.wrap_future(fut)

    async with in_background(flusher()):
        yield
    stop_records_flag()
    fut = pm.log.flush()
    if fut is not None:
        await asyncio.wrap_future(fut)


def setup_policy(app: web.Application) -> None:
    app.cleanup_ctx.append(policy_ctx)
    add_policy_routes(app.router)
