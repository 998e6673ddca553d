"""The audit trail against the real server: each admin change is a receipt in the right chain, and verifies."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import blake3
import rfc8785
from conftest import Api, Server
from provgraph.policy.bundle import load_example_bundle
from test_contract_actions import independent_verify, public_keys

GZ = {"Content-Type": "application/gzip"}


def chain(api: Api, tenant: str) -> list[dict[str, Any]]:
    return api.receipts(tenant, page=100)


def wait_chain(api: Api, tenant: str, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The tenant's chain once it holds `n` receipts (admin receipts are issued asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = chain(api, tenant)
        if len(got) >= n:
            assert len(got) == n, [r["action"] for r in got]
            return got
        time.sleep(0.05)
    raise AssertionError(f"{tenant}: {len(chain(api, tenant))} receipts, expected {n}")


def h(value: Any) -> str:
    """Hex BLAKE3 of RFC 8785 bytes, computed without provgraph code."""
    return blake3.blake3(rfc8785.dumps(value)).hexdigest()


def check_admin_receipt(r: dict[str, Any], action: str, tenant: str, resource: dict[str, Any],
                        change: Any, actor: str = "admin") -> None:
    assert r["action"] == action and r["tenant_id"] == tenant and r["resource"] == resource, r
    assert r["actor"] == {"id": actor, "roles": []}
    assert r["policy"] is None and r["preflight_id"] is None and r["approvals"] == [] and r["evidence"] == []
    assert r["request_hash"] == h({"action": action, "resource": resource, "payload": change})
    assert r["result_hash"] == h({"payload_hash": h(change)})


def verify_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provgraph", "verify", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_admin_changes_are_receipts_in_the_right_chain(server_factory: Any) -> None:
    srv: Server = server_factory()
    admin = srv.api()
    # the admin key installed at first start is the first receipt of the _admin chain, by the operator
    first = wait_chain(admin, "_admin", 1)[0]
    check_admin_receipt(first, "admin.key.create", "_admin", {"type": "api_key", "id": "admin"},
                        {"key_id": "admin", "tenant_id": None, "scopes": ["admin"], "actor": "admin", "roles": [],
                         "source": "start"}, actor="operator")

    # tenant and its keys: the tenant's own chain
    admin.ok("POST", "/v1/admin/tenants", {"tenant_id": "aud"}, status=201)
    made = admin.ok("POST", "/v1/admin/keys", {"tenant_id": "aud", "scopes": ["read"], "actor": "user:ed",
                                               "roles": ["viewer"]}, status=201)
    rotated = admin.ok("POST", f"/v1/admin/keys/{made['key_id']}/rotate", {"grace_s": 0}, status=201)
    admin.ok("DELETE", f"/v1/admin/keys/{made['key_id']}")
    tenant_chain = wait_chain(admin, "aud", 4)
    key_res = {"type": "api_key", "id": made["key_id"]}
    check_admin_receipt(tenant_chain[0], "admin.tenant.create", "aud", {"type": "tenant", "id": "aud"},
                        {"tenant_id": "aud"})
    check_admin_receipt(tenant_chain[1], "admin.key.create", "aud", key_res,
                        {"key_id": made["key_id"], "tenant_id": "aud", "scopes": ["read"], "actor": "user:ed",
                         "roles": ["viewer"]})
    check_admin_receipt(tenant_chain[2], "admin.key.rotate", "aud", key_res,
                        {"key_id": made["key_id"], "tenant_id": "aud", "grace_s": 0,
                         "grace_until": rotated["grace_until"]})
    check_admin_receipt(tenant_chain[3], "admin.key.revoke", "aud", key_res,
                        {"key_id": made["key_id"], "tenant_id": "aud"})

    # changes that concern no one tenant: the _admin chain
    cache = "off" if admin.ok("GET", "/v1/admin/flags")["flags"]["policy.cache"]["value"] == "on" else "on"
    admin.ok("PUT", "/v1/admin/flags", {"policy.cache": cache})  # a change: a receipt
    admin.ok("PUT", "/v1/admin/flags", {"policy.cache": cache})  # the same value again: no change, none
    status, _, body = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(), GZ)
    assert status == 201, body
    bundle = admin.ok("GET", "/v1/bundles/authz")
    revision = bundle["active_revision"]
    digest = next(r["digest"] for r in bundle["revisions"] if r["revision"] == revision)
    admin.ok("POST", "/v1/bundles/authz/activate", {"revision": revision})
    old_signer = next(k["key_id"] for k in admin.ok("GET", "/v1/keys")["keys"] if k["active"])
    new_signer = admin.ok("POST", "/v1/admin/signing-keys/rotate", status=201)["key_id"]
    admin_rot = admin.ok("POST", "/v1/admin/keys/admin/rotate", {"grace_s": 60}, status=201)
    admin_chain = wait_chain(admin, "_admin", 6)
    check_admin_receipt(admin_chain[1], "admin.flags.update", "_admin", {"type": "flags", "id": None},
                        {"policy.cache": cache})
    bundle_change = {"name": "authz", "revision": revision, "digest": digest}
    check_admin_receipt(admin_chain[2], "admin.bundle.activate", "_admin", {"type": "bundle", "id": "authz"},
                        bundle_change)
    check_admin_receipt(admin_chain[3], "admin.bundle.activate", "_admin", {"type": "bundle", "id": "authz"},
                        bundle_change)
    check_admin_receipt(admin_chain[4], "admin.signing_key.rotate", "_admin",
                        {"type": "signing_key", "id": new_signer}, {"key_id": new_signer, "previous": old_signer})
    check_admin_receipt(admin_chain[5], "admin.key.rotate", "_admin", {"type": "api_key", "id": "admin"},
                        {"key_id": "admin", "tenant_id": None, "grace_s": 60,
                         "grace_until": admin_rot["grace_until"]})
    assert admin_chain[5]["signer"]["key_id"] == new_signer  # issued after the rotation: the new key signs

    # no secret is in any receipt
    everything = str(admin_chain + tenant_chain)
    for secret in (srv.admin_key, made["key"], rotated["key"], admin_rot["key"]):
        assert secret not in everything

    # every chain verifies with PyNaCl + rfc8785 + blake3 only, and with `provgraph verify`
    keys = public_keys(admin)
    independent_verify(admin_chain, keys)
    independent_verify(tenant_chain, keys)
    for tenant, n in (("_admin", 6), ("aud", 4)):
        proc = verify_cli("--tenant", tenant, "--url", f"http://127.0.0.1:{srv.port}", "--key", srv.admin_key)
        assert proc.returncode == 0 and f"{n} receipts" in proc.stdout, proc.stderr
        rid = (admin_chain if tenant == "_admin" else tenant_chain)[-1]["receipt_id"]
        assert admin.ok("GET", f"/v1/tenants/{tenant}/receipts/{rid}/verify")["valid"] is True
    srv.stop()
    for tenant, n in (("_admin", 6), ("aud", 4)):
        proc = verify_cli("--tenant", tenant, "--data-dir", str(srv.data_dir))
        assert proc.returncode == 0 and f"{n} receipts" in proc.stdout, proc.stderr


def test_failed_admin_changes_write_no_receipt(server_factory: Any) -> None:
    srv: Server = server_factory()
    admin = srv.api()
    tenant = admin.new_tenant("nop", scopes=("read", "write", "approve"))
    wait_chain(admin, "nop", 2)
    wait_chain(admin, "_admin", 1)
    key_id = admin.ok("GET", "/v1/admin/keys?tenant_id=nop")["keys"][0]["key_id"]
    failures = [
        ("POST", "/v1/admin/tenants", {"tenant_id": "nop"}, 409),
        ("POST", "/v1/admin/tenants", {"tenant_id": "_admin"}, 422),
        ("POST", "/v1/admin/keys", {"tenant_id": "_admin", "scopes": ["read"]}, 404),
        ("POST", "/v1/admin/keys", {"tenant_id": "nop", "scopes": ["root"]}, 422),
        ("DELETE", "/v1/admin/keys/admin", None, 409),
        ("DELETE", "/v1/admin/keys/ffffffffffffffff", None, 404),
        ("POST", f"/v1/admin/keys/{key_id}/rotate", {"grace_s": -5}, 400),
        ("PUT", "/v1/admin/flags", {"policy.cache": "sideways"}, 400),
        ("POST", "/v1/bundles/authz/activate", {"revision": "never"}, 404),
    ]
    for method, path, body, status in failures:
        got, err = admin.call(method, path, body)
        assert got == status and set(err["error"]) == {"code", "message", "details", "request_id"}, (path, got, err)
    time.sleep(0.3)  # longer than the issuer's batching interval: anything queued would be issued
    assert len(chain(admin, "nop")) == 2 and len(chain(admin, "_admin")) == 1
    # the _admin chain is the admin key's to read: a tenant key gets 403, an unknown tenant stays 404
    assert tenant.get("/v1/tenants/_admin/receipts")[0] == 403
    assert admin.get("/v1/tenants/nobody/receipts")[0] == 404


def test_admin_key_replaced_from_the_environment_is_recorded(server_factory: Any) -> None:
    srv: Server = server_factory()
    wait_chain(srv.api(), "_admin", 1)
    srv.stop()
    srv.admin_key = "pga_replaced_by_the_operator_42"
    srv.start()
    admin = srv.api(srv.admin_key)
    replaced = wait_chain(admin, "_admin", 2)[1]
    check_admin_receipt(replaced, "admin.key.replace", "_admin", {"type": "api_key", "id": "admin"},
                        {"key_id": "admin", "tenant_id": None, "scopes": ["admin"], "actor": "admin", "roles": [],
                         "source": "PROVGRAPH_ADMIN_KEY"}, actor="operator")
    independent_verify(wait_chain(admin, "_admin", 2), public_keys(admin))


def test_tenant_created_by_provgraph_load_is_recorded_at_the_next_start(server_factory: Any, tmp_path: Any) -> None:
    data, edges = tmp_path / "loaded", tmp_path / "edges.csv"
    edges.write_text("src,dst\n1,2\n2,3\n")
    proc = subprocess.run([sys.executable, "-m", "provgraph", "load", "--tenant", "ld", "--data-dir", str(data),
                           str(edges)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    srv: Server = server_factory(data_dir=data)
    admin = srv.api()
    created = wait_chain(admin, "ld", 1)
    check_admin_receipt(created[0], "admin.tenant.create", "ld", {"type": "tenant", "id": "ld"},
                        {"tenant_id": "ld"}, actor="operator")
    independent_verify(created, public_keys(admin))
