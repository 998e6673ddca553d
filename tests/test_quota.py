"""Tenant quotas and admission against a real server: PUT/GET, validation, audit receipts, restarts, and
429 rate_limited with Retry-After over quota, with nothing of the refused request done."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from conftest import Api
from provgraph.service.admission import Admission
from provgraph.tenancy.quota import Quota
from provgraph.tenancy.registry import Tenant

QUOTA = "/v1/admin/tenants/{}/quota"
ON = ["--flag", "admission.quota=on"]  # whatever PROVGRAPH_TEST_PROFILE the suite runs under


def edges(api: Api, tenant: str) -> int:
    return int(api.ok("GET", f"/v1/tenants/{tenant}/graph/stats")["edges"])


def wait_receipts(api: Api, tenant: str, action: str, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        got = [r for r in api.receipts(tenant) if r["action"] == action]
        if len(got) >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_put_get_validate_and_audit(server_factory: Any) -> None:
    admin = server_factory().api()
    tenant = admin.new_tenant("qa")
    assert admin.get(QUOTA.format("qa"))[0] == 404  # no quota: not limited
    got = admin.ok("PUT", QUOTA.format("qa"), {"rps": 5, "burst": 10})
    assert got == {"rps": 5.0, "burst": 10, "concurrency": 64, "weight": 1}  # omitted fields: defaults
    assert admin.ok("GET", QUOTA.format("qa")) == got
    # a full replace: what the second PUT omits goes back to the default
    assert admin.ok("PUT", QUOTA.format("qa"), {"weight": 4})["rps"] == 100.0
    for body, status in (([], 400), ({"rps": "5"}, 400), ({"burst": 1.5}, 400), ({"burst": True}, 400),
                         ({"nope": 1}, 400), ({"rps": 0}, 422), ({"weight": 1001}, 422),
                         ({"concurrency": 0}, 422)):
        status_got, err = admin.call("PUT", QUOTA.format("qa"), body)
        assert status_got == status, (body, err)
        assert err["error"]["code"] == ("bad_request" if status == 400 else "invalid_value")
    assert admin.ok("GET", QUOTA.format("qa"))["weight"] == 4  # bad bodies changed nothing
    assert admin.call("PUT", QUOTA.format("nobody"), {"rps": 1})[0] == 404
    assert tenant.call("PUT", QUOTA.format("qa"), {"rps": 1})[0] == 403  # a tenant key is not admin
    assert tenant.get(QUOTA.format("qa"))[0] == 403
    # each change is a receipt in the tenant's chain, holding the quota it set
    receipts = wait_receipts(admin, "qa", "admin.tenant.quota", 2)
    assert len(receipts) == 2
    assert admin.ok("GET", f"/v1/tenants/qa/receipts/{receipts[-1]['receipt_id']}/verify")["valid"] is True


def test_over_quota_is_429_with_retry_after_and_writes_nothing(server_factory: Any) -> None:
    server = server_factory(ON)
    admin = server.api()
    tenant = admin.new_tenant("qb")
    other = admin.new_tenant("qc")
    admin.ok("PUT", QUOTA.format("qb"), {"rps": 0.01, "burst": 3})
    body = {"edges": [{"src": 1, "dst": 2}]}
    for _ in range(3):  # the burst
        tenant.ok("POST", "/v1/tenants/qb/graph/edges", body)
    status, headers, raw = tenant.raw("POST", "/v1/tenants/qb/graph/edges",
                                      orjson.dumps({"edges": [{"src": 7, "dst": 8}]}))
    assert status == 429, raw
    err = orjson.loads(raw)["error"]
    assert err["code"] == "rate_limited" and err["details"]["tenant_id"] == "qb"
    assert int(headers["retry-after"]) >= 1 and err["details"]["retry_after_s"] == int(headers["retry-after"])
    assert err["request_id"] == headers["x-request-id"]
    # reads are admitted through the same bucket; another tenant and the admin routes are not limited
    assert tenant.call("POST", "/v1/tenants/qb/graph/query", {"query": "topn", "seed": 1})[0] == 429
    for _ in range(5):
        other.ok("POST", "/v1/tenants/qc/graph/edges", body)
    assert admin.ok("GET", "/v1/admin/tenants")["tenants"] == ["qb", "qc"]
    assert server.api(None).get("/healthz")[0] == 200
    # nothing of the refused write was done: the admin key (not admitted) reads one edge
    with admin.flags_set({"admission.quota": "off"}):
        assert edges(admin, "qb") == 1
        tenant.ok("POST", "/v1/tenants/qb/graph/edges", body)  # flag off: admitted
    metrics = server.api(None).get("/metrics")[1].decode()
    assert any(line.startswith("provgraph_admission_throttled_total ") and float(line.split()[1]) >= 2
               for line in metrics.splitlines())


def test_quota_survives_a_restart(server_factory: Any) -> None:
    server = server_factory(ON)
    admin = server.api()
    tenant = admin.new_tenant("qd")
    admin.ok("PUT", QUOTA.format("qd"), {"rps": 0.01, "burst": 1, "weight": 3})
    tenant.ok("POST", "/v1/tenants/qd/graph/edges", {"edges": [{"src": 1, "dst": 2}]})
    server.stop()
    again = server_factory(ON, data_dir=server.data_dir)
    assert again.api().ok("GET", QUOTA.format("qd"))["weight"] == 3
    key = tenant.key
    limited = again.api(key)
    limited.ok("POST", "/v1/tenants/qd/graph/edges", {"edges": [{"src": 1, "dst": 3}]})  # a fresh bucket
    assert limited.call("POST", "/v1/tenants/qd/graph/edges", {"edges": [{"src": 1, "dst": 4}]})[0] == 429


def test_token_bucket_refills_at_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bucket in-process, on a fake clock: burst at once, then one per 1/rps seconds, Retry-After
    the whole seconds until the next token; off admits everything; no quota, no limit."""
    now = [1000.0]
    monkeypatch.setattr("provgraph.service.admission.time.monotonic", lambda: now[0])
    adm = Admission()
    t = Tenant("t", 1, 0.0, Quota(rps=0.5, burst=2, concurrency=1, weight=1))
    adm.admit(t)
    adm.admit(t)
    with pytest.raises(Exception) as exc:
        adm.admit(t)
    assert getattr(exc.value, "status", None) == 429 and exc.value.headers == {"Retry-After": "2"}  # type: ignore[attr-defined]
    now[0] += 1.0  # half a token back
    with pytest.raises(Exception) as exc:
        adm.admit(t)
    assert exc.value.headers == {"Retry-After": "1"}  # type: ignore[attr-defined]
    now[0] += 1.0
    adm.admit(t)
    assert adm.throttled == {"t": 2}
    adm.set_enabled("off")
    for _ in range(10):
        adm.admit(t)
    adm.set_enabled("on")  # back on: buckets start full
    adm.admit(t)
    adm.admit(t)
    for _ in range(100):
        adm.admit(Tenant("free", 2, 0.0))
