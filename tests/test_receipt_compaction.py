"""Receipt compaction (issue 16, first step): the compact form reconstructs every receipt the service can
sign byte for byte, and its signed bytes; a server storing receipts compact (the default), dual or full
serves byte-identical receipts that verify with PyNaCl, blake3 and rfc8785 alone; a dictionary never
keeps entries of receipts that were not committed."""

from __future__ import annotations

import base64
import time
from typing import Any

import blake3
import orjson
import pytest
import rfc8785
from conftest import Server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import VerifyKey
from provgraph._core import ReceiptCodec, ReceiptSigner, uuid7
from test_contract_actions import act, independent_verify, setup_tenant, wait_receipt

GENESIS = bytes(32)

# JSON values as the service could put in a receipt: unicode (astral, escapes), big and fractional
# numbers, nesting, and strings shaped like the codec's special forms (UUIDs, hashes, times).
_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
    st.sampled_from(["01890a5d-ac96-774b-bcce-b302099a8057", "ab" * 32, "AB" * 32, "2026-12-07T10:11:12.123456Z",
                     "2026-02-30T00:00:00.000000Z", "1999-12-31T23:59:59.999999Z", "user:olga", "\u2028\ud7ff"]),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                       max_leaves=12)


def _receipt(extra: dict[str, Any], approvals: int, evidence: int, n: int) -> dict[str, Any]:
    r: dict[str, Any] = {
        "receipt_id": uuid7(), "tenant_id": "acme", "executed_at": "2026-12-07T10:11:12.000001Z",
        "issued_at": "2026-12-07T10:11:12.004000Z", "actor": {"id": f"user:u{n % 5}", "roles": ["operator"]},
        "action": "deploy", "resource": {"type": "service", "id": f"s{n}"}, "preflight_id": uuid7(),
        "policy": {"bundle": "authz", "revision": "r1", "decision_id": uuid7(), "decision": "allow"},
        "request_hash": blake3.blake3(b"%d" % n).hexdigest(), "result_hash": blake3.blake3(b"r%d" % n).hexdigest(),
        "approvals": [{"actor": f"user:a{i}", "at": "2026-12-07T10:11:11.999999Z", "receipt_id": uuid7()}
                      for i in range(approvals)],
        "evidence": [{"hash": blake3.blake3(b"e%d" % i).hexdigest(), "size": 1000 + i} for i in range(evidence)],
    }
    r.update({k: v for k, v in extra.items() if k not in ("seq", "prev_hash", "signer", "signature")})
    r["receipt_id"] = r["receipt_id"] if isinstance(r["receipt_id"], str) and r["receipt_id"] else uuid7()
    r["tenant_id"] = r["tenant_id"] if isinstance(r["tenant_id"], str) and r["tenant_id"] else "acme"
    return r


def _signed_bytes(stored: bytes) -> bytes | None:
    """The signed bytes by rfc8785 (None where it refuses the value: integers of 2^53 and more,
    which JCS writes as doubles; the signature and hash checks still cover those)."""
    try:
        return rfc8785.dumps({k: v for k, v in orjson.loads(stored).items() if k != "signature"})
    except rfc8785.IntegerDomainError:
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extras=st.lists(st.tuples(st.dictionaries(st.text(max_size=16), _values, max_size=5),
                                 st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=6))
def test_any_signable_receipt_round_trips_byte_exact(extras: list[tuple[dict[str, Any], int, int]]) -> None:
    signer = ReceiptSigner(bytes(range(32)))
    maps = [_receipt(extra, a, e, i) for i, (extra, a, e) in enumerate(extras)]
    signed, _ = signer.sign_batch(GENESIS, 1, [orjson.dumps(m) for m in maps])
    codec = ReceiptCodec()
    compact, first, added = codec.encode("", [(json, seq) for seq, _, _, json in signed])
    assert first == 0 and len(added) == len(codec)
    stored = ReceiptCodec(added)  # the dictionary as stored, loaded afresh
    prev = GENESIS
    for (seq, _, signed_hash, json), form in zip(signed, compact, strict=True):
        assert stored.decode(form, "", seq) == json
        signed_bytes = stored.decode(form, "", seq, signed=True)
        assert _signed_bytes(json) in (signed_bytes, None)
        assert blake3.blake3(signed_bytes).digest() == signed_hash
        receipt = orjson.loads(json)
        assert receipt["prev_hash"] == prev.hex()
        VerifyKey(signer.public_key).verify(signed_bytes, base64.b64decode(receipt["signature"]))
        prev = signed_hash


def test_compact_form_is_small_and_the_dictionary_only_grows() -> None:
    signer = ReceiptSigner(bytes(32))
    maps = [_receipt({}, i % 3 == 0, i % 4, i) for i in range(400)]
    signed, _ = signer.sign_batch(GENESIS, 1, [orjson.dumps(m) for m in maps])
    codec = ReceiptCodec()
    sizes = (0, 0)
    for seq, _, _, json in signed:
        before = len(codec)
        (form,), first, added = codec.encode("", [(json, seq)])
        assert first == before and len(codec) == before + len(added)
        assert form[0] == 1  # the template form
        sizes = (sizes[0] + len(json), sizes[1] + len(form))
    assert sizes[1] * 3 < sizes[0], sizes  # well under a third of the JSON
    codec.truncate(5)
    assert len(codec) == 5
    with pytest.raises(ValueError):
        codec.decode(form, "", signed[-1][0])  # its entries are gone: an error, never wrong bytes


def test_escape_form_for_json_that_is_not_canonical() -> None:
    codec = ReceiptCodec()
    raw = b'{"b": 1, "a": "x"}'
    (form,), _, added = codec.encode("", [(raw, 1)])
    assert form[0] == 0 and not added
    assert codec.decode(form, "", 1) == raw
    assert codec.decode(form, "", 1, signed=True) == rfc8785.dumps({"a": "x", "b": 1})


def _stored_forms(srv: Server, tenant: str) -> list[int]:
    """The form of every receipt of `tenant` as stored, by the first byte of its row (b"{": full JSON,
    0/1: a compact row of its own, 2: in a pack, 3: in a chain pack, once per receipt of the pack)."""
    import lmdb
    from provgraph.actions.pipeline import row_count
    from provgraph.store.keys import scan_prefix, tenant_prefix

    env = lmdb.open(str(srv.data_dir / "lmdb"), readonly=True, lock=False, max_dbs=64)
    try:
        with env.begin() as txn:
            tenants = txn.get(tenant.encode(), db=env.open_db(b"tenants", txn=txn, create=False))
            num = orjson.loads(tenants)["num"]
            cur = txn.cursor(db=env.open_db(b"receipts", txn=txn, create=False))
            return [v[0] for _, v in scan_prefix(cur, tenant_prefix(num))
                    for _ in range(row_count(v))]
    finally:
        env.close()


def test_storage_modes_serve_byte_identical_receipts_that_verify_independently(server_factory: Any) -> None:
    srv = server_factory(["--flag", "receipts.storage=full"])
    keys = setup_tenant(srv, "cmp")
    admin, op = srv.api(), keys["op"]
    issued: list[str] = []
    for mode in ("full", "compact", "dual", "compact", "full"):
        with admin.flags_set({"receipts.storage": mode}):
            got = op.ok("POST", "/v1/tenants/cmp/actions:batch", {"actions": [
                act("deploy", "service", {"mode": mode, "n": i, "text": "h\u00e9llo \U0001f600"}, rid=f"{mode}{i}")
                for i in range(20)]})["results"]
            for r in got:
                wait_receipt(op, r["receipt_id"])
            issued += [r["receipt_id"] for r in got]
    srv.stop()
    forms = _stored_forms(srv, "cmp")
    assert ord("{") in forms and 3 in forms  # both forms in one chain (compact ones in chain packs)
    srv.start()
    receipts = op.receipts("cmp", page=37)
    assert {r["receipt_id"] for r in receipts} >= set(issued)
    public = {k["key_id"]: base64.b64decode(k["public_key"]) for k in admin.ok("GET", "/v1/keys")["keys"]}
    independent_verify(receipts, public)
    # one receipt, by id and in a page, is the same bytes
    for r in receipts[-45:]:
        status, _, one = op.raw("GET", f"/v1/tenants/cmp/receipts/{r['receipt_id']}")
        assert status == 200 and orjson.loads(one) == r and one == rfc8785.dumps(r)
    # dual: reads are checked against the compact copy, none mismatched
    with admin.flags_set({"receipts.storage": "dual"}):
        op.receipts("cmp", page=100)
        metrics = admin.with_key(None).raw("GET", "/metrics")[2].decode()
    checks = next(float(ln.split()[1]) for ln in metrics.splitlines() if ln.startswith("provgraph_receipt_dual_checks_total"))
    mismatches = next(float(ln.split()[1]) for ln in metrics.splitlines()
                      if ln.startswith("provgraph_receipt_dual_mismatches_total"))
    assert checks >= 20 and mismatches == 0


def test_failed_commits_leave_no_dictionary_entry_behind(server_factory: Any) -> None:
    """Storage failures (injected) make batches fail after their receipts were encoded: the
    entries they added are dropped, so receipts issued later (and after a restart, from the stored
    dictionary alone) still reconstruct and verify."""
    srv = server_factory(["--enable-fault-injection", "--flag", "receipts.storage=compact"])
    keys = setup_tenant(srv, "rb")
    admin, op = srv.api(), keys["op"]
    admin.ok("PUT", "/v1/admin/faults", {"commit": 3})
    ids = [op.ok("POST", "/v1/tenants/rb/actions:batch", {"actions": [
        act("deploy", "service", {"n": i}, rid=f"new-{i}")]})["results"][0]["receipt_id"] for i in range(6)]
    for rid in ids:
        wait_receipt(op, rid, timeout=20)
    srv.stop()
    srv.start()
    receipts = op.receipts("rb", page=100)
    public = {k["key_id"]: base64.b64decode(k["public_key"]) for k in admin.ok("GET", "/v1/keys")["keys"]}
    independent_verify(receipts, public)
    assert {r["receipt_id"] for r in receipts} >= set(ids)
    assert _stored_forms(srv, "rb").count(3) >= len(ids)  # stored compact, in packs


MIGRATE = "/v1/admin/receipts/migrate"


def _wait_migration(admin: Any, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = admin.ok("GET", MIGRATE)
        if state["state"] in ("done", "failed"):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.05)


def _issue(op: Any, tenant: str, count: int, tag: str) -> list[str]:
    ids = []
    for k in range(0, count, 100):
        got = op.ok("POST", f"/v1/tenants/{tenant}/actions:batch", {"actions": [
            act("deploy", "service", {"tag": tag, "n": i}, rid=f"{tag}{i}") for i in range(k, min(count, k + 100))]})
        ids += [r["receipt_id"] for r in got["results"]]
    wait_receipt(op, ids[-1])
    return ids


def test_migrate_endpoint_rewrites_stored_forms_with_reads_unchanged(server_factory: Any) -> None:
    srv = server_factory(["--flag", "receipts.storage=full", "--migrate-chunk", "7"])
    keys = setup_tenant(srv, "mg")
    admin, op = srv.api(), keys["op"]
    admin.ok("POST", "/v1/admin/tenants", {"tenant_id": "other"}, status=201)  # its creation: a receipt
    _issue(op, "mg", 60, "a")
    before = op.receipts("mg", page=1000)
    assert admin.ok("GET", MIGRATE)["state"] == "idle"
    # refusals: nothing started
    for body, status in (({"to": "zip"}, 422), ({}, 400), ({"to": "compact", "x": 1}, 400),
                         ({"to": "compact", "tenant_id": 5}, 400), ({"to": "compact", "tenant_id": "nobody"}, 404)):
        assert admin.post(MIGRATE, body)[0] == status, body
    assert op.post(MIGRATE, {"to": "compact"})[0] == 403
    assert admin.ok("GET", MIGRATE)["state"] == "idle"
    job = admin.ok("POST", MIGRATE, {"to": "compact", "tenant_id": "mg"}, status=202)["job_id"]
    state = _wait_migration(admin)
    assert state["state"] == "done" and state["job_id"] == job and state["remaining"] == 0 and not state["errors"]
    after = op.receipts("mg", page=1000)
    # every row of the tenant was full: all rewritten (its migration's own receipt, issued first, too)
    assert state["migrated"] == len(after) == len(before) + 1
    assert after[:len(before)] == before and after[-1]["action"] == "admin.receipts.migrate"
    srv.stop()
    assert set(_stored_forms(srv, "mg")) == {2}  # every receipt in a pack
    assert ord("{") in set(_stored_forms(srv, "other"))  # another tenant's rows untouched
    srv.start()
    raw = op.raw("GET", "/v1/tenants/mg/receipts?after_seq=0&limit=1000")[2]
    admin.ok("POST", MIGRATE, {"to": "full"}, status=202)  # every tenant, back to full
    assert _wait_migration(admin)["state"] == "done"
    assert op.raw("GET", "/v1/tenants/mg/receipts?after_seq=0&limit=1000")[2] == raw
    srv.stop()
    assert set(_stored_forms(srv, "mg")) == {ord("{")}


def test_kill_during_migration_resumes_and_loses_nothing(server_factory: Any) -> None:
    """kill -9 mid-migration (every commit slowed, chunks of 10): after a restart the migration
    resumes from its state row and finishes; every receipt reads back byte-identical, none lost or
    duplicated, the chain verifies independently; then `provgraph receipts migrate --to full`
    (offline) restores full rows with the same reads."""
    from datadir_reads import cli

    srv = server_factory(["--flag", "receipts.storage=full", "--migrate-chunk", "10", "--enable-fault-injection"])
    keys = setup_tenant(srv, "kd")
    admin, op = srv.api(), keys["op"]
    _issue(op, "kd", 300, "k")
    before = op.receipts("kd", page=1000)
    admin.ok("PUT", "/v1/admin/faults", {"commit_delay_ms": 40})
    admin.ok("POST", MIGRATE, {"to": "compact"}, status=202)
    deadline = time.monotonic() + 20
    while admin.ok("GET", MIGRATE)["migrated"] < 50:  # well under way, far from done
        assert time.monotonic() < deadline
        time.sleep(0.02)
    srv.kill()
    mid = _stored_forms(srv, "kd")
    assert 2 in mid and ord("{") in mid  # stopped half way
    srv.start()
    state = _wait_migration(admin)
    assert state["state"] == "done" and not state["errors"]
    after = op.receipts("kd", page=1000)
    assert after[:len(before)] == before  # byte-identical JSON, nothing lost
    assert len({r["receipt_id"] for r in after}) == len(after)  # nothing duplicated
    public = {k["key_id"]: base64.b64decode(k["public_key"]) for k in admin.ok("GET", "/v1/keys")["keys"]}
    independent_verify(after, public)
    raw_before = op.raw("GET", "/v1/tenants/kd/receipts?after_seq=0&limit=1000")[2]
    run = cli("receipts", "migrate", "--to", "full", "--data-dir", str(srv.data_dir))
    assert run.returncode == 2 and "has" in run.stderr and "open" in run.stderr, run.stderr  # the server runs
    srv.stop()
    assert set(_stored_forms(srv, "kd")) == {2}
    run = cli("receipts", "migrate", "--to", "full", "--data-dir", str(srv.data_dir), "--chunk", "64")
    assert run.returncode == 0, run.stderr
    assert set(_stored_forms(srv, "kd")) == {ord("{")}
    run = cli("verify", "--tenant", "kd", "--data-dir", str(srv.data_dir))
    assert run.returncode == 0, run.stderr
    srv.start()
    assert op.raw("GET", "/v1/tenants/kd/receipts?after_seq=0&limit=1000")[2] == raw_before


def test_storage_report_counts_real_bytes(server_factory: Any) -> None:
    srv = server_factory(["--flag", "receipts.storage=compact"])
    keys = setup_tenant(srv, "st")
    admin, op = srv.api(), keys["op"]
    op.ok("POST", "/v1/tenants/st/graph/edges", {"src": list(range(10)), "dst": list(range(1, 11))})
    _issue(op, "st", 50, "s")
    report = admin.ok("GET", "/v1/admin/storage")
    chain = op.receipts("st", page=1000)
    r = report["tenants"]["st"]["receipts"]
    assert r["count"] == len(chain) and r["mode"] == "compact" and r["compact_rows"] == len(chain)
    assert 1 <= r["packs"] < len(chain)
    assert r["bytes_full"] == sum(len(rfc8785.dumps(x)) for x in chain)  # the bytes served
    assert 0 < r["bytes_stored"] < r["bytes_full"] / 2  # rows, dictionary and all
    tables = report["tenants"]["st"]["tables"]
    assert tables["out"]["rows"] == 10 and tables["receipts"]["rows"] == r["packs"] and len(chain) > 50
    assert tables["receipt_dict"]["rows"] > 0 and tables["receipts_compact"]["rows"] == 0
    assert report["tables"]["receipts"]["bytes"] > 0 and report["tables"]["receipts"]["bytes"] % 4096 == 0
    assert report["tables"]["receipts"]["rows"] == sum(t["tables"]["receipts"]["rows"]
                                                       for t in report["tenants"].values())
    assert report["tenants"]["_admin"]["receipts"]["count"] >= 1  # the bundle upload, the admin key
    assert report["totals"]["receipts"] == sum(t["receipts"]["count"] for t in report["tenants"].values())
    assert op.get("/v1/admin/storage")[0] == 403
    metrics = admin.with_key(None).raw("GET", "/metrics")[2].decode()
    line = next(ln for ln in metrics.splitlines() if ln.startswith('provgraph_storage_table_bytes{table="receipts"}'))
    assert float(line.split()[1]) == report["tables"]["receipts"]["bytes"]
