"""`provgraph verify` checks every signature and the chain, from the data dir and through the API."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from test_contract_actions import act, all_receipts, run_action, setup_tenant, wait_receipt


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "provgraph", "verify", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_verify_cli_data_dir_and_url(server_factory: Any) -> None:
    srv = server_factory()
    k = setup_tenant(srv, "ver")
    op = k["op"]
    ids = [run_action(op, act("deploy", "service", {"i": i}))[1]["receipt_id"] for i in range(12)]
    for rid in ids:
        wait_receipt(op, rid)
    chain = all_receipts(op)
    # the chain starts with the admin receipts of the tenant's creation and its five keys
    assert [r["action"] for r in chain] == ["admin.tenant.create"] + ["admin.key.create"] * 5 + ["deploy"] * 12
    n = len(chain)
    proc = _verify("--tenant", "ver", "--url", f"http://127.0.0.1:{srv.port}", "--key", op.key or "")
    assert proc.returncode == 0 and f"{n} receipts" in proc.stdout, proc.stderr
    srv.stop()
    data: Path = srv.data_dir
    proc = _verify("--tenant", "ver", "--data-dir", str(data))
    assert proc.returncode == 0 and f"{n} receipts" in proc.stdout, proc.stderr
    # tamper with the tenant's first deploy receipt (stored back as full JSON, whatever form it was
    # stored in: a row of either form reads the same): verification names its seq
    from provgraph.actions.pipeline import ReceiptLog, receipt_key
    from provgraph.store import Store
    from provgraph.tenancy import Registry

    tampered = chain[6]["seq"]
    store = Store(data)
    try:
        num = Registry(store).tenant("ver").num
        key = receipt_key(num, tampered)
        value = ReceiptLog(store).by_seq(num, tampered)
        assert value is not None and b'"deploy"' in value
        store.write_direct(lambda txn: txn.put(key, value.replace(b'"deploy"', b'"deplo1"'),
                                               db=store.db("receipts")))
    finally:
        store.close()
    time.sleep(0.1)
    proc = _verify("--tenant", "ver", "--data-dir", str(data))
    assert proc.returncode == 1 and f"seq {tampered}" in proc.stderr, (proc.stdout, proc.stderr)
