"""`python -m provgraph.bench storage` on a small R1: every compact receipt reconstructs, and the
per-action part runs the same actions through a real server in each mode and accounts for every
table."""

from __future__ import annotations

from pathlib import Path

import orjson
from provgraph.bench.storage import MODES, main


def test_the_storage_bench_reports_both_modes_per_table(tmp_path: Path) -> None:
    out = tmp_path / "storage.json"
    assert main(["--receipts", "3000", "--actions", "400", "--seed", "3", "--json", str(out)]) == 0
    r = orjson.loads(out.read_bytes())
    assert r["exact"] and r["receipts"] == 3000
    pa = r["per_action"]
    assert set(MODES) <= set(pa)
    base, compact = pa["baseline"], pa["compact"]
    assert base["executed"] == compact["executed"] > 0.8 * 400  # the same plan; ~5% denied
    for mode in (base, compact):
        per = mode["per_table_bytes_per_action"]
        assert {"preflights", "decision_log", "receipts", "receipt_index"} <= set(per)
        assert abs(sum(per.values()) - mode["bytes_per_action"]) < 0.1 * len(per)
    assert "record_dict" in compact["per_table_bytes_per_action"]
    for table in ("preflights", "decision_log", "receipts"):
        assert compact["per_table_bytes_per_action"][table] < base["per_table_bytes_per_action"][table], table
    assert pa["ratio"] == round(compact["bytes_per_action"] / base["bytes_per_action"], 3) < 1
