"""The lean HTTP/1.1 front end (flag `service.http=lean`): the same aiohttp Application (its state,
its start-up and clean-up contexts, its routes and handlers), served by an asyncio protocol on
httptools' parser instead of aiohttp's server.

Why: on one core, aiohttp's own request, protocol and response machinery costs ~90 µs of CPU per
request (a bare `/healthz` is ~110 µs through aiohttp's server, ~20 µs through this one), which is
most of what the P1 mix at 3× peak asks of the core. What it keeps: routing from the app's route
table (literal segments before parameters, 404 and 405 with `Allow`), HEAD for GET routes,
keep-alive, HTTP/1.0, pipelining (answers in order), `Expect: 100-continue`, chunked request
bodies, the body size limit (413), 400 for malformed requests, the JSON error shape and the
per-route latency histogram. What it leaves out: streaming responses (every handler here answers
with a whole body), WebSockets and protocol upgrades.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import signal
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from concurrent.futures import Future
from email.utils import formatdate
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

import httptools
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from provgraph._core import uuid7
from provgraph._tcp import nodelay_transport
from provgraph.service.http import Request
from provgraph.service.keys import CONFIG, METRICS
from provgraph.service.middleware import (
    REQUEST_ID,
    REQUEST_ID_HEADER,
    error_body,
    error_response,
    request_id_for,
)

__all__ = ["DeferredResponse", "LeanRequest", "LeanServer", "Router", "serve_lean"]

log = logging.getLogger(__name__)

LeanHandler = Callable[[Request], Awaitable[web.StreamResponse]]
_SEGMENT_PARAM = "[^{}/]+"  # aiohttp's pattern for a plain {name}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_PIPELINE_MAX = 32  # queued requests on one connection before it stops reading
_MAX_HEAD = 64 * 1024  # request line, or all header names and values (431 beyond)
KEEPALIVE_TIMEOUT_S = 75.0  # an idle keep-alive connection is closed after this (aiohttp's default)
_NO_BODY_STATUS = frozenset({204, 304})
_SKIP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "date"})


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
        "app",
        "continue_owed",
        "headers",
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
        self._query: MultiDictProxy[str] | None = None
        self.match_info: dict[str, str] = {}
        self.route: Route | None = None
        self.too_large = False
        self.continue_owed = False  # Expect: 100-continue, while an earlier request is being answered
        self.request_id = ""  # set by LeanServer.respond

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

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.router = Router(app)
        self.metrics = app[METRICS]
        self.config = app[CONFIG]
        self.max_body = app[CONFIG].max_body_bytes
        self.connections: set[_Connection] = set()
        self.date = _DateHeader()
        self.loop = asyncio.get_running_loop()

    def __call__(self) -> _Connection:
        return _Connection(self)

    async def respond(self, req: LeanRequest, conn: _Connection) -> bytes | None:
        """The whole encoded response to one request, or None when the handler deferred it
        (`conn.deferred_done` gets it then)."""
        t0 = time.perf_counter()
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

    def _finish(self, req: LeanRequest, response: web.StreamResponse, t0: float) -> bytes:
        route = req.route
        self.metrics.observe_request(req.method, route.canonical if route is not None else "unmatched",
                                     response.status, time.perf_counter() - t0)
        return self.encode(response, req.method == "HEAD", req.keep_alive, req.request_id)

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

    def encode(self, response: web.StreamResponse, head: bool, keep_alive: bool, request_id: str = "") -> bytes:
        body = getattr(response, "body", None)
        if body is None:
            body = b""
        elif not isinstance(body, (bytes, bytearray)):
            log.error("lean server: %s answered with a streamed body", type(response).__name__)
            response = web.Response(body=error_body("internal_error", "internal error", {}), status=500,
                                    content_type="application/json")
            body = response.body
            assert isinstance(body, bytes)
        status = response.status
        out = [f"HTTP/1.1 {status} {response.reason}\r\n".encode("latin-1")]
        for name, value in response.headers.items():
            if name.lower() not in _SKIP_HEADERS:
                out.append(f"{name}: {value}\r\n".encode("latin-1"))
        if request_id:  # sane by construction (request_id_for): no CR/LF, ASCII
            out.append(f"X-Request-Id: {request_id}\r\n".encode("ascii"))
        if status not in _NO_BODY_STATUS:
            out.append(b"Content-Length: %d\r\n" % len(body))
        out.append(self.date.get())
        out.append(b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n")
        if not head and status not in _NO_BODY_STATUS:
            out.append(bytes(body))
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
        longer than `idle_s`; how many."""
        cutoff = asyncio.get_running_loop().time() - idle_s
        idle = [c for c in self.connections if not c.busy and c.last_active < cutoff]
        for conn in idle:
            conn.abort()
        return len(idle)

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
        self.transport = nodelay_transport(transport)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)

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
                self._fail(431, "Request Header Fields Too Large", "header_too_large",
                           f"request line and headers over {_MAX_HEAD} bytes")
            else:
                log.error("lean server: parser callback failed", exc_info=exc)
                self._fail(500, "Internal Server Error", "internal_error", "internal error")
        except httptools.HttpParserError:
            self._fail(400, "Bad Request", "bad_request", "malformed HTTP request")

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._reset()

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
        req = self.pending = self._request()
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
            except Exception:  # noqa: BLE001 - broken() logs it
                self.broken(req)
                return
            if data is None:  # deferred: deferred_done writes it and goes on
                return
            next_req = self._sent(req, data)

    def broken(self, req: LeanRequest) -> None:
        """Encoding the answer to `req` failed: nothing sensible can follow on this connection."""
        log.exception("lean server: answering %s %s failed", req.method, req.path)
        self.busy = False
        self.abort()

    def deferred_done(self, req: LeanRequest, data: bytes) -> None:
        """The answer to a deferred request, on the loop: write it, then go on with the queue."""
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

    def _fail(self, status: int, reason: str, code: str, message: str) -> None:
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


async def serve_lean(app: web.Application, host: str, port: int, backlog: int,
                     print_fn: Callable[[str], None] = print, shutdown_timeout: float = 60.0,
                     keepalive_timeout: float = KEEPALIVE_TIMEOUT_S, ssl_context: ssl.SSLContext | None = None,
                     ) -> None:
    """Run `app` behind the lean front end until SIGINT or SIGTERM: start-up contexts first (they
    drain the receipt outbox before anything listens), then listen; on a signal stop accepting,
    finish the requests being answered, then run the clean-up contexts. With `ssl_context`, HTTPS."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    lean = LeanServer(app)
    server = await loop.create_server(lean, host, port, backlog=backlog, ssl=ssl_context)

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(min(5.0, keepalive_timeout / 2))
            lean.sweep(keepalive_timeout)

    sweeping = loop.create_task(sweeper())
    try:
        scheme = "https" if ssl_context is not None else "http"
        print_fn(f"======== Running on {scheme}://{host}:{port} (lean HTTP front end) ========\n(Press CTRL+C to quit)")
        await stop.wait()
    finally:
        sweeping.cancel()
        server.close()
        await lean.close(shutdown_timeout)
        await server.wait_closed()
        await runner.cleanup()
