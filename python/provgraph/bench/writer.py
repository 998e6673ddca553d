"""`python -m provgraph.bench writer`: the group-commit writer alone on a real LMDB under open-loop jobs, with
an optional slow disk (an injected delay per commit), the group window on and off in alternating runs."""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from provgraph.bench.report import format_table, percentiles_us, write_json
from provgraph.store import Store, Txn, Writer

__all__ = ["main", "run_writer"]

COLUMNS = ["run", "window", "jobs", "p50_ms", "p95_ms", "p99_ms", "max_ms", "groups_per_s", "jobs_per_group",
           "windowed_share"]


def _job(db: Any, key: bytes, value: bytes) -> Any:
    def job(txn: Txn) -> tuple[None, None]:
        txn.put(key, value, db=db)
        return None, None

    return job


def run_writer(window: bool, rate: float, seconds: float, applied_share: float, slow_share: float,
               slow_s: float, seed: int, base_s: float = 0.0, where: str | None = None) -> dict[str, Any]:
    """Jobs arrive at `rate`/s (open loop) for `seconds`: a share `applied_share` applied-only (answered
    once applied, like a preflight), the others durable (like an execute). Each commit is delayed by
    `slow_s` with probability `slow_share`, and every commit by `base_s` (0 and 0: the disk as it is;
    with the data on a RAM disk, `where`, the delays are the whole disk). Latency of the durable jobs
    from their intended arrival to their answer; commit groups per second."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        store = Store(Path(tmp))
        db = store.db("outbox")
        writer = Writer(store)
        writer.window = window
        if slow_share > 0 or base_s > 0:
            draws = random.Random(seed + 1)
            writer.commit_delay = lambda: base_s + (slow_s if draws.random() < slow_share else 0.0)
        lat: list[int] = []
        lock = threading.Lock()
        pending: list[Future[Any]] = []

        def done(intended: float) -> Any:
            def record(_: Future[Any]) -> None:
                with lock:
                    lat.append(int((time.perf_counter() - intended) * 1e9))

            return record

        total = int(rate * seconds)
        value = bytes(300)
        start = time.perf_counter() + 0.01
        groups0 = writer.groups
        for i in range(total):
            intended = start + i / rate
            delay = intended - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            durable = rng.random() >= applied_share
            fut = writer.submit(_job(db, b"%08d" % i, value), durable=durable)
            if durable:
                fut.add_done_callback(done(intended))
                pending.append(fut)
        for fut in pending:
            fut.result(60)
        elapsed = time.perf_counter() - start
        groups = writer.groups - groups0
        windowed = writer.windowed
        writer.close()
        store.close()
    pct = percentiles_us(np.array(lat, dtype=np.int64))
    return {"window": "adaptive" if window else "off", "jobs": total, "durable": len(lat),
            "p50_ms": pct["p50"] / 1e3, "p95_ms": pct["p95"] / 1e3, "p99_ms": pct["p99"] / 1e3,
            "max_ms": pct["max"] / 1e3, "groups_per_s": groups / elapsed, "jobs_per_group": total / max(groups, 1),
            "windowed_share": windowed / max(groups, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m provgraph.bench writer", description=__doc__)
    ap.add_argument("--rate", type=float, default=600.0, help="write jobs/s (P1 at 3x peak makes ~550)")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=2, help="runs per mode, alternating")
    ap.add_argument("--applied-share", type=float, default=0.25, help="share of applied-only jobs")
    ap.add_argument("--slow-share", type=float, default=0.0, help="share of commits delayed by --slow-ms")
    ap.add_argument("--slow-ms", type=float, default=20.0)
    ap.add_argument("--base-ms", type=float, default=0.0, help="added to every commit")
    ap.add_argument("--dir", default=None, help="where the LMDB goes (e.g. /dev/shm: the delays are the disk)")
    ap.add_argument("--out", default="bench-results/writer")
    a = ap.parse_args(argv)
    rows = []
    print(f"writer alone: {a.rate:g} jobs/s for {a.seconds:g} s per run, {a.applied_share:.0%} applied-only; "
          f"every commit {a.base_ms:g} ms slower, {a.slow_share:.1%} of them {a.slow_ms:g} ms more; in {a.dir or 'tmp'}")
    for rnd in range(a.rounds):
        for window in (True, False):
            row = {"run": rnd + 1, **run_writer(window, a.rate, a.seconds, a.applied_share, a.slow_share,
                                                a.slow_ms / 1e3, seed=rnd, base_s=a.base_ms / 1e3,
                                                where=a.dir)}
            rows.append(row)
            print(f"  run {rnd + 1} window {row['window']}: durable p50 {row['p50_ms']:.2f} ms, p95 "
                  f"{row['p95_ms']:.2f}, p99 {row['p99_ms']:.2f}, max {row['max_ms']:.1f}; "
                  f"{row['groups_per_s']:.0f} groups/s, {row['jobs_per_group']:.2f} jobs each", flush=True)
    print(format_table(rows, COLUMNS))
    write_json(Path(a.out) / "writer.json", {"args": vars(a), "runs": rows})
    return 0
