"""The composition root: `create_app` builds the aiohttp Application from the areas' `setup_<area>`
calls, in the order their start-up must run; `follow_process` is what the entry point that serves it
adds (process globals)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from provgraph.config import Config
from provgraph.flags import subscribe_process
from provgraph.service.areas import (
    setup_actions,
    setup_admin,
    setup_evidence,
    setup_graph,
    setup_health,
    setup_policy,
    setup_storage,
)
from provgraph.service.keys import CONFIG, METRICS, READY
from provgraph.service.metrics import Metrics
from provgraph.service.middleware import error_and_metrics_middleware

__all__ = ["create_app", "follow_process"]


def create_app(config: Config | None = None) -> web.Application:
    """The service's application. Each area's start-up runs in this order and its clean-up in the
    reverse: storage (store, writer, tenants and keys, signing keys, the receipt issuer, the audit
    trail) first, as every other area writes through it; health last, so /readyz says ready only once
    every area has started. Sets no process globals (see `follow_process`)."""
    config = config or Config()
    # error_and_metrics is the only middleware: it wraps every handler, errors included (the lean
    # front end runs it natively and refuses to serve an app that declares any other).
    app = web.Application(middlewares=[error_and_metrics_middleware], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[READY] = {"ready": False}
    setup_storage(app)
    setup_evidence(app)
    setup_graph(app)
    setup_policy(app)
    setup_actions(app)
    setup_admin(app)
    setup_health(app)
    return app


def follow_process(app: web.Application) -> None:
    """What the entry point serving `app` adds, and create_app does not, so an app built elsewhere (a
    test) leaves the process alone: the process follows the process-wide flags (GIL switch interval,
    runtime.gc) and /metrics watches the cyclic collector's pauses, while it serves. Start-up contexts
    run first (aiohttp puts them at the head of on_startup): what start-up built is what
    runtime.gc=frozen freezes; at clean-up the heap goes back to the collector."""
    stop: list[Callable[[], None]] = []

    async def follow(app: web.Application) -> None:
        stop.append(app[METRICS].watch_collector())
        stop.append(subscribe_process(app[CONFIG].flags))

    async def release(app: web.Application) -> None:
        for s in reversed(stop):
            s()

    app.on_startup.append(follow)
    app.on_cleanup.append(release)
