"""Contract tests of governed actions against a real server: preflight → approvals → execute → receipts."""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import blake3
import orjson
import pytest
import rfc8785
from conftest import Api, Server
from nacl.signing import VerifyKey
from provgraph.policy.bundle import load_example_bundle

GZ = {"Content-Type": "application/gzip"}


class TenantApi(Api):
    tenant = ""


def tenant_key(admin: Api, tenant: str, roles: tuple[str, ...], actor: str,
               scopes: tuple[str, ...] = ("read", "write", "approve")) -> TenantApi:
    key = admin.ok("POST", "/v1/admin/keys", {"tenant_id": tenant, "scopes": list(scopes), "actor": actor,
                                              "roles": list(roles)}, status=201)["key"]
    api = TenantApi(admin.port, key)
    api.tenant = tenant
    return api


def setup_tenant(srv: Server, tenant: str) -> dict[str, TenantApi]:
    admin = srv.api()
    status, _, body = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(), GZ)
    assert status in (200, 201), body
    admin.ok("POST", "/v1/admin/tenants", {"tenant_id": tenant}, status=201)
    keys = {"op": tenant_key(admin, tenant, ("operator",), "user:olga"),
            "analyst": tenant_key(admin, tenant, ("analyst",), "user:ana"),
            "a1": tenant_key(admin, tenant, ("security",), "user:ann", ("read", "approve")),
            "a2": tenant_key(admin, tenant, ("security",), "user:bob", ("read", "approve")),
            "reader": tenant_key(admin, tenant, ("viewer",), "user:rita", ("read",))}
    # the audit receipts of this set-up (bundle, tenant, keys) issued before a test injects faults
    deadline = time.monotonic() + 10
    while b"provgraph_receipt_outbox_depth 0.0" not in admin.with_key(None).raw("GET", "/metrics")[2]:
        assert time.monotonic() < deadline, "set-up receipts not issued in 10 s"
        time.sleep(0.02)
    return keys


def act(action: str, rtype: str, payload: Any = None, rid: str = "r1") -> dict[str, Any]:
    return {"action": action, "resource": {"type": rtype, "id": rid}, "payload": payload if payload is not None else {}}


def run_action(api: TenantApi, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
    pf = api.ok("POST", f"/v1/tenants/{api.tenant}/actions/preflight", body, status=201)
    return api.call("POST", f"/v1/tenants/{api.tenant}/actions/{pf['preflight_id']}/execute", body,
                    headers=headers or None)


def wait_receipt(api: TenantApi, receipt_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = api.get(f"/v1/tenants/{api.tenant}/receipts/{receipt_id}")
        if status == 200:
            result: dict[str, Any] = body
            return result
        time.sleep(0.02)
    raise AssertionError(f"receipt {receipt_id} not issued within {timeout} s")


def all_receipts(api: TenantApi) -> list[dict[str, Any]]:
    return api.receipts(api.tenant, page=100)


def independent_verify(receipts: list[dict[str, Any]], keys: dict[str, bytes]) -> None:
    """The API.md recipe with PyNaCl, rfc8785 and blake3 only — no provgraph code."""
    prev = "0" * 64
    for i, receipt in enumerate(receipts, start=1):
        assert receipt["seq"] == i
        assert receipt["prev_hash"] == prev
        body = {k: v for k, v in receipt.items() if k != "signature"}
        signed = rfc8785.dumps(body)
        assert receipt["signer"]["alg"] == "Ed25519"
        VerifyKey(keys[receipt["signer"]["key_id"]]).verify(signed, base64.b64decode(receipt["signature"]))
        prev = blake3.blake3(signed).hexdigest()


def public_keys(api: Api) -> dict[str, bytes]:
    return {k["key_id"]: base64.b64decode(k["public_key"]) for k in api.ok("GET", "/v1/keys")["keys"]}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = Server(tmp_path_factory.mktemp("act") / "data", "pga_test_admin_key_0123456789", ["--preflight-ttl", "3"])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def keys(srv: Server) -> dict[str, TenantApi]:
    return setup_tenant(srv, "acts")


def test_execute_issues_a_verifiable_receipt_and_applies_the_effect(keys: dict[str, TenantApi]) -> None:
    op = keys["op"]
    body = act("graph.write", "graph", {"edges": [{"src": 1, "dst": 2, "w": 0.5}, {"src": 2, "dst": 3, "w": 1.0}]})
    pf = op.ok("POST", f"/v1/tenants/{op.tenant}/actions/preflight", body, status=201)
    assert pf["decision"] == "allow" and pf["obligations"] == [] and len(pf["request_hash"]) == 64
    assert pf["expires_at"].endswith("Z")
    assert pf["request_hash"] == blake3.blake3(rfc8785.dumps(body)).hexdigest()
    got = op.ok("POST", f"/v1/tenants/{op.tenant}/actions/{pf['preflight_id']}/execute", body)
    assert got["status"] == "executed"
    receipt = wait_receipt(op, got["receipt_id"])
    assert receipt["receipt_id"] == got["receipt_id"] and receipt["tenant_id"] == op.tenant
    assert receipt["action"] == "graph.write" and receipt["resource"] == {"type": "graph", "id": "r1"}
    assert receipt["actor"] == {"id": "user:olga", "roles": ["operator"]}
    assert receipt["policy"]["decision"] == "allow" and receipt["policy"]["bundle"] == "authz"
    assert receipt["preflight_id"] == pf["preflight_id"] and receipt["request_hash"] == pf["request_hash"]
    assert receipt["approvals"] == [] and receipt["evidence"] == []
    assert receipt["executed_at"] <= receipt["issued_at"]
    # the effect: the edges are in the tenant's graph
    q = op.ok("POST", f"/v1/tenants/{op.tenant}/graph/query", {"query": "path", "src": 1, "dst": 3})
    assert q == {"path": [1, 2, 3]}
    check = op.ok("GET", f"/v1/tenants/{op.tenant}/receipts/{got['receipt_id']}/verify")
    assert check["valid"] and check["signature"] and check["chain"]


def test_execute_error_paths(keys: dict[str, TenantApi], srv: Server) -> None:
    op, analyst = keys["op"], keys["analyst"]
    base = f"/v1/tenants/{op.tenant}/actions"
    body = act("export.create", "export", {"format": "parquet"})
    assert op.post(f"{base}/0190b3e2-0000-7000-8000-000000000000/execute", body)[0] == 404
    assert op.post(f"{base}/not-a-uuid/execute", body)[0] == 404
    pf = op.ok("POST", f"{base}/preflight", act("deploy", "service", {"v": 1}), status=201)
    status, err = op.post(f"{base}/{pf['preflight_id']}/execute", act("deploy", "service", {"v": 2}))
    assert status == 409 and err["error"]["details"]["expected"] == pf["request_hash"]
    assert err["error"]["details"]["actual"] != pf["request_hash"]
    # denied by the policy
    denied = analyst.ok("POST", f"{base}/preflight", act("graph.delete", "graph"), status=201)
    assert denied["decision"] == "deny"
    assert analyst.post(f"{base}/{denied['preflight_id']}/execute", act("graph.delete", "graph"))[0] == 403
    # executed once; again -> 409; same Idempotency-Key -> the first answer
    body = act("deploy", "service", {"v": 3})
    pf = op.ok("POST", f"{base}/preflight", body, status=201)
    first = op.call("POST", f"{base}/{pf['preflight_id']}/execute", body, headers={"Idempotency-Key": "k-1"})
    assert first[0] == 200
    again = op.call("POST", f"{base}/{pf['preflight_id']}/execute", body, headers={"Idempotency-Key": "k-1"})
    assert again == first
    assert op.post(f"{base}/{pf['preflight_id']}/execute", body)[0] == 409
    # another tenant's preflight is unknown; its key can't even use this tenant's path
    other = setup_tenant(srv, "acts-other")["op"]
    assert other.post(f"/v1/tenants/{other.tenant}/actions/{pf['preflight_id']}/execute", body)[0] == 404
    assert other.post(f"{base}/{pf['preflight_id']}/execute", body)[0] == 403
    # expired (the fixture server keeps preflights 3 s)
    body = act("deploy", "service", {"v": 4})
    pf = op.ok("POST", f"{base}/preflight", body, status=201)
    time.sleep(3.2)
    status, err = op.post(f"{base}/{pf['preflight_id']}/execute", body)
    assert status == 410 and err["error"]["code"] == "preflight_expired"
    # bad input writes nothing
    assert op.post(f"{base}/preflight", {"action": "x"})[0] == 400
    bad = act("graph.write", "graph", {"edges": [{"src": 1, "dst": 2, "w": 7}]})
    pf = op.ok("POST", f"{base}/preflight", bad, status=201)
    assert op.post(f"{base}/{pf['preflight_id']}/execute", bad)[0] == 422
    assert op.ok("GET", f"{base}/{pf['preflight_id']}")["status"] == "pending"


def test_dual_control(keys: dict[str, TenantApi]) -> None:
    op, a1, a2 = keys["op"], keys["a1"], keys["a2"]
    base, appr = f"/v1/tenants/{op.tenant}/actions", f"/v1/tenants/{op.tenant}/approvals"
    body = act("graph.delete", "graph", {"edges": [[1, 2]]})
    pf = op.ok("POST", f"{base}/preflight", body, status=201)
    assert pf["obligations"] == [{"type": "dual_control", "required_approvers": 2}]
    status, err = op.post(f"{base}/{pf['preflight_id']}/execute", body)
    assert status == 403 and err["error"]["details"] == {"required_approvers": 2, "approvals": 0}
    assert op.post(f"{appr}/{pf['preflight_id']}/grant")[0] == 403  # the requester can't approve
    assert keys["reader"].post(f"{appr}/{pf['preflight_id']}/grant")[0] == 403  # no approve scope
    g1 = a1.ok("POST", f"{appr}/{pf['preflight_id']}/grant")
    assert (g1["status"], g1["approvals"]) == ("pending_approval", 1)
    assert a1.post(f"{appr}/{pf['preflight_id']}/grant")[0] == 409  # a repeated approver
    assert op.post(f"{base}/{pf['preflight_id']}/execute", body)[0] == 403
    g2 = a2.ok("POST", f"{appr}/{pf['preflight_id']}/grant")
    assert g2["status"] == "approved"
    done = op.ok("POST", f"{base}/{pf['preflight_id']}/execute", body)
    receipt = wait_receipt(op, done["receipt_id"])
    assert [a["actor"] for a in receipt["approvals"]] == ["user:ann", "user:bob"]
    assert [a["receipt_id"] for a in receipt["approvals"]] == [g1["receipt_id"], g2["receipt_id"]]
    grant_receipt = wait_receipt(op, g1["receipt_id"])
    assert grant_receipt["action"] == "approval.grant" and grant_receipt["preflight_id"] == pf["preflight_id"]
    assert grant_receipt["actor"]["id"] == "user:ann"
    # a reject finalizes
    pf = op.ok("POST", f"{base}/preflight", act("graph.delete", "graph", {"nodes": [9]}), status=201)
    rj = a1.ok("POST", f"{appr}/{pf['preflight_id']}/reject")
    assert rj["status"] == "rejected"
    assert wait_receipt(op, rj["receipt_id"])["action"] == "approval.reject"
    assert a2.post(f"{appr}/{pf['preflight_id']}/grant")[0] == 409
    assert op.post(f"{base}/{pf['preflight_id']}/execute", act("graph.delete", "graph", {"nodes": [9]}))[0] == 403


@pytest.mark.parametrize("ack", ["queued", "applied", "durable"])
def test_preflight_is_readable_and_executable_at_once(keys: dict[str, TenantApi], srv: Server, ack: str) -> None:
    """actions.preflight_ack=queued answers before the writer applies the record, applied before
    its fsync: the preflight must still be visible to the very next GET, grant and execute
    (read-your-writes), as with the durable baseline."""
    op, a1, a2, admin = keys["op"], keys["a1"], keys["a2"], srv.api()
    base, appr = f"/v1/tenants/{op.tenant}/actions", f"/v1/tenants/{op.tenant}/approvals"
    with admin.flags_set({"actions.preflight_ack": ack}):
        for i in range(30):
            body = act("deploy", "service", {"ack": ack, "i": i}, rid=f"ack-{i}")
            pf = op.ok("POST", f"{base}/preflight", body, status=201)
            got = op.ok("GET", f"{base}/{pf['preflight_id']}")
            assert got["status"] == "pending" and got["request_hash"] == pf["request_hash"]
            done = op.ok("POST", f"{base}/{pf['preflight_id']}/execute", body)
            assert done["receipt_id"]
        for i in range(5):
            body = act("graph.delete", "graph", {"nodes": [5000 + i]}, rid=f"ack-d{i}")
            pf = op.ok("POST", f"{base}/preflight", body, status=201)
            a1.ok("POST", f"{appr}/{pf['preflight_id']}/grant")
            assert a2.ok("POST", f"{appr}/{pf['preflight_id']}/grant")["status"] == "approved"
            assert op.ok("POST", f"{base}/{pf['preflight_id']}/execute", body)["receipt_id"]


def test_concurrent_grants_both_count(keys: dict[str, TenantApi]) -> None:
    """Two approvers acting at the same moment (as the P1 approval flow does): neither grant is lost."""
    op, a1, a2 = keys["op"], keys["a1"], keys["a2"]
    base, appr = f"/v1/tenants/{op.tenant}/actions", f"/v1/tenants/{op.tenant}/approvals"
    for n in range(10):
        body = act("graph.delete", "graph", {"nodes": [1000 + n]})
        pf = op.ok("POST", f"{base}/preflight", body, status=201)
        grant = f"{appr}/{pf['preflight_id']}/grant"
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(api.ok, "POST", grant) for api in (a1, a2)]
            grants = [f.result() for f in futures]
        assert sorted(g["approvals"] for g in grants) == [1, 2]
        assert sorted(g["status"] for g in grants) == ["approved", "pending_approval"]
        done = op.ok("POST", f"{base}/{pf['preflight_id']}/execute", body)
        receipt = wait_receipt(op, done["receipt_id"])
        assert sorted(a["actor"] for a in receipt["approvals"]) == ["user:ann", "user:bob"]


def test_batch_and_invariants(keys: dict[str, TenantApi], srv: Server) -> None:
    op = keys["op"]
    items = [act("deploy", "service", {"n": i}, rid=f"s{i}") for i in range(40)]
    items += [act("graph.delete", "graph", {"nodes": [i]}) for i in range(5)]  # need approvals
    items += [act("key.rotate", "key")]  # the operator has no such role: denied
    items += [{"action": 5}]  # malformed
    got = op.ok("POST", f"/v1/tenants/{op.tenant}/actions:batch", {"actions": items})["results"]
    assert len(got) == len(items)
    assert all("receipt_id" in r for r in got[:40])
    assert all(r["status"] == "pending_approval" for r in got[40:45])
    assert got[45]["error"]["code"] == "forbidden" and got[46]["error"]["code"] == "bad_request"
    for r in got[:40]:
        wait_receipt(op, r["receipt_id"])
    assert op.post(f"/v1/tenants/{op.tenant}/actions:batch", {"actions": []})[0] == 400
    # invariants over everything this tenant did so far
    receipts = all_receipts(op)
    ids = [r["receipt_id"] for r in receipts]
    assert len(ids) == len(set(ids))
    executed = [r for r in receipts if not r["action"].startswith(("approval.", "admin."))]
    assert all(r["policy"]["decision"] == "allow" for r in executed)
    by_preflight = {}
    for r in executed:
        assert r["preflight_id"] not in by_preflight, "one receipt per executed action"
        by_preflight[r["preflight_id"]] = r
    independent_verify(receipts, public_keys(op))
    # another tenant cannot read these receipts
    other = setup_tenant(srv, "acts-peek")["reader"]
    assert other.get(f"/v1/tenants/{other.tenant}/receipts/{ids[0]}")[0] == 404
    assert other.get(f"/v1/tenants/{op.tenant}/receipts/{ids[0]}")[0] == 403


def test_key_rotation_keeps_old_receipts_verifiable(keys: dict[str, TenantApi], srv: Server) -> None:
    op, admin = keys["op"], srv.api()
    before = op.ok("POST", f"/v1/tenants/{op.tenant}/actions:batch", {"actions": [act("deploy", "service")]})
    rotated = admin.ok("POST", "/v1/admin/signing-keys/rotate", status=201)
    after = op.ok("POST", f"/v1/tenants/{op.tenant}/actions:batch", {"actions": [act("deploy", "service")]})
    r1 = wait_receipt(op, before["results"][0]["receipt_id"])
    r2 = wait_receipt(op, after["results"][0]["receipt_id"])
    assert r2["signer"]["key_id"] == rotated["key_id"] != r1["signer"]["key_id"]
    assert len(public_keys(op)) >= 2
    independent_verify(all_receipts(op), public_keys(op))


def test_dlq_and_replay(server_factory: Any) -> None:
    srv = server_factory(["--enable-fault-injection"])
    k = setup_tenant(srv, "dlq")
    op, admin = k["op"], srv.api()
    assert k["op"].call("PUT", "/v1/admin/faults", {"sign": 1})[0] == 403
    admin.ok("PUT", "/v1/admin/faults", {"sign": 1000})
    ids = [run_action(op, act("deploy", "service", {"i": i}))[1]["receipt_id"] for i in range(3)]
    deadline = time.monotonic() + 20
    while admin.ok("GET", "/v1/admin/dlq")["depth"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    dlq = admin.ok("GET", "/v1/admin/dlq")
    assert dlq["depth"] == 3 and all("injected signing failure" in e["last_error"] for e in dlq["entries"])
    _, metrics = admin.with_key(None).call("GET", "/metrics")
    assert b"provgraph_receipt_dlq_depth 3.0" in metrics
    admin.ok("PUT", "/v1/admin/faults", {"sign": 0, "commit": 2})  # storage fails twice, then recovers
    assert admin.ok("POST", "/v1/admin/dlq/replay", {})["replayed"] == 3
    for rid in ids:
        wait_receipt(op, rid)
    assert admin.ok("GET", "/v1/admin/dlq")["depth"] == 0
    receipts = all_receipts(op)
    # each exactly once (the tenant's chain starts with the receipts of its creation and its keys)
    assert sorted(r["receipt_id"] for r in receipts if not r["action"].startswith("admin.")) == sorted(ids)
    independent_verify(receipts, public_keys(op))


def test_kill_under_load_loses_no_acknowledged_execute(server_factory: Any) -> None:
    srv = server_factory()
    k = setup_tenant(srv, "crashy")
    op = k["op"]
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(w: int) -> None:
        api = op.with_key(op.key)
        client = TenantApi(api.port, api.key)
        client.tenant = op.tenant
        i = 0
        while not stop.is_set():
            try:
                status, body = run_action(client, act("deploy", "service", {"w": w, "i": i}))
            except (OSError, RuntimeError):
                return
            if status == 200:
                with lock:
                    acked.append(body["receipt_id"])
            i += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    srv.kill()
    stop.set()
    for t in threads:
        t.join(30)
    srv2 = server_factory(data_dir=srv.data_dir)
    op2 = TenantApi(srv2.port, op.key)
    op2.tenant = op.tenant
    for rid in acked:
        wait_receipt(op2, rid)
    receipts = all_receipts(op2)
    ids = [r["receipt_id"] for r in receipts]
    assert len(ids) == len(set(ids)) and set(acked) <= set(ids)
    independent_verify(receipts, public_keys(op2))


@pytest.mark.parametrize("mode", ["callback", "await"])
def test_write_answers_in_order_and_errors_either_way(keys: dict[str, TenantApi], srv: Server, mode: str) -> None:
    """service.write_answer=callback (the lean front end answers a write from the writer's
    completion) or await: pipelined on one connection, a write, a read, a failing write and a grant
    are answered in order, the failure as the JSON error the job raised."""
    from test_http_front import Raw

    op, a1, admin = keys["op"], keys["a1"], srv.api()
    base, appr = f"/v1/tenants/{op.tenant}/actions", f"/v1/tenants/{op.tenant}/approvals"
    with admin.flags_set({"service.write_answer": mode}):
        body = act("deploy", "service", {"mode": mode}, rid=f"wa-{mode}")
        pf = op.ok("POST", f"{base}/preflight", body, status=201)["preflight_id"]
        dual = act("graph.delete", "graph", {"nodes": [7000]}, rid=f"wa-d-{mode}")
        pf2 = op.ok("POST", f"{base}/preflight", dual, status=201)["preflight_id"]
        raw = orjson.dumps(body)

        def post(path: str, payload: bytes, key: str) -> bytes:
            return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Authorization: Bearer {key}\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload

        c = Raw(srv.port)
        try:
            c.send(post(f"{base}/{pf}/execute", raw, op.key)
                   + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                   + post(f"{base}/{pf}/execute", raw, op.key)
                   + post(f"{appr}/{pf2}/grant", b"", a1.key))
            answers = [c.response() for _ in range(4)]
        finally:
            c.close()
        assert [a[0] for a in answers] == [200, 200, 409, 200]
        receipt = orjson.loads(answers[0][2])["receipt_id"]
        assert orjson.loads(answers[1][2]) == {"status": "ok"}
        error = orjson.loads(answers[2][2])["error"]
        assert error["code"] == "conflict" and error["details"] == {"receipt_id": receipt}
        assert orjson.loads(answers[3][2])["status"] == "pending_approval"
        assert wait_receipt(op, receipt)["preflight_id"] == pf


@pytest.mark.parametrize("mode", ["turn", "off"])
def test_dual_control_with_writes_coalesced_per_loop_turn_or_not(keys: dict[str, TenantApi], srv: Server,
                                                                  mode: str) -> None:
    """runtime.write_coalesce: the two approvers' grants, sent at the same moment on two connections
    (as the P1 approval flow sends them), then the execute: the same answers and the same receipt
    either way — both grants counted, each its own receipt, the execute's receipt naming both."""
    from test_http_front import Raw

    op, a1, a2, admin = keys["op"], keys["a1"], keys["a2"], srv.api()
    base, appr = f"/v1/tenants/{op.tenant}/actions", f"/v1/tenants/{op.tenant}/approvals"
    with admin.flags_set({"runtime.write_coalesce": mode}):
        dual = act("graph.delete", "graph", {"nodes": [7100]}, rid=f"wc-{mode}")
        pf = op.ok("POST", f"{base}/preflight", dual, status=201)["preflight_id"]
        grant = "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 0\r\n\r\n"
        c1, c2 = Raw(srv.port), Raw(srv.port)
        try:
            c1.send(grant.format(path=f"{appr}/{pf}/grant", key=a1.key).encode())
            c2.send(grant.format(path=f"{appr}/{pf}/grant", key=a2.key).encode())
            answers = [orjson.loads(c.response()[2]) for c in (c1, c2)]
        finally:
            c1.close()
            c2.close()
        assert sorted(a["approvals"] for a in answers) == [1, 2]
        assert sorted(a["status"] for a in answers) == ["approved", "pending_approval"]
        got = op.ok("POST", f"{base}/{pf}/execute", dual)
        receipt = wait_receipt(op, got["receipt_id"])
        assert sorted(a["actor"] for a in receipt["approvals"]) == ["user:ann", "user:bob"]
        assert {a["receipt_id"] for a in answers} == {a["receipt_id"] for a in receipt["approvals"]}


@pytest.mark.parametrize("mode", ["turn", "off"])
def test_batch_with_writes_coalesced_per_loop_turn_or_not(keys: dict[str, TenantApi], srv: Server, mode: str) -> None:
    """A batch's writes (its executions, and its denied or pending preflights, stored) are queued
    together at the end of the loop turn with runtime.write_coalesce=turn: the same results either
    way — a receipt per execution, the stored preflights readable, the pending one executable once
    approved."""
    op, a1, a2, admin = keys["op"], keys["a1"], keys["a2"], srv.api()
    base, appr = f"/v1/tenants/{op.tenant}/actions", f"/v1/tenants/{op.tenant}/approvals"
    with admin.flags_set({"runtime.write_coalesce": mode}):
        dual = act("graph.delete", "graph", {"nodes": [7200]}, rid=f"bc-{mode}")
        items = [act("deploy", "service", {"n": i}, rid=f"bc-{mode}-{i}") for i in range(12)]
        items += [dual, act("key.rotate", "key", rid=f"bc-{mode}")]
        got = op.ok("POST", f"{base}:batch", {"actions": items})["results"]
        executed = [wait_receipt(op, r["receipt_id"]) for r in got[:12]]
        assert [r["resource"]["id"] for r in executed] == [f"bc-{mode}-{i}" for i in range(12)]
        assert all(r["preflight_id"] == g["preflight_id"] for r, g in zip(executed, got[:12]))
        pending, denied = got[12], got[13]
        assert pending["status"] == "pending_approval"
        assert denied["error"]["code"] == "forbidden"
        stored = op.ok("GET", f"{base}/{denied['error']['details']['preflight_id']}")
        assert stored["decision"] == "deny" and stored["status"] == "pending"
        assert op.ok("GET", f"{base}/{pending['preflight_id']}")["required_approvers"] == 2
        for approver in (a1, a2):
            approver.ok("POST", f"{appr}/{pending['preflight_id']}/grant")
        done = op.ok("POST", f"{base}/{pending['preflight_id']}/execute", dual)
        assert len(wait_receipt(op, done["receipt_id"])["approvals"]) == 2
