"""Key lifecycle against the real server: list, revoke, rotate with a grace period, the admin key, restarts."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import ADMIN_KEY, Api, Server

KEY_FIELDS = {"key_id", "tenant_id", "scopes", "actor", "roles", "created_at", "last_used_at", "grace_until"}
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def new_key(admin: Api, tenant: str, actor: str = "user:kim", scopes: tuple[str, ...] = ("read",),
            roles: tuple[str, ...] = ("viewer",)) -> dict[str, Any]:
    body: dict[str, Any] = admin.ok("POST", "/v1/admin/keys", {"tenant_id": tenant, "scopes": list(scopes),
                                                               "actor": actor, "roles": list(roles)}, status=201)
    return body


def works(api: Api, tenant: str) -> int:
    """The status of a cheap read with the key: 200 while it is valid, 401 once not."""
    return api.get(f"/v1/tenants/{tenant}/receipts?limit=1")[0]


def listed(admin: Api, key_id: str, tenant: str | None = None) -> dict[str, Any] | None:
    query = f"?tenant_id={tenant}" if tenant else ""
    keys: list[dict[str, Any]] = admin.ok("GET", f"/v1/admin/keys{query}")["keys"]
    return next((k for k in keys if k["key_id"] == key_id), None)


def snapshot(admin: Api) -> list[dict[str, Any]]:
    """The key listing minus last_used_at, which every admin request (these included) moves on."""
    return [{k: v for k, v in key.items() if k != "last_used_at"} for key in admin.ok("GET", "/v1/admin/keys")["keys"]]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = Server(tmp_path_factory.mktemp("keys") / "data", ADMIN_KEY)
    s.start()
    yield s
    s.stop()


def test_list_keys_fields_filter_and_no_secret(srv: Server) -> None:
    admin = srv.api()
    admin.ok("POST", "/v1/admin/tenants", {"tenant_id": "lst"}, status=201)
    admin.ok("POST", "/v1/admin/tenants", {"tenant_id": "lst2"}, status=201)
    made = new_key(admin, "lst", scopes=("read", "write"), roles=("operator", "viewer"))
    other = new_key(admin, "lst2")
    status, _, raw = admin.raw("GET", "/v1/admin/keys")
    assert status == 200
    assert made["key"].encode() not in raw and other["key"].encode() not in raw and ADMIN_KEY.encode() not in raw
    keys = admin.ok("GET", "/v1/admin/keys")["keys"]
    assert keys[0]["key_id"] == "admin" and keys[0]["tenant_id"] is None and keys[0]["scopes"] == ["admin"]
    assert all(set(k) == KEY_FIELDS for k in keys)
    mine = listed(admin, made["key_id"])
    assert mine is not None
    assert {k: mine[k] for k in ("tenant_id", "scopes", "actor", "roles")} == {
        "tenant_id": "lst", "scopes": ["read", "write"], "actor": "user:kim", "roles": ["operator", "viewer"]}
    assert RFC3339.fullmatch(mine["created_at"]) and mine["last_used_at"] is None and mine["grace_until"] is None
    only = admin.ok("GET", "/v1/admin/keys?tenant_id=lst")["keys"]
    assert [k["key_id"] for k in only] == [made["key_id"]]
    # last use is stamped at a coarse (1 s) resolution, from memory
    assert works(Api(srv.port, made["key"]), "lst") == 200
    wait_for(lambda: (listed(admin, made["key_id"]) or {}).get("last_used_at") is not None)
    assert RFC3339.fullmatch(listed(admin, made["key_id"])["last_used_at"])  # type: ignore[index]
    assert (listed(admin, other["key_id"]) or {})["last_used_at"] is None


def test_list_keys_errors(srv: Server) -> None:
    admin = srv.api()
    status, body = admin.get("/v1/admin/keys?tenant_id=nope")
    assert status == 404 and body["error"]["code"] == "unknown_tenant"
    admin.ok("POST", "/v1/admin/tenants", {"tenant_id": "lsterr"}, status=201)
    tenant = Api(srv.port, new_key(admin, "lsterr", scopes=("read", "write", "approve"))["key"])
    assert tenant.get("/v1/admin/keys")[0] == 403
    assert admin.with_key(None).get("/v1/admin/keys")[0] == 401


def test_revoke_takes_effect_on_the_next_request(srv: Server) -> None:
    admin = srv.api()
    admin.ok("POST", "/v1/admin/tenants", {"tenant_id": "rev"}, status=201)
    doomed, kept = new_key(admin, "rev"), new_key(admin, "rev", actor="user:lee")
    api = Api(srv.port, doomed["key"])
    assert works(api, "rev") == 200
    body = admin.ok("DELETE", f"/v1/admin/keys/{doomed['key_id']}")
    assert body["key_id"] == doomed["key_id"] and body["revoked"] is True and "key" not in body
    status, err = api.get("/v1/tenants/rev/receipts?limit=1")
    assert status == 401 and err["error"]["code"] == "unauthorized"
    assert works(Api(srv.port, kept["key"]), "rev") == 200
    assert listed(admin, doomed["key_id"]) is None
    status, err = admin.call("DELETE", f"/v1/admin/keys/{doomed['key_id']}")
    assert status == 404 and err["error"]["details"] == {"key_id": doomed["key_id"]}
    assert admin.call("POST", f"/v1/admin/keys/{doomed['key_id']}/rotate", {"grace_s": 0})[0] == 404


def test_the_admin_key_cannot_be_revoked(srv: Server) -> None:
    admin = srv.api()
    before = snapshot(admin)
    status, err = admin.call("DELETE", "/v1/admin/keys/admin")
    assert status == 409 and err["error"]["code"] == "conflict" and "rotate" in err["error"]["message"]
    assert snapshot(admin) == before


def test_rotate_with_grace_then_the_old_secret_ends(srv: Server) -> None:
    admin = srv.api()
    admin.ok("POST", "/v1/admin/tenants", {"tenant_id": "rot"}, status=201)
    made = new_key(admin, "rot", actor="user:rob", scopes=("read", "write"), roles=("operator",))
    old = Api(srv.port, made["key"])
    grace = 1.5
    t0 = time.time()
    rotated = admin.ok("POST", f"/v1/admin/keys/{made['key_id']}/rotate", {"grace_s": grace}, status=201)
    assert rotated["key"] != made["key"] and rotated["key"].startswith("pgk_")
    for field in ("key_id", "tenant_id", "scopes", "actor", "roles"):
        assert rotated[field] == made[field], field
    assert RFC3339.fullmatch(rotated["grace_until"])
    new = Api(srv.port, rotated["key"])
    assert works(new, "rot") == 200
    if time.time() - t0 < grace - 0.2:  # the old secret is checked inside its grace period
        assert works(old, "rot") == 200
        assert (listed(admin, made["key_id"]) or {})["grace_until"] == rotated["grace_until"]
    time.sleep(max(0.0, t0 + grace + 0.1 - time.time()))
    assert works(old, "rot") == 401
    assert works(new, "rot") == 200
    assert (listed(admin, made["key_id"]) or {})["grace_until"] is None
    # grace_s 0: the secret being replaced ends at once
    again = admin.ok("POST", f"/v1/admin/keys/{made['key_id']}/rotate", {"grace_s": 0}, status=201)
    assert works(new, "rot") == 401 and works(Api(srv.port, again["key"]), "rot") == 200


@pytest.mark.parametrize("body", [{}, {"grace_s": -1}, {"grace_s": "60"}, {"grace_s": True},
                                  {"grace_s": 30 * 86_400 + 1}, {"grace_s": None}, [60]])
def test_rotate_bad_grace_is_400_and_writes_nothing(srv: Server, body: Any) -> None:
    admin = srv.api()
    if "badg" not in admin.ok("GET", "/v1/admin/tenants")["tenants"]:
        admin.ok("POST", "/v1/admin/tenants", {"tenant_id": "badg"}, status=201)
    made = new_key(admin, "badg")
    before = snapshot(admin)
    status, err = admin.call("POST", f"/v1/admin/keys/{made['key_id']}/rotate", body)
    assert status == 400 and err["error"]["code"] == "bad_request", err
    assert snapshot(admin) == before
    assert works(Api(srv.port, made["key"]), "badg") == 200


def test_rotate_unknown_key_and_non_admin(srv: Server) -> None:
    admin = srv.api()
    status, err = admin.call("POST", "/v1/admin/keys/0000000000000000/rotate", {"grace_s": 5})
    assert status == 404 and err["error"]["code"] == "not_found"
    admin.ok("POST", "/v1/admin/tenants", {"tenant_id": "nadm"}, status=201)
    made = new_key(admin, "nadm", scopes=("read", "write", "approve"))
    tenant = Api(srv.port, made["key"])
    assert tenant.call("POST", f"/v1/admin/keys/{made['key_id']}/rotate", {"grace_s": 5})[0] == 403
    assert tenant.call("DELETE", f"/v1/admin/keys/{made['key_id']}")[0] == 403
    assert works(tenant, "nadm") == 200


def test_revocation_rotation_and_last_use_survive_a_restart(server_factory: Any) -> None:
    srv: Server = server_factory()
    admin = srv.api()
    admin.ok("POST", "/v1/admin/tenants", {"tenant_id": "rst"}, status=201)
    revoked, cut, graced = new_key(admin, "rst"), new_key(admin, "rst"), new_key(admin, "rst")
    assert works(Api(srv.port, graced["key"]), "rst") == 200
    wait_for(lambda: (listed(admin, graced["key_id"]) or {}).get("last_used_at") is not None)
    used = (listed(admin, graced["key_id"]) or {})["last_used_at"]
    admin.ok("DELETE", f"/v1/admin/keys/{revoked['key_id']}")
    cut_new = admin.ok("POST", f"/v1/admin/keys/{cut['key_id']}/rotate", {"grace_s": 0}, status=201)["key"]
    graced_new = admin.ok("POST", f"/v1/admin/keys/{graced['key_id']}/rotate", {"grace_s": 3600},
                          status=201)["key"]
    srv.stop()
    srv.start()
    assert (listed(admin, graced["key_id"]) or {})["last_used_at"] == used  # written at shutdown, read at start
    assert works(Api(srv.port, revoked["key"]), "rst") == 401
    assert works(Api(srv.port, cut["key"]), "rst") == 401
    assert works(Api(srv.port, cut_new), "rst") == 200
    assert works(Api(srv.port, graced["key"]), "rst") == 200  # still inside its hour of grace
    assert works(Api(srv.port, graced_new), "rst") == 200
    after = listed(admin, graced["key_id"]) or {}
    assert after["grace_until"] is not None and after["last_used_at"] >= used
    assert listed(admin, revoked["key_id"]) is None


def test_admin_key_rotation_and_a_stale_environment(server_factory: Any) -> None:
    srv: Server = server_factory()
    admin = srv.api()
    rotated = admin.ok("POST", "/v1/admin/keys/admin/rotate", {"grace_s": 0}, status=201)
    assert rotated["key_id"] == "admin" and rotated["tenant_id"] is None and rotated["key"].startswith("pga_")
    assert admin.get("/v1/admin/keys")[0] == 401  # the old admin key ended at once
    new_admin = admin.with_key(rotated["key"])
    assert new_admin.get("/v1/admin/keys")[0] == 200
    # a restart with PROVGRAPH_ADMIN_KEY still set to the rotated-out key does not bring it back
    srv.stop()
    srv.start()
    assert admin.get("/v1/admin/keys")[0] == 401
    assert new_admin.get("/v1/admin/keys")[0] == 200
    assert "retired by a rotation" in srv.log_path.read_text()
    # rotation with a grace period: both admin secrets work until it ends
    second = new_admin.ok("POST", "/v1/admin/keys/admin/rotate", {"grace_s": 3600}, status=201)
    assert new_admin.get("/v1/admin/keys")[0] == 200 and admin.with_key(second["key"]).get("/v1/admin/keys")[0] == 200
    # the operator replaces the admin key with a new one through the environment: that one is installed
    srv.stop()
    srv.admin_key = "pga_operator_replaced_0123456789"
    srv.start()
    replaced = admin.with_key(srv.admin_key)
    assert replaced.get("/v1/admin/keys")[0] == 200
    assert new_admin.get("/v1/admin/keys")[0] == 401 and admin.with_key(second["key"]).get("/v1/admin/keys")[0] == 401
    assert [k["key_id"] for k in replaced.ok("GET", "/v1/admin/keys")["keys"]] == ["admin"]


def test_admin_key_after_its_grace_is_not_revived_by_a_restart(server_factory: Any) -> None:
    srv: Server = server_factory()
    admin = srv.api()
    grace = 1.0
    rotated = admin.ok("POST", "/v1/admin/keys/admin/rotate", {"grace_s": grace}, status=201)
    assert admin.get("/v1/admin/keys")[0] == 200  # inside the grace period
    time.sleep(grace + 0.2)
    assert admin.get("/v1/admin/keys")[0] == 401
    srv.stop()
    srv.start()  # PROVGRAPH_ADMIN_KEY is still the old key
    assert admin.get("/v1/admin/keys")[0] == 401
    assert admin.with_key(rotated["key"]).get("/v1/admin/keys")[0] == 200
    assert "retired by a rotation" in srv.log_path.read_text()
