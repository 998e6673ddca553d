"""Rego semantics of the native policy engine (provgraph._core.PolicyBundle, regorus) against
OPA v1.x's documented answers (tests/policy_cases.py), plus compile/eval errors, thread safety
and the decision cache (provgraph._core.DecisionCache)."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import pytest
from policy_cases import CASES, ERROR, NO_INPUT, UNDEFINED
from provgraph._core import DecisionCache, PolicyBundle
from provgraph.errors import (
    BadRequestError,
    BundleError,
    InvalidArgumentError,
    PolicyCompileError,
    PolicyEvalError,
)


def same(got: Any, want: Any) -> bool:
    """JSON equality that keeps booleans apart from numbers (Python has True == 1)."""
    if isinstance(got, bool) or isinstance(want, bool):
        return type(got) is type(want) and got == want
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return got == want
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(same(a, b) for a, b in zip(got, want))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(same(got[k], want[k]) for k in got)
    return type(got) is type(want) and got == want


def compile_case(c: dict[str, Any]) -> PolicyBundle:
    return PolicyBundle.compile(list(c["modules"].items()), json.dumps(c["data"]).encode())


def test_most_cases_run_on_the_vm() -> None:
    """The vm-* cases above test the VM only where it runs: count them, and check that the
    conflict cases (which the VM would not report) are kept on the interpreter."""
    on_vm, off = 0, []
    for c in CASES:
        bundle = compile_case(c)
        input_json = None if c["input"] is NO_INPUT else json.dumps(c["input"]).encode()
        try:
            bundle.eval(c["query"], input_json, vm=True)
        except PolicyEvalError:
            pass
        if bundle.uses_vm(c["query"]):
            on_vm += 1
        else:
            off.append(c["name"])
        if c["name"].startswith("conflict_"):
            assert not bundle.vm_eligible, c["name"]
    assert on_vm >= 0.75 * len(CASES), f"only {on_vm}/{len(CASES)} on the VM; not: {off}"


def test_enough_cases() -> None:
    assert len(CASES) >= 60
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c, vm", [
    pytest.param(c, vm, id=f"{'vm' if vm else 'interpreter'}-{c['name']}",
                 marks=[pytest.mark.xfail(strict=True, reason=c["deviation"])]
                 if c["deviation"] and not vm else [])
    for vm in (False, True)
    for c in CASES
])
def test_semantics(c: dict[str, Any], vm: bool) -> None:
    bundle = compile_case(c)
    input_json = None if c["input"] is NO_INPUT else json.dumps(c["input"]).encode()
    if vm:  # the first evaluation of a path plans it (interpreter); later ones run the VM
        try:
            bundle.eval(c["query"], input_json, vm=True)
        except PolicyEvalError:
            pass
    if c["expected"] is ERROR:
        with pytest.raises(PolicyEvalError):
            bundle.eval(c["query"], input_json, vm=vm)
        return
    out = bundle.eval(c["query"], input_json, vm=vm)
    if c["expected"] is UNDEFINED:
        assert out is None, out
        return
    assert out is not None, "undefined"
    got = json.loads(out)
    assert same(got, c["expected"]), f"got {got!r}, want {c['expected']!r}"
    assert b"\n" not in out, "compact JSON"


# --- errors ------------------------------------------------------------------------------

GOOD = ("authz/ok.rego", "package authz\n\nok := 1\n")


@pytest.mark.parametrize("src, where", [
    ("package authz\n\nallow iff true\n", "authz/bad.rego:3:1"),
    ("package authz\n\nallow if {\n  input.x ==\n}\n", "authz/bad.rego:5:1"),
    ("package authz\n\nallow if { y == 1 }\n", "authz/bad.rego:3:12"),
])
def test_compile_error_names_file_line_col(src: str, where: str) -> None:
    with pytest.raises(PolicyCompileError) as exc:
        PolicyBundle.compile([GOOD, ("authz/bad.rego", src)], b"{}")
    msg = str(exc.value)
    assert msg.startswith(where + ": "), msg
    assert isinstance(exc.value, BundleError) and isinstance(exc.value, BadRequestError)
    assert exc.value.code == "bundle_invalid" and exc.value.status == 400


@pytest.mark.parametrize("data", [b"[1, 2]", b"{not json", b'"x"'])
def test_bad_data_is_compile_error(data: bytes) -> None:
    with pytest.raises(PolicyCompileError, match="data"):
        PolicyBundle.compile([GOOD], data)


def test_empty_data_is_empty_object() -> None:
    b = PolicyBundle.compile([GOOD], b"")
    assert json.loads(b.eval("") or b"null") == {"authz": {"ok": 1}}


def test_runtime_error_is_policy_eval_error() -> None:
    b = PolicyBundle.compile([("p/p.rego", "package p\n\nx := 1 if input.a\nx := 2 if input.b\n")], b"{}")
    assert b.eval("p/x", b'{"a": true}') == b"1"
    with pytest.raises(PolicyEvalError) as exc:
        b.eval("p/x", b'{"a": true, "b": true}')
    assert exc.value.status == 500 and exc.value.code == "policy_eval_error"
    assert str(exc.value).startswith("p/p.rego:4:"), str(exc.value)
    # the engine of this thread stays usable after an error
    assert b.eval("p/x", b'{"b": true}') == b"2"


def test_bad_input_json() -> None:
    b = PolicyBundle.compile([GOOD], b"{}")
    with pytest.raises(InvalidArgumentError):
        b.eval("authz/ok", b"{nope")


def test_packages_and_timed_eval() -> None:
    b = PolicyBundle.compile([GOOD, ("x/y.rego", "package provgraph.authz\n\nallow := true\n")], b"{}")
    assert b.packages == ["authz", "provgraph.authz"]
    out, ns = b.eval_timed("provgraph/authz/allow")
    assert out == b"true" and ns > 0
    out, ns = b.eval_timed("provgraph/authz/nothing", b"{}")
    assert out is None and ns > 0


def test_input_is_not_leaked_between_calls() -> None:
    b = PolicyBundle.compile([("p/p.rego", "package p\n\nv := input.v\n")], b"{}")
    assert b.eval("p/v", b'{"v": 1}') == b"1"
    assert b.eval("p/v") is None
    assert b.eval("p/v", b"{}") is None


def test_revisions_are_independent() -> None:
    bundles = [PolicyBundle.compile([("p/p.rego", f"package p\n\nrev := {i}\n")], b"{}") for i in range(8)]
    for _ in range(3):  # more revisions than engines kept per thread
        for i, b in enumerate(bundles):
            assert b.eval("p/rev") == str(i).encode()


def test_four_threads_consistent() -> None:
    rego = """package authz

default allow := false

allow if {
    some role in input.roles
    input.action in data.perms[role]
}

n := count(input.roles)
"""
    data = {"perms": {f"r{i}": ["read"] if i % 2 else ["read", "write"] for i in range(20)}}
    bundle = PolicyBundle.compile([("authz/p.rego", rego)], json.dumps(data).encode())
    other = PolicyBundle.compile([("authz/p.rego", "package authz\n\nallow := \"other\"\n")], b"{}")
    errors: list[str] = []
    barrier = threading.Barrier(4)

    def worker(tid: int) -> None:
        barrier.wait()
        for i in range(400):
            role = f"r{(i + tid) % 20}"
            action = "write" if i % 3 else "read"
            inp = json.dumps({"roles": [role], "action": action}).encode()
            want = b"true" if (action == "read" or ((i + tid) % 20) % 2 == 0) else b"false"
            got = bundle.eval("authz/allow", inp)
            if got != want:
                errors.append(f"t{tid} i{i}: {got!r} != {want!r}")
            if i % 50 == 0 and other.eval("authz/allow") != b'"other"':
                errors.append("other revision answered wrong")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:5]


# --- decision cache ----------------------------------------------------------------------

D1, D2 = b"\x01" * 32, b"\x02" * 32


def test_cache_hit_miss_and_epoch() -> None:
    c = DecisionCache(1000)
    assert c.get("t", "read", "doc", D1, 1) is None
    c.put("t", "read", "doc", D1, 1, b'{"allow":true}', 60.0)
    assert c.get("t", "read", "doc", D1, 1) == b'{"allow":true}'
    assert c.get("t", "read", "doc", D2, 1) is None
    assert c.get("t", "write", "doc", D1, 1) is None
    assert c.get("t", "read", "doc", D1, 2) is None  # another revision's epoch: never served
    s = c.stats()
    assert (s["hits"], s["misses"], s["stale"], s["inserts"]) == (1, 3, 1, 1)
    c.put("t", "read", "doc", D1, 2, b"new", 60.0)
    assert c.get("t", "read", "doc", D1, 2) == b"new"
    assert c.get("t", "read", "doc", D1, 1) is None


def test_decide_hit_answers_what_the_python_path_would() -> None:
    """DecisionCache.decide_hit (the /decide fast path) finds what PolicyManager.decide cached
    (same key) and writes the response and log entry decide() would; refuses and misses are None
    and counted nowhere (decide() then looks up and counts)."""
    import orjson
    from provgraph._core import canonical_hash
    from provgraph.policy.manager import decision_key, parse_decision_request

    body = {"action": "read", "resource": {"type": "doc", "id": "d", "extra": 1,
                                           "attributes": {"n": 1.5, "big": 2 ** 60, "s": "é\n\u2028"}},
            "context": {"k": [None, True, -0.0, 1e-7]}}
    action, resource, context = parse_decision_request(body)
    digest = canonical_hash(decision_key("u", ["a", "b"], resource, context))
    decision = {"allow": False, "reasons": ["no", "ß"], "obligations": [{"z": 1, "a": "x", "f": 0.1}]}
    c = DecisionCache(10)
    c.put("t", action, resource["type"], digest, 1, orjson.dumps(decision), 60.0)
    args = ("t", "u", ["a", "b"], 1, "authz", "r1", "p/q", "2026-01-01T00:00:00.000000Z")
    got = c.decide_hit(orjson.dumps(body), *args)
    assert got is not None
    response, entry = got
    did = orjson.loads(response)["decision_id"]
    assert response == orjson.dumps({"decision": "deny", "reasons": decision["reasons"],
                                     "obligations": decision["obligations"], "bundle": "authz", "revision": "r1",
                                     "decision_id": did, "cached": True})
    assert orjson.loads(entry) == {"decision_id": did, "path": "p/q", "bundle": "authz", "revision": "r1",
                                   "input_hash": digest.hex(), "tenant_id": "t", "actor": "u", "action": "read",
                                   "resource_type": "doc", "result": decision, "cached": True,
                                   "timestamp": "2026-01-01T00:00:00.000000Z", "eval_ns": 0}
    for raw, over in [(orjson.dumps(body), {"epoch": 2}), (orjson.dumps({**body, "context": {}}), {}),
                      (b'{"action": "read", "resource": {"type": ""}}', {}), (b"{", {})]:
        a = dict(zip(("tenant", "actor", "roles", "epoch", "bundle", "revision", "path", "timestamp"), args))
        assert c.decide_hit(raw, **{**a, **over}) is None, raw
    s = c.stats()
    assert (s["hits"], s["misses"], s["stale"]) == (1, 0, 0)


def test_cache_ttl_expiry() -> None:
    c = DecisionCache()
    c.put("t", "a", "r", D1, 1, b"x", 0.05)
    c.put("t", "a", "r", D2, 1, b"y", 60.0)
    assert c.get("t", "a", "r", D1, 1) == b"x"
    time.sleep(0.12)
    assert c.get("t", "a", "r", D1, 1) is None
    assert c.get("t", "a", "r", D2, 1) == b"y"
    c.put("t", "a", "r", D1, 1, b"z", 0.0)  # zero TTL stores nothing
    assert c.get("t", "a", "r", D1, 1) is None


def test_cache_invalidate() -> None:
    c = DecisionCache()
    keys = [(t, a, r) for t in ("t1", "t2") for a in ("read", "write") for r in ("doc", "img")]
    for k in keys:
        c.put(*k, D1, 1, b"v", 60.0)

    def live() -> set[tuple[str, str, str]]:
        return {k for k in keys if c.get(*k, D1, 1) is not None}

    assert live() == set(keys)
    c.invalidate(tenant="t1")
    assert live() == {k for k in keys if k[0] != "t1"}
    c.invalidate(action="write")
    assert live() == {k for k in keys if k[0] != "t1" and k[1] != "write"}
    c.invalidate(tenant="t2", resource_type="img")
    assert live() == {("t2", "read", "doc")}
    c.put("t1", "read", "doc", D1, 1, b"again", 60.0)  # entries written after an invalidation live
    assert c.get("t1", "read", "doc", D1, 1) == b"again"
    c.invalidate()
    assert live() == set()
    assert c.stats()["invalidations"] == 4


def test_cache_bounded() -> None:
    c = DecisionCache(100)
    for i in range(3000):
        c.put("t", "a", "r", i.to_bytes(32, "little"), 1, b"v" * 10, 60.0)
    s = c.stats()
    assert s["entries"] <= 100, s
    assert s["inserts"] == 3000


def test_cache_argument_errors() -> None:
    c = DecisionCache(10)
    with pytest.raises(InvalidArgumentError):
        c.get("t", "a", "r", b"short", 1)
    with pytest.raises(InvalidArgumentError):
        c.put("t", "a", "r", D1, 1, b"v", -1.0)
    with pytest.raises(InvalidArgumentError):
        c.put("t", "a", "r", D1, 1, b"v", float("nan"))


def test_cache_threads() -> None:
    c = DecisionCache(10_000)
    errors: list[str] = []

    def worker(tid: int) -> None:
        for i in range(2000):
            d = (i % 100).to_bytes(32, "little")
            c.put(f"t{tid}", "a", "r", d, 1, str(i % 100).encode(), 60.0)
            got = c.get(f"t{tid}", "a", "r", d, 1)
            if got is not None and got != str(i % 100).encode():
                errors.append(f"{tid}:{i}:{got!r}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert re.fullmatch(r"\d+", str(c.stats()["entries"]))
