"""`provgraph load` (CSV and .npz) writes exactly the edges of the file; the server then serves them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from provgraph.bench.workloads import generate_g1, write_tenant_csv, write_tenant_npz
from provgraph.graph.reference import NumpyCsr


def _load(data: Path, tenant: str, file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provgraph", "load", "--tenant", tenant, "--data-dir", str(data),
                           str(file)], capture_output=True, text=True, timeout=300, check=False)


def test_load_csv_and_npz_then_serve(tmp_path: Path, server_factory: Any) -> None:
    wl = generate_g1(seed=5, nodes=3_000, edges=30_000, tenants=3, n_seeds=60)
    data = tmp_path / "data"
    files = {wl.tenants[0]: tmp_path / "a.csv", wl.tenants[1]: tmp_path / "b.npz"}
    write_tenant_csv(wl, wl.tenants[0], files[wl.tenants[0]])
    write_tenant_npz(wl, wl.tenants[1], files[wl.tenants[1]])
    for tenant, file in files.items():
        proc = _load(data, tenant, file)
        assert proc.returncode == 0, proc.stderr
        assert "edges/s" in proc.stdout
    srv = server_factory(data_dir=data)
    admin = srv.api()
    for tenant in files:
        key = admin.ok("POST", "/v1/admin/keys", {"tenant_id": tenant, "scopes": ["read"]}, status=201)["key"]
        api = admin.with_key(key)
        src, dst, w, et = wl.tenant_edges(tenant)
        assert api.ok("GET", f"/v1/tenants/{tenant}/graph/stats")["edges"] == len(src)
        ref = NumpyCsr.from_edges(src, dst, w, et)
        for engine in ("csr", "lmdb"):
            with admin.flag("graph.engine", engine):
                for seed in wl.seeds[tenant][:20].tolist():
                    got = api.ok("POST", f"/v1/tenants/{tenant}/graph/query",
                                 {"query": "topn", "seed": seed, "edge_types": [0, 1, 2, 3, 4]})
                    want = [{"node": v, "score": s} for v, s in ref.topn(seed, n=10)]
                    assert got["results"] == want


def test_bad_file_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad = tmp_path / "bad.csv"
    bad.write_text("src,dst,type,w\n1,2,0,0.5\n2,3,0,1.5\n")
    proc = _load(data, "t", bad)
    assert proc.returncode == 2 and "weight" in proc.stderr
    missing = tmp_path / "bad.npz"
    np.savez(missing, src=np.array([1]), dst=np.array([2]))
    proc = _load(data, "t", missing)
    assert proc.returncode == 2 and "lacks arrays" in proc.stderr
    from provgraph.store import Store

    store = Store(data)
    try:
        with store.read() as txn:
            assert txn.stat(store.db("out"))["entries"] == 0
    finally:
        store.close()
