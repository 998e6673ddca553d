"""bench actions against a real server: the batch-vs-single comparison counts its round trips and issues receipts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from conftest import Server
from provgraph.bench.actions import run_batch_vs_single
from provgraph.policy.bundle import load_example_bundle

TENANT = "bvs"


def test_batch_vs_single_round_trips_and_receipts(server: Server) -> None:
    admin = server.api()
    status, _, body = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(), {"Content-Type": "application/gzip"})
    assert status in (200, 201), body
    op = admin.new_tenant(TENANT, scopes=("read", "write"), actor="user:op", roles=("operator",))
    keys: dict[str, Any] = {"tenant": TENANT, "op": op.key, "receipts": []}
    burst, rate, duration = 5, 25.0, 2.0  # a burst every 0.2 s: 10 measured bursts per mode
    res = asyncio.run(run_batch_vs_single(f"http://127.0.0.1:{server.port}", keys, rate, burst, duration, 0.4))
    single, batch = res["single"], res["batch"]
    for mode in (single, batch):
        assert mode["errors"] == 0 and mode["dropped"] == 0, mode["error_samples"]
        assert mode["actions"] == mode["bursts"] * burst > 0
    assert single["round_trips"] == 2 * single["actions"]
    assert single["round_trips_per_action"] == 2.0
    assert batch["round_trips"] == batch["bursts"]
    assert batch["round_trips_per_action"] == 1 / burst
    assert res["round_trips_single_over_batch"] == 2 * burst
    # every action of both modes (warm-up included) got a receipt id, and every receipt is issued
    assert len(keys["receipts"]) == len(set(keys["receipts"])) >= single["actions"] + batch["actions"]
    pending = set(keys["receipts"])
    deadline = time.monotonic() + 10.0
    while pending and time.monotonic() < deadline:
        pending = {rid for rid in pending if op.get(f"/v1/tenants/{TENANT}/receipts/{rid}")[0] != 200}
        if pending:
            time.sleep(0.05)
    assert not pending, f"{len(pending)} receipts not readable after 10 s"
