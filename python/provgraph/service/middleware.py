"""Errors to the JSON error shape, request ids and request latency to /metrics: one middleware for
the aiohttp front end, the same functions for the lean one (provgraph.service.lean)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

import orjson
from aiohttp import web

from provgraph._core import uuid7
from provgraph.errors import ProvgraphError
from provgraph.service.keys import METRICS, SCHEDULER
from provgraph.service.scheduling import ACCOUNT_KEY, Account

__all__ = ["HEADER_NAME", "HEADER_VALUE", "REQUEST_ID", "REQUEST_ID_HEADER", "RequestIdLogFilter",
           "error_and_metrics_middleware", "error_body", "error_response", "invalid_header",
           "invalid_header_response", "request_id_for"]

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID_HEADER = "X-Request-Id"
# The id of the request being answered, for error bodies and log lines; each request runs in a
# context of its own (a Task's, or run_eagerly's copy), so setting it never leaks into another.
REQUEST_ID: ContextVar[str | None] = ContextVar("provgraph_request_id", default=None)
_MAX_REQUEST_ID = 128

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "invalid_value"}

# RFC 9110: a name is a token; a value is visible ASCII, space or tab. No CR, LF, NUL or other
# control character gets into a response head. obs-text (latin-1 0x80-0xff) is refused too: it is
# obsolete, and the two front ends would send it differently (aiohttp encodes UTF-8, lean latin-1).
HEADER_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
HEADER_VALUE = r"[\t\x20-\x7e]*"
_NAME, _VALUE = re.compile(HEADER_NAME), re.compile(HEADER_VALUE)


def invalid_header(response: web.StreamResponse) -> str | None:
    """What is wrong with the first header of `response` (or its reason phrase) that must not go
    on the wire, or None when every one may."""
    if not _VALUE.fullmatch(response.reason):
        return f"reason phrase {response.reason!r}"
    for name, value in response.headers.items():
        if not _NAME.fullmatch(name):
            return f"header name {name!r}"
        if not _VALUE.fullmatch(value):
            return f"value of {name}: {value!r}"
    return None


def invalid_header_response(problem: str, method: str, path: str) -> web.Response:
    """The logged 500 that replaces an answer whose head would be broken (header injection)."""
    log.error("answer to %s %s has an invalid %s: answering 500 instead", method, path, problem)
    return _error(500, "internal_error", "internal error", {})


def request_id_for(sent: str | None) -> str:
    """The id of a request whose X-Request-Id header is `sent` (None: absent): the client's own
    when it is sane — 1 to 128 printable ASCII characters, no space, so it is safe to echo in a
    response head and a log line — else a fresh UUIDv7."""
    if sent and len(sent) <= _MAX_REQUEST_ID and sent.isascii() and sent.isprintable() and " " not in sent:
        return sent
    return uuid7()


class RequestIdLogFilter(logging.Filter):
    """Gives every log record a `request_id` attribute: the id of the request being answered when
    it was logged, or "-" outside any request (a record may also bring its own, via `extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True


def error_body(code: str, message: str, details: object, request_id: str | None = None) -> bytes:
    """The JSON error shape; `request_id` defaults to the id of the request being answered (a
    fresh one outside any request, so that every error body carries one)."""
    rid = request_id or REQUEST_ID.get() or uuid7()
    return orjson.dumps({"error": {"code": code, "message": message, "details": details, "request_id": rid}})


def _error(status: int, code: str, message: str, details: object) -> web.Response:
    return web.Response(body=error_body(code, message, details), status=status, content_type="application/json")


def error_response(exc: Exception, method: str, path: str) -> web.Response:
    """The JSON error for an exception a handler raised: its own status for provgraph's errors and
    aiohttp's 4xx/5xx (routing, limits), 500 (logged) for anything else. aiohttp's non-error
    exceptions (redirects, 304) are re-raised: they are responses. A client error is logged at
    INFO: with the request id in the line, it is what ties a client's report to the server's log."""
    if isinstance(exc, ProvgraphError):
        if exc.status >= 500:
            log.error("%s %s: %d %s: %s", method, path, exc.status, exc.code, exc.message)
        else:
            log.info("%s %s: %d %s: %s", method, path, exc.status, exc.code, exc.message)
        response = _error(exc.status, exc.code, exc.message, exc.details)
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = _HTTP_CODES.get(exc.status, "http_error")
        log.info("%s %s: %d %s", method, path, exc.status, code)
        response = _error(exc.status, code, exc.reason, {})
        if "Allow" in exc.headers:  # 405
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return _error(500, "internal_error", "internal error", {})


@web.middleware
async def error_and_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    t0 = time.perf_counter()
    request[ACCOUNT_KEY] = account = Account()
    rid = request_id_for(request.headers.get(REQUEST_ID_HEADER))
    token = REQUEST_ID.set(rid)  # reset below: aiohttp answers a connection's requests in one task
    try:
        try:
            if request.version < (1, 0):
                # aiohttp's parser takes a request line without a version as HTTP/0.9 (at times, with
                # the close right behind it); the lean front end refuses it, so this one does too
                raise web.HTTPBadRequest(reason="Bad Request: no HTTP version")
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:  # a redirect or 304 is an answer: it carries the id too
                exc.headers[REQUEST_ID_HEADER] = rid
            response = error_response(exc, request.method, request.path)
        except Exception as exc:  # noqa: BLE001 - error_response logs what it doesn't map
            response = error_response(exc, request.method, request.path)
        # aiohttp refuses CR/LF in a header when it prepares the answer, but only with a bare 500 and a
        # log line outside this middleware; here the answer is checked the way the lean front end does.
        problem = invalid_header(response)
        if problem is not None:
            response = invalid_header_response(problem, request.method, request.path)
        if not response.prepared:  # a streamed answer has sent its head already
            response.headers[REQUEST_ID_HEADER] = rid
        info = request.match_info
        route = info.route.resource.canonical if info.route.resource is not None else "unmatched"
        seconds = time.perf_counter() - t0
        request.app[METRICS].observe_request(request.method, route, response.status, seconds)
        scheduler = request.app.get(SCHEDULER)  # an app built without the admin area has none
        if scheduler is not None:
            scheduler.charge(account, seconds)
        return response
    finally:
        account.release()  # answered, failed or cancelled (the client went away): its slot is free
        REQUEST_ID.reset(token)
