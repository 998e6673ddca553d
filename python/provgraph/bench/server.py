"""A real `provgraph serve` subprocess on a free loopback port: used by the harness, the demo and tests."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import orjson

__all__ = ["JsonClient", "ServerProcess", "free_port", "pin_to_core"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin_to_core(core: int | None) -> None:
    """Pin the calling process to one core, when the machine has it (server and load apart)."""
    if core is not None and hasattr(os, "sched_setaffinity") and core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})


def _connection(host: str, port: int, ssl_context: ssl.SSLContext | None,
                timeout: float = 120) -> http.client.HTTPConnection:
    if ssl_context is not None:
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl_context)
    return http.client.HTTPConnection(host, port, timeout=timeout)


class JsonClient:
    """A tiny blocking JSON client on one keep-alive connection (set-up calls, not load); HTTPS
    with `ssl_context` (which says what it trusts)."""

    def __init__(self, port: int, key: str | None, host: str = "127.0.0.1",
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.key, self.ssl_context = host, port, key, ssl_context
        self.conn = _connection(host, port, ssl_context)

    def with_key(self, key: str | None) -> JsonClient:
        return JsonClient(self.port, key, self.host, self.ssl_context)

    def close(self) -> None:
        self.conn.close()

    def __del__(self) -> None:  # clients are cheap and short-lived: never leak their socket
        self.conn.close()

    def raw(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        h = {"Content-Type": "application/json"} if body is not None else {}
        if self.key:
            h["Authorization"] = f"Bearer {self.key}"
        h.update(headers or {})
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=h)
                resp = self.conn.getresponse()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = _connection(self.host, self.port, self.ssl_context)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        data = None if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        status, headers, raw = self.raw(method, path, data, **kw)
        if headers.get("content-type", "").startswith("application/json"):
            return status, orjson.loads(raw)
        return status, raw

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, data = self.call(method, path, body)
        if got != status:
            raise RuntimeError(f"{method} {path}: expected {status}, got {got}: {data!r}"[:2000])
        return data

    def receipts(self, tenant: str, page: int = 1000) -> list[Any]:
        """Every receipt of `tenant`'s chain (or `_admin`'s) issued so far, in seq order, a page at a time."""
        out: list[Any] = []
        after = 0
        while True:
            got = self.ok("GET", f"/v1/tenants/{tenant}/receipts?after_seq={after}&limit={page}")
            if not got["receipts"]:
                return out
            out += got["receipts"]
            after = got["next_after_seq"]


class ServerProcess:
    """Start, kill and restart a server with its own data dir and admin key. A server started with
    `--tls-cert`/`--tls-key` in `extra` needs `ssl_context`: what its readiness probe and clients trust."""

    def __init__(self, data_dir: Path, admin_key: str, extra: list[str] | None = None,
                 core: int | None = None, log_path: Path | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.data_dir, self.admin_key, self.extra, self.core = data_dir, admin_key, extra or [], core
        self.ssl_context = ssl_context
        self.log_path = log_path or data_dir.parent / f"{data_dir.name}-server.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> Self:
        env = {**os.environ, "PROVGRAPH_ADMIN_KEY": self.admin_key}
        cmd = [sys.executable, "-m", "provgraph", "serve", "--port", str(self.port), "--data-dir",
               str(self.data_dir), *self.extra]
        core = self.core
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            # preexec_fn only makes one sched_setaffinity call (no locks, no imports) and must run
            # before exec, so that every thread the server starts inherits the pinning.
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=(lambda: pin_to_core(core)) if core is not None else None,  # noqa: PLW1509
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()[-4000:]}")
            conn = _connection("127.0.0.1", self.port, self.ssl_context, timeout=2)
            try:
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return self
            except ssl.SSLCertVerificationError:  # waiting would not help
                self.kill()
                raise
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("server did not become ready")

    def restart_with_flags(self, flags: dict[str, str]) -> Self:
        """Stop, then start again on the same data, port and core with `--flag name=value` for
        each of `flags` (replacing any earlier value of those flags)."""
        extra: list[str] = []
        args = iter(self.extra)
        for arg in args:
            if arg == "--flag":
                value = next(args, "")
                if value.partition("=")[0] not in flags:
                    extra += [arg, value]
            elif arg.startswith("--flag=") and arg[7:].partition("=")[0] in flags:
                continue
            else:
                extra.append(arg)
        for name, value in flags.items():
            extra += ["--flag", f"{name}={value}"]
        self.stop()
        self.extra = extra
        return self.start()

    def client(self, key: str | None = None) -> JsonClient:
        return JsonClient(self.port, self.admin_key if key is None else key, ssl_context=self.ssl_context)

    def kill(self) -> None:
        """SIGKILL: the crash drill."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
