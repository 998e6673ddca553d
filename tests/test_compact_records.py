"""Compact records (flag records.storage): preflights and decision log entries stored compact read back
exactly as their JSON would, for every record the service writes and for unusual ones (which stay
JSON); the record dictionary is transactional; over HTTP both modes answer the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lmdb
import orjson
import pytest
from conftest import Server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from provgraph._core import RecordCodec
from provgraph.clock import rfc3339
from provgraph.errors import InvalidArgumentError
from provgraph.store import Store, Txn, Writer
from provgraph.store.records import Fresh, RecordCodecs
from test_contract_actions import act, run_action, setup_tenant, wait_receipt

_text = st.text(max_size=24)
_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), _text,
                               st.floats(allow_nan=False, allow_infinity=False)),
                     lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
                     max_leaves=8)
_ts = st.floats(min_value=1e9, max_value=4e9, allow_nan=False)
_hex = st.binary(min_size=32, max_size=32).map(bytes.hex)
_uuid = st.uuids().map(str)
_stamp = st.floats(1e9, 4e9, allow_nan=False).map(rfc3339)
FORM = 1


@st.composite
def preflights(draw: Any) -> dict[str, Any]:
    """Records of the shape ActionManager writes (pending, approved, rejected or executed)."""
    created = draw(_ts)
    expires = created + draw(st.sampled_from([900.0, 0.5, 86_400.25]))
    decision = draw(st.sampled_from(["allow", "deny"]))
    approver = st.fixed_dictionaries({"actor": _text, "at": _stamp, "receipt_id": _uuid})
    resource = draw(st.one_of(st.fixed_dictionaries({"type": _text, "id": _text}),
                              st.dictionaries(_text, _json, max_size=3)))
    result = draw(st.one_of(st.fixed_dictionaries({"payload_hash": _hex}),
                            st.fixed_dictionaries({"written": st.integers(0, 10**12)}),
                            st.dictionaries(_text, _json, max_size=2), _json))
    executed_at = rfc3339(created + draw(st.floats(-5, 3600, allow_nan=False)))
    pf = {
        "preflight_id": draw(_uuid), "tenant_id": draw(_text),
        "actor": {"id": draw(_text), "roles": draw(st.lists(_text, max_size=3))},
        "action": draw(_text), "resource": resource, "request_hash": draw(_hex), "decision": decision,
        "reasons": draw(st.lists(_text, max_size=3)), "obligations": draw(st.lists(_json, max_size=2)),
        "policy": {"bundle": draw(_text), "revision": draw(st.one_of(_text, st.none())), "decision_id": draw(_uuid),
                   "decision": decision},
        "created_at": created, "expires_ts": expires, "expires_at": rfc3339(expires),
        "status": draw(st.sampled_from(["pending", "executed", "rejected"])),
        "approvals": draw(st.lists(approver, max_size=3)),
        "rejection": draw(st.one_of(st.none(), approver)),
        "execution": draw(st.one_of(st.none(), _uuid.map(  # (key order as written, which the form checks)
            lambda rid: {"receipt_id": rid, "executed_at": executed_at, "result": result}))),
    }
    if draw(st.booleans()):
        pf["idempotency_row"] = draw(st.binary(min_size=36, max_size=36)).hex()
    return pf


def _unusual(pf: dict[str, Any], how: int) -> dict[str, Any]:
    """`pf` changed the way a future or hand-written record might be: the form cannot hold it."""
    pf = orjson.loads(orjson.dumps(pf))
    if how == 0:
        pf["future_field"] = [1, 2]
    elif how == 1:
        pf["request_hash"] = "AB" + pf["request_hash"][2:]
    elif how == 2:
        pf["created_at"] = int(pf["created_at"])
    elif how == 3:
        pf["expires_at"] = "2026-01-01T00:00:00Z"
    elif how == 4:
        pf["policy"]["decision"] = "maybe"
    elif how == 5:
        pf["status"] = "archived"
    else:
        pf["approvals"] = {"not": "a list"}
    return pf


def _rebuilt(entries: list[tuple[int, bytes]]) -> RecordCodec:
    """A codec loaded from `entries` alone, as a restarted server loads record_dict."""
    return RecordCodec(entries)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pfs=st.lists(preflights(), min_size=1, max_size=3), how=st.integers(-1, 6))
def test_a_preflight_reads_back_exactly_compact_when_its_shape_allows(pfs: list[dict[str, Any]], how: int) -> None:
    codec, stored = RecordCodec(), []
    for pf in pfs:
        record = pf if how < 0 else _unusual(pf, how)
        raw = orjson.dumps(record)
        got = codec.encode_preflight(raw, record["preflight_id"])
        if how >= 0:  # the form cannot hold it: the caller stores the JSON
            assert got is None
            continue
        assert got is not None  # every record the service writes has a compact form, smaller than its JSON
        form, entries = got
        assert form[0] == FORM and len(form) < len(raw)
        stored += entries
        codec.stored([i for i, _ in entries])
        for c in (codec, _rebuilt(stored)):  # in memory, and from the stored entries alone
            assert orjson.loads(c.decode_preflight(form, record["preflight_id"])) == orjson.loads(raw)
    assert how >= 0 or len(stored) == len({v for _, v in stored})  # a value is stored once


@st.composite
def entries(draw: Any) -> dict[str, Any]:
    return {"decision_id": draw(_uuid), "path": "provgraph/authz/decision", "bundle": draw(_text),
            "revision": draw(st.one_of(_text, st.none())), "input_hash": draw(_hex), "tenant_id": draw(_text),
            "actor": draw(_text), "action": draw(_text), "resource_type": draw(_text),
            "result": {"allow": draw(st.booleans()), "reasons": draw(st.lists(_text, max_size=2)),
                       "obligations": draw(st.lists(_json, max_size=2))},
            "cached": draw(st.booleans()), "timestamp": draw(_stamp), "eval_ns": draw(st.integers(0, 10**12))}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entry=entries(), key_us=st.integers(10**15, 4 * 10**15), unusual=st.sampled_from([None, "eval_ns", "extra"]))
def test_a_decision_log_entry_reads_back_exactly(entry: dict[str, Any], key_us: int, unusual: str | None) -> None:
    if unusual == "eval_ns":
        entry = {**entry, "eval_ns": -1}
    elif unusual == "extra":
        entry = {**entry, "trace": []}
    codec = RecordCodec()
    raw = orjson.dumps(entry)
    got = codec.encode_entry(raw, key_us)
    if unusual:
        assert got is None
        return
    assert got is not None
    form, stored = got
    assert len(form) < 100
    assert orjson.loads(_rebuilt(stored).decode_entry(form, key_us)) == entry
    with pytest.raises(InvalidArgumentError):
        RecordCodec().decode_entry(form, key_us)  # without its dictionary entries


def test_entries_are_written_until_a_record_using_them_commits(tmp_path: Path) -> None:
    """A job that fails takes the entries it wrote with it: the next record that uses them writes
    them again; once one commits they are not written again; a reopened store reads them."""
    store = Store(tmp_path / "data", sync=False)
    writer = Writer(store)
    codecs = RecordCodecs(store, b"d")
    entry = {"decision_id": "01a252c6-0a8f-72e6-9785-7e6bf29418ce", "path": "p", "bundle": "b", "revision": "r",
             "input_hash": "ab" * 32, "tenant_id": "t", "actor": "a", "action": "x", "resource_type": "y",
             "result": {"allow": True}, "cached": False, "timestamp": "2026-12-07T10:11:12.123456Z", "eval_ns": 5}
    key_us = 1_796_000_000_000_000
    forms: list[bytes] = []

    def job(fail: bool) -> Any:
        def run(txn: Txn) -> tuple[int, Any]:
            fresh: Fresh = []
            got = codecs.of(7).encode_entry(orjson.dumps(entry), key_us)
            assert got is not None
            codecs.stored(txn, 7, got, b"{}", fresh)
            forms.append(got[0])
            if fail:
                raise RuntimeError("injected")
            return len(got[1]), lambda: codecs.committed(fresh)
        return run

    try:
        with pytest.raises(RuntimeError):
            writer.submit(job(True)).result()
        assert writer.submit(job(False)).result() == 7  # written again: the first job's rolled back
        assert writer.submit(job(False)).result() == 0  # stored now
    finally:
        writer.close()
        store.close()
    store = Store(tmp_path / "data", sync=False)
    try:
        assert orjson.loads(RecordCodecs(store, b"d").of(7).decode_entry(forms[-1], key_us)) == entry
        assert len(RecordCodecs(store, b"p").of(7)) == 0  # each kind has its own entries
    finally:
        store.close()


def _first_bytes(srv: Server, table: str) -> list[int]:
    env = lmdb.open(str(srv.data_dir / "lmdb"), readonly=True, lock=False, max_dbs=64)
    try:
        with env.begin() as txn:
            return [v[0] for _, v in txn.cursor(db=env.open_db(table.encode(), txn=txn, create=False))]
    finally:
        env.close()


def test_both_modes_answer_the_same_and_restart_reads_both(server_factory: Any) -> None:
    """Preflights (executed with an Idempotency-Key, dual control granted, rejected, pending, denied)
    and decisions written in each mode, the flag switched in between, read the same before and
    after a restart (empty caches: the dictionary is read from its table)."""
    srv = server_factory(["--flag", "records.storage=json"])
    keys = setup_tenant(srv, "rec")
    admin, op, a1, a2 = srv.api(), keys["op"], keys["a1"], keys["a2"]
    made: list[str] = []
    for i, mode in enumerate(("json", "compact", "json", "compact")):
        with admin.flags_set({"records.storage": mode}):
            status, done = run_action(op, act("deploy", "service", {"m": mode}), **{"Idempotency-Key": f"k-{i}"})
            assert status == 200, done
            made.append(done["preflight_id"])
            wait_receipt(op, done["receipt_id"])
            pf = op.ok("POST", "/v1/tenants/rec/actions/preflight", act("graph.delete", "graph", {"nodes": [1]}),
                       status=201)
            a1.ok("POST", f"/v1/tenants/rec/approvals/{pf['preflight_id']}/grant")
            a2.ok("POST", f"/v1/tenants/rec/approvals/{pf['preflight_id']}/grant")
            made.append(pf["preflight_id"])
            pf = op.ok("POST", "/v1/tenants/rec/actions/preflight", act("graph.delete", "graph", {"nodes": [2]}),
                       status=201)
            a1.ok("POST", f"/v1/tenants/rec/approvals/{pf['preflight_id']}/reject")
            made.append(pf["preflight_id"])
            made.append(op.ok("POST", "/v1/tenants/rec/actions/preflight", act("deploy", "service", rid="p"),
                              status=201)["preflight_id"])
            denied = keys["analyst"].call("POST", "/v1/tenants/rec/actions/preflight", act("deploy", "service"))
            made.append(denied[1]["preflight_id"])
            op.ok("POST", "/v1/tenants/rec/decide", {"action": "deploy", "resource": {"type": "service", "id": mode}})
            op.ok("GET", "/v1/tenants/rec/decisions?limit=1")  # flushes the log: its entries are stored in `mode`
    before = {p: op.ok("GET", f"/v1/tenants/rec/actions/{p}") for p in made}
    decisions = op.ok("GET", "/v1/tenants/rec/decisions?limit=1000")["decisions"]
    assert {d["resource_type"] for d in decisions} >= {"service", "graph"}
    for i, (mode, pf_id) in enumerate((("json", made[0]), ("compact", made[5]))):  # repeated: answered as first
        status, first = op.call("POST", f"/v1/tenants/rec/actions/{pf_id}/execute", act("deploy", "service", {"m": mode}),
                                headers={"Idempotency-Key": f"k-{i}"})
        assert status == 200 and first["receipt_id"] == before[pf_id]["execution"]["receipt_id"]
    srv.stop()
    forms = {"preflights": _first_bytes(srv, "preflights"), "decision_log": _first_bytes(srv, "decision_log")}
    for table, firsts in forms.items():
        assert ord("{") in firsts and FORM in firsts, table  # both forms in one table
    srv.start()
    assert {p: op.ok("GET", f"/v1/tenants/rec/actions/{p}") for p in made} == before
    assert op.ok("GET", "/v1/tenants/rec/decisions?limit=1000")["decisions"] == decisions
    executed = before[made[0]]
    assert executed["status"] == "executed" and executed["execution"]["receipt_id"]
    assert [len(before[p]["approvals"]) for p in made[1::5]] == [2] * 4
    assert [before[p]["status"] for p in made[2::5]] == ["rejected"] * 4
    assert [before[p]["decision"] for p in made[4::5]] == ["deny"] * 4
    # a compact preflight still executes after the restart (dual control granted before it)
    body = act("graph.delete", "graph", {"nodes": [1]})
    status, done = op.call("POST", f"/v1/tenants/rec/actions/{made[6]}/execute", body)
    assert status == 200, done
    assert op.ok("GET", f"/v1/tenants/rec/actions/{made[6]}")["status"] == "executed"
    wait_receipt(op, done["receipt_id"])


def test_a_damaged_dictionary_is_a_server_error_not_the_clients(server_factory: Any) -> None:
    """A compact row whose dictionary entries are gone answers 500 internal_error (logged), never
    a 4xx that would blame the request."""
    srv = server_factory(["--flag", "records.storage=compact"])
    keys = setup_tenant(srv, "dmg")
    op = keys["op"]
    pf = op.ok("POST", "/v1/tenants/dmg/actions/preflight", act("deploy", "service"), status=201)
    op.ok("GET", "/v1/tenants/dmg/decisions?limit=1")
    srv.stop()
    env = lmdb.open(str(srv.data_dir / "lmdb"), max_dbs=64)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(b"record_dict", txn=txn, create=False)
            assert txn.stat(db)["entries"] > 0
            txn.drop(db, delete=False)
    finally:
        env.close()
    srv.start()
    for path in (f"/v1/tenants/dmg/actions/{pf['preflight_id']}", "/v1/tenants/dmg/decisions?limit=10"):
        status, err = op.call("GET", path)
        assert status == 500 and err["error"]["code"] == "internal_error", (path, err)
