"""Contract tests of the policy API against a real server: bundles, OPA Data API, /decide, cache, log."""

from __future__ import annotations

import gzip
import io
import tarfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from conftest import Api, Server
from provgraph.policy.bundle import (
    build_bundle,
    example_bundle_files,
    load_example_bundle,
)

GZ = {"Content-Type": "application/gzip"}


def _example_files() -> dict[str, str | bytes]:
    return dict(example_bundle_files())


def bundle(revision: str, extra: dict[str, str | bytes] | None = None,
           replace: dict[str, str | bytes] | None = None) -> bytes:
    files = {**_example_files(), **(replace or {}), **(extra or {})}
    return build_bundle(files, {"revision": revision, "roots": ["provgraph"]})


def put(admin: Api, raw: bytes, name: str = "authz", activate: bool = True) -> tuple[int, Any]:
    status, _, body = admin.raw("PUT", f"/v1/bundles/{name}{'' if activate else '?activate=false'}",
                                raw, GZ)
    return status, orjson.loads(body)


@pytest.fixture(scope="module")
def policy_server(server: Server) -> Server:
    status, body = put(server.api(), load_example_bundle())
    assert status in (200, 201), body
    return server


class TenantApi(Api):
    """A tenant key's client that knows its tenant."""

    tenant = ""


def tenant_api(admin: Api, name: str, roles: tuple[str, ...]) -> TenantApi:
    api = admin.new_tenant(name, scopes=("read",), actor=f"user:{name}", roles=roles)
    out = TenantApi(api.port, api.key)
    out.tenant = name
    return out


@pytest.fixture
def cache_on(policy_server: Server) -> Iterator[None]:
    """Tests of the decision cache itself run with it on, whichever profile the server runs."""
    with policy_server.api().flags_set({"policy.cache": "on"}):
        yield


@pytest.fixture
def analyst(policy_server: Server, request: pytest.FixtureRequest) -> TenantApi:
    return tenant_api(policy_server.api(), f"p-{request.node.name[5:30].replace('_', '-')}", ("analyst",))


def decide(api: TenantApi, action: str, rtype: str, attributes: dict[str, Any] | None = None,
           context: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"action": action, "resource": {"type": rtype, "id": "r1", "attributes": attributes or {}},
            "context": context or {}}
    result: dict[str, Any] = api.ok("POST", f"/v1/tenants/{api.tenant}/decide", body)
    return result


def test_upload_list_download_etag(policy_server: Server) -> None:
    admin = policy_server.api()
    listing = admin.ok("GET", "/v1/bundles/authz")
    active = listing["active_revision"]
    rev = next(r for r in listing["revisions"] if r["revision"] == active)
    assert rev["active"] and len(rev["digest"]) == 64 and rev["uploaded_at"].endswith("Z")
    status, headers, raw = admin.raw("GET", "/v1/bundles/authz/download")
    assert status == 200 and headers["etag"] == f'"{rev["digest"]}"'
    assert headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
        assert ".manifest" in [m.name.lstrip("/") for m in tar.getmembers()]
    status, headers, raw = admin.raw("GET", "/v1/bundles/authz/download", headers={"If-None-Match": headers["etag"]})
    assert status == 304 and raw == b""
    assert admin.with_key(None).call("GET", "/v1/bundles/authz/download")[0] == 401
    assert admin.call("GET", "/v1/bundles/nope/download")[0] == 404


def test_decide_rbac_abac_obligations_and_cache(analyst: TenantApi, policy_server: Server, cache_on: None) -> None:
    got = decide(analyst, "graph.read", "graph")
    assert got["decision"] == "allow" and got["bundle"] == "authz" and got["revision"]
    assert got["cached"] is False and got["reasons"] == ["role analyst grants graph.read on graph"]
    again = decide(analyst, "graph.read", "graph")
    assert again["cached"] is True and again["decision"] == "allow" and again["decision_id"] != got["decision_id"]
    denied = decide(analyst, "graph.delete", "graph")
    assert denied["decision"] == "deny" and "no role grants graph.delete on graph" in denied["reasons"]
    restricted = decide(analyst, "graph.read", "graph", {"classification": "restricted"})
    assert restricted["decision"] == "deny"
    assert "restricted resource requires clearance" in restricted["reasons"]
    purpose = decide(analyst, "graph.read", "graph", {"classification": "restricted"}, {"purpose": "legal-hold"})
    assert purpose["decision"] == "allow"
    other = decide(analyst, "graph.read", "graph", {"tenant_id": "someone-else"})
    assert other["decision"] == "deny"
    admin = policy_server.api()
    operator = tenant_api(admin, "ops-" + analyst.tenant, ("operator",))
    hazardous = decide(operator, "graph.delete", "graph")
    assert hazardous["decision"] == "allow"
    assert hazardous["obligations"] == [{"type": "dual_control", "required_approvers": 2}]
    # a different context is a different cache key
    assert decide(analyst, "graph.read", "graph", context={"x": 1})["cached"] is False


def test_cache_invalidation_endpoint_and_flag(analyst: TenantApi, policy_server: Server, cache_on: None) -> None:
    admin = policy_server.api()
    decide(analyst, "graph.query", "graph")
    assert decide(analyst, "graph.query", "graph")["cached"] is True
    admin.ok("POST", "/v1/cache/invalidate", {"tenant_id": analyst.tenant, "action": "graph.query"})
    assert decide(analyst, "graph.query", "graph")["cached"] is False
    assert decide(analyst, "graph.query", "graph")["cached"] is True
    admin.ok("POST", "/v1/cache/invalidate", {"resource_type": "graph"})
    assert decide(analyst, "graph.query", "graph")["cached"] is False
    admin.ok("POST", "/v1/cache/invalidate", {})
    assert decide(analyst, "graph.query", "graph")["cached"] is False
    assert admin.call("POST", "/v1/cache/invalidate", {"tenant_id": 5})[0] == 400
    assert admin.call("POST", "/v1/cache/invalidate", {"tenant_id": "no-such"})[0] == 404
    assert analyst.call("POST", "/v1/cache/invalidate", {})[0] == 403
    with admin.flags_set({"policy.cache": "off"}):
        assert decide(analyst, "graph.query", "graph")["cached"] is False
        assert decide(analyst, "graph.query", "graph")["cached"] is False


def test_data_api_shapes(analyst: TenantApi) -> None:
    policy_input = {"tenant_id": "x", "actor": {"id": "u", "roles": ["viewer"]}, "action": "graph.read",
                    "resource": {"type": "graph", "id": "g"}, "context": {}}
    got = analyst.ok("POST", "/v1/data/provgraph/authz/decision", {"input": policy_input})
    assert got["result"]["allow"] is True and isinstance(got["decision_id"], str)
    got = analyst.ok("POST", "/v1/data/provgraph/authz/nothing_here", {"input": policy_input})
    assert "result" not in got and "decision_id" in got
    got = analyst.ok("GET", "/v1/data/provgraph/authz/resource_types")
    assert got["result"] == ["bundle", "export", "graph", "key", "receipt", "service", "tenant"]
    got = analyst.ok("POST", "/v1/data/provgraph/authz/decision?metrics=true", {"input": policy_input})
    assert got["metrics"]["timer_rego_query_eval_ns"] > 0
    assert "result" not in analyst.ok("POST", "/v1/data/elsewhere/x", {"input": {}})
    status, _, raw = analyst.raw("POST", "/v1/data/provgraph/authz/decision", b"{nope", {})
    assert status == 400 and orjson.loads(raw)["error"]["code"] == "bad_request"


def test_bad_bundles_rejected_and_active_unchanged(analyst: TenantApi, policy_server: Server) -> None:
    admin = policy_server.api()
    before = admin.ok("GET", "/v1/bundles/authz")["active_revision"]
    bad_rego = bundle("bad-1", replace={"provgraph/authz/policy.rego":
                                         "package provgraph.authz\n\ndecision := {\n  \"allow\": true,,\n}\n"})
    no_manifest = io.BytesIO()
    with tarfile.open(fileobj=no_manifest, mode="w:gz") as tar:
        info = tarfile.TarInfo("x.rego")
        data = b"package provgraph.x\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    cases = {
        "not gzip": b"this is not a bundle",
        "bad rego": bad_rego,
        "missing manifest": no_manifest.getvalue(),
        "bad data": bundle("bad-2", extra={"provgraph/authz/more/data.json": b"{not json"}),
        "outside roots": bundle("bad-3", extra={"elsewhere/data.json": b"{}"}),
    }
    for label, raw in cases.items():
        status, body = put(admin, raw)
        assert status == 400, (label, body)
        assert body["error"]["code"] == "bundle_invalid" and body["error"]["message"], label
    status, body = put(admin, bad_rego)
    assert "policy.rego:" in orjson.dumps(body).decode()  # file:line:col of the syntax error
    assert admin.ok("GET", "/v1/bundles/authz")["active_revision"] == before
    assert decide(analyst, "graph.read", "graph")["revision"] == before
    assert admin.call("PUT", "/v1/bundles/authz", {"x": 1})[0] == 415


def test_stage_activate_rollback_and_no_stale_decision(analyst: TenantApi, policy_server: Server,
                                                       cache_on: None) -> None:
    admin = policy_server.api()
    first = admin.ok("GET", "/v1/bundles/authz")["active_revision"]
    decide(analyst, "graph.read", "graph")
    assert decide(analyst, "graph.read", "graph")["cached"] is True
    stricter = bundle("strict-1", replace={"provgraph/authz/data.json": orjson.dumps(
        {**orjson.loads(example_bundle_files()["provgraph/authz/data.json"]),
         "roles": {"analyst": {}, "admin": {"*": ["*"]}}})})
    status, body = put(admin, stricter, activate=False)
    assert status == 201 and body["active"] is False
    assert decide(analyst, "graph.read", "graph")["revision"] == first
    admin.ok("POST", "/v1/bundles/authz/activate", {"revision": "strict-1"})
    got = decide(analyst, "graph.read", "graph")
    assert (got["revision"], got["decision"], got["cached"]) == ("strict-1", "deny", False)
    admin.ok("POST", "/v1/bundles/authz/activate", {"revision": first})  # rollback
    got = decide(analyst, "graph.read", "graph")
    assert (got["revision"], got["decision"], got["cached"]) == (first, "allow", False)
    assert admin.call("POST", "/v1/bundles/authz/activate", {"revision": "never"})[0] == 404
    # same revision with other content: conflict
    assert put(admin, bundle("strict-1"))[0] == 409


def test_invalidation_under_concurrent_load(analyst: TenantApi, policy_server: Server) -> None:
    """After activation returns, no decision of the old revision is served (requests sent after it)."""
    admin = policy_server.api()
    start = admin.ok("GET", "/v1/bundles/authz")["active_revision"]
    put(admin, bundle("load-a"), activate=False)
    put(admin, bundle("load-b"), activate=False)
    stop = threading.Event()
    seen: list[tuple[float, str]] = []  # (send time, revision)
    errors: list[str] = []

    def hammer() -> None:
        client = analyst.with_key(analyst.key)
        i = 0
        while not stop.is_set():
            sent = time.monotonic()
            status, body = client.post(f"/v1/tenants/{analyst.tenant}/decide",
                                       {"action": "graph.read", "resource": {"type": "graph", "id": str(i % 5)}})
            if status != 200:
                errors.append(str(body))
            else:
                seen.append((sent, body["revision"]))
            i += 1

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    activated: list[tuple[float, str]] = []
    try:
        for revision in ("load-a", "load-b", start):
            time.sleep(0.3)
            admin.ok("POST", "/v1/bundles/authz/activate", {"revision": revision})
            activated.append((time.monotonic(), revision))
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors and len(seen) > 50
    order = [rev for _, rev in activated]
    for sent, revision in seen:
        done = [i for i, (at, _) in enumerate(activated) if at <= sent]
        if done:  # sent after activation i returned: revision i or a later one, never an older one
            assert revision in order[done[-1]:], (sent, revision, activated)


def test_eval_error_fails_closed(server_factory: Any) -> None:
    srv = server_factory(["--policy-bundle", "boom"])
    admin = srv.api()
    conflicting = build_bundle({"provgraph/authz/policy.rego": (
        "package provgraph.authz\n\n"
        "decision := {\"allow\": true, \"reasons\": [], \"obligations\": []} if input.action\n"
        "decision := {\"allow\": false, \"reasons\": [], \"obligations\": []} if input.resource\n")},
        {"revision": "boom-1", "roots": ["provgraph"]})
    assert put(admin, conflicting, name="boom")[0] == 201
    api = tenant_api(admin, "boomer", ("analyst",))
    got = decide(api, "graph.read", "graph")
    assert got["decision"] == "deny" and got["cached"] is False
    assert any("policy evaluation error" in r for r in got["reasons"]), got
    assert decide(api, "graph.read", "graph")["cached"] is False  # errors are never cached
    status, body = api.post("/v1/data/provgraph/authz/decision", {"input": {"action": "a", "resource": {}}})
    assert status == 500 and body["error"]["code"] == "policy_eval_error"
    _, text = admin.with_key(None).call("GET", "/metrics")
    line = next(ln for ln in text.decode().splitlines() if ln.startswith("provgraph_policy_eval_errors_total"))
    assert float(line.split()[-1]) >= 3
    # two definitions of decision with different values can conflict: never on the bytecode VM,
    # whose regorus version would not report the conflict
    assert admin.ok("GET", "/v1/bundles/boom/stats")["vm_eligible"] is False


def test_vm_flag_gives_the_interpreters_decisions(policy_server: Server) -> None:
    """policy.vm on (bytecode VM) and off (interpreter, the baseline) decide alike, uncached."""
    admin = policy_server.api()
    assert admin.ok("GET", "/v1/bundles/authz/stats")["vm_eligible"] is True
    apis = [tenant_api(admin, f"vm-{i}", roles) for i, roles in
            enumerate((("analyst",), ("viewer",), ("operator",), ("analyst", "cleared"), ("security",)))]
    requests = [(a, r, attrs, ctx) for a, r in (("graph.read", "graph"), ("graph.write", "graph"),
                                                ("graph.delete", "graph"), ("export.create", "export"),
                                                ("deploy", "service"), ("nope", "graph"), ("graph.read", "alien"))
                for attrs in ({}, {"classification": "restricted"}) for ctx in ({}, {"purpose": "legal-hold"})]
    answers: dict[str, list[Any]] = {}
    with admin.flags_set({"policy.cache": "off", "policy.vm": "off"}):
        for vm in ("off", "on", "on"):  # "on" twice: the first on-call of a path plans it
            admin.ok("PUT", "/v1/admin/flags", {"policy.vm": vm})
            answers[vm] = [(got["decision"], got["reasons"], got["obligations"])
                           for api in apis for a, r, attrs, ctx in requests
                           for got in [decide(api, a, r, attrs, ctx)]]
    assert answers["on"] == answers["off"]
    assert {d for d, _, _ in answers["on"]} == {"allow", "deny"}
    _, text = admin.with_key(None).call("GET", "/metrics")
    line = next(ln for ln in text.decode().splitlines() if ln.startswith("provgraph_policy_vm_fallbacks"))
    assert float(line.split()[-1]) == 0


def test_decision_log_and_stats(analyst: TenantApi, policy_server: Server) -> None:
    admin = policy_server.api()
    got = decide(analyst, "graph.read", "graph", context={"log": True})
    log = analyst.ok("GET", f"/v1/tenants/{analyst.tenant}/decisions?limit=5")["decisions"]
    entry = next(e for e in log if e["decision_id"] == got["decision_id"])
    assert {"decision_id", "path", "revision", "input_hash", "result", "timestamp", "eval_ns"} <= entry.keys()
    assert entry["path"] == "provgraph/authz/decision" and len(entry["input_hash"]) == 64
    stats = admin.ok("GET", "/v1/bundles/authz/stats")
    assert stats["stats"]["evaluations"] >= 1 and 0 <= stats["stats"]["hit_rate"] <= 1
    assert "p99_us" in stats["stats"]
    _, text = admin.with_key(None).call("GET", "/metrics")
    assert b"provgraph_policy_decision_duration_seconds_bucket" in text


def test_cached_decisions_answer_as_evaluated_ones(analyst: TenantApi, policy_server: Server) -> None:
    """A cached decision is answered by the native fast path from the raw body: the response and
    the log entry must say what the evaluated (Python path) one said, in the same key order, and
    each lookup counts once in the cache's figures."""
    admin = policy_server.api()
    operator = tenant_api(admin, "fp-" + analyst.tenant, ("operator",))
    bodies = [(analyst, {"action": "graph.read", "resource": {"type": "graph", "id": "r9",
                                                              "attributes": {"b": [1, 2.5], "a": {"y": None}}},
                         "context": {"purpose": "analysis"}}),
              (analyst, {"action": "graph.delete", "resource": {"type": "graph"}}),
              (operator, {"action": "graph.delete", "resource": {"type": "graph", "id": None}, "context": {}})]

    def cache() -> dict[str, int]:
        counts: dict[str, int] = admin.ok("GET", "/v1/bundles/authz/stats")["cache"]
        return counts

    with admin.flags_set({"policy.cache": "on"}):  # the baseline profile runs with it off
        before = cache()
        for api, body in bodies:
            path = f"/v1/tenants/{api.tenant}/decide"
            status, _, first = api.raw("POST", path, orjson.dumps(body))
            assert status == 200
            # the same request with its members in another order and spaced: the same cache key
            spaced = orjson.dumps(dict(reversed(body.items())), option=orjson.OPT_INDENT_2)
            for raw in (orjson.dumps(body), spaced):
                status, _, again = api.raw("POST", path, raw)
                assert status == 200
                a, b = orjson.loads(first), orjson.loads(again)
                assert (a["cached"], b["cached"]) == (False, True)
                assert list(a) == list(b) and a["decision_id"] != b["decision_id"]
                assert {**a, "decision_id": "", "cached": True} == {**b, "decision_id": ""}, (a, b)
            log = api.ok("GET", f"/v1/tenants/{api.tenant}/decisions?limit=10")["decisions"]
            entries = {e["decision_id"]: e for e in log}
            miss, hit = entries[orjson.loads(first)["decision_id"]], entries[orjson.loads(again)["decision_id"]]
            assert list(miss) == list(hit) and hit["cached"] is True and hit["eval_ns"] == 0
            same = {k: v for k, v in miss.items() if k not in ("decision_id", "cached", "timestamp", "ts_ns", "eval_ns")}
            assert same == {k: hit[k] for k in same}
        after = cache()
    assert after["hits"] - before["hits"] == 2 * len(bodies)
    assert after["misses"] - before["misses"] == len(bodies)


def test_decide_bad_input(analyst: TenantApi) -> None:
    path = f"/v1/tenants/{analyst.tenant}/decide"
    for body in ({}, {"action": "x"}, {"action": "x", "resource": {"type": 3}},
                 {"action": "x", "resource": {"type": "graph", "attributes": []}},
                 {"action": "x", "resource": {"type": "graph"}, "context": "no"}):
        status, err = analyst.post(path, body)
        assert status == 400 and err["error"]["code"] == "bad_request", body


def test_download_long_polling(analyst: TenantApi, policy_server: Server) -> None:
    admin = policy_server.api()
    start = admin.ok("GET", "/v1/bundles/authz")["active_revision"]
    status, headers, _ = analyst.raw("GET", "/v1/bundles/authz/download")
    etag = headers["etag"]
    t0 = time.monotonic()
    status, _, _ = analyst.raw("GET", "/v1/bundles/authz/download", headers={"If-None-Match": etag,
                                                                              "Prefer": "wait=1"})
    assert status == 304 and time.monotonic() - t0 >= 0.9  # held until the timeout, nothing changed
    put(admin, bundle("poll-1"), activate=False)
    answer: dict[str, Any] = {}

    def poll() -> None:
        client = analyst.with_key(analyst.key)
        s, h, _ = client.raw("GET", "/v1/bundles/authz/download", headers={"If-None-Match": etag,
                                                                          "Prefer": "wait=20"})
        answer.update(status=s, etag=h.get("etag"), revision=h.get("x-bundle-revision"), at=time.monotonic())

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.5)
    activated_at = time.monotonic()
    admin.ok("POST", "/v1/bundles/authz/activate", {"revision": "poll-1"})
    waiter.join(25)
    try:
        assert answer["status"] == 200 and answer["etag"] != etag and answer["revision"] == "poll-1"
        assert answer["at"] - activated_at < 5  # woken by the activation, not by the timeout
    finally:
        admin.ok("POST", "/v1/bundles/authz/activate", {"revision": start})
