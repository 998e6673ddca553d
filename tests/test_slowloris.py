"""Slowloris drill on the lean front end: many connections trickle a request head a line at a time
(or send nothing); with --head-timeout and --max-connections below their number, each is closed
within the bound, those over the cap at once, and a normal client is answered throughout."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ADMIN_KEY, Server
from provgraph.bench.loadgen import parse_response

HEAD_TIMEOUT_S = 2.0
CAP = 100
N = 200  # slow connections, over the cap
SILENT = 10  # of them, connect and send nothing
TRICKLE_S = 0.5
SLACK_S = HEAD_TIMEOUT_S / 4 + 1.0  # the sweep runs every head_timeout/4; then scheduling


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "data", ADMIN_KEY, ["--flag", "service.http=lean", "--head-timeout", str(HEAD_TIMEOUT_S),
                                              "--max-connections", str(CAP)])
    s.start()
    yield s
    s.stop()


class Normal(threading.Thread):
    """A keep-alive client asking /healthz every 0.1 s on one connection, opened before the flood."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.stop = threading.Event()
        self.answers: list[tuple[float, int]] = []  # (seconds it took, status)
        self.error: BaseException | None = None

    def run(self) -> None:
        buf = bytearray()
        try:
            while not self.stop.is_set():
                t0 = time.monotonic()
                self.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                while (got := parse_response(buf, False)) is None:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("the normal client's connection was closed")
                    buf += chunk
                del buf[:got[2]]
                self.answers.append((time.monotonic() - t0, got[0]))
                time.sleep(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.sock.close()


def test_slowloris_drill(server: Server) -> None:
    normal = Normal(server.port)
    normal.start()
    time.sleep(0.3)
    opened: dict[socket.socket, float] = {}
    closed: dict[socket.socket, float] = {}
    answered: dict[socket.socket, bytes] = {}
    for i in range(N):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.setblocking(False)
        opened[s] = time.monotonic()
        if i >= SILENT:
            try:
                s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                closed[s] = time.monotonic()
    trickle = time.monotonic() + TRICKLE_S
    deadline = max(opened.values()) + HEAD_TIMEOUT_S + SLACK_S + 2.0
    line = 0
    try:
        while len(closed) < N and time.monotonic() < deadline:
            live = [s for s in opened if s not in closed]
            readable, _, _ = select.select(live, [], [], 0.05)
            for s in readable:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    chunk = b""
                if chunk:
                    answered[s] = answered.get(s, b"") + chunk
                else:
                    closed[s] = time.monotonic()
            if time.monotonic() >= trickle:
                trickle += TRICKLE_S
                line += 1
                for i, s in enumerate(opened):
                    if i >= SILENT and s not in closed:
                        try:
                            s.send(b"X-Slow-%d: %d\r\n" % (line, line))
                        except OSError:
                            closed[s] = time.monotonic()
    finally:
        for s in opened:
            s.close()
        normal.stop.set()
        normal.join(10)

    assert len(closed) == N, f"{N - len(closed)} slow connections still open after {HEAD_TIMEOUT_S} s + slack"
    lived = {s: closed[s] - opened[s] for s in opened}
    assert max(lived.values()) <= HEAD_TIMEOUT_S + SLACK_S, max(lived.values())
    # the cap: the normal client holds one slot, so at most CAP - 1 slow ones were let in; the rest
    # were closed at once
    let_in = [s for s in opened if lived[s] > HEAD_TIMEOUT_S / 2]
    assert CAP // 2 <= len(let_in) <= CAP - 1, len(let_in)
    assert sum(1 for s in opened if lived[s] < TRICKLE_S) >= N - (CAP - 1)
    # those let in were told why (408, JSON) before the close
    for s in let_in:
        assert answered.get(s, b"").startswith(b"HTTP/1.1 408 "), answered.get(s, b"")[:100]
    assert b'"code":"request_timeout"' in answered[let_in[0]]
    # the normal client was answered throughout, promptly, and a new connection works afterwards
    assert normal.error is None, normal.error
    assert len(normal.answers) >= 10 and all(status == 200 for _, status in normal.answers)
    assert max(t for t, _ in normal.answers) < 1.0
    assert server.api().ok("GET", "/healthz") == {"status": "ok"}


def test_a_head_that_arrives_in_time_is_answered(server: Server) -> None:
    """Lines a little apart, the whole head well within --head-timeout: answered as usual."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        for part in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"Accept: */*\r\n", b"\r\n"):
            s.sendall(part)
            time.sleep(HEAD_TIMEOUT_S / 8)
        buf = bytearray()
        while (got := parse_response(buf, False)) is None:
            buf += s.recv(65536)
        assert got[0] == 200
