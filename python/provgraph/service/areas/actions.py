"""The actions area: preflight, approvals, execute, receipts; the issuer's run and the preflight sweep."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from provgraph.actions.manager import ActionManager
from provgraph.service.http import in_background
from provgraph.service.keys import (
    ACTIONS,
    CONFIG,
    EVIDENCE,
    GRAPH,
    ISSUER,
    METRICS,
    POLICY,
    STORE,
    WRITER,
)
from provgraph.service.routes_actions import add_action_routes

__all__ = ["setup_actions"]

log = logging.getLogger(__name__)


async def actions_ctx(app: web.Application) -> AsyncIterator[None]:
    """Drain the receipt outbox before serving (nothing acknowledged is lost), then keep issuing and
    sweep the preflights past their retention every `preflight_sweep_interval_s` (a failed sweep is
    logged and tried again at the next interval); drain once more on shutdown."""
    config, metrics, issuer = app[CONFIG], app[METRICS], app[ISSUER]
    actions = ActionManager(app[STORE], app[WRITER], app[POLICY], app[GRAPH], issuer, config.preflight_ttl_s,
                            config.preflight_retention_s, app[EVIDENCE])
    app[ACTIONS] = actions
    stop_records_flag = config.flags.subscribe("records.storage", lambda v: setattr(actions, "compact", v == "compact"))
    metrics.on_scrape(lambda: metrics.preflights_stored.set(actions.stored()))
    issuer.bind(asyncio.get_running_loop())
    await issuer.drain()

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(config.preflight_sweep_interval_s)
            try:
                metrics.preflights_swept.inc(await actions.sweep())
            except Exception:  # logged; the next interval tries again
                log.exception("preflight sweep failed")

    async with in_background(issuer.run()), in_background(sweeper()):
        yield
    stop_records_flag()
    await issuer.drain()


def setup_actions(app: web.Application) -> None:
    app.cleanup_ctx.append(actions_ctx)
    add_action_routes(app.router)
