"""HTTPS: `provgraph serve --tls-cert/--tls-key` on every front end, `provgraph verify --url https://`
against it with a certificate made here, and what verify refuses before it connects."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop
from conftest import ADMIN_KEY, Api
from provgraph._tcp import nodelay_transport
from provgraph.bench.server import JsonClient
from provgraph.cli import verify_client
from provgraph.policy.bundle import load_example_bundle

RECEIPTS = 5


class Pki:
    """A throwaway CA and a server certificate it issued for 127.0.0.1 and localhost, as PEM files."""

    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA()
        issued = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_pem, self.cert_pem, self.key_pem = root / "ca.pem", root / "cert.pem", root / "key.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        issued.private_key_pem.write_to_path(str(self.key_pem))
        for i, blob in enumerate(issued.cert_chain_pems):
            blob.write_to_path(str(self.cert_pem), append=i > 0)
        self.server_args = ["--tls-cert", str(self.cert_pem), "--tls-key", str(self.key_pem)]

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_pem))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provgraph", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _operator_with_receipts(admin: Api, tenant: str, count: int) -> Api:
    """A tenant whose operator ran `count` actions, each with its receipt issued; the operator's client."""
    status, _, body = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(), {"Content-Type": "application/gzip"})
    assert status in (200, 201), body
    admin.ok("POST", "/v1/admin/tenants", {"tenant_id": tenant}, status=201)
    key = admin.ok("POST", "/v1/admin/keys", {"tenant_id": tenant, "scopes": ["read", "write", "approve"],
                                              "actor": "user:olga", "roles": ["operator"]}, status=201)["key"]
    op = admin.with_key(key)
    receipt_ids = []
    for i in range(count):
        body_ = {"action": "deploy", "resource": {"type": "service", "id": "r1"}, "payload": {"i": i}}
        pf = op.ok("POST", f"/v1/tenants/{tenant}/actions/preflight", body_, status=201)
        receipt_ids.append(op.ok("POST", f"/v1/tenants/{tenant}/actions/{pf['preflight_id']}/execute", body_,
                                 status=200)["receipt_id"])
    deadline = time.monotonic() + 10
    pending = set(receipt_ids)
    while pending and time.monotonic() < deadline:
        pending = {r for r in pending if op.call("GET", f"/v1/tenants/{tenant}/receipts/{r}")[0] != 200}
        time.sleep(0.02)
    assert not pending, f"receipts not issued: {pending}"
    return op


@pytest.mark.parametrize("front", ["lean", "aiohttp"])
def test_verify_over_https_against_serve_tls(server_factory: Any, pki: Pki, front: str) -> None:
    srv = server_factory([*pki.server_args, "--flag", f"service.http={front}"], ssl_context=pki.client_context())
    admin: Api = srv.api()
    assert admin.ok("GET", "/healthz") == {"status": "ok"}  # over TLS, trusting the test CA
    op = _operator_with_receipts(admin, "tls", RECEIPTS)
    chain, after = [], 0
    while page := op.ok("GET", f"/v1/tenants/tls/receipts?after_seq={after}&limit=100")["receipts"]:
        chain += page
        after = page[-1]["seq"]
    # the tenant's own admin receipts (its creation, its key) come first in the chain
    assert [r["action"] for r in chain].count("deploy") == RECEIPTS and len(chain) > RECEIPTS
    for host in ("127.0.0.1", "localhost"):  # both names are in the certificate
        proc = _cli("verify", "--tenant", "tls", "--url", f"https://{host}:{srv.port}", "--cacert",
                    str(pki.ca_pem), "--key", op.key or "")
        assert proc.returncode == 0 and f"{len(chain)} receipts" in proc.stdout, (proc.stdout, proc.stderr)

    # A client that does not trust the certificate fails: verify with the system trust store...
    proc = _cli("verify", "--tenant", "tls", "--url", f"https://127.0.0.1:{srv.port}", "--key", op.key or "")
    assert proc.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in proc.stderr, (proc.stdout, proc.stderr)
    # ...and JsonClient trusting another CA.
    stranger = JsonClient(srv.port, ADMIN_KEY, ssl_context=ssl.create_default_context(
        cafile=None, cadata=trustme.CA().cert_pem.bytes().decode()))
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.raw("GET", "/healthz")
    stranger.close()
    # Plain HTTP to the TLS port gets no answer: nothing is served in clear text.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as plain:
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := plain.recv(4096):
                got += chunk
        assert b"HTTP/1.1 200" not in got and b'"status"' not in got, got


def _non_loopback_address() -> str:
    """An address of this host that is not loopback: the interface the default route uses (a UDP
    connect sends nothing), or 0.0.0.0 — Linux connects that to the local host, and verify's
    check treats it as non-loopback — on a host without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            addr = str(s.getsockname()[0])
        except OSError:
            return "0.0.0.0"
    return addr if not addr.startswith("127.") else "0.0.0.0"


def test_plain_http_to_another_host_is_refused_before_any_connection() -> None:
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen(8)
        listener.setblocking(False)
        url = f"http://{_non_loopback_address()}:{listener.getsockname()[1]}"

        proc = _cli("verify", "--tenant", "t", "--url", url, "--key", "pgk_secret_key_never_sent")
        assert proc.returncode == 2 and "refusing plain http" in proc.stderr and "--insecure" in proc.stderr, \
            (proc.stdout, proc.stderr)
        with pytest.raises(BlockingIOError):  # no connection is waiting to be accepted
            listener.accept()

        # With --insecure it does connect, and the key goes in clear: what the refusal prevents.
        verify = subprocess.Popen([sys.executable, "-m", "provgraph", "verify", "--tenant", "t", "--url", url,
                                   "--key", "pgk_secret_key_never_sent", "--insecure"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            listener.setblocking(True)
            listener.settimeout(60)
            conn, _ = listener.accept()
            listener.close()  # verify's one retry is refused, rather than left waiting for an answer
            with conn:
                conn.settimeout(60)
                head = b""
                while b"\r\n\r\n" not in head and (chunk := conn.recv(4096)):
                    head += chunk
            assert head.startswith(b"GET /v1/keys ") and b"Bearer pgk_secret_key_never_sent" in head, head
            assert verify.wait(60) == 2  # the connection closed without an answer
        finally:
            if verify.poll() is None:
                verify.kill()
                verify.wait()
            assert verify.stdout is not None and verify.stderr is not None
            verify.stdout.close()
            verify.stderr.close()


def test_verify_url_rules() -> None:
    """What `verify --url` accepts, and on which port, decided without connecting."""
    client = verify_client("https://provgraph.example", "k", None, insecure=False)
    assert (client.host, client.port, client.ssl_context is not None) == ("provgraph.example", 443, True)
    assert client.ssl_context is not None and client.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert client.ssl_context.check_hostname
    client.close()
    for url, port in (("http://127.0.0.1", 80), ("http://localhost:8080", 8080), ("http://[::1]:9", 9),
                      ("http://127.9.9.9:1/", 1)):
        client = verify_client(url, "k", None, insecure=False)
        assert client.port == port and client.ssl_context is None, url
        client.close()
    client = verify_client("http://10.1.2.3:8080", "k", None, insecure=True)
    assert (client.host, client.port, client.ssl_context) == ("10.1.2.3", 8080, None)
    client.close()
    refused = {
        "http://10.1.2.3:8080": "refusing plain http",
        "http://provgraph.example": "refusing plain http",
        "ftp://127.0.0.1": "scheme",
        "https://127.0.0.1:8443/v1": "scheme://host[:port] only",
        "https://127.0.0.1:99999": "--url",
        "https://": "no host",
    }
    for url, reason in refused.items():
        with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("]", r"\]")):
            verify_client(url, "k", None, insecure=False)
    with pytest.raises(ValueError, match="--cacert needs an https URL"):
        verify_client("http://127.0.0.1", "k", "/nonexistent/ca.pem", insecure=False)
    with pytest.raises(ValueError, match="--cacert /nonexistent/ca.pem"):
        verify_client("https://127.0.0.1", "k", "/nonexistent/ca.pem", insecure=False)


def test_serve_tls_options_errors(tmp_path: Path, pki: Pki) -> None:
    proc = _cli("serve", "--data-dir", str(tmp_path / "a"), "--tls-cert", str(pki.cert_pem), timeout=60)
    assert proc.returncode == 2 and "--tls-cert and --tls-key go together" in proc.stderr, proc.stderr
    proc = _cli("serve", "--data-dir", str(tmp_path / "b"), "--tls-key", str(pki.key_pem), timeout=60)
    assert proc.returncode == 2 and "--tls-cert and --tls-key go together" in proc.stderr, proc.stderr
    # The key of another certificate: refused at start-up, before the data dir is created.
    other = trustme.CA().issue_cert("127.0.0.1")
    other_key = tmp_path / "other-key.pem"
    other.private_key_pem.write_to_path(str(other_key))
    proc = _cli("serve", "--data-dir", str(tmp_path / "c"), "--tls-cert", str(pki.cert_pem), "--tls-key",
                str(other_key), timeout=60)
    assert proc.returncode == 2 and "cannot load the TLS certificate" in proc.stderr, proc.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])
def test_nodelay_is_set_on_tls_transports(pki: Pki, loop_kind: str) -> None:
    """nodelay_transport finds the socket under the TLS transports of uvloop (the server's loop) and
    of asyncio's own loop, server side and client side."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(pki.cert_pem), str(pki.key_pem))
    seen: dict[str, int] = {}

    class Probe(asyncio.Protocol):
        def __init__(self, side: str) -> None:
            self.side = side

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            # Both loops may set it on their own: clear it, so that what is read back is nodelay_transport's.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
            assert nodelay_transport(transport) is transport
            seen[self.side] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Probe("server"), "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(lambda: Probe("client"), "127.0.0.1", port,
                                                    ssl=pki.client_context(), server_hostname="127.0.0.1")
        for _ in range(500):
            if "server" in seen:
                break
            await asyncio.sleep(0.01)
        transport.close()
        server.close()
        await server.wait_closed()

    (uvloop.run if loop_kind == "uvloop" else asyncio.run)(main())
    assert seen == {"server": 1, "client": 1}

