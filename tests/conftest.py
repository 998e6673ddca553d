"""Shared fixtures: a real provgraph server on a free loopback port, and a small JSON client for it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from provgraph.bench.server import JsonClient, ServerProcess

ADMIN_KEY = "pga_test_admin_key_0123456789"


class Api(JsonClient):
    """JsonClient plus the shortcuts contract tests use."""

    def with_key(self, key: str | None) -> Api:
        return Api(self.port, key, self.host)

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return self.call("POST", path, body if body is not None else {}, **kw)

    @contextlib.contextmanager
    def flag(self, name: str, value: str) -> Iterator[None]:
        """Run the body with the run-time flag `name` at `value` (this Api has the admin key);
        the previous value comes back after it."""
        before = self.ok("GET", "/v1/admin/flags")["flags"][name]
        self.ok("PUT", "/v1/admin/flags", {name: value})
        try:
            yield
        finally:
            self.ok("PUT", "/v1/admin/flags", {name: before})

    def new_tenant(self, tenant: str, scopes: tuple[str, ...] = ("read", "write", "approve"),
                   actor: str = "user:alice", roles: tuple[str, ...] = ()) -> Api:
        self.ok("POST", "/v1/admin/tenants", {"tenant_id": tenant}, status=201)
        key = self.ok("POST", "/v1/admin/keys", {"tenant_id": tenant, "scopes": list(scopes), "actor": actor,
                                                 "roles": list(roles)}, status=201)["key"]
        return self.with_key(key)


class Server(ServerProcess):
    def api(self, key: str | None = ADMIN_KEY) -> Api:
        return Api(self.port, key)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def make(extra: list[str] | None = None, data_dir: Path | None = None) -> Server:
        s = Server(data_dir or tmp_path / "data", ADMIN_KEY, extra)
        servers.append(s)
        return s.start()  # type: ignore[return-value]

    yield make
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("srv") / "data", ADMIN_KEY, ["--max-body-bytes", "1048576"])
    s.start()
    yield s
    s.stop()


@pytest.fixture
def admin(server: Server) -> Api:
    return server.api()
