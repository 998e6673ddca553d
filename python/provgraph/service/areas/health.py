"""The health area: liveness, readiness (set once every area's start-up has run), /metrics, /openapi.json."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from provgraph.service.keys import READY
from provgraph.service.routes_health import add_health_routes

__all__ = ["setup_health"]


async def ready_ctx(app: web.Application) -> AsyncIterator[None]:
    """Ready once the contexts before this one have started; not ready as soon as shutdown begins."""
    app[READY]["ready"] = True
    yield
    app[READY]["ready"] = False


def setup_health(app: web.Application) -> None:
    """Call last: readiness means every area set up before it has started."""
    app.cleanup_ctx.append(ready_ctx)
    add_health_routes(app.router)
