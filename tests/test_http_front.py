"""The two HTTP front ends (flag service.http: lean, the default, and aiohttp, the rollback) behave
the same on the wire: over raw sockets, pipelining, HEAD, 100-continue, chunked bodies, body limits,
malformed requests, routing errors, percent-encoded paths, HTTP/1.0 and Connection: close; streamed
answers (chunked with backpressure, files with ranges), outgoing header checks, and the lean front
end's refusal of middlewares and signals it does not run."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import ADMIN_KEY, Server
from provgraph.bench.loadgen import parse_response
from provgraph.policy.bundle import load_example_bundle

LIMIT = 4096
AUTH = f"Authorization: Bearer {ADMIN_KEY}\r\n"


# lean-task: the lean front end with service.dispatch=task (each request answered by a Task, the
# rollback of eager dispatch)
@pytest.fixture(scope="module", params=["lean", "lean-task", "aiohttp"])
def front(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    http, _, dispatch = request.param.partition("-")
    flags = ["--flag", f"service.http={http}"] + (["--flag", f"service.dispatch={dispatch}"] if dispatch else [])
    s = Server(tmp_path_factory.mktemp(f"front-{request.param}") / "data", ADMIN_KEY,
               [*flags, "--max-body-bytes", str(LIMIT)])
    s.start()
    s.api().new_tenant("acme")
    yield s
    s.stop()


class Raw:
    """One TCP connection that sends bytes as given and parses responses as they come."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = bytearray()
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, head: bool = False) -> tuple[int, bytes, bytes, bool]:
        """(status, head bytes, body, keep-alive) of the next final response."""
        while True:
            got = parse_response(self.buf, head)
            if got is not None:
                status, start, end, keep_alive = got
                head_bytes, body = bytes(self.buf[:start]), bytes(self.buf[start:end])
                del self.buf[:end]
                return status, head_bytes, body, keep_alive
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; unparsed: {bytes(self.buf)[:200]!r}")
            self.buf += chunk

    def closed(self) -> bool:
        """True once the server has closed the connection (after any buffered bytes)."""
        try:
            while chunk := self.sock.recv(65536):
                self.buf += chunk
        except (ConnectionResetError, TimeoutError):
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def _get(path: str, extra: str = "", version: str = "1.1", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: x\r\n{extra}\r\n".encode()


def _post(path: str, body: bytes, extra: str = AUTH) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def _error_code(body: bytes) -> str:
    return str(orjson.loads(body)["error"]["code"])


def _tenants(front: Server) -> list[str]:
    return list(front.api().ok("GET", "/v1/admin/tenants")["tenants"])


def test_pipelined_requests_are_answered_in_order(front: Server) -> None:
    c = Raw(front.port)
    try:
        c.send(_get("/healthz") + _get("/nope") + _get("/v1/admin/tenants", AUTH) + _get("/readyz"))
        answers = [c.response() for _ in range(4)]
        assert [a[0] for a in answers] == [200, 404, 200, 200]
        assert orjson.loads(answers[0][2]) == {"status": "ok"}
        assert _error_code(answers[1][2]) == "not_found"
        assert "acme" in orjson.loads(answers[2][2])["tenants"]
        assert orjson.loads(answers[3][2]) == {"ready": True}
        assert all(a[3] for a in answers)  # still keep-alive
    finally:
        c.close()


def test_head_has_the_get_headers_and_no_body(front: Server) -> None:
    c = Raw(front.port)
    try:
        c.send(_get("/healthz", method="HEAD") + _get("/healthz"))
        status, head, body, _ = c.response(head=True)
        assert status == 200 and body == b""
        assert b"content-length: 15\r\n" in head.lower()
        assert c.response()[2] == b'{"status":"ok"}'  # the next response starts right after the head
    finally:
        c.close()


def test_routing_errors_are_json_with_allow(front: Server) -> None:
    c = Raw(front.port)
    try:
        c.send(_get("/healthz", method="DELETE"))
        status, head, body, _ = c.response()
        assert status == 405 and _error_code(body) == "method_not_allowed"
        allow = [line for line in head.decode().split("\r\n") if line.lower().startswith("allow:")]
        assert allow and set(allow[0].split(":", 1)[1].strip().split(",")) == {"GET", "HEAD"}
        c.send(_get("/v1/tenants/acme/no-such-thing", AUTH))
        status, _, body, _ = c.response()
        assert status == 404 and _error_code(body) == "not_found"
    finally:
        c.close()


def test_percent_encoded_path_parameters_are_decoded(front: Server) -> None:
    c = Raw(front.port)
    try:
        c.send(_get("/v1/tenants/ac%6De/graph/stats", AUTH))
        status, _, body, _ = c.response()
        assert status == 200, body
        c.send(_get("/v1/tenants/n%6Fne/graph/stats", AUTH))
        status, _, body, _ = c.response()
        assert status == 404 and _error_code(body) == "unknown_tenant"
    finally:
        c.close()


def test_expect_100_continue(front: Server) -> None:
    body = orjson.dumps({"tenant_id": "continued"})
    c = Raw(front.port)
    try:
        head = (f"POST /v1/admin/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n{AUTH}\r\n").encode()
        c.send(head)
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in c.buf and time.monotonic() < deadline:
            c.buf += c.sock.recv(65536)
        assert bytes(c.buf).startswith(b"HTTP/1.1 100 Continue\r\n")
        c.send(body)
        status, _, answer, _ = c.response()
        assert status == 201 and orjson.loads(answer) == {"tenant_id": "continued"}
    finally:
        c.close()
    assert "continued" in _tenants(front)


def test_chunked_request_body(front: Server) -> None:
    body = orjson.dumps({"tenant_id": "chunky"})
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:5], body[5:])) + b"0\r\n\r\n"
    c = Raw(front.port)
    try:
        c.send(f"POST /v1/admin/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Transfer-Encoding: chunked\r\n{AUTH}\r\n".encode() + chunks)
        status, _, answer, _ = c.response()
        assert status == 201, answer
    finally:
        c.close()
    assert "chunky" in _tenants(front)


@pytest.mark.parametrize("chunked", [False, True])
def test_body_over_the_limit_is_413_and_writes_nothing(front: Server, chunked: bool) -> None:
    name = f"huge{int(chunked)}"
    body = orjson.dumps({"tenant_id": name, "pad": "x" * (2 * LIMIT)})
    c = Raw(front.port)
    try:
        if chunked:
            c.send(f"POST /v1/admin/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Transfer-Encoding: chunked\r\n{AUTH}\r\n".encode()
                   + b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                              for i in range(0, len(body), 1000)) + b"0\r\n\r\n")
        else:
            c.send(_post("/v1/admin/tenants", body))
        status, _, answer, _ = c.response()
        assert status == 413 and _error_code(answer) == "payload_too_large"
    finally:
        c.close()
    assert name not in _tenants(front)


def test_malformed_request_is_400_and_closes(front: Server) -> None:
    c = Raw(front.port)
    try:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n")
        status, _, _, _ = c.response()
        assert status == 400
        assert c.closed()
    finally:
        c.close()
    assert front.api().ok("GET", "/healthz") == {"status": "ok"}  # the server is unharmed


def test_oversized_head_is_refused_and_closes(front: Server) -> None:
    c = Raw(front.port)
    try:
        c.send(_get("/healthz", f"X-Big: {'y' * 70_000}\r\n"))
        status, _, _, _ = c.response()
        assert status in (400, 431)  # lean: 431 Request Header Fields Too Large; aiohttp: 400 or 431
        assert c.closed()
    finally:
        c.close()


def test_idle_keep_alive_connections_are_closed(front: Server, tmp_path: Path) -> None:
    kind = front.extra[front.extra.index("--flag") + 1]
    s = Server(tmp_path / "data", ADMIN_KEY, ["--flag", kind, "--keepalive-timeout", "1"])
    s.start()
    c = Raw(s.port)
    try:
        c.send(_get("/healthz"))
        assert c.response()[0] == 200
        c.sock.settimeout(10)
        t0 = time.monotonic()
        assert c.closed()  # the server closed the idle connection
        assert 0.5 < time.monotonic() - t0 < 8
    finally:
        c.close()
        s.stop()


@pytest.mark.parametrize(("request_bytes", "keep"), [
    (_get("/healthz", version="1.0"), False),
    (_get("/healthz", "Connection: keep-alive\r\n", version="1.0"), True),
    (_get("/healthz", "Connection: close\r\n"), False),
    (_get("/healthz"), True),
])
def test_connection_persistence(front: Server, request_bytes: bytes, keep: bool) -> None:
    c = Raw(front.port)
    try:
        c.send(request_bytes)
        status, _, body, keep_alive = c.response()
        assert status == 200 and body == b'{"status":"ok"}' and keep_alive == keep
        if keep:
            c.send(_get("/healthz"))
            assert c.response()[0] == 200
        else:
            assert c.closed()
    finally:
        c.close()


def test_front_end_is_a_start_up_flag(front: Server) -> None:
    admin = front.api()
    current = admin.flag("service.http")
    assert admin.ok("GET", "/v1/admin/flags")["flags"]["service.http"]["startup"] is True
    other = "aiohttp" if current == "lean" else "lean"
    status, body = admin.call("PUT", "/v1/admin/flags", {"service.http": other})
    assert status == 409 and body["error"]["details"] == {"flag": "service.http", "current": current}
    assert admin.flag("service.http") == current
    # the same value (a whole flag set PUT back) is accepted
    assert admin.ok("PUT", "/v1/admin/flags", {"service.http": current})["flags"]["service.http"]["value"] == current


def test_route_latency_is_recorded_by_template(front: Server) -> None:
    admin = front.api()
    admin.ok("GET", "/v1/tenants/acme/graph/stats")
    c = Raw(front.port)
    try:
        c.send(_get("/metrics"))
        text = c.response()[2].decode()
    finally:
        c.close()
    assert ('provgraph_http_request_duration_seconds_count{method="GET",'
            'route="/v1/tenants/{tenant}/graph/stats",status="200"}') in text


def test_lean_shutdown_finishes_the_request_being_answered(tmp_path: Path) -> None:
    """SIGINT while a long poll waits: the server stops accepting, answers it, then exits."""
    s = Server(tmp_path / "data", ADMIN_KEY, ["--flag", "service.http=lean"])
    s.start()
    try:
        admin = s.api()
        status, _, _ = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(),
                                 {"Content-Type": "application/gzip"})
        assert status in (200, 201)
        etag = admin.raw("GET", "/v1/bundles/authz/download")[1]["etag"]
        got: dict[str, Any] = {}

        def poll() -> None:
            c = Raw(s.port)
            try:
                c.send(_get("/v1/bundles/authz/download", f"{AUTH}If-None-Match: {etag}\r\nPrefer: wait=2\r\n"))
                got["answer"] = c.response()
            finally:
                c.close()

        t = threading.Thread(target=poll)
        t.start()
        time.sleep(0.5)
        assert s.proc is not None
        s.proc.send_signal(signal.SIGINT)
        t.join(10)
        assert got["answer"][0] == 304
        assert s.proc.wait(10) == 0
    finally:
        s.stop()


def test_lean_router_resolution() -> None:
    from aiohttp import web
    from provgraph.service.lean import Router

    async def h(request: Any) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_post("/t/{tenant}/actions/preflight", h)
    app.router.add_get("/t/{tenant}/actions/{id}", h)
    app.router.add_post("/t/{tenant}/actions:batch", h)
    app.router.add_get("/data/{path:.*}", h)
    app.router.add_get("/data", h)
    router = Router(app)

    def resolve(path: str) -> tuple[str | None, dict[str, str]]:
        route, params = router.resolve(path)
        return (route.canonical if route else None), params

    assert resolve("/t/acme/actions/preflight") == ("/t/{tenant}/actions/preflight", {"tenant": "acme"})
    # the literal route is POST only: a GET of the same path is the parameter route's, as in aiohttp
    assert router.resolve("/t/acme/actions/preflight")[0].handlers.keys() == {"POST"}  # type: ignore[union-attr]
    assert resolve("/t/acme/actions/pf-1") == ("/t/{tenant}/actions/{id}", {"tenant": "acme", "id": "pf-1"})
    assert resolve("/t/acme/actions:batch") == ("/t/{tenant}/actions:batch", {"tenant": "acme"})
    assert resolve("/t/a%2Fb/actions/x%20y") == ("/t/{tenant}/actions/{id}", {"tenant": "a/b", "id": "x y"})
    assert resolve("/data") == ("/data", {})
    assert resolve("/data/a/b/c") == ("/data/{path}", {"path": "a/b/c"})
    assert resolve("/data/") == ("/data/{path}", {"path": ""})
    assert resolve("/t//actions/x") == (None, {})  # an empty segment is no parameter
    assert resolve("/t/acme/actions") == (None, {})
    assert resolve("no-slash") == (None, {})
    assert set(router.routes["/t/{tenant}/actions/{id}"].handlers) == {"GET", "HEAD"}

    bad = web.Application()
    bad.router.add_get(r"/n/{id:\d+}", h)
    with pytest.raises(ValueError, match="unsupported parameter pattern"):
        Router(bad)


def test_100_continue_waits_for_the_answers_before_it(front: Server) -> None:
    """Answers go in request order, the interim 100 too: a request that expects 100-continue,
    pipelined behind another, gets its 100 only after the earlier request's answer."""
    body = orjson.dumps({"tenant_id": "after-healthz"})
    c = Raw(front.port)
    try:
        c.send(_get("/healthz") + (f"POST /v1/admin/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                   f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n{AUTH}\r\n").encode())
        deadline = time.monotonic() + 5
        while b"100 Continue" not in c.buf and time.monotonic() < deadline:
            c.buf += c.sock.recv(65536)
        assert bytes(c.buf).startswith(b"HTTP/1.1 200 ")  # the healthz answer first
        status, _, answer, _ = c.response()
        assert status == 200 and orjson.loads(answer) == {"status": "ok"}
        assert bytes(c.buf).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        del c.buf[:len(b"HTTP/1.1 100 Continue\r\n\r\n")]
        c.send(body)
        status, _, answer, _ = c.response()
        assert status == 201 and orjson.loads(answer) == {"tenant_id": "after-healthz"}
    finally:
        c.close()


@pytest.mark.parametrize("mode", ["lean", "aiohttp"])
def test_listen_backlog_bounds_the_connections_waiting_to_be_accepted(server_factory: Any, mode: str) -> None:
    """`serve --backlog N` is the listen queue: while the server accepts nothing (SIGSTOP) the kernel
    completes the handshake of N + 1 connections and drops the rest's SYNs (they retry after 1 s, 3 s,
    7 s...: why the default is 1024, not the 128 of aiohttp's)."""
    import os
    import select

    def waiting(srv: Server, attempts: int) -> int:
        """Connections whose handshake completed within 0.5 s, of `attempts`, while `srv` is stopped."""
        assert srv.proc is not None
        os.kill(srv.proc.pid, signal.SIGSTOP)
        socks = []
        try:
            for _ in range(attempts):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", srv.port))
                socks.append(s)
            time.sleep(0.5)
            _, writable, _ = select.select([], socks, [], 0)
            return sum(1 for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
            for s in socks:
                s.close()

    small = server_factory(["--flag", f"service.http={mode}", "--backlog", "4"])
    assert 5 <= waiting(small, 16) <= 7  # backlog + 1 (a handshake racing the full queue may slip in)
    assert small.api().ok("GET", "/healthz") == {"status": "ok"}  # serving again once resumed
    default = server_factory(["--flag", f"service.http={mode}"])
    assert waiting(default, 16) == 16


def test_a_deferred_answer_leaves_no_reference_cycle(tmp_path: Path) -> None:
    """The lean front end's answer from a write job's completion (DeferredResponse) frees the job's
    future by reference counting alone: a cycle per answer (future -> its callback -> the deferred
    response -> the future) made the cyclic collector run several times a second at 3x peak."""
    import asyncio
    import gc
    import weakref
    from concurrent.futures import Future

    from aiohttp import web
    from multidict import CIMultiDict, CIMultiDictProxy
    from provgraph.config import Config
    from provgraph.service.app import create_app
    from provgraph.service.lean import DeferredResponse, LeanRequest, LeanServer

    async def answer_one() -> tuple[weakref.ref[Future[Any]], bytes]:
        app = create_app(Config(data_dir=tmp_path / "data"))
        server = LeanServer(app)
        ours, theirs = socket.socketpair()
        theirs.settimeout(10)
        loop = asyncio.get_running_loop()
        transport, conn = await loop.connect_accepted_socket(server, ours)
        req = LeanRequest(app, "POST", "/x", "", CIMultiDictProxy(CIMultiDict()), b"", True)
        fut: Future[Any] = Future()
        conn.busy = True  # as when a request of the connection is being answered
        server._defer(conn, req, time.perf_counter(), DeferredResponse(fut, lambda v: web.json_response(v)))
        fut.set_result({"done": 1})
        ref = weakref.ref(fut)
        del fut
        await asyncio.sleep(0.05)  # the loop callback writes the answer
        data = theirs.recv(65536)
        transport.close()
        await asyncio.sleep(0)
        theirs.close()
        return ref, data

    gc.disable()
    try:
        ref, data = asyncio.run(answer_one())
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b'{"done": 1}')
        assert ref() is None  # no collection ran: only a cycle would keep it
    finally:
        gc.enable()


def test_bundle_revision_must_be_a_printable_token(front: Server) -> None:
    """The first guard against header injection: the revision is echoed in X-Bundle-Revision, so
    one with CR/LF (or any control character or space) is refused at upload, and nothing is stored."""
    admin = front.api()
    for revision in ("r1\r\nX-Evil: 1", "r1\nX-Evil: 1", "r\x00", "two words", "é"):
        status, _, body = admin.raw("PUT", "/v1/bundles/inject", load_example_bundle(revision=revision),
                                    {"Content-Type": "application/gzip"})
        assert status == 400, (revision, body)
        error = orjson.loads(body)["error"]
        assert error["code"] == "bundle_invalid" and error["details"]["reason"] == "revision not a printable token"
    status, _, _ = admin.raw("GET", "/v1/bundles/inject")
    assert status == 404  # nothing was stored
    status, _headers, _ = admin.raw("PUT", "/v1/bundles/inject", load_example_bundle(revision="2026-12-02T03:00:00Z+g1"),
                                   {"Content-Type": "application/gzip"})
    assert status in (200, 201)


# In-process serving: an app built by create_app with test routes added, served by either front end
# on this process's loop; the clients are blocking sockets in threads.

MB = 1 << 20


class _Served:
    """What a test route saw: the chunks a stream produced so far, and the last log records."""

    def __init__(self) -> None:
        self.produced = 0


def _test_app(tmp_path: Path, served: _Served) -> Any:
    from aiohttp import web
    from provgraph.config import Config
    from provgraph.service.app import create_app
    from provgraph.service.http import ChunkedAnswer, FileAnswer, Request, answer_after

    app = create_app(Config(data_dir=tmp_path / "data"))

    async def chunks(request: Request) -> web.StreamResponse:
        n, size, fail = int(request.query["n"]), int(request.query["size"]), int(request.query.get("fail", -1))

        async def produce() -> Any:
            for i in range(n):
                if i == fail:
                    raise RuntimeError("the source of the stream failed")
                served.produced = i + 1
                yield bytes([i % 251]) * size  # a new buffer each time: memory grows unless paused

        return ChunkedAnswer(produce(), content_type="application/x-test")

    async def deferred_chunks(request: Request) -> web.StreamResponse:
        """A stream that starts once a write job (a thread's future) is done, as writes answer."""
        future: Future[int] = Future()
        threading.Timer(0.05, future.set_result, [3]).start()

        async def produce(n: int) -> Any:
            for i in range(n):
                yield b"part %d;" % i

        return await answer_after(request, future, lambda n: ChunkedAnswer(produce(n)))

    async def file(request: Request) -> web.StreamResponse:
        return FileAnswer(tmp_path / request.match_info["name"])

    async def header(request: Request) -> web.StreamResponse:
        response = web.Response(body=b"{}", content_type="application/json")
        response.headers[request.query.get("name", "X-Echo")] = request.query.get("value", "")
        return response

    app.router.add_get("/test/chunks", chunks)
    app.router.add_get("/test/deferred-chunks", deferred_chunks)
    app.router.add_get("/test/file/{name}", file)
    app.router.add_get("/test/header", header)
    return app


def _serve(tmp_path: Path, http: str, client: Any, served: _Served | None = None, app: Any = None) -> Any:
    """Run `client(port)` in a thread while `app` (default: _test_app) is served by `http`; its result."""
    import asyncio

    from aiohttp import web
    from provgraph.service.lean import start_lean

    async def main() -> Any:
        nonlocal app
        app = app if app is not None else _test_app(tmp_path, served or _Served())
        if http == "lean":
            site = await start_lean(app, "127.0.0.1", 0)
            try:
                return await asyncio.to_thread(client, site.port)
            finally:
                await site.close(5)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            return await asyncio.to_thread(client, runner.addresses[0][1])
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def _head(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str]]:
    """Read a response head from `sock` into `buf` (the head removed): status, headers (lower-case)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed in the head: {bytes(buf)[:200]!r}")
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[:end + 4]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


def _exactly(sock: socket.socket, buf: bytearray, n: int) -> bytes:
    while len(buf) < n:
        chunk = sock.recv(max(65536, n - len(buf)))
        if not chunk:
            raise ConnectionError("closed in the body")
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


def _line(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in a chunk size line")
        buf += chunk
    end = buf.index(b"\r\n")
    out = bytes(buf[:end])
    del buf[:end + 2]
    return out


def _chunk(sock: socket.socket, buf: bytearray) -> bytes | None:
    """The next chunk of a chunked body, None after the last (and its empty trailer)."""
    size = int(_line(sock, buf).split(b";")[0], 16)
    if size == 0:
        assert _line(sock, buf) == b""
        return None
    data = _exactly(sock, buf, size)
    assert _line(sock, buf) == b""
    return data


def _response(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """A whole response, with a Content-Length or chunked (aiohttp frames an empty 416 so)."""
    status, headers = _head(sock, buf)
    if headers.get("transfer-encoding") == "chunked":
        parts = []
        while (data := _chunk(sock, buf)) is not None:
            parts.append(data)
        return status, headers, b"".join(parts)
    return status, headers, _exactly(sock, buf, int(headers.get("content-length", "0")))


def _check_pattern(offset: int, data: bytes) -> None:
    """Byte k of a /test/chunks body is (k // MB) % 251."""
    pos = 0
    while pos < len(data):
        block = (offset + pos) // MB
        end = min(len(data), (block + 1) * MB - offset)
        assert data[pos:end] == bytes([block % 251]) * (end - pos), offset + pos
        pos = end


FRONTS = ["lean", "aiohttp"]


@pytest.mark.parametrize("http", FRONTS)
def test_chunked_answer_streams_with_backpressure(tmp_path: Path, http: str) -> None:
    """64 chunks of 1 MB to a client that stops reading after the first: the handler's iterator is
    paused once the kernel's socket buffers and the transport's are full, far before the end; then
    every byte arrives, framed as chunks, and the connection is reused."""
    served = _Served()
    wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    n = 64

    def client(port: int) -> tuple[int, int]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)  # no autotuning to 32 MB
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        try:
            sock.sendall(_get(f"/test/chunks?n={n}&size={MB}"))
            buf = bytearray()
            status, headers = _head(sock, buf)
            assert status == 200 and headers["transfer-encoding"] == "chunked", headers
            assert "content-length" not in headers and headers["content-type"] == "application/x-test"
            got = 0
            while got < MB:
                data = _chunk(sock, buf)
                assert data is not None
                _check_pattern(got, data)
                got += len(data)
            time.sleep(1.0)  # a slow client: the server must stop producing
            paused_at = served.produced
            # what fits in flight: the client's receive buffer, the server's send buffer (up to
            # tcp_wmem's max), the transport's buffer (under a chunk) and the chunk being written
            assert paused_at <= got // MB + (rcvbuf + wmem_max) // MB + 3, (paused_at, rcvbuf, wmem_max)
            while (data := _chunk(sock, buf)) is not None:
                _check_pattern(got, data)
                got += len(data)
            sock.sendall(_get("/healthz"))
            assert _head(sock, buf)[0] == 200  # the connection goes on after the last chunk
            return paused_at, got
        finally:
            sock.close()

    paused_at, got = _serve(tmp_path, http, client, served)
    assert got == n * MB and served.produced == n
    assert paused_at < n // 2


@pytest.mark.parametrize("http", FRONTS)
def test_file_answer_with_byte_ranges(tmp_path: Path, http: str) -> None:
    """A FileAnswer: the whole file with Accept-Ranges, one range (206 with Content-Range), a
    suffix, an open end, unsatisfiable or malformed ranges (416 with the size), HEAD: the same on
    both front ends."""
    content = bytes(range(256)) * 4099  # not a multiple of the read size
    (tmp_path / "blob").write_bytes(content)
    size = len(content)

    def client(port: int) -> list[tuple[int, str | None, bytes]]:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        buf = bytearray()
        try:
            out = []
            for rng in (None, "bytes=0-9", f"bytes={size - 3}-{size + 100}", "bytes=-5", "bytes=1000-",
                        f"bytes={size}-", "bytes=9-2", "bytes=x-y", "bytes=0-1,5-6"):
                sock.sendall(_get("/test/file/blob", f"Range: {rng}\r\n" if rng else ""))
                status, headers, body = _response(sock, buf)
                assert headers.get("connection", "keep-alive") == "keep-alive"
                if status != 416:
                    assert headers["accept-ranges"] == "bytes"
                out.append((status, headers.get("content-range"), body))
            sock.sendall(_get("/test/file/blob", method="HEAD"))
            status, headers = _head(sock, buf)
            assert status == 200 and int(headers["content-length"]) == size
            sock.sendall(_get("/test/file/missing"))
            assert _response(sock, buf)[0] == 404  # the HEAD answer had no body
            return out
        finally:
            sock.close()

    got = _serve(tmp_path, http, client)
    assert got == [
        (200, None, content),
        (206, f"bytes 0-9/{size}", content[:10]),
        (206, f"bytes {size - 3}-{size - 1}/{size}", content[-3:]),
        (206, f"bytes {size - 5}-{size - 1}/{size}", content[-5:]),
        (206, f"bytes 1000-{size - 1}/{size}", content[1000:]),
        (416, f"bytes */{size}", b""),
        (416, f"bytes */{size}", b""),
        (416, f"bytes */{size}", b""),
        (416, f"bytes */{size}", b""),
    ]


def test_large_file_streams_in_flat_memory(tmp_path: Path) -> None:
    """64 MB from a FileAnswer on the lean front end to a client that reads slowly at first: the
    process's resident memory grows by far less than the file (it is never read whole)."""
    import psutil

    size = 64 * MB
    with open(tmp_path / "big", "wb") as f:
        f.writelines(bytes([i % 251]) * MB for i in range(size // MB))
    proc = psutil.Process()

    def client(port: int) -> tuple[int, int]:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            rss0 = peak = proc.memory_info().rss
            sock.sendall(_get("/test/file/big"))
            buf = bytearray()
            status, headers = _head(sock, buf)
            assert status == 200 and int(headers["content-length"]) == size
            time.sleep(1.0)  # slow at first: the server would buffer the rest if it did not wait
            peak = max(peak, proc.memory_info().rss)
            got = len(buf)
            _check_pattern(0, bytes(buf))
            while got < size:
                chunk = sock.recv(min(1 << 20, size - got))
                assert chunk
                _check_pattern(got, chunk)
                got += len(chunk)
                peak = max(peak, proc.memory_info().rss)
            return got, peak - rss0
        finally:
            sock.close()

    got, growth = _serve(tmp_path, "lean", client)
    assert got == size
    assert growth < size // 4, growth


@pytest.mark.parametrize("http", FRONTS)
def test_invalid_outgoing_header_is_a_logged_500(tmp_path: Path, http: str, caplog: pytest.LogCaptureFixture) -> None:
    """The last guard against header injection: an answer whose header name or value has CR, LF,
    another control character or a character beyond ASCII (obs-text too: aiohttp would send it as
    UTF-8, lean as latin-1) becomes a logged 500 (JSON), never a split or broken head; the
    connection goes on, and a valid value passes."""
    from urllib.parse import quote

    cases = [("X-Echo", "a\r\nX-Evil: 1"), ("X-Echo", "a\nX-Evil: 1"), ("X-Echo", "a\x00b"), ("X-Echo", "\u20ac"), ("X-Echo", "caf\u00e9"),
             ("X-Bad Name", "v"), ("X-Evil\r\nX", "v"), ("X-Echo", "a\x7fb")]

    def client(port: int) -> list[tuple[int, bytes, bytes]]:
        c = Raw(port)
        try:
            out = []
            for name, value in [*cases, ("X-Echo", "ok\t1 ~!")]:
                c.send(_get(f"/test/header?name={quote(name)}&value={quote(value)}"))
                status, head, body, keep_alive = c.response()
                assert keep_alive
                out.append((status, head, body))
            return out
        finally:
            c.close()

    with caplog.at_level("ERROR"):
        got = _serve(tmp_path, http, client)
    for (status, head, body), case in zip(got[:-1], cases, strict=True):
        assert status == 500 and _error_code(body) == "internal_error", case
        assert b"evil" not in head.lower() and b"x-echo" not in head.lower() and b"x-bad" not in head.lower(), case
    status, head, _ = got[-1]
    assert status == 200 and b"x-echo: ok\t1 ~!\r\n" in head.lower()
    assert sum("invalid" in r.getMessage() for r in caplog.records) == len(cases)


def test_lean_refuses_an_app_with_a_middleware_or_signal_it_does_not_run(tmp_path: Path) -> None:
    """A middleware added to the app (or an on_response_prepare signal) would run on aiohttp's
    server only: the lean front end refuses to start with it, naming it, before start-up opens the
    store; aiohttp's server runs it. The app create_app builds starts (its one middleware is native)."""
    import asyncio

    from aiohttp import web
    from provgraph.service.lean import UnsupportedAppError, start_lean

    @web.middleware
    async def stamp(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        response.headers["X-Stamped"] = "1"
        return response

    async def prepare(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Prepared"] = "1"

    app = _test_app(tmp_path / "a", _Served())
    app.middlewares.append(stamp)
    with pytest.raises(UnsupportedAppError, match=r"middleware .*stamp.* service\.http=aiohttp"):
        asyncio.run(start_lean(app, "127.0.0.1", 0))
    assert not (tmp_path / "a" / "data").exists()  # refused before start-up opened anything

    def client(port: int) -> bytes:
        c = Raw(port)
        try:
            c.send(_get("/healthz"))
            return c.response()[1]
        finally:
            c.close()

    assert b"x-stamped: 1" in _serve(tmp_path / "a", "aiohttp", client, app=app).lower()

    app = _test_app(tmp_path / "b", _Served())
    app.on_response_prepare.append(prepare)
    with pytest.raises(UnsupportedAppError, match=r"on_response_prepare .*prepare"):
        asyncio.run(start_lean(app, "127.0.0.1", 0))

    assert b"200 OK" in _serve(tmp_path / "c", "lean", client)


@pytest.mark.parametrize("http", FRONTS)
def test_chunked_answer_head_http10_deferred_and_failing(tmp_path: Path, http: str) -> None:
    """HEAD gets the head alone (the next answer follows it); an HTTP/1.0 client gets the body
    unframed, ended by the close; a stream behind a deferred write answer is framed as any other;
    a stream whose source fails part way closes the connection without the last chunk, so the
    client sees a truncated body, never a complete-looking one."""

    def client(port: int) -> tuple[bytes, bytes, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            buf = bytearray()
            sock.sendall(_get("/test/chunks?n=3&size=10", method="HEAD") + _get("/test/deferred-chunks"))
            status, headers = _head(sock, buf)
            assert status == 200 and "content-length" not in headers
            status, headers, deferred = _response(sock, buf)
            assert status == 200 and headers["transfer-encoding"] == "chunked"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            buf = bytearray()
            sock.sendall(_get("/test/chunks?n=3&size=10", version="1.0"))
            status, headers = _head(sock, buf)
            assert status == 200 and "transfer-encoding" not in headers
            assert headers.get("connection", "close") == "close"  # HTTP/1.0: close unless kept alive
            while chunk := sock.recv(65536):
                buf += chunk
            http10 = bytes(buf)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            buf = bytearray()
            sock.sendall(_get("/test/chunks?n=5&size=10&fail=2"))
            assert _head(sock, buf)[0] == 200
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(65536):
                    buf += chunk
            failed = bytes(buf)
        return deferred, http10, failed

    deferred, http10, failed = _serve(tmp_path, http, client)
    assert deferred == b"part 0;part 1;part 2;"
    assert http10 == bytes([0]) * 10 + bytes([1]) * 10 + bytes([2]) * 10
    assert failed.startswith(b"a\r\n" + bytes([0]) * 10 + b"\r\n") and not failed.endswith(b"0\r\n\r\n")
