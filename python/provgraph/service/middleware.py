"""Errors to the JSON error shape and request latency to /metrics: one middleware for the aiohttp
front end, the same two functions for the lean one (provgraph.service.lean)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from provgraph.errors import ProvgraphError
from provgraph.service.keys import METRICS

__all__ = ["error_and_metrics_middleware", "error_body", "error_response"]

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "invalid_value"}


def error_body(code: str, message: str, details: object) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "details": details}})


def _error(status: int, code: str, message: str, details: object) -> web.Response:
    return web.Response(body=error_body(code, message, details), status=status, content_type="application/json")


def error_response(exc: Exception, method: str, path: str) -> web.Response:
    """The JSON error for an exception a handler raised: its own status for provgraph's errors and
    aiohttp's 4xx/5xx (routing, limits), 500 (logged) for anything else. aiohttp's non-error
    exceptions (redirects, 304) are re-raised: they are responses."""
    if isinstance(exc, ProvgraphError):
        return _error(exc.status, exc.code, exc.message, exc.details)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        response = _error(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason, {})
        if "Allow" in exc.headers:  # 405
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return _error(500, "internal_error", "internal error", {})


@web.middleware
async def error_and_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    t0 = time.perf_counter()
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 - error_response logs what it doesn't map
        response = error_response(exc, request.method, request.path)
    info = request.match_info
    route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
    request.app[METRICS].observe_request(request.method, route, response.status, time.perf_counter() - t0)
    return response
