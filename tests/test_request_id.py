"""X-Request-Id on every front end (lean, aiohttp): echoed when sane, generated (UUIDv7)
when absent or not, on every answer, in every error body, and in the server's log line for a
failing request."""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from conftest import ADMIN_KEY, Api, Server
from provgraph.policy.bundle import load_example_bundle

LIMIT = 4096


@pytest.fixture(scope="module", params=["lean", "aiohttp"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp(f"rid-{request.param}") / "data", ADMIN_KEY,
               ["--flag", f"service.http={request.param}", "--max-body-bytes", str(LIMIT)])
    s.start()
    yield s
    s.stop()


def _is_uuid7(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 7 and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _log_lines_with(srv: Server, needle: str, timeout: float = 10.0) -> list[str]:
    """The server's log lines containing `needle` (waits for the log to be written)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in srv.log_path.read_text(errors="replace").splitlines() if needle in ln]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_a_sane_id_is_echoed_and_an_absent_one_generated(srv: Server) -> None:
    api = srv.api(None)
    status, headers, _ = api.raw("GET", "/healthz", headers={"X-Request-Id": "client-req-42"})
    assert status == 200 and headers["x-request-id"] == "client-req-42"
    longest = "x" * 128
    assert api.raw("GET", "/healthz", headers={"X-Request-Id": longest})[1]["x-request-id"] == longest
    t0 = int(time.time() * 1000)
    generated = {api.raw("GET", "/healthz")[1]["x-request-id"] for _ in range(20)}
    t1 = int(time.time() * 1000)
    assert len(generated) == 20 and all(_is_uuid7(g) for g in generated), generated
    # UUIDv7: the first 48 bits are the Unix time in ms, so ids sort by when they were made
    assert all(t0 - 5 <= int.from_bytes(uuid.UUID(g).bytes[:6], "big") <= t1 + 5 for g in generated)


@pytest.mark.parametrize("sent", ["x" * 129, "has space", "tab\there", "caf\u00e9", ""],
                         ids=["too-long", "space", "control", "non-ascii", "empty"])
def test_an_insane_id_is_replaced(srv: Server, sent: str) -> None:
    # http.client writes header values as latin-1, so the non-ASCII one reaches the server as é.
    status, headers, _ = srv.api(None).raw("GET", "/healthz", headers={"X-Request-Id": sent})
    assert status == 200 and _is_uuid7(headers["x-request-id"]), headers


def test_every_error_body_carries_the_id_of_its_answer(srv: Server) -> None:
    anon, admin = srv.api(None), srv.api()
    cases: list[tuple[Api, str, str, bytes | None, int]] = [
        (anon, "GET", "/v1/admin/tenants", None, 401),
        (admin.with_key("pga_wrong_key"), "GET", "/v1/admin/tenants", None, 401),
        (admin, "GET", "/no/such/route", None, 404),
        (admin, "DELETE", "/healthz", None, 405),
        (admin, "POST", "/v1/admin/tenants", b'{"tenant_id": ', 400),
        (admin, "POST", "/v1/admin/tenants", b"x" * (2 * LIMIT), 413),
    ]
    for client, method, path, body, want in cases:
        for sent in ("err-" + uuid.uuid4().hex, None):
            headers = {"X-Request-Id": sent} if sent else {}
            status, got, raw = client.raw(method, path, body, headers)
            assert status == want, (method, path, status, raw)
            rid = got["x-request-id"]
            assert rid == sent if sent else _is_uuid7(rid), (sent, rid)
            error = orjson.loads(raw)["error"]
            assert set(error) == {"code", "message", "details", "request_id"} and error["request_id"] == rid, error


def test_the_log_line_of_a_failing_request_carries_its_id(srv: Server) -> None:
    api = srv.api()
    sent = "log-" + uuid.uuid4().hex
    status, headers, _ = api.raw("GET", "/v1/tenants/nobody-here/stats", headers={"X-Request-Id": sent})
    assert status == 404 and headers["x-request-id"] == sent
    lines = _log_lines_with(srv, sent)
    assert len(lines) == 1 and f"[{sent}]" in lines[0] and "/v1/tenants/nobody-here/stats" in lines[0], lines
    # The CLI's format: time, level, logger, [request id], message.
    assert re.match(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO [\w.]+ \[{sent}\] GET ", lines[0]), lines[0]
    # A generated id is in the log line too: the one the client got back.
    status, headers, _ = srv.api(None).raw("GET", "/v1/admin/tenants")
    assert status == 401
    lines = _log_lines_with(srv, headers["x-request-id"])
    assert len(lines) == 1 and "401" in lines[0], lines


def test_ids_on_a_deferred_answer_and_a_deferred_error(srv: Server) -> None:
    """Execute and grant are answered from the write job's completion (lean, write_answer=callback):
    the id still reaches the answer, the error body and the log line."""
    admin = srv.api()
    tenant = "rid-" + uuid.uuid4().hex[:8]
    status, _, body = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(), {"Content-Type": "application/gzip"})
    assert status in (200, 201), body
    op = admin.new_tenant(tenant, roles=("operator",), actor="user:olga")
    action = {"action": "deploy", "resource": {"type": "service", "id": "r1"}, "payload": {}}
    pf = op.ok("POST", f"/v1/tenants/{tenant}/actions/preflight", action, status=201)
    sent = "exec-" + uuid.uuid4().hex
    status, headers, raw = op.raw("POST", f"/v1/tenants/{tenant}/actions/{pf['preflight_id']}/execute", orjson.dumps(action),
                                  {"Content-Type": "application/json", "X-Request-Id": sent})
    assert status == 200 and headers["x-request-id"] == sent, raw
    sent = "grant-" + uuid.uuid4().hex  # deploy needs no approval: the write job refuses the grant
    status, headers, raw = op.raw("POST", f"/v1/tenants/{tenant}/approvals/{pf['preflight_id']}/grant", b"{}", {"Content-Type": "application/json",
                                                                  "X-Request-Id": sent})
    error = orjson.loads(raw)["error"]
    assert status == 409 and headers["x-request-id"] == sent and error["request_id"] == sent, raw
    lines = _log_lines_with(srv, sent)
    assert len(lines) == 1 and "409" in lines[0], lines


def test_pipelined_requests_each_keep_their_own_id(srv: Server) -> None:
    ids = [f"pipe-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    paths = ["/healthz", "/nope", "/healthz", "/v1/admin/tenants"]
    wire = b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\nX-Request-Id: {i}\r\n\r\n".encode() for p, i in zip(paths, ids))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(wire)
        got = b""
        while got.count(b"HTTP/1.1 ") < len(ids) or not got.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
    echoed = re.findall(rb"(?i)x-request-id: ([^\r]+)\r\n", got)
    assert [e.decode() for e in echoed] == ids, got
    assert [int(s) for s in re.findall(rb"HTTP/1.1 (\d{3})", got)] == [200, 404, 200, 401]
    for rid in (ids[1], ids[3]):
        assert f'"request_id":"{rid}"'.encode() in got


def test_a_malformed_request_on_the_lean_front_end_gets_an_id(server_factory: Any) -> None:
    """Answered before any route (the lean parser's 400): a fresh id, in the head, the body and the
    log. (aiohttp answers its own parser errors outside the app, in text/plain.)"""
    srv = server_factory(["--flag", "service.http=lean"])
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 400 "), got
    rid = re.search(rb"(?i)x-request-id: ([^\r]+)\r\n", got)
    assert rid is not None and _is_uuid7(rid.group(1).decode()), got
    assert b'"request_id":"' + rid.group(1) + b'"' in got
    assert len(_log_lines_with(srv, rid.group(1).decode())) == 1
