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
    # tamper with the tenant's first deploy receipt (stored back in the row that holds it, as its
    # JSON kept whole: a form of any kind reads the same): verification names its seq
    from provgraph._core import receipt_pack, receipt_pack_forms
    from provgraph.actions.pipeline import (
        CHAIN,
        PACKS,
        ReceiptLog,
        prev_of,
        receipt_key,
        row_holding,
    )
    from provgraph.store import Store
    from provgraph.tenancy import Registry

    tampered = chain[6]["seq"]
    store = Store(data)
    try:
        num = Registry(store).tenant("ver").num
        value = ReceiptLog(store).by_seq(num, tampered)
        assert value is not None and b'"deploy"' in value
        forged = value.replace(b'"deploy"', b'"deplo1"')

        def tamper(txn: Any) -> None:
            first, row = row_holding(txn.cursor(db=store.db("receipts")), num, tampered)  # type: ignore[misc]
            if row[:1] in PACKS:
                forms = receipt_pack_forms(row)
                forms[tampered - first] = b"\x00" + forged
                # a chain pack keeps each form's prev_hash as the chain gives it (the header: its first's)
                log = ReceiptLog(store)
                prevs = [prev_of(log.by_seq(num, first + i) or b"") for i in range(len(forms))] \
                    if row[:1] == CHAIN else None
                rows = receipt_pack(None, forms, prevs=prevs)  # the bigger form may split the pack in two
            else:
                rows = [(0, forged)]
            for i, v in rows:
                txn.put(receipt_key(num, first + i), v, db=store.db("receipts"))

        store.write_direct(tamper)
    finally:
        store.close()
    time.sleep(0.1)
    proc = _verify("--tenant", "ver", "--data-dir", str(data))
    assert proc.returncode == 1 and f"seq {tampered}" in proc.stderr, (proc.stdout, proc.stderr)
