"""The granian front end (flag `service.http=granian`): the same aiohttp Application served by
granian (a Rust HTTP server, hyper + tokio) through its RSGI interface, with a thin adapter of the
app's `Request` protocol. A candidate measured against the lean and aiohttp front ends by
`python -m provgraph.bench frontends`; the adapter's cost is part of what that measures.

granian runs the application in a worker process it starts (one worker: one core's worth of
Python), so the service configuration travels to it in an environment variable. The worker builds
the app with `create_app`, runs its start-up contexts before it serves and its clean-up contexts
when granian stops it (SIGINT/SIGTERM to the main process).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from provgraph.config import Config
from provgraph.service.http import ChunkedAnswer, FileAnswer
from provgraph.service.keys import CONFIG, METRICS
from provgraph.service.lean import Router, check_app, plan_file
from provgraph.service.middleware import (
    REQUEST_ID,
    REQUEST_ID_HEADER,
    error_response,
    invalid_header,
    invalid_header_response,
    request_id_for,
)

__all__ = ["RsgiFront", "serve_granian", "worker_app"]

_CONFIG_ENV = "PROVGRAPH_RSGI_CONFIG"
_MAX_HEAD = 64 * 1024  # the whole request head, as the lean front end limits its header names and values
_NO_BODY_STATUS = frozenset({204, 304})
_SKIP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


class _Headers(Mapping[str, str]):
    """granian's request headers (lower-case names) looked up case-insensitively."""

    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getitem__(self, name: str) -> str:
        value = self.inner.get(name.lower())
        if value is None:
            raise KeyError(name)
        return str(value)

    def get(self, name: str, default: Any = None) -> Any:
        value = self.inner.get(name.lower())
        return default if value is None else value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.inner

    def __iter__(self) -> Iterator[str]:
        return iter(self.inner.keys())

    def __len__(self) -> int:
        return len(self.inner.keys())


class RsgiRequest:
    """The part of aiohttp's `web.Request` that provgraph's handlers use, over an RSGI scope."""

    __slots__ = ("_body", "_proto", "_query", "app", "headers", "match_info", "method", "path", "query_string")

    def __init__(self, app: web.Application, scope: Any, proto: Any, match_info: dict[str, str]) -> None:
        self.app, self._proto, self.match_info = app, proto, match_info
        self.method: str = scope.method
        self.path: str = scope.path
        self.query_string: str = scope.query_string
        self.headers = _Headers(scope.headers)
        self._query: MultiDictProxy[str] | None = None
        self._body: bytes | None = None

    @property
    def query(self) -> Mapping[str, str]:
        if self._query is None:
            self._query = MultiDictProxy(MultiDict(parse_qsl(self.query_string, keep_blank_values=True)))
        return self._query

    @property
    def content_type(self) -> str:
        raw = self.headers.get("content-type")
        if not raw:
            return "application/octet-stream"
        return str(raw).split(";", 1)[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        raw = self.headers.get("content-length")
        return int(raw) if raw is not None and str(raw).isdigit() else None

    @property
    def can_read_body(self) -> bool:
        return (self.content_length or 0) > 0 or "transfer-encoding" in self.headers

    async def read(self) -> bytes:
        if self._body is None:
            limit = self.app[CONFIG].max_body_bytes
            length = self.content_length
            if length is not None and length > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
            body = await self._proto()
            if len(body) > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
            self._body = bytes(body)
        return self._body


class RsgiFront:
    """The RSGI application granian's worker calls: routes with the lean front end's router (the
    app's own route table), answers through the app's handlers, errors through the one mapping."""

    def __init__(self, app: web.Application) -> None:
        check_app(app)  # what the app declares and the lean front end would not run, this one does not either
        self.app = app
        self.router = Router(app)
        self.metrics = app[METRICS]
        self.runner: web.AppRunner | None = None

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        loop.run_until_complete(self.runner.setup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.runner is not None:
            loop.run_until_complete(self.runner.cleanup())

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        t0 = time.perf_counter()
        route, params = self.router.resolve(scope.path)
        req = RsgiRequest(self.app, scope, proto, params)
        rid = request_id_for(req.headers.get(REQUEST_ID_HEADER))
        try:
            if route is None:
                raise web.HTTPNotFound()
            handler = route.handlers.get(req.method)
            if handler is None:
                raise web.HTTPMethodNotAllowed(req.method, sorted(route.handlers))
            response = await handler(req)
        except Exception as exc:  # noqa: BLE001 - error_response logs what it doesn't map
            if isinstance(exc, web.HTTPException) and exc.status < 400:
                response = exc
            else:
                # granian steps every request's coroutine in one shared context: the id is set only
                # around this synchronous call (its body and log line), never across an await.
                token = REQUEST_ID.set(rid)
                try:
                    response = error_response(exc, req.method, req.path)
                finally:
                    REQUEST_ID.reset(token)
        problem = invalid_header(response)
        if problem is not None:  # never a broken head on the wire: a logged 500 instead
            token = REQUEST_ID.set(rid)
            try:
                response = invalid_header_response(problem, req.method, req.path)
            finally:
                REQUEST_ID.reset(token)
        response.headers[REQUEST_ID_HEADER] = rid
        self.metrics.observe_request(req.method, route.canonical if route is not None else "unmatched",
                                     response.status, time.perf_counter() - t0)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _SKIP_HEADERS]
        if isinstance(response, FileAnswer):
            planned = plan_file(response, req.headers.get("range"), req.method, req.path)
            if isinstance(planned, web.StreamResponse):
                planned.headers[REQUEST_ID_HEADER] = rid
                response, headers = planned, [(k, v) for k, v in planned.headers.items()
                                              if k.lower() not in _SKIP_HEADERS]
            else:
                headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _SKIP_HEADERS]
                start, count = planned
                if response.status == 416:
                    proto.response_empty(416, headers)
                elif response.status == 206:
                    proto.response_file_range(206, headers, str(response.path), start, start + count)
                else:
                    proto.response_file(response.status, headers, str(response.path))
                return
        if isinstance(response, ChunkedAnswer):
            transport = proto.response_stream(response.status, headers)
            if req.method != "HEAD":
                async for chunk in response.chunks:  # send_bytes waits while the client is slow
                    if chunk:
                        await transport.send_bytes(chunk)
            return
        body = getattr(response, "body", None) or b""
        if isinstance(body, (bytes, bytearray)) and response.status not in _NO_BODY_STATUS:
            proto.response_bytes(response.status, headers, bytes(body))  # hyper drops it for HEAD
        else:
            proto.response_empty(response.status, headers)


def worker_app() -> RsgiFront:
    """granian's target factory, called in its worker process: the app from the configuration
    `serve_granian` put in the environment."""
    from provgraph.flags import FlagRegistry
    from provgraph.service.app import create_app, follow_process

    raw = orjson.loads(os.environ[_CONFIG_ENV])
    raw["data_dir"] = Path(raw["data_dir"])
    raw["flags"] = FlagRegistry("optimized", raw["flags"])  # every value given: the profile is moot
    app = create_app(Config(**raw))
    follow_process(app)
    return RsgiFront(app)


def serve_granian(config: Config, backlog: int, keepalive_timeout: float, tls_cert: str | None = None,
                  tls_key: str | None = None) -> None:
    """Serve `config`'s app with granian (one worker process, uvloop) until SIGINT or SIGTERM. A
    request head must arrive within the keep-alive timeout (hyper's header read timeout, which also
    closes a keep-alive connection idle that long); heads are limited to 64 KiB as on the lean front end."""
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.http import HTTP1Settings

    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields["data_dir"] = str(fields["data_dir"])
    fields["flags"] = config.flags.values()
    os.environ[_CONFIG_ENV] = orjson.dumps(fields).decode()
    Granian("provgraph.service.rsgi:worker_app", address=config.host, port=config.port,
            interface=Interfaces.RSGI, workers=1, loop=Loops.uvloop, backlog=backlog, factory=True,
            log_access=False, runtime_threads=1,
            ssl_cert=Path(tls_cert) if tls_cert else None, ssl_key=Path(tls_key) if tls_key else None,
            http1_settings=HTTP1Settings(header_read_timeout=int(keepalive_timeout * 1000),
                                         max_buffer_size=_MAX_HEAD)).serve()
