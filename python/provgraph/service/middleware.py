"""The one middleware: maps every error to the JSON error shape and records request latency."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from provgraph.errors import ProvgraphError
from provgraph.service.keys import METRICS

__all__ = ["error_and_metrics_middleware"]

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "invalid_value"}


def _error(status: int, code: str, message: str, details: object) -> web.Response:
    body = orjson.dumps({"error": {"code": code, "message": message, "details": details}})
    return web.Response(body=body, status=status, content_type="application/json")


@web.middleware
async def error_and_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    t0 = time.perf_counter()
    try:
        response = await handler(request)
    except ProvgraphError as exc:
        response = _error(exc.status, exc.code, exc.message, exc.details)
    except web.HTTPException as exc:  # routing (404/405) and aiohttp's own limits (413)
        if exc.status < 400:
            raise
        response = _error(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason, {})
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = _error(500, "internal_error", "internal error", {})
    info = request.match_info
    route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
    request.app[METRICS].request_seconds.labels(request.method, route, str(response.status)).observe(
        time.perf_counter() - t0
    )
    return response
