"""The lean HTTP/1.1 front end (flag `service.http=lean`): the same aiohttp Application (its state,
its start-up and clean-up contexts, its routes and handlers), served by an asyncio protocol on
httptools' parser instead of aiohttp's server.

Why: on one core, aiohttp's own request, protocol and response machinery costs ~90 µs of CPU per
request (a bare `/healthz` is ~110 µs through aiohttp's server, ~20 µs through this one), which is
most of what the P1 mix at 3× peak asks of the core. What it keeps: routing from the app's route
table (literal segments before parameters, 404 and 405 with `Allow`), HEAD for GET routes,
keep-alive, HTTP/1.0, pipelining (answers in order), `Expect: 100-continue`, chunked request
bodies, the body size limit (413), 400 for malformed requests, the JSON error shape and the
per-route latency histogram, streamed answers (ChunkedAnswer, FileAnswer with byte ranges; writes
pause while the client is slow), a time limit on each request head (408) and a cap on connections.
Every outgoing head is checked (no CR/LF or other control characters, printable ASCII only): one
that fails becomes a logged 500. What it leaves out: WebSockets and protocol upgrades, and any middleware or
signal it does not implement: `check_app` refuses such an app at start-up rather than serve it
differently from aiohttp's server.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import signal
import ssl
import time
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Mapping,
)
from concurrent.futures import Future
from email.utils import formatdate
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

import httptools
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from provgraph._core import uuid7
from provgraph._tcp import nodelay_transport
from provgraph.service.http import ChunkedAnswer, FileAnswer, Request, byte_range
from provgraph.service.keys import CONFIG, METRICS, SCHEDULER
from provgraph.service.middleware import (
    HEADER_NAME,
    HEADER_VALUE,
    REQUEST_ID,
    REQUEST_ID_HEADER,
    error_and_metrics_middleware,
    error_body,
    error_response,
    invalid_header,
    invalid_header_response,
    request_id_for,
)
from provgraph.service.scheduling import Account

__all__ = ["DeferredResponse", "LeanRequest", "LeanServer", "LeanSite", "Router", "UnsupportedAppError",
           "check_app", "serve_lean", "start_lean"]

log = logging.getLogger(__name__)

LeanHandler = Callable[[Request], Awaitable[web.StreamResponse]]
_SEGMENT_PARAM = "[^{}/]+"  # aiohttp's pattern for a plain {name}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_PIPELINE_MAX = 32  # queued requests on one connection before it stops reading
LINGER_S = 5.0  # after a 413, what the client still sends is read and dropped this long at most
_MAX_HEAD = 64 * 1024  # request line, or all header names and values (431 beyond)
KEEPALIVE_TIMEOUT_S = 75.0  # an idle keep-alive connection is closed after this (aiohttp's default)
HEAD_TIMEOUT_S = 10.0  # a request head (from its first byte, or from connecting) must be whole by then
MAX_CONNECTIONS = 10_000  # open connections; one more is closed as soon as it is accepted
_FILE_CHUNK = 256 * 1024
_STATUS_OK = re.compile(rf"HTTP/1\.1 \d{{3}} {HEADER_VALUE}\r\n")
_HEADER_OK = re.compile(rf"{HEADER_NAME}: {HEADER_VALUE}\r\n")
_LINE_CACHE_MAX = 4096  # checked head lines kept; cleared when full (ETags and the like churn it)
_NO_BODY_STATUS = frozenset({204, 304})
_SKIP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "date"})

# What the lean front end does itself of what an aiohttp app may declare. A middleware runs around
# every handler on aiohttp's server: one not listed here would run on one front end only, so
# check_app refuses the app. Start-up, shutdown and clean-up signals (and cleanup_ctx) are run by
# the AppRunner serve_lean uses, as on aiohttp's server; on_response_prepare is not run.
NATIVE_MIDDLEWARES: dict[object, str] = {
    error_and_metrics_middleware: "errors to the JSON shape and the latency histogram (LeanServer.respond/_finish)",
}
_UNSUPPORTED_SIGNALS = ("on_response_prepare",)


class UnsupportedAppError(RuntimeError):
    """The app declares something the lean front end would not run: serve it with
    --flag service.http=aiohttp, or implement it here."""


def check_app(app: web.Application) -> None:
    """Refuse (UnsupportedAppError, naming it) a middleware, signal, sub-application or resource
    kind the lean front end does not implement."""
    for mw in app.middlewares:
        if mw not in NATIVE_MIDDLEWARES:
            name = getattr(mw, "__qualname__", repr(mw))
            raise UnsupportedAppError(
                f"lean front end: the app declares middleware {getattr(mw, '__module__', '?')}.{name}, which it "
                "does not run; implement it in provgraph.service.lean (NATIVE_MIDDLEWARES) or serve with "
                "--flag service.http=aiohttp")
    for signal_name in _UNSUPPORTED_SIGNALS:
        for cb in getattr(app, signal_name):
            raise UnsupportedAppError(
                f"lean front end: the app declares a {signal_name} callback "
                f"({getattr(cb, '__qualname__', repr(cb))}), which it does not run; serve with "
                "--flag service.http=aiohttp")
    for resource in app.router.resources():
        if not isinstance(resource, (web.PlainResource, web.DynamicResource)):
            raise UnsupportedAppError(
                f"lean front end: the app has a {type(resource).__name__} ({resource.canonical}), which it "
                "does not serve; serve with --flag service.http=aiohttp")


class Route:
    __slots__ = ("canonical", "handlers")

    def __init__(self, canonical: str) -> None:
        self.canonical = canonical
        self.handlers: dict[str, LeanHandler] = {}


class _Node:
    __slots__ = ("literal", "param", "route", "tail")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.param: tuple[str, _Node] | None = None
        self.tail: tuple[str, Route] | None = None  # {name:.*}: the rest of the path
        self.route: Route | None = None


class Router:
    """Resolves a path to (route, match_info) with a segment trie built from an aiohttp router's
    routes. A literal segment is tried before a parameter; a route that matches the path but not the
    method answers 405 with the methods that would."""

    def __init__(self, app: web.Application) -> None:
        self.root = _Node()
        self.routes: dict[str, Route] = {}
        for r in app.router.routes():
            resource = r.resource
            if resource is None:
                continue
            route = self._add(resource.canonical, resource.get_info().get("pattern"))
            # provgraph's handlers are written against the Request protocol, which LeanRequest meets.
            route.handlers[r.method] = cast(LeanHandler, r.handler)

    def _add(self, canonical: str, pattern: re.Pattern[str] | None) -> Route:
        route = self.routes.get(canonical)
        if route is not None:
            return route
        route = self.routes[canonical] = Route(canonical)
        node = self.root
        parts = canonical.split("/")[1:]
        for i, part in enumerate(parts):
            if part.startswith("{") and part.endswith("}"):
                name = part[1:-1]
                group = re.search(rf"\(\?P<{re.escape(name)}>(.*?)\)(?:\\?/|$)",
                                  pattern.pattern if pattern is not None else "")
                if group is None:
                    raise ValueError(f"lean router: cannot read the pattern of {canonical!r}")
                if group.group(1) == _SEGMENT_PARAM:
                    if node.param is None:
                        node.param = (name, _Node())
                    elif node.param[0] != name:
                        raise ValueError(f"lean router: {canonical!r} names a parameter differently")
                    node = node.param[1]
                    continue
                if group.group(1) == ".*" and i == len(parts) - 1:
                    node.tail = (name, route)
                    return route
                raise ValueError(f"lean router: unsupported parameter pattern in {canonical!r}")
            node = node.literal.setdefault(part, _Node())
        node.route = route
        return route

    def resolve(self, path: str) -> tuple[Route | None, dict[str, str]]:
        """The route for `path` (None: 404) and the decoded parameters."""
        parts = path.split("/")
        if parts[0] != "":
            return None, {}
        params: dict[str, str] = {}
        route = self._walk(self.root, parts, 1, params)
        return route, params

    def _walk(self, node: _Node, parts: list[str], i: int, params: dict[str, str]) -> Route | None:
        if i == len(parts):
            return node.route
        part = parts[i]
        child = node.literal.get(unquote(part) if "%" in part else part)
        if child is not None:
            found = self._walk(child, parts, i + 1, params)
            if found is not None:
                return found
        if node.param is not None and part:
            name, child = node.param
            found = self._walk(child, parts, i + 1, params)
            if found is not None:
                params[name] = unquote(part) if "%" in part else part
                return found
        if node.tail is not None:
            rest = "/".join(parts[i:])
            params[node.tail[0]] = unquote(rest) if "%" in rest else rest
            return node.tail[1]
        return None


class _HeadTooLarge(Exception):
    pass


class _NoVersion(Exception):
    """An HTTP/0.9 request line (no version): llhttp accepts it, nothing here answers in 0.9."""


class _Body:
    """A body to stream: `chunks` (count -1: chunked encoding, or, not `framed`, for an HTTP/1.0
    client, the body ends with the connection), or `count` bytes of the file at `path` from `start`."""

    __slots__ = ("chunks", "count", "framed", "path", "start")

    def __init__(self, chunks: AsyncIterable[bytes] | None, path: os.PathLike[str] | None, start: int,
                 count: int, framed: bool = True) -> None:
        self.chunks, self.path, self.start, self.count, self.framed = chunks, path, start, count, framed

    async def pieces(self) -> AsyncIterator[bytes]:
        """The body as written to the wire."""
        if self.chunks is not None:
            async for chunk in self.chunks:
                if not chunk:  # an empty chunk would be the terminator
                    continue
                if not self.framed:
                    yield chunk
                elif len(chunk) < 4096:
                    yield b"%x\r\n%b\r\n" % (len(chunk), chunk)
                else:  # a large chunk goes out as it is, not copied into a framed one
                    yield b"%x\r\n" % len(chunk)
                    yield chunk
                    yield b"\r\n"
            if self.framed:
                yield b"0\r\n\r\n"
            return
        assert self.path is not None
        loop = asyncio.get_running_loop()
        with open(self.path, "rb") as f:  # noqa: ASYNC230 - opening is quick; reads go to a thread
            f.seek(self.start)
            left = self.count
            while left > 0:
                piece = await loop.run_in_executor(None, f.read, min(left, _FILE_CHUNK))
                if not piece:
                    raise OSError(f"{self.path}: shorter than its size when the answer started")
                left -= len(piece)
                yield piece


class _Stream:
    """An encoded head and the body to stream after it."""

    __slots__ = ("body", "head")

    def __init__(self, head: bytes, body: _Body) -> None:
        self.head, self.body = head, body


def _error_for(exc: Exception, req: LeanRequest) -> web.StreamResponse:
    """What a handler's exception answers: aiohttp's non-error exceptions (304...) are responses
    themselves; every other one maps to the JSON error shape (error_response)."""
    if isinstance(exc, web.HTTPException) and exc.status < 400:
        return exc
    return error_response(exc, req.method, req.path)


class DeferredResponse(web.StreamResponse):
    """A handler's answer that is not ready yet: it is `finalize(result)` once `future` (a write
    job) is done. The lean front end writes it from the one loop callback the future's completion
    schedules, instead of resuming the handler (an await of a thread's future costs two loop turns:
    one to set the asyncio future, one to wake the task)."""

    def __init__(self, future: Future[Any], finalize: Callable[[Any], web.StreamResponse]) -> None:
        super().__init__()
        self.future, self.finalize = future, finalize


class _Rest(Coroutine[Any, Any, None]):
    """The rest of a request's coroutine that waited when it was started eagerly (`run_eagerly`),
    for a Task to run: the Task's first step gets what the coroutine yielded (the future it waits
    on), every later value or exception goes into the coroutine, as with `yield from`. A class, not
    a generator: a Task cancelled before its first step throws into it, and that must reach the
    coroutine (a generator not yet started would raise it at its first line instead)."""

    __slots__ = ("coro", "first", "started")

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        self.coro, self.first, self.started = coro, yielded, False

    def send(self, value: Any) -> Any:
        if not self.started:
            self.started = True
            first, self.first = self.first, None
            return first
        return self.coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self.started, self.first = True, None
        return self.coro.throw(typ, val, tb) if val is not None or tb is not None else self.coro.throw(typ)

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError("_Rest is run by a Task, never awaited")


def run_eagerly(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` (answering a request) now, on the caller's stack, up to its first real wait; only
    if it waits does a Task take over the rest (flag service.dispatch=eager; Python 3.12's eager
    tasks). A request whose handler answers without waiting (every hot-path route: queries,
    decisions, preflights, reads, and the deferred writes) is answered within the `data_received`
    that completed it: no Task, and no turn of the loop behind every callback queued meanwhile.
    Each request runs in its own copy of the context, as a Task would."""
    ctx = contextvars.copy_context()
    try:
        yielded = ctx.run(coro.send, None)
    except StopIteration:
        return
    except Exception:  # _answer handles its own errors: this is a bug, log it
        log.exception("lean server: answering a request failed")
        return
    loop.create_task(_Rest(coro, yielded), context=ctx)


class LeanRequest:
    """The part of aiohttp's `web.Request` that provgraph's handlers use."""

    __slots__ = (
        "_body",
        "_query",
        "account",
        "app",
        "continue_owed",
        "headers",
        "http10",
        "keep_alive",
        "match_info",
        "method",
        "path",
        "query_string",
        "request_id",
        "route",
        "too_large",
    )

    def __init__(self, app: web.Application, method: str, path: str, query_string: str,
                 headers: CIMultiDictProxy[str], body: bytes, keep_alive: bool) -> None:
        self.app, self.method, self.path, self.query_string = app, method, path, query_string
        self.headers, self._body, self.keep_alive = headers, body, keep_alive
        self.http10 = False  # chunked answers are not framed for it
        self._query: MultiDictProxy[str] | None = None
        self.match_info: dict[str, str] = {}
        self.route: Route | None = None
        self.too_large = False
        self.continue_owed = False  # Expect: 100-continue, while an earlier request is being answered
        self.request_id = ""  # set by LeanServer.respond
        self.account: Account | None = None  # set by LeanServer.respond

    @property
    def query(self) -> Mapping[str, str]:
        if self._query is None:
            self._query = MultiDictProxy(MultiDict(parse_qsl(self.query_string, keep_blank_values=True)))
        return self._query

    @property
    def content_type(self) -> str:
        raw = self.headers.get("Content-Type")
        if not raw:
            return "application/octet-stream"  # aiohttp's default, per RFC 9110
        return raw.split(";", 1)[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        return int(raw) if raw is not None and raw.isdigit() else None

    @property
    def can_read_body(self) -> bool:
        return bool(self._body) or self.too_large

    def defer(self, future: Future[Any], finalize: Callable[[Any], web.StreamResponse]) -> DeferredResponse:
        return DeferredResponse(future, finalize)

    def set_body(self, body: bytes) -> None:
        self._body = body

    async def read(self) -> bytes:
        if self.too_large:
            limit = self.app[CONFIG].max_body_bytes
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=limit + 1)
        return self._body


def plan_file(answer: FileAnswer, range_header: str | None, method: str, path: str
              ) -> web.StreamResponse | tuple[int, int]:
    """Where the bytes of `answer` come from for a request's Range (as aiohttp's FileResponse reads
    it: one range; 416 when it is malformed or starts past the end): (start, count), with the
    answer's status and range headers set; or the error answer when the file cannot be read."""
    try:
        size = os.stat(answer.path).st_size
    except OSError as exc:
        return error_response(web.HTTPNotFound() if isinstance(exc, FileNotFoundError) else exc, method, path)
    start, count = 0, size
    if range_header is not None:
        got = byte_range(range_header, size)
        if got is None:
            answer.set_status(416)
            answer.headers["Content-Range"] = f"bytes */{size}"
            return 0, 0
        start, count = got
        answer.set_status(206)
        answer.headers["Content-Range"] = f"bytes {start}-{start + count - 1}/{size}"
    answer.headers["Accept-Ranges"] = "bytes"
    return start, count


class _DateHeader:
    """`Date:` formatted once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = f"Date: {formatdate(now, usegmt=True)}\r\n".encode()
        return self.value


class LeanServer:
    """Accepted connections and what answers them."""

    def __init__(self, app: web.Application, head_timeout: float = HEAD_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        check_app(app)
        self.app = app
        self.head_timeout, self.max_connections = head_timeout, max_connections
        self.refused = 0  # connections closed at once: the cap was reached
        self.router = Router(app)
        self.metrics = app[METRICS]
        self.scheduler = app.get(SCHEDULER)  # an app built without the admin area has none
        self.config = app[CONFIG]
        self.max_body = app[CONFIG].max_body_bytes
        self.connections: set[_Connection] = set()
        self.date = _DateHeader()
        # (status, reason) or (name, value) -> its checked, encoded line (b"" for a framing header
        # the front end writes itself): most answers reuse a handful of lines, checked once
        self.lines: dict[tuple[int | str, str], bytes] = {}
        self.loop = asyncio.get_running_loop()

    def __call__(self) -> _Connection:
        return _Connection(self)

    async def respond(self, req: LeanRequest, conn: _Connection) -> bytes | _Stream | None:
        """The whole encoded response to one request (or its head and the body to stream), or None
        when the handler deferred it (`conn.deferred_done` gets it then)."""
        t0 = time.perf_counter()
        req.account = Account()
        # No reset: each request runs in a context of its own (run_eagerly's copy, or a Task's).
        REQUEST_ID.set(rid := request_id_for(req.headers.get(REQUEST_ID_HEADER)))
        req.request_id = rid
        route, req.match_info = self.router.resolve(req.path)
        req.route = route
        handler = None
        if route is not None:
            handler = route.handlers.get(req.method)
        try:
            if handler is None:
                if route is None:
                    raise web.HTTPNotFound()
                raise web.HTTPMethodNotAllowed(req.method, sorted(route.handlers))
            response = await handler(req)
        except Exception as exc:  # noqa: BLE001 - _error_for logs what it doesn't map
            response = _error_for(exc, req)
        if isinstance(response, DeferredResponse):
            self._defer(conn, req, t0, response)
            return None
        return self._finish(req, response, t0)

    def _finish(self, req: LeanRequest, response: web.StreamResponse, t0: float) -> bytes | _Stream:
        if req.account is not None:  # answered: its tenant's concurrency slot is free
            req.account.release()
        body: bytes | _Body
        if isinstance(response, FileAnswer):
            response, body = self._file(req, response)
        elif isinstance(response, ChunkedAnswer):
            if req.http10:  # no chunked encoding in HTTP/1.0: the close ends the body
                req.keep_alive = False
            body = _Body(response.chunks, None, 0, -1, framed=not req.http10)
        else:
            raw = getattr(response, "body", None)
            if raw is None:
                body = b""
            elif isinstance(raw, (bytes, bytearray)):
                body = bytes(raw)
            else:
                log.error("lean server: %s answered with a streamed body", type(response).__name__)
                response = error_response(RuntimeError("streamed body"), req.method, req.path)
                body = response.body  # type: ignore[assignment]
        head = self.head(response)
        if head is None:
            response = invalid_header_response(invalid_header(response) or "head", req.method, req.path)
            body = response.body  # type: ignore[assignment]
            head = self.head(response)
            assert head is not None
        route = req.route
        seconds = time.perf_counter() - t0
        self.metrics.observe_request(req.method, route.canonical if route is not None else "unmatched",
                                     response.status, seconds)
        if req.account is not None and self.scheduler is not None:
            self.scheduler.charge(req.account, seconds)
        # sane by construction (request_id_for: printable ASCII, no space): no check needed
        head.append(f"X-Request-Id: {req.request_id}\r\n".encode("ascii"))
        return self.encode(head, response.status, body, req.method == "HEAD", req.keep_alive)

    def _file(self, req: LeanRequest, answer: FileAnswer) -> tuple[web.StreamResponse, bytes | _Body]:
        planned = plan_file(answer, req.headers.get("Range"), req.method, req.path)
        if isinstance(planned, web.StreamResponse):
            return planned, b""
        start, count = planned
        return answer, (b"" if answer.status == 416 else _Body(None, answer.path, start, count))

    def head(self, response: web.StreamResponse) -> list[bytes] | None:
        """The status line and headers of `response`, encoded, or None when one would break the
        head (CR, LF or another control character, a name that is not a token, beyond ASCII)."""
        lines = self.lines
        status: tuple[int | str, str] = (response.status, response.reason)
        line = lines.get(status)
        if line is None:
            line = self._line(status, _STATUS_OK, f"HTTP/1.1 {status[0]} {status[1]}\r\n")
            if line is None:
                return None
        out = [line]
        for item in response.headers.items():
            line = lines.get(item)
            if line is None:
                name, value = item
                line = (self._line(item, _HEADER_OK, f"{name}: {value}\r\n")
                        if name.lower() not in _SKIP_HEADERS else b"")
                if line is None:
                    return None
            out.append(line)
        return out

    def _line(self, key: tuple[int | str, str], pattern: re.Pattern[str], text: str) -> bytes | None:
        if not pattern.fullmatch(text):
            return None
        if len(self.lines) >= _LINE_CACHE_MAX:
            self.lines.clear()
        line = self.lines[key] = text.encode("latin-1")
        return line

    def _defer(self, conn: _Connection, req: LeanRequest, t0: float, deferred: DeferredResponse) -> None:
        loop = self.loop
        # Not `deferred` itself: it holds the future, whose callback list would hold this closure —
        # a reference cycle per deferred answer, left for the cyclic collector (at 3x peak it ran
        # ~8 generation-0 collections a second for them).
        finalize = deferred.finalize

        def done(fut: Future[Any]) -> None:  # on the writer thread (or here, if already done)
            try:
                loop.call_soon_threadsafe(self._deferred_done, conn, req, t0, finalize, fut)
            except RuntimeError:  # the loop is closed: the server is gone, and the connection with it
                pass

        deferred.future.add_done_callback(done)

    def _deferred_done(self, conn: _Connection, req: LeanRequest, t0: float,
                       finalize: Callable[[Any], web.StreamResponse], fut: Future[Any]) -> None:
        # No reset: a loop callback runs in a copy of the context it was scheduled from.
        REQUEST_ID.set(req.request_id)
        if req.account is not None:
            req.account.resume()
        try:
            exc = fut.exception()
            if exc is not None:
                raise exc
            response = finalize(fut.result())
        except Exception as exc:  # noqa: BLE001 - _error_for logs what it doesn't map
            response = _error_for(exc, req)
        try:
            data = self._finish(req, response, t0)
        except Exception:  # noqa: BLE001 - broken() logs it
            conn.broken(req)
            return
        conn.deferred_done(req, data)

    def encode(self, out: list[bytes], status: int, body: bytes | _Body, head_only: bool,
               keep_alive: bool) -> bytes | _Stream:
        """The response: `out` (the head lines from `head()`), framing headers, then the body (or,
        for a streamed one, the head and what to stream)."""
        if status not in _NO_BODY_STATUS:
            if not isinstance(body, _Body):
                out.append(b"Content-Length: %d\r\n" % len(body))
            elif body.count < 0:
                if body.framed:
                    out.append(b"Transfer-Encoding: chunked\r\n")
            else:
                out.append(b"Content-Length: %d\r\n" % body.count)
        out.append(self.date.get())
        out.append(b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n")
        if head_only or status in _NO_BODY_STATUS:
            return b"".join(out)
        if isinstance(body, _Body):
            return _Stream(b"".join(out), body)
        out.append(body)
        return b"".join(out)

    def simple(self, status: int, reason: str, code: str, message: str) -> bytes:
        """An error answered before a request reaches a route (malformed request): a fresh id."""
        rid = uuid7()
        log.info("lean server: %d %s: %s", status, code, message, extra={"request_id": rid})
        body = error_body(code, message, {}, rid)
        return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n{REQUEST_ID_HEADER}: {rid}\r\n").encode() + self.date.get() + \
            b"Connection: close\r\n\r\n" + body

    def sweep(self, idle_s: float) -> int:
        """Close the keep-alive connections idle (nothing being answered, nothing read) for
        longer than `idle_s`, and those whose request head is not whole `head_timeout` after it
        began (408; slow clients holding connections open a header line at a time); how many."""
        now = asyncio.get_running_loop().time()
        cutoff, head_cutoff = now - idle_s, now - self.head_timeout
        idle, slow = [], []
        for c in self.connections:
            # not while reading is paused here (too many pipelined requests): that wait is ours
            if c.head_since is not None and c.head_since < head_cutoff and not c.paused:
                slow.append(c)
            elif not c.busy and c.last_active < cutoff:
                idle.append(c)
        for conn in idle:
            conn.abort()
        for conn in slow:
            conn.head_since = None
            conn.fail(408, "Request Timeout", "request_timeout",
                      f"request head not received within {self.head_timeout:g} s")
        return len(idle) + len(slow)

    async def close(self, timeout: float) -> None:
        """Stop reading new requests, let the ones being answered finish (up to `timeout`), close."""
        for conn in list(self.connections):
            conn.shutdown()
        deadline = time.monotonic() + timeout
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.abort()


class _Connection(asyncio.Protocol):
    """One client connection: httptools calls the on_* methods while data_received feeds it."""

    def __init__(self, server: LeanServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[LeanRequest] = deque()
        self.busy = False  # a request of this connection is being answered
        self.closing = False
        self.paused = False
        self.last_words = b""  # written before closing (a malformed request after pipelined ones)
        self.last_active = self.loop.time()
        # when the request head being read began (or the connection opened); None once it is whole
        self.head_since: float | None = self.last_active
        self.drained: asyncio.Future[None] | None = None  # set while the transport's buffer is full
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.head_size = 0
        self.pending: LeanRequest | None = None  # headers complete, body being read
        self.current: LeanRequest | None = None  # dispatched before its body ended (413)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self.server
        if len(server.connections) >= server.max_connections:
            # Closed before reading anything: file descriptors are finite, and a flood of slow
            # clients must not take the ones the server needs (LMDB, its logs, accepted clients).
            self.closing = True
            server.refused += 1
            if server.refused & (server.refused - 1) == 0:  # 1st, 2nd, 4th, 8th...: no log flood
                log.warning("lean server: %d connections open, the cap; closed %d new ones so far",
                            len(server.connections), server.refused)
            transport.abort()  # type: ignore[attr-defined]
            return
        self.transport = nodelay_transport(transport)
        server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)
        self.resume_writing()  # a stream waiting for the buffer to drain ends

    def pause_writing(self) -> None:
        if self.drained is None:
            self.drained = self.loop.create_future()

    def resume_writing(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.closing = True  # the request before the upgrade is answered; nothing after it
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self.fail(431, "Request Header Fields Too Large", "header_too_large",
                           f"request line and headers over {_MAX_HEAD} bytes")
            elif isinstance(exc.__context__, _NoVersion):
                self.fail(400, "Bad Request", "bad_request", "malformed HTTP request: no HTTP version")
            else:
                log.error("lean server: parser callback failed", exc_info=exc)
                self.fail(500, "Internal Server Error", "internal_error", "internal error")
        except httptools.HttpParserError:
            self.fail(400, "Bad Request", "bad_request", "malformed HTTP request")

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._reset()
        self.head_since = self.last_active

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > _MAX_HEAD:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > _MAX_HEAD:
            raise _HeadTooLarge
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.head_since = None
        version = self.parser.get_http_version()
        if version == "0.9":
            raise _NoVersion
        req = self.pending = self._request()
        req.http10 = version == "1.0"
        length = req.content_length
        if length is not None and length > self.server.max_body:
            # Answered now (the handler checks auth, then refuses the body); the body is not read.
            req.too_large, req.keep_alive = True, False
            self.current = req
            self._dispatch(req)
            return
        if req.headers.get("Expect", "").lower() == "100-continue":
            # Answers go in request order: the interim 100 too, once the earlier ones are written.
            if self.busy:
                req.continue_owed = True
            elif self.transport is not None:
                self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self.current is not None:
            return
        self.size += len(body)
        if self.size > self.server.max_body and self.pending is not None:
            self.body.clear()
            self.current = self.pending
            self.current.too_large, self.current.keep_alive = True, False
            self._dispatch(self.current)
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        req = self.pending
        if self.current is None and req is not None:
            req.keep_alive = self.parser.should_keep_alive()
            if self.body:
                req.set_body(self.body[0] if len(self.body) == 1 else b"".join(self.body))
            self._dispatch(req)

    # answering

    def _request(self) -> LeanRequest:
        target = self.url.decode("latin-1")
        path, _, query = target.partition("?")
        method = self.parser.get_method().decode("ascii")
        headers = CIMultiDictProxy(CIMultiDict(self.headers))
        return LeanRequest(self.server.app, method, path, query, headers, b"", self.parser.should_keep_alive())

    def _dispatch(self, req: LeanRequest) -> None:
        if self.busy:
            self.queue.append(req)
            if len(self.queue) >= _PIPELINE_MAX and not self.paused and self.transport is not None:
                self.paused = True
                self.transport.pause_reading()
            return
        self.busy = True
        self._start(req)

    def _start(self, req: LeanRequest) -> None:
        """Answer `req` (and the queue after it): on the spot or in a Task (flag service.dispatch)."""
        if self.server.config.flags["service.dispatch"] == "eager":
            run_eagerly(self.loop, self._answer(req))
        else:
            self.loop.create_task(self._answer(req))

    async def _answer(self, req: LeanRequest) -> None:
        next_req: LeanRequest | None = req
        while next_req is not None:
            req = next_req
            try:
                data = await self.server.respond(req, self)
                if data is None:  # deferred: deferred_done writes it and goes on
                    return
                if isinstance(data, _Stream):
                    if not await self._stream(data):
                        self.busy = False
                        return
                    data = b""
            except Exception:  # noqa: BLE001 - broken() logs it
                self.broken(req)
                return
            next_req = self._sent(req, data)

    async def _stream(self, stream: _Stream) -> bool:
        """Write a streamed answer, waiting whenever the transport's buffer is over its high-water
        mark (memory stays flat for a slow client); False if the connection went away meanwhile."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(stream.head)
        async for piece in stream.body.pieces():
            if transport.is_closing():
                return False
            transport.write(piece)
            self.last_active = self.loop.time()
            if self.drained is not None:
                await self.drained
        return not transport.is_closing()

    async def _stream_deferred(self, req: LeanRequest, stream: _Stream) -> None:
        try:
            if not await self._stream(stream):
                self.busy = False
                return
        except Exception:  # noqa: BLE001 - broken() logs it
            self.broken(req)
            return
        self.deferred_done(req, b"")

    def broken(self, req: LeanRequest) -> None:
        """Encoding the answer to `req` failed: nothing sensible can follow on this connection."""
        log.exception("lean server: answering %s %s failed", req.method, req.path)
        self.busy = False
        self.abort()

    def deferred_done(self, req: LeanRequest, data: bytes | _Stream) -> None:
        """The answer to a deferred request, on the loop: write it, then go on with the queue."""
        if isinstance(data, _Stream):
            self.loop.create_task(self._stream_deferred(req, data))
            return
        next_req = self._sent(req, data)
        if next_req is not None:
            self._start(next_req)

    def _sent(self, req: LeanRequest, data: bytes) -> LeanRequest | None:
        """Write `data`, the answer to `req`; the next queued request to answer, if any (else the
        connection is idle, or closing)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            self.busy = False
            return None
        transport.write(data)
        self.last_active = self.loop.time()  # idle time counts from the last answer too (long polls)
        if not req.keep_alive:
            self.closing = True
            self.busy = False
            if req.too_large:
                self._linger(transport)
            else:
                transport.close()
            return None
        if not self.queue:
            self.busy = False
            if self.closing:
                transport.write(self.last_words)
                transport.close()
            elif self.pending is not None and self.pending.continue_owed:
                self.pending.continue_owed = False
                transport.write(_CONTINUE)
            return None
        if self.paused and len(self.queue) <= _PIPELINE_MAX // 2:
            self.paused = False
            transport.resume_reading()
        return self.queue.popleft()

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close once the client has had the answer to a request whose body was refused unread (413):
        the body may still be arriving, and closing at once would reset the connection under the
        client while it sends, losing the answer it has not read yet (aiohttp's server lingers the
        same way). Half-close (FIN after the answer), discard what arrives, close when the client
        does or after LINGER_S."""
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self.paused:
            self.paused = False
            transport.resume_reading()
        self.loop.call_later(LINGER_S, transport.close)

    def fail(self, status: int, reason: str, code: str, message: str) -> None:
        self.closing = True
        self.last_words = self.server.simple(status, reason, code, message)
        if self.transport is not None and not self.busy:
            self.transport.write(self.last_words)
            self.transport.close()

    def shutdown(self) -> None:
        """Read nothing more; close once the request being answered (if any) is."""
        self.closing = True
        self.queue.clear()
        self.last_words = b""
        if not self.busy and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class LeanSite:
    """A running lean front end: its app started, listening on `port`."""

    def __init__(self, runner: web.AppRunner, lean: LeanServer, server: asyncio.Server,
                 sweeping: asyncio.Task[None]) -> None:
        self.runner, self.lean, self.server, self.sweeping = runner, lean, server, sweeping
        self.port: int = server.sockets[0].getsockname()[1]

    async def close(self, shutdown_timeout: float = 60.0) -> None:
        """Stop accepting, finish the requests being answered, then run the clean-up contexts."""
        self.sweeping.cancel()
        self.server.close()
        try:
            await self.lean.close(shutdown_timeout)
            await self.server.wait_closed()
        finally:
            await self.runner.cleanup()


async def start_lean(app: web.Application, host: str, port: int, backlog: int = 1024,
                     keepalive_timeout: float = KEEPALIVE_TIMEOUT_S, head_timeout: float = HEAD_TIMEOUT_S,
                     max_connections: int = MAX_CONNECTIONS, ssl_context: ssl.SSLContext | None = None,
                     ) -> LeanSite:
    """Check the app (check_app), run its start-up contexts (they drain the receipt outbox before
    anything listens), then listen (port 0: any free port); HTTPS with `ssl_context`."""
    check_app(app)  # before start-up opens anything
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    try:
        lean = LeanServer(app, head_timeout, max_connections)  # checks again: start-up may add
        server = await loop.create_server(lean, host, port, backlog=backlog, ssl=ssl_context)
    except BaseException:
        await runner.cleanup()
        raise

    async def sweeper() -> None:
        while True:
            # a slow head is closed at most a quarter of head_timeout late
            await asyncio.sleep(min(5.0, keepalive_timeout / 2, head_timeout / 4))
            lean.sweep(keepalive_timeout)

    return LeanSite(runner, lean, server, loop.create_task(sweeper()))


async def serve_lean(app: web.Application, host: str, port: int, backlog: int,
                     print_fn: Callable[[str], None] = print, shutdown_timeout: float = 60.0,
                     keepalive_timeout: float = KEEPALIVE_TIMEOUT_S, head_timeout: float = HEAD_TIMEOUT_S,
                     max_connections: int = MAX_CONNECTIONS, ssl_context: ssl.SSLContext | None = None) -> None:
    """Run `app` behind the lean front end until SIGINT or SIGTERM (start_lean); on a signal stop
    accepting, finish the requests being answered, then run the clean-up contexts."""
    site = await start_lean(app, host, port, backlog, keepalive_timeout, head_timeout, max_connections,
                            ssl_context)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        scheme = "https" if ssl_context is not None else "http"
        print_fn(f"======== Running on {scheme}://{host}:{port} (lean HTTP front end) ========\n(Press CTRL+C to quit)")
        await stop.wait()
    finally:
        await site.close(shutdown_timeout)
