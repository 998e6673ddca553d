"""Make tests/fixtures/datadir-<version>.tar.zst: a data dir written by this release's server, plus its reads.

Run it with the release whose layout the fixture freezes (the fixture is what "a data dir from
before" means to the migration tests), from the repository root:

    PYTHONPATH=$PWD/python python3 scripts/make_datadir_fixture.py --name datadir-v0

It starts a real server on a temporary data dir, fills it through the API with a bit of
everything (two tenants, keys with roles, graph nodes and edges with deletes, the example policy
bundle in two revisions, decisions, preflights, executed actions, a dual-control approval,
receipts over two signing keys), records what the API answers to a fixed set of reads, stops
the server and packs the data dir: a compact copy of the LMDB file (no free pages, so the
archive stays small) and the signing-key seeds. `<name>.json` holds the recorded reads and the
API keys the tests authenticate with (test keys made for the fixture, nothing else).
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import lmdb
import orjson
import zstandard
from provgraph.bench.server import JsonClient, ServerProcess
from provgraph.policy.bundle import load_example_bundle

ADMIN_KEY = "pga_fixture_admin_key_0123456789"
GZ = {"Content-Type": "application/gzip"}
TENANTS = ("acme", "globex")


def act(action: str, rtype: str, payload: Any, rid: str = "r1") -> dict[str, Any]:
    return {"action": action, "resource": {"type": rtype, "id": rid}, "payload": payload}


def new_key(admin: JsonClient, tenant: str, scopes: list[str], actor: str, roles: list[str]) -> dict[str, str]:
    made = admin.ok("POST", "/v1/admin/keys", {"tenant_id": tenant, "scopes": scopes, "actor": actor,
                                                "roles": roles}, status=201)
    return {"key": made["key"], "key_id": made["key_id"], "actor": actor}


def wait_receipts(client: JsonClient, tenant: str, count: int, timeout: float = 30.0) -> list[Any]:
    """Every receipt of `tenant`, once `count` of them are issued (issuance is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        out: list[Any] = []
        after = 0
        while True:
            page = client.ok("GET", f"/v1/tenants/{tenant}/receipts?after_seq={after}&limit=1000")
            out += page["receipts"]
            if not page["receipts"]:
                break
            after = page["next_after_seq"]
        if len(out) >= count:
            return out
        if time.monotonic() > deadline:
            raise RuntimeError(f"{tenant}: {len(out)} receipts after {timeout} s, expected {count}")
        time.sleep(0.05)


QUERIES: list[dict[str, Any]] = [
    {"query": "topn", "seed": 1, "hops": 2, "n": 10},
    {"query": "topn", "seed": 1, "hops": 1, "n": 5, "edge_types": [0, 1]},
    {"query": "neighborhood", "seed": 1, "depth": 3, "limit": 50000},
    {"query": "path", "src": 1, "dst": 7, "max_depth": 6},
    {"query": "path", "src": 7, "dst": 1, "max_depth": 4},
    {"query": "path", "src": 1, "dst": 7, "max_depth": 4},
    {"query": "topdegree", "seed": 1, "depth": 2, "n": 10},
]


def fill(admin: JsonClient) -> dict[str, Any]:
    """Write a bit of everything; returns the keys made, per tenant and role."""
    status, _, body = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(), GZ)
    if status != 201:
        raise RuntimeError(f"bundle upload: {status} {body!r}")
    keys: dict[str, Any] = {}
    for i, tenant in enumerate(TENANTS):
        admin.ok("POST", "/v1/admin/tenants", {"tenant_id": tenant}, status=201)
        k = {"op": new_key(admin, tenant, ["read", "write", "approve"], "user:olga", ["operator"]),
             "a1": new_key(admin, tenant, ["read", "approve"], "user:ann", ["security"]),
             "a2": new_key(admin, tenant, ["read", "approve"], "user:bob", ["security"]),
             "reader": new_key(admin, tenant, ["read"], "user:rita", ["viewer"])}
        keys[tenant] = k
        op = admin.with_key(k["op"]["key"])
        base = f"/v1/tenants/{tenant}"
        op.ok("POST", f"{base}/graph/nodes", {"nodes": [{"id": n, "type": n % 3, "attrs": {"name": f"n{n}"}}
                                                        for n in range(1, 9)]})
        edges = [{"src": s, "dst": d, "type": (s + d) % 4, "w": round(0.1 + 0.1 * ((s * d + i) % 9), 2)}
                 for s, d in [(1, 2), (1, 3), (2, 4), (3, 4), (4, 5), (5, 6), (6, 7), (2, 7), (1, 8), (8, 6)]]
        op.ok("POST", f"{base}/graph/edges", {"edges": edges})
        # columns form, and an update of an existing pair
        op.ok("POST", f"{base}/graph/edges", {"src": [3, 1], "dst": [9, 2], "type": [1, 2], "w": [0.4, 0.9]})
        op.ok("POST", f"{base}/graph/delete", {"nodes": [8], "edges": [[2, 7]]})
        for action, rtype in [("graph.read", "graph"), ("graph.write", "graph"), ("deploy", "service")]:
            op.ok("POST", f"{base}/decide", {"action": action, "resource": {"type": rtype, "id": "r1"},
                                             "context": {"purpose": "fixture"}})
        # an executed action, by preflight + execute
        body = act("graph.write", "graph", {"edges": [{"src": 10, "dst": 11, "w": 0.5}]})
        pf = op.ok("POST", f"{base}/actions/preflight", body, status=201)
        op.ok("POST", f"{base}/actions/{pf['preflight_id']}/execute", body)
        k["executed_preflight"] = pf["preflight_id"]
        # a dual-control action: two grants, then the execute
        body = act("graph.delete", "graph", {"edges": [[10, 11]]})
        pf = op.ok("POST", f"{base}/actions/preflight", body, status=201)
        admin.with_key(k["a1"]["key"]).ok("POST", f"{base}/approvals/{pf['preflight_id']}/grant")
        admin.with_key(k["a2"]["key"]).ok("POST", f"{base}/approvals/{pf['preflight_id']}/grant")
        op.ok("POST", f"{base}/actions/{pf['preflight_id']}/execute", body)
        # a rejected one, and one left pending (a stored preflight nobody executed)
        pf = op.ok("POST", f"{base}/actions/preflight", act("graph.delete", "graph", {"nodes": [9]}), status=201)
        admin.with_key(k["a1"]["key"]).ok("POST", f"{base}/approvals/{pf['preflight_id']}/reject")
        k["pending_preflight"] = op.ok("POST", f"{base}/actions/preflight",
                                       act("deploy", "service", {"v": i}), status=201)["preflight_id"]
        op.ok("POST", f"{base}/actions:batch", {"actions": [act("deploy", "service", {"n": n}) for n in range(3)]})
        if i == 0:  # receipts signed by two keys: the old seed must travel with the data
            admin.ok("POST", "/v1/admin/signing-keys/rotate", status=201)
    # a second revision, activated, then the first re-activated (a rollback on record)
    status, _, body = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(revision="fixture.2"), GZ)
    if status != 201:
        raise RuntimeError(f"bundle upload: {status} {body!r}")
    first = admin.ok("GET", "/v1/bundles/authz")
    revisions = sorted(r["revision"] for r in first["revisions"])
    original = next(r for r in revisions if r != "fixture.2")
    admin.ok("POST", "/v1/bundles/authz/activate", {"revision": original})
    admin.ok("POST", "/v1/bundles/authz/activate", {"revision": "fixture.2"})
    return keys


def record(admin: JsonClient, keys: dict[str, Any]) -> dict[str, Any]:
    """The reads a restored or migrated data dir must answer identically."""
    reads: dict[str, Any] = {
        "tenants": admin.ok("GET", "/v1/admin/tenants"),
        "bundle": admin.ok("GET", "/v1/bundles/authz"),
        "signing_keys": admin.ok("GET", "/v1/keys"),
        "per_tenant": {},
    }
    for tenant in TENANTS:
        k = keys[tenant]
        reader = admin.with_key(k["reader"]["key"])
        base = f"/v1/tenants/{tenant}"
        # 2 executed + 2 grants + 1 reject + 3 batch
        receipts = wait_receipts(reader, tenant, 8)
        reads["per_tenant"][tenant] = {
            "queries": [{"request": q, "answer": reader.ok("POST", f"{base}/graph/query", q)} for q in QUERIES],
            "receipts": receipts,
            "receipt_count": len(receipts),
            "decisions": reader.ok("GET", f"{base}/decisions?limit=1000"),
            "pending_preflight": reader.ok("GET", f"{base}/actions/{k['pending_preflight']}"),
            "executed_preflight": reader.ok("GET", f"{base}/actions/{k['executed_preflight']}"),
        }
    return reads


def drained(admin: JsonClient, timeout_s: float = 30.0) -> None:
    """Wait until every receipt intent is issued (outbox empty), so the recorded reads hold every
    receipt the data dir does (else the next open issues the rest and the reads differ)."""
    deadline = time.monotonic() + timeout_s
    while b"provgraph_receipt_outbox_depth 0.0" not in admin.raw("GET", "/metrics")[2]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"receipt intents still queued after {timeout_s:g} s")
        time.sleep(0.05)


def pack(data_dir: Path, out: Path) -> None:
    """data dir -> .tar.zst: a compact copy of the LMDB file and the key seeds (lock file left out)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = lmdb.open(str(data_dir / "lmdb"), readonly=True, lock=False, max_dbs=64, subdir=True)
        try:
            env.copy(tmp, compact=True)
        finally:
            env.close()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            def add(path: Path, name: str, mode: int) -> None:
                info = tarfile.TarInfo(name)
                info.mode, info.mtime = mode, 0
                if path.is_dir():
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                    return
                data = path.read_bytes()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

            add(Path(tmp), "lmdb", 0o700)
            add(Path(tmp) / "data.mdb", "lmdb/data.mdb", 0o600)
            add(data_dir / "keys", "keys", 0o700)
            for seed in sorted((data_dir / "keys").iterdir()):
                add(seed, f"keys/{seed.name}", 0o600)
        out.write_bytes(zstandard.ZstdCompressor(level=19).compress(buf.getvalue()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="datadir-v0", help="file stem under --out-dir")
    parser.add_argument("--out-dir", default="tests/fixtures")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        server = ServerProcess(data_dir, ADMIN_KEY).start()
        try:
            admin = server.client()
            keys = fill(admin)
            drained(admin)
            reads = record(admin, keys)
        finally:
            server.stop()
        pack(data_dir, out_dir / f"{args.name}.tar.zst")
    expected = {"admin_key": ADMIN_KEY, "keys": keys, "queries": QUERIES, "reads": reads}
    (out_dir / f"{args.name}.json").write_bytes(orjson.dumps(expected, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    size = (out_dir / f"{args.name}.tar.zst").stat().st_size
    print(f"wrote {out_dir / args.name}.tar.zst ({size:,} bytes) and {args.name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
