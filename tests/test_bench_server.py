"""The bench's server handle: a start-up flag is applied by restarting on the same data and port."""

from __future__ import annotations

import http.client
import secrets
from pathlib import Path
from typing import Any

from provgraph.bench.graph_http import GraphBench
from provgraph.bench.server import ServerProcess


def _front_end(port: int) -> str:
    """aiohttp's own server names itself in a Server header; the lean front end sends none."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        return "aiohttp" if "aiohttp" in (resp.getheader("Server") or "") else "lean"
    finally:
        conn.close()


def test_apply_flags_restarts_only_for_a_changed_start_up_flag(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "pga_" + secrets.token_urlsafe(24),
                           ["--flag", "service.http=lean", "--flag=policy.cache=off",
                            "--flag", "orchestration.batching=off"])
    server.start()
    try:
        server.client().ok("POST", "/v1/admin/tenants", {"tenant_id": "kept"}, status=201)
        workload: Any = None  # apply_flags needs only the server
        bench = GraphBench(server, workload, keys={})
        assert server.proc is not None
        pid, port = server.proc.pid, server.port
        assert _front_end(port) == "lean"

        bench.apply_flags({"service.http": "aiohttp", "policy.cache": "on"})
        assert server.proc.pid != pid and server.port == port  # restarted, same port
        assert _front_end(port) == "aiohttp"
        flags = {k: v["value"] for k, v in server.client().ok("GET", "/v1/admin/flags")["flags"].items()}
        # the start-up flag from the restart, the run-time one by PUT, the rest as first started
        assert (flags["service.http"], flags["policy.cache"], flags["orchestration.batching"]) == (
            "aiohttp", "on", "off")
        assert server.extra.count("service.http=aiohttp") == 1 and "service.http=lean" not in server.extra
        tenants = server.client().ok("GET", "/v1/admin/tenants")
        assert "kept" in str(tenants)  # same data

        pid = server.proc.pid
        bench.apply_flags({"service.http": "aiohttp", "policy.cache": "off"})
        assert server.proc.pid == pid  # the start-up flag is as running: no restart
        assert server.client().ok("GET", "/v1/admin/flags")["flags"]["policy.cache"]["value"] == "off"

        # restart=True (each run of an ablation on a fresh process): restarted with the same flags
        bench.apply_flags({"service.http": "aiohttp", "policy.cache": "on"}, restart=True)
        assert server.proc.pid != pid and server.port == port
        assert _front_end(port) == "aiohttp"
        flags = {k: v["value"] for k, v in server.client().ok("GET", "/v1/admin/flags")["flags"].items()}
        assert (flags["policy.cache"], flags["orchestration.batching"]) == ("on", "off")
    finally:
        server.stop()
