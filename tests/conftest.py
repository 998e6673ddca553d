"""Shared fixtures: a real provgraph server on a free loopback port, and a small JSON client for it."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from provgraph.bench.server import JsonClient, ServerProcess
from provgraph.flags import PROFILES

ADMIN_KEY = "pga_test_admin_key_0123456789"
# Every server the tests start runs this flag profile (`provgraph serve --profile`): CI runs the
# contract suites once per profile, so the rollback path of every flag is tested, not only the
# defaults. A test about one flag value sets that value itself.
PROFILE = os.environ.get("PROVGRAPH_TEST_PROFILE", "optimized")
if PROFILE not in PROFILES:
    raise pytest.UsageError(f"PROVGRAPH_TEST_PROFILE must be one of {list(PROFILES)}, not {PROFILE!r}")


def pytest_report_header() -> str:
    return f"provgraph flag profile of test servers: {PROFILE} (PROVGRAPH_TEST_PROFILE)"


class Api(JsonClient):
    """JsonClient plus the shortcuts contract tests use."""

    def with_key(self, key: str | None) -> Api:
        return Api(self.port, key, self.host, self.ssl_context)

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return self.call("POST", path, body if body is not None else {}, **kw)

    def new_tenant(self, tenant: str, scopes: tuple[str, ...] = ("read", "write", "approve"),
                   actor: str = "user:alice", roles: tuple[str, ...] = ()) -> Api:
        self.ok("POST", "/v1/admin/tenants", {"tenant_id": tenant}, status=201)
        key = self.ok("POST", "/v1/admin/keys", {"tenant_id": tenant, "scopes": list(scopes), "actor": actor,
                                                 "roles": list(roles)}, status=201)["key"]
        return self.with_key(key)

    def flag(self, name: str) -> str:
        return str(self.ok("GET", "/v1/admin/flags")["flags"][name]["value"])

    @contextmanager
    def flags_set(self, values: dict[str, str]) -> Iterator[None]:
        """Run the block with `values` set on the server (admin key), then put back what was set
        before (the server may be shared by a module, and may run either profile)."""
        before = {name: self.flag(name) for name in values}
        self.ok("PUT", "/v1/admin/flags", values)
        try:
            yield
        finally:
            self.ok("PUT", "/v1/admin/flags", before)


class Server(ServerProcess):
    """A test server: `provgraph serve --profile $PROVGRAPH_TEST_PROFILE` plus `extra`."""

    def __init__(self, data_dir: Path, admin_key: str, extra: list[str] | None = None, **kw: Any) -> None:
        super().__init__(data_dir, admin_key, ["--profile", PROFILE, *(extra or [])], **kw)

    def api(self, key: str | None = ADMIN_KEY) -> Api:
        return Api(self.port, key, ssl_context=self.ssl_context)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def make(extra: list[str] | None = None, data_dir: Path | None = None,
             ssl_context: ssl.SSLContext | None = None) -> Server:
        s = Server(data_dir or tmp_path / "data", ADMIN_KEY, extra, ssl_context=ssl_context)
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
