"""Crash drill: kill -9 the server during concurrent ingest; after restart every acknowledged batch is whole."""

from __future__ import annotations

import threading
import time
from typing import Any

BATCH = 200
WRITERS = 3


def _batch(i: int) -> dict[str, Any]:
    src = 1_000_000 + i
    return {"src": [src] * BATCH, "dst": [i * 1000 + j for j in range(BATCH)],
            "type": [j % 8 for j in range(BATCH)], "w": [(j + 1) / BATCH for j in range(BATCH)]}


def test_kill_during_ingest_loses_nothing_acknowledged(server_factory: Any) -> None:
    srv = server_factory()
    api = srv.api().new_tenant("crash", scopes=("read", "write"))
    acked: set[int] = set()
    attempted: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def writer(k: int) -> None:
        client = api.with_key(api.key)
        i = k
        while not stop.is_set():
            with lock:
                attempted.add(i)
            try:
                status, _ = client.post("/v1/tenants/crash/graph/edges", _batch(i))
            except OSError:
                return  # the server died under us: this batch is unacknowledged
            if status == 200:
                with lock:
                    acked.add(i)
            i += WRITERS

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(WRITERS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.kill()
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) >= 60

    srv2 = server_factory(data_dir=srv.data_dir)
    api2 = srv2.api(api.key)
    q = "/v1/tenants/crash/graph/query"
    for engine in ("csr", "lmdb"):
        with srv2.api().flag("graph.engine", engine):
            for i in sorted(attempted):
                status, body = api2.post(q, {"query": "neighborhood", "seed": 1_000_000 + i, "depth": 1})
                count = body["count"] if status == 200 else 0
                if i in acked:
                    assert (status, count) == (200, BATCH), (i, engine, status, body)
                else:
                    assert count in (0, BATCH), f"batch {i} is partial: {count} of {BATCH} edges ({engine})"
    # the weights survived too: the strongest direct neighbor of an acknowledged batch
    i = min(acked)
    got = api2.ok("POST", q, {"query": "topn", "seed": 1_000_000 + i, "hops": 1, "n": 1})
    assert got["results"] == [{"node": i * 1000 + BATCH - 1, "score": 1.0}]
