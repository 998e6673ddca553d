"""The admin area: tenants (their quotas and admission), API keys (their last-use times) and the flag
registry's routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from provgraph.service.admission import Admission
from provgraph.service.http import in_background
from provgraph.service.keys import ADMISSION, CONFIG, METRICS, REGISTRY
from provgraph.service.routes_admin import add_admin_routes

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


def setup_admin(app: web.Application) -> None:
    app[ADMISSION] = Admission()
    app.cleanup_ctx.append(admission_ctx)
    app.cleanup_ctx.append(key_usage_ctx)
    add_admin_routes(app.router)
