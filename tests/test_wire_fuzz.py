"""Malformed requests against both HTTP front ends (lean, aiohttp): a fixed list of shapes (truncated
and oversized heads, Content-Length + Transfer-Encoding smuggling, conflicting lengths, bad chunk
sizes and extensions, NUL bytes, bare LF, HTTP/0.9, garbage) and a seeded random mutation loop.
Each is answered with a 4xx or a closed connection, within a socket timeout, never a 5xx or a
crash, and the server answers /healthz afterwards."""

from __future__ import annotations

import errno
import re
import socket
import time
from collections.abc import Iterator

import pytest
from conftest import ADMIN_KEY, Server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

READ_TIMEOUT_S = 5.0  # a connection not answered and closed by then is a hang
_STATUS = re.compile(rb"HTTP/(?:1\.[01]|0\.9) (\d{3}) ")

# Every base is a request the server refuses even when it parses (no API key: 401; or a 404), so
# any 2xx in an answer means a request hidden inside another one (smuggling) was answered.
POST = b"POST /v1/admin/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
BODY = b'{"tenant_id":"fuzz"}'
SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


SHAPES: dict[str, bytes] = {
    "truncated request line": b"GET /healthz HT",
    "truncated head": POST + b"Content-Length: 20\r\n",
    "truncated body": POST + b"Content-Length: 200\r\n\r\n" + BODY,
    "oversized request line": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "oversized header value": POST + b"X-Big: " + b"y" * 100_000 + b"\r\n\r\n",
    "oversized header count": POST + b"".join(b"X-%d: v\r\n" % i for i in range(20_000)) + b"\r\n",
    "CL.TE smuggle": POST + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "TE.CL smuggle": POST + b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "TE with space before colon": POST + b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
                                  + SMUGGLED,
    "TE not chunked last": POST + b"Transfer-Encoding: chunked, identity\r\n\r\n" + _chunked(BODY) + SMUGGLED,
    "TE xchunked": POST + b"Transfer-Encoding: xchunked\r\n\r\n" + _chunked(BODY) + SMUGGLED,
    "TE twice": POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + _chunked(BODY),
    "TE obs-fold": POST + b"Transfer-Encoding:\r\n chunked\r\n\r\n" + _chunked(BODY) + SMUGGLED,
    "conflicting Content-Length": POST + b"Content-Length: 20\r\nContent-Length: 5\r\n\r\n" + BODY,
    "Content-Length list": POST + b"Content-Length: 20, 5\r\n\r\n" + BODY,
    "Content-Length signed": POST + b"Content-Length: +20\r\n\r\n" + BODY,
    "Content-Length negative": POST + b"Content-Length: -1\r\n\r\n" + BODY,
    "Content-Length hex": POST + b"Content-Length: 0x14\r\n\r\n" + BODY,
    "Content-Length overflow": POST + b"Content-Length: 99999999999999999999999999\r\n\r\n" + BODY,
    "chunk size not hex": POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + BODY + b"\r\n0\r\n\r\n",
    "chunk size negative": POST + b"Transfer-Encoding: chunked\r\n\r\n-1\r\n" + BODY + b"\r\n0\r\n\r\n",
    "chunk size overflow": POST + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffffff\r\n" + BODY,
    "chunk shorter than its size": POST + b"Transfer-Encoding: chunked\r\n\r\n30\r\n" + BODY + b"\r\n0\r\n\r\n"
                                   + SMUGGLED,
    "chunk longer than its size": POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\n" + BODY + b"\r\n0\r\n\r\n",
    "chunk extension with NUL": POST + b"Transfer-Encoding: chunked\r\n\r\n14;a\x00b\r\n" + BODY + b"\r\n0\r\n\r\n",
    "chunk extension with bare CR": POST + b"Transfer-Encoding: chunked\r\n\r\n14;a\rb\r\n" + BODY
                                    + b"\r\n0\r\n\r\n",
    "chunk extension unterminated quote": POST + b'Transfer-Encoding: chunked\r\n\r\n14;a="b\r\n' + BODY
                                          + b"\r\n0\r\n\r\n",
    "chunk without CRLF after data": POST + b"Transfer-Encoding: chunked\r\n\r\n14\r\n" + BODY + b"XX0\r\n\r\n",
    "NUL in URL": b"GET /heal\x00thz HTTP/1.1\r\nHost: x\r\n\r\n",
    "NUL in header value": POST + b"X-A: a\x00b\r\nContent-Length: 20\r\n\r\n" + BODY,
    "NUL in header name": POST + b"X-\x00A: b\r\nContent-Length: 20\r\n\r\n" + BODY,
    "NUL in method": b"G\x00T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare LF line ends": POST.replace(b"\r\n", b"\n") + b"Content-Length: 20\n\n" + BODY,
    "bare CR line ends": POST.replace(b"\r\n", b"\r") + b"Content-Length: 20\r\r" + BODY,
    "header without colon": POST + b"Content-Length 20\r\n\r\n" + BODY,
    "space in header name": POST + b"Content Length: 20\r\n\r\n" + BODY,
    "obs-fold": POST + b"X-A: a\r\n b\r\nContent-Length: 20\r\n\r\n" + BODY,
    "HTTP/0.9": b"GET /healthz\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "HTTP/1.2": b"GET /healthz HTTP/1.2\r\nHost: x\r\n\r\n",
    "HTTP/11": b"GET /healthz HTTP/11\r\nHost: x\r\n\r\n",
    "lower-case version": b"GET /healthz http/1.1\r\nHost: x\r\n\r\n",
    "space in method": b"G ET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "control in method": b"GET\x01 /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "no target": b"GET HTTP/1.1\r\nHost: x\r\n\r\n",
    "TLS client hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
    "binary garbage": bytes(range(256)) * 4,
    "only line ends": b"\r\n" * 5000,
    "NUL bytes": b"\x00" * 1000,
    "valid then garbage": POST + b"Content-Length: 20\r\n\r\n" + BODY + b"\x00\x01garbage\r\n\r\n",
}


@pytest.fixture(scope="module", params=["lean", "aiohttp"])
def front(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp(f"fuzz-{request.param}") / "data", ADMIN_KEY,
               ["--flag", f"service.http={request.param}", "--max-body-bytes", "65536"])
    s.start()
    yield s
    s.stop()


def exchange(port: int, data: bytes) -> tuple[list[int], bytes]:
    """Send `data`, end the sending side, read until the server closes: the statuses answered
    and the raw answer. A connection still open after READ_TIMEOUT_S fails the test (a hang)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S)
    raw = bytearray()
    try:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused part way (a head too large) and closed: read what it said
        except OSError as exc:  # ENOTCONN: it closed (and reset) between our last send and the shutdown
            if exc.errno != errno.ENOTCONN:
                raise
        deadline = time.monotonic() + READ_TIMEOUT_S
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"no close within {READ_TIMEOUT_S} s; answered {bytes(raw)[:200]!r}")
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"hang: no close within {READ_TIMEOUT_S} s; answered {bytes(raw)[:200]!r}"
                                     ) from None
            if not chunk:
                break
            raw += chunk
    finally:
        sock.close()
    return [int(m) for m in _STATUS.findall(bytes(raw))], bytes(raw)


def _alive(front: Server) -> None:
    assert front.proc is not None and front.proc.poll() is None, "the server exited"
    assert front.api().ok("GET", "/healthz") == {"status": "ok"}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_malformed_shape_is_refused(front: Server, shape: str) -> None:
    statuses, raw = exchange(front.port, SHAPES[shape])
    versions: tuple[bytes, ...] = (b"HTTP/1.1 ", b"HTTP/1.0 ")
    if shape == "HTTP/0.9" and "service.http=aiohttp" in front.extra:
        # aiohttp's parser at times takes it as HTTP/0.9 and writes its status line with the
        # request's version; the middleware makes that answer a 400 (the lean front end: HTTP/1.1 400)
        versions += (b"HTTP/0.9 400 ",)
    assert not raw or raw.startswith(versions), raw[:200]
    assert all(400 <= s < 500 for s in statuses), (statuses, raw[:300])
    _alive(front)


def test_only_the_refused_tenant_exists(front: Server) -> None:
    """No shape created anything (every POST lacked a key, or was refused before a handler)."""
    assert "fuzz" not in front.api().ok("GET", "/v1/admin/tenants")["tenants"]


_BASES = [
    POST + b"Content-Length: 20\r\n\r\n" + BODY,
    POST + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(BODY),
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"GET /v1/tenants/acme/graph/stats?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
]
_INTERESTING = b"\r\n\x00 :;,-+0fF\t\x7f\xff"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A base request with a few mutations: a byte replaced, inserted or deleted, a span
    duplicated, or the request cut short."""
    data = bytearray(draw(st.sampled_from(_BASES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "duplicate", "truncate"]))
        pos = draw(st.integers(0, len(data) - 1))
        byte = draw(st.one_of(st.sampled_from(list(_INTERESTING)), st.integers(0, 255)))
        if op == "replace":
            data[pos] = byte
        elif op == "insert":
            data.insert(pos, byte)
        elif op == "delete" and len(data) > 1:
            del data[pos]
        elif op == "duplicate":
            end = min(len(data), pos + draw(st.integers(1, 40)))
            data[pos:pos] = data[pos:end]
        elif op == "truncate" and pos > 0:
            del data[pos:]
    return bytes(data)


@settings(max_examples=300, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_requests(front: Server, data: bytes) -> None:
    """Seeded (derandomize): the same 300 mutations each run. A mutation may leave a request valid
    (answered as usual); it must never get a 5xx, a non-HTTP/1.x answer or a hang."""
    statuses, raw = exchange(front.port, data)
    assert not raw or raw.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), (data, raw[:200])
    assert all(s < 500 for s in statuses), (data, statuses, raw[:300])


def test_alive_after_the_mutations(front: Server) -> None:
    _alive(front)
