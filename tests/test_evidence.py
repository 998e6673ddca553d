"""The evidence store against a real server: content-addressed uploads stored once per tenant,
downloads with ETag and Range, actions that reference evidence (422 for unknown hashes, the
receipt lists them), restart, backup and restore, and a kill -9 drill during uploads."""

from __future__ import annotations

import http.client
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import blake3
import orjson
import pytest
from conftest import Api, Server
from datadir_reads import cli
from test_contract_actions import act, independent_verify, public_keys, setup_tenant, wait_receipt

INLINE_MAX = 4096
MAX = 1 << 20


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = Server(tmp_path_factory.mktemp("ev") / "data", "pga_test_admin_key_0123456789",
               ["--evidence-inline-max", str(INLINE_MAX), "--evidence-max-bytes", str(MAX)])
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def keys(srv: Server) -> dict[str, Any]:
    return setup_tenant(srv, "evi")


def put(api: Api, tenant: str, data: bytes, ctype: str = "application/octet-stream") -> tuple[int, Any]:
    status, _, body = api.raw("PUT", f"/v1/tenants/{tenant}/evidence", data, {"Content-Type": ctype})
    return status, orjson.loads(body)


def blob(n: int, seed: int) -> bytes:
    return (blake3.blake3(seed.to_bytes(8, "big")).digest(length=n))


def test_uploads_are_content_addressed_and_stored_once(keys: dict[str, Any]) -> None:
    op, reader = keys["op"], keys["reader"]
    for size in (0, 10, INLINE_MAX, INLINE_MAX + 1, 300_000):  # inline in LMDB, and files
        data = blob(size, size)
        h = blake3.blake3(data).hexdigest()
        assert put(op, "evi", data, "text/plain") == (201, {"hash": h, "size": size, "tier": "hot"})
        assert put(op, "evi", data) == (200, {"hash": h, "size": size, "tier": "hot"})  # stored once
        status, headers, body = reader.raw("GET", f"/v1/tenants/evi/evidence/{h}")
        assert (status, body) == (200, data)
        assert headers["etag"] == f'"{h}"' and headers["content-type"].startswith("text/plain")
    storage = keys["op"].with_key("pga_test_admin_key_0123456789").ok("GET", "/v1/admin/storage")
    assert storage["tenants"]["evi"]["tiers"]["hot"]["items"] >= 5
    metrics = keys["op"].with_key(None).raw("GET", "/metrics")[2].decode()
    series = {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in metrics.splitlines()
              if ln.startswith("provgraph_evidence_")}
    assert series['provgraph_evidence_items{tier="hot"}'] >= 5
    assert series['provgraph_evidence_bytes{tier="hot"}'] >= sum((0, 10, INLINE_MAX, INLINE_MAX + 1, 300_000))
    assert series['provgraph_evidence_uploads_total{result="new"}'] >= 5
    assert series['provgraph_evidence_uploads_total{result="existing"}'] >= 5


def test_ranges_conditional_requests_and_errors(keys: dict[str, Any]) -> None:
    op, reader = keys["op"], keys["reader"]
    data = blob(100_000, 7)
    h = put(op, "evi", data)[1]["hash"]
    path = f"/v1/tenants/evi/evidence/{h}"
    for rng, first, last in [("bytes=0-99", 0, 99), ("bytes=99990-", 99990, 99999), ("bytes=-5", 99995, 99999),
                             ("bytes=50000-2000000", 50000, 99999)]:
        status, headers, body = reader.raw("GET", path, headers={"Range": rng})
        assert (status, body) == (206, data[first:last + 1]), rng
        assert headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
    assert reader.raw("GET", path, headers={"Range": "bytes=100000-"})[0] == 416
    assert reader.raw("GET", path, headers={"If-None-Match": f'"{h}"'})[0] == 304
    status, _, body = reader.raw("GET", path, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert (status, body) == (200, data)  # the client's partial copy is of another entity: the whole
    assert reader.raw("GET", "/v1/tenants/evi/evidence/" + "0" * 64)[0] == 404
    assert reader.raw("GET", "/v1/tenants/evi/evidence/not-a-hash")[0] == 404
    assert put(reader, "evi", b"x")[0] == 403  # a read-only key
    before = op.with_key("pga_test_admin_key_0123456789").ok("GET", "/v1/admin/storage")["tenants"]["evi"]
    status, err = put(op, "evi", b"\0" * (MAX + 1))
    assert status == 413 and err["error"]["code"] == "payload_too_large"
    after = op.with_key("pga_test_admin_key_0123456789").ok("GET", "/v1/admin/storage")["tenants"]["evi"]
    assert after["tiers"] == before["tiers"]  # nothing written


def test_tenants_do_not_share_evidence(srv: Server, keys: dict[str, Any]) -> None:
    other = srv.api().new_tenant("evo", roles=("operator",))
    data = blob(5000, 11)
    h = put(keys["op"], "evi", data)[1]["hash"]
    assert other.raw("GET", f"/v1/tenants/evo/evidence/{h}")[0] == 404
    assert put(other, "evo", data)[0] == 201  # its own copy, its own to purge


def test_actions_reference_evidence_and_receipts_list_it(srv: Server, keys: dict[str, Any]) -> None:
    op = keys["op"]
    stored = [put(op, "evi", blob(n, 100 + n))[1] for n in (50, 9000)]
    hashes = [e["hash"] for e in stored]
    body = {**act("deploy", "service", {"v": 1}), "evidence": hashes}
    pf = op.ok("POST", "/v1/tenants/evi/actions/preflight", body, status=201)
    without = op.ok("POST", "/v1/tenants/evi/actions/preflight", act("deploy", "service", {"v": 1}), status=201)
    assert pf["request_hash"] != without["request_hash"]  # the evidence list is part of the request hash
    status, err = op.call("POST", f"/v1/tenants/evi/actions/{pf['preflight_id']}/execute",
                          {**body, "evidence": hashes[:1]})
    assert status == 409, err  # not what was preflighted
    done = op.ok("POST", f"/v1/tenants/evi/actions/{pf['preflight_id']}/execute", body)
    receipt = wait_receipt(op, done["receipt_id"])
    assert receipt["evidence"] == [{"hash": e["hash"], "size": e["size"]} for e in stored]
    unknown = "ab" * 32
    status, err = op.call("POST", "/v1/tenants/evi/actions/preflight", {**body, "evidence": [unknown]})
    assert status == 422 and err["error"]["details"]["unknown"] == [unknown]
    for bad in (["xyz"], [hashes[0], hashes[0]], "not a list"):
        assert op.call("POST", "/v1/tenants/evi/actions/preflight", {**body, "evidence": bad})[0] == 400
    got = op.ok("POST", "/v1/tenants/evi/actions:batch", {"actions": [
        {**act("deploy", "service", {"b": 1}), "evidence": hashes[1:]},
        {**act("deploy", "service", {"b": 2}), "evidence": [unknown]}]})["results"]
    assert "receipt_id" in got[0] and got[1]["error"]["code"] == "invalid_value"
    assert wait_receipt(op, got[0]["receipt_id"])["evidence"] == [{"hash": hashes[1], "size": 9000}]
    independent_verify(op.receipts("evi", page=100), public_keys(srv.api()))


def test_evidence_survives_restart_backup_and_restore(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", "pga_test_admin_key_0123456789", ["--evidence-inline-max", str(INLINE_MAX)])
    srv.start()
    try:
        op = srv.api().new_tenant("keep", roles=("operator",))
        blobs = [blob(n, n) for n in (10, INLINE_MAX + 10, 200_000)]
        hashes = [put(op, "keep", b)[1]["hash"] for b in blobs]
    finally:
        srv.stop()
    files = [p for p in (tmp_path / "data" / "evidence").rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == sorted(hashes[1:])  # the large ones are files, named by hash
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    run = cli("backup", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "b.tar.zst"))
    assert run.returncode == 0, run.stderr
    run = cli("restore", str(tmp_path / "b.tar.zst"), "--data-dir", str(tmp_path / "restored"))
    assert run.returncode == 0, run.stderr
    for data_dir in ("data", "restored"):
        again = Server(tmp_path / data_dir, "pga_test_admin_key_0123456789")
        again.start()
        try:
            reader = Api(again.port, op.key)
            for h, b in zip(hashes, blobs, strict=True):
                assert reader.raw("GET", f"/v1/tenants/keep/evidence/{h}")[2] == b
        finally:
            again.stop()


def test_kill_during_uploads_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """kill -9 while uploads (files and LMDB rows) are under way: every upload answered 201 or 200
    reads back byte-exact after the restart; the others may or may not be there, never damaged."""
    srv = Server(tmp_path / "data", "pga_test_admin_key_0123456789", ["--evidence-inline-max", "1000"])
    srv.start()
    op = srv.api().new_tenant("crash", roles=("operator",))
    acked: dict[str, bytes] = {}
    tried: dict[str, bytes] = {}
    stop = threading.Event()

    def upload(worker: int) -> None:
        api = Api(srv.port, op.key)
        for i in range(10_000):
            if stop.is_set():
                return
            data = blob(500 if i % 2 else 60_000, worker * 100_000 + i)
            tried[blake3.blake3(data).hexdigest()] = data
            try:
                status, answer = put(api, "crash", data)
            except (OSError, http.client.HTTPException):  # the server died mid-request
                return
            if status in (200, 201):
                acked[answer["hash"]] = data

    threads = [threading.Thread(target=upload, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.kill()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) >= 40
    srv.start()
    try:
        reader = Api(srv.port, op.key)
        for h, data in acked.items():
            assert reader.raw("GET", f"/v1/tenants/crash/evidence/{h}")[2] == data
        for h, data in tried.items():  # not acknowledged: absent, or whole
            status, _, body = reader.raw("GET", f"/v1/tenants/crash/evidence/{h}")
            assert (status == 404) or body == data
        leftovers = [p for p in (tmp_path / "data" / "evidence").rglob(".*.tmp")]
        assert all(os.path.getsize(p) <= 60_000 for p in leftovers)  # temporaries only, never a named blob
    finally:
        srv.stop()
