"""Bad input that once answered 500 (found by scripts/run_schemathesis.py) gets its 4xx JSON error and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Api, Server


def error_of(status: int, body: Any, want_status: int, want_code: str) -> dict[str, Any]:
    assert status == want_status, body
    assert set(body["error"]) == {"code", "message", "details", "request_id"}
    assert body["error"]["code"] == want_code, body
    return dict(body["error"])


@pytest.fixture(scope="module")
def tenant(server: Server) -> Api:
    return server.api().new_tenant("badin")


@pytest.mark.parametrize(("query", "status", "code"), [
    ("before_ns=18446744073709551616", 422, "invalid_value"),  # past 64 bits: once a 500
    ("before_ns=9223372036854775808", 422, "invalid_value"),   # past int64
    ("before_ns=-1", 422, "invalid_value"),
    ("before_ns=1e3", 400, "bad_request"),
    ("limit=0", 422, "invalid_value"),
    ("limit=10001", 422, "invalid_value"),
    ("limit=x", 400, "bad_request"),
])
def test_decisions_query_bounds(tenant: Api, query: str, status: int, code: str) -> None:
    before = tenant.ok("GET", "/v1/tenants/badin/decisions")
    err = error_of(*tenant.get(f"/v1/tenants/badin/decisions?{query}"), status, code)
    assert err["details"]["parameter"] == query.split("=")[0]
    assert tenant.ok("GET", "/v1/tenants/badin/decisions") == before


def test_decisions_largest_before_ns_is_served(tenant: Api) -> None:
    got = tenant.ok("GET", f"/v1/tenants/badin/decisions?before_ns={(1 << 63) - 1}")
    assert got == {"decisions": []}


@pytest.mark.parametrize(("query", "status", "code"), [
    ("after_seq=18446744073709551615", 422, "invalid_value"),  # after_seq + 1 overflowed the key: once a 500
    ("after_seq=-1", 422, "invalid_value"),
    ("after_seq=one", 400, "bad_request"),
    ("limit=1001", 422, "invalid_value"),
])
def test_receipts_query_bounds(tenant: Api, query: str, status: int, code: str) -> None:
    err = error_of(*tenant.get(f"/v1/tenants/badin/receipts?{query}"), status, code)
    assert err["details"]["parameter"] == query.split("=")[0]


def test_receipts_largest_after_seq_is_served(tenant: Api) -> None:
    got = tenant.ok("GET", f"/v1/tenants/badin/receipts?after_seq={(1 << 63) - 1}")
    assert got == {"receipts": [], "next_after_seq": (1 << 63) - 1}


@pytest.mark.parametrize("ids", [[""], ["not-a-uuid"], ["0190b3e2-0000-7000-8000-000000000000", "x"]])
def test_dlq_replay_of_ids_that_are_not_receipt_ids(admin: Api, ids: list[str]) -> None:
    before = admin.ok("GET", "/v1/admin/dlq")
    err = error_of(*admin.post("/v1/admin/dlq/replay", {"receipt_ids": ids}), 422, "invalid_value")
    assert err["details"] == {"receipt_ids": ids}
    assert admin.ok("GET", "/v1/admin/dlq") == before
    assert admin.ok("POST", "/v1/admin/dlq/replay", {"receipt_ids": ["0190b3e2-0000-7000-8000-000000000000"]}) \
        == {"replayed": 0}
