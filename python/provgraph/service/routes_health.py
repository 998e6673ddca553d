"""Unauthenticated routes: liveness, readiness, Prometheus metrics (behind a bearer token when the server
has one: --metrics-token) and the OpenAPI document."""

from __future__ import annotations

import hmac
from pathlib import Path

import orjson
from aiohttp import web

from provgraph.errors import UnauthorizedError
from provgraph.service.http import Request, json_response
from provgraph.service.keys import CONFIG, METRICS, READY

__all__ = ["OPENAPI_PATH", "add_health_routes"]

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
_HEALTH = orjson.dumps({"status": "ok"})


async def healthz(request: Request) -> web.Response:
    return web.Response(body=_HEALTH, content_type="application/json")


async def readyz(request: Request) -> web.Response:
    ready = request.app[READY]
    return json_response({"ready": ready.get("ready", False)}, status=200 if ready.get("ready") else 503)


async def metrics(request: Request) -> web.Response:
    token = request.app[CONFIG].metrics_token
    if token is not None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise UnauthorizedError("/metrics needs the server's metrics bearer token")
    return web.Response(body=request.app[METRICS].render(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def openapi(request: Request) -> web.Response:
    return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/json")


def add_health_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/healthz", healthz)
    router.add_get("/readyz", readyz)
    router.add_get("/metrics", metrics)
    router.add_get("/openapi.json", openapi)
