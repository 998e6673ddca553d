"""Retention policies: the PUT/GET contract against a real server (bounds, defaults, audit receipt,
restart), and the age and tier rules the tiering applies (ages, not durations)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import Server
from provgraph.tenancy.retention import DAY_US, DEFAULT_RETENTION, Retention, parse_retention

ADMIN = "pga_test_admin_key_0123456789"


def test_ages_count_from_the_latest_reference_and_pick_the_tier() -> None:
    policy = Retention(30, 120, 365)
    uploaded, now = 0, 400 * DAY_US
    assert policy.age_days(uploaded, 0, now) == 400
    assert policy.age_days(uploaded, now - DAY_US, now) == 1  # referenced yesterday: young
    for age, tier in ((0, "hot"), (29.99, "hot"), (30, "warm"), (119.9, "warm"), (120, "cold"), (10_000, "cold")):
        assert policy.tier(age) == tier, age
    assert not policy.purgeable(364.9) and policy.purgeable(365)


@pytest.mark.parametrize(("body", "error"), [
    ({"hot_days": 29}, 422), ({"hot_days": 91}, 422), ({"hot_days": 60, "warm_days": 60}, 422),
    ({"warm_days": 200, "purge_after_days": 199}, 422), ({"purge_after_days": 40_000}, 422),
    ({"hot_days": "30"}, 400), ({"hot_days": 30.0}, 400), ({"hot_days": True}, 400), ({"keep": 1}, 400), ([], 400),
])
def test_bad_policies_are_refused(body: object, error: int) -> None:
    from provgraph.errors import ProvgraphError

    with pytest.raises(ProvgraphError) as got:
        parse_retention(body)
    assert got.value.status == error


def test_put_get_audit_and_restart(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", ADMIN)
    srv.start()
    try:
        admin = srv.api()
        op = admin.new_tenant("ret", roles=("operator",))
        path = "/v1/admin/tenants/ret/retention"
        assert admin.ok("GET", path) == {**DEFAULT_RETENTION.to_json(), "default": True}
        assert admin.ok("PUT", path, {"hot_days": 45, "warm_days": 200}) == {
            "hot_days": 45, "warm_days": 200, "purge_after_days": 365, "default": False}
        status, err = admin.call("PUT", path, {"hot_days": 10})
        assert status == 422 and err["error"]["details"]["field"] == "hot_days"
        assert admin.call("PUT", path, {"hot": 45})[0] == 400
        assert admin.call("PUT", "/v1/admin/tenants/nobody/retention", {})[0] == 404
        assert op.call("PUT", path, {})[0] == 403 and op.call("GET", path)[0] == 403
        assert admin.with_key(None).call("GET", path)[0] == 401
        assert admin.ok("GET", path)["hot_days"] == 45  # the refused ones changed nothing
        # a quota change keeps the policy, and the policy change kept the tenant's other fields
        admin.ok("PUT", "/v1/admin/tenants/ret/quota", {"rps": 50})
        assert admin.ok("GET", path)["warm_days"] == 200
        deadline = time.monotonic() + 10  # receipts are issued asynchronously
        while not (changes := [r for r in admin.receipts("ret") if r["action"] == "admin.tenant.retention"]):
            assert time.monotonic() < deadline, "the retention change's receipt was not issued in 10 s"
            time.sleep(0.02)
        assert len(changes) == 1 and changes[0]["resource"] == {"type": "tenant", "id": "ret"}
    finally:
        srv.stop()
    srv.start()
    try:
        assert srv.api().ok("GET", "/v1/admin/tenants/ret/retention") == {
            "hot_days": 45, "warm_days": 200, "purge_after_days": 365, "default": False}
    finally:
        srv.stop()
