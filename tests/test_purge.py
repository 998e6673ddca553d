"""Purge with proof against a real server: only evidence past its retention (at `as_of`) and inside
the window goes; the signed manifest's RFC 6962 root and every inclusion proof check out with
pymerkle (independent); purged blobs answer 410 naming the manifest; the purge is a receipt whose
result_hash is the root and the chain still verifies; `provgraph verify-purge` passes a genuine
manifest and fails a tampered one; files of purged blobs leave the disk, at the latest on the next start."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path
from typing import Any

import blake3
import orjson
import pytest
import rfc8785
from conftest import Api, Server
from datadir_reads import cli
from provgraph.evidence.merkle import leaf_hash
from pymerkle import InclusionProof, InmemoryTree
from pymerkle import verify_inclusion as reference_verify
from test_contract_actions import independent_verify, public_keys

ADMIN = "pga_test_admin_key_0123456789"


def _at(seconds_from_now: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds_from_now)).isoformat().replace("+00:00", "Z")


def _put(api: Api, data: bytes) -> str:
    status, _, body = api.raw("PUT", "/v1/tenants/pur/evidence", data, {"Content-Type": "application/octet-stream"})
    assert status in (200, 201), body
    h: str = orjson.loads(body)["hash"]
    return h


def test_purge_with_proof(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", ADMIN, ["--evidence-inline-max", "1000"])
    srv.start()
    try:
        admin = srv.api()
        op = admin.new_tenant("pur", roles=("operator",))
        old = {_put(op, blake3.blake3(b"old%d" % i).digest(length=200 if i % 2 else 5000)): i for i in range(7)}
        time.sleep(0.05)
        window_end = _at(0)
        time.sleep(0.05)
        young = _put(op, b"uploaded after the window")
        # refusals: nothing purged
        for body, status in (({"tenant_id": "pur", "before": window_end, "kinds": ["receipts"], "reason": "x"}, 422),
                             ({"tenant_id": "pur", "before": window_end, "kinds": ["evidence"]}, 400),
                             ({"tenant_id": "pur", "before": window_end, "reason": "x"}, 400),
                             ({"tenant_id": "pur", "before": window_end, "kinds": ["evidence"], "reason": "x",
                               "extra": 1}, 400),
                             ({"tenant_id": "pur", "before": "yesterday", "kinds": ["evidence"], "reason": "x"}, 400),
                             ({"tenant_id": "nobody", "before": window_end, "kinds": ["evidence"], "reason": "x"}, 404)):
            assert admin.call("POST", "/v1/admin/purge", body)[0] == status, body
        assert op.call("POST", "/v1/admin/purge", {})[0] == 403
        # at the default retention (purge from 365 days) nothing is old enough today
        none = admin.ok("POST", "/v1/admin/purge", {"tenant_id": "pur", "before": window_end, "kinds": ["evidence"],
                                                    "reason": "routine"}, status=201)
        assert none["item_count"] == 0 and none["tree_size"] == 0
        assert all(op.raw("GET", f"/v1/tenants/pur/evidence/{h}")[0] == 200 for h in old)
        # 400 days on: the window's items go, the young one (outside the window) stays
        manifest = admin.ok("POST", "/v1/admin/purge", {"tenant_id": "pur", "before": window_end,
                                                        "kinds": ["evidence"], "reason": "retention drill",
                                                        "as_of": _at(400 * 86_400)}, status=201)
        assert manifest["item_count"] == len(old) == manifest["tree_size"]
        assert manifest["retention"] == {"hot_days": 30, "warm_days": 120, "purge_after_days": 365}
        mid = manifest["manifest_id"]
        for h in old:
            status, _, body = op.raw("GET", f"/v1/tenants/pur/evidence/{h}")
            err = orjson.loads(body)["error"]
            assert status == 410 and err["code"] == "purged" and err["details"]["manifest_id"] == mid
        assert op.raw("GET", f"/v1/tenants/pur/evidence/{young}")[0] == 200
        # the manifest, its items, and every proof, checked with pymerkle
        assert op.ok("GET", f"/v1/tenants/pur/purges/{mid}") == manifest
        items = op.ok("GET", f"/v1/tenants/pur/purges/{mid}/items")["items"]
        assert [i["hash"] for i in items] == sorted(old) and all(i["kind"] == "evidence" for i in items)
        leaves = [rfc8785.dumps({**i, "tenant_id": "pur"}) for i in items]
        tree = InmemoryTree(algorithm="sha256")
        for leaf in leaves:
            tree.append_entry(leaf)
        assert tree.get_root().hex() == manifest["merkle_root"]
        for i, item in enumerate(items):
            proof = op.ok("GET", f"/v1/tenants/pur/purges/{mid}/proof/{item['hash']}")
            assert (proof["leaf_index"], proof["tree_size"]) == (i, len(items))
            theirs = tree.prove_inclusion(i + 1, len(items)).serialize()
            theirs["path"] = [theirs["path"][0], *proof["audit_path"]]  # our path, their verifier
            reference_verify(leaf_hash(leaves[i]), bytes.fromhex(manifest["merkle_root"]),
                             InclusionProof.deserialize(theirs))
        assert op.call("GET", f"/v1/tenants/pur/purges/{mid}/proof/{young}")[0] == 404
        assert op.call("GET", f"/v1/tenants/pur/purges/{'0' * 8}-0000-7000-8000-{'0' * 12}")[0] == 404
        # the purge is a receipt whose result_hash is the root; the chain verifies
        deadline = time.monotonic() + 10
        while not any(r["action"] == "evidence.purge" and r["resource"]["id"] == mid for r in op.receipts("pur")):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        receipt = next(r for r in op.receipts("pur") if r["resource"]["id"] == mid)
        assert receipt["result_hash"] == manifest["merkle_root"]
        independent_verify(op.receipts("pur"), public_keys(admin))
        # the files of purged blobs are gone; a leftover (a purge stopped before its unlinks) goes at start
        files = {p.name for p in (tmp_path / "data" / "evidence").rglob("*") if p.is_file()}
        assert not files & set(old)
        bundle = tmp_path / "bundle.json"
        run = cli("verify-purge", "--url", f"http://127.0.0.1:{srv.port}", "--key", op.key or "", "--tenant", "pur",
                  "--manifest", mid, "--save", str(bundle))
        assert run.returncode == 0 and "every inclusion proof verify" in run.stdout, run.stderr
    finally:
        srv.stop()
    assert cli("verify-purge", "--file", str(bundle)).returncode == 0
    saved: dict[str, Any] = orjson.loads(bundle.read_bytes())
    for tamper in ("size", "signature", "proof"):
        forged = orjson.loads(bundle.read_bytes())
        if tamper == "size":
            forged["items"][0]["size"] += 1
        elif tamper == "signature":
            forged["manifest"]["reason"] = "something else"
        else:
            h0 = forged["items"][0]["hash"]
            forged["proofs"][h0]["audit_path"][0] = "00" * 32
        path = tmp_path / f"forged-{tamper}.json"
        path.write_bytes(orjson.dumps(forged))
        run = cli("verify-purge", "--file", str(path))
        assert run.returncode == 1, (tamper, run.stdout, run.stderr)
    big = next(h for h, i in old.items() if i % 2 == 0)  # a 5,000-byte blob: it was a file
    leftover = tmp_path / "data" / "evidence" / f"{1:08x}" / big[:2] / big
    leftover.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundle, leftover)
    srv.start()
    try:
        assert not leftover.exists()
        assert saved["manifest"]["manifest_id"] == mid
    finally:
        srv.stop()


@pytest.mark.parametrize("kill_after_s", [0.15, 0.6])  # inside the slowed commit, and after it
def test_kill_during_a_purge_leaves_it_whole_or_not_done(tmp_path: Path, kill_after_s: float) -> None:
    """kill -9 while a purge commits (every commit slowed): after the restart either every item of
    the window answers 410 naming one manifest that lists them all, or none was purged."""
    import http.client
    import threading

    srv = Server(tmp_path / "data", ADMIN, ["--evidence-inline-max", "1000", "--enable-fault-injection"])
    srv.start()
    admin = srv.api()
    op = admin.new_tenant("pur", roles=("operator",))
    hashes = [_put(op, blake3.blake3(b"k%d" % i).digest(length=300 if i % 2 else 3000)) for i in range(20)]
    window_end = _at(0.01)
    time.sleep(0.05)
    admin.ok("PUT", "/v1/admin/faults", {"commit_delay_ms": 300})
    body = {"tenant_id": "pur", "before": window_end, "kinds": ["evidence"], "reason": "drill",
            "as_of": _at(400 * 86_400)}
    def purge() -> None:
        try:
            Api(srv.port, ADMIN).call("POST", "/v1/admin/purge", body)
        except (OSError, http.client.HTTPException):  # the server was killed under it
            pass

    threading.Thread(target=purge, daemon=True).start()
    time.sleep(kill_after_s)
    srv.kill()
    srv.start()
    try:
        reader = Api(srv.port, op.key)
        answers = [reader.raw("GET", f"/v1/tenants/pur/evidence/{h}") for h in hashes]
        statuses = {a[0] for a in answers}
        assert statuses in ({200}, {410}), statuses
        if statuses == {410}:
            mids = {orjson.loads(a[2])["error"]["details"]["manifest_id"] for a in answers}
            assert len(mids) == 1
            items = reader.ok("GET", f"/v1/tenants/pur/purges/{mids.pop()}/items")["items"]
            assert sorted(i["hash"] for i in items) == sorted(hashes)
        files = [p for p in (tmp_path / "data" / "evidence").rglob("*") if p.is_file() and not p.name.startswith(".")]
        assert (len(files) == 0) == (statuses == {410})  # purged: no file left; not purged: all there
    finally:
        srv.stop()
