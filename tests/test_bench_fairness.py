"""`python -m provgraph.bench fairness --quick`, end to end on a real server: the three drill runs and the
weighted run happen, admission throttles the antagonist only with the flags on, the signals name it first,
no victim request fails with the flags on, and the weighted run's shares are reported with Jain's index.
(Latency verdicts are the bench's to print, not a test's to assert: this machine is shared.)"""

from __future__ import annotations

from pathlib import Path

import orjson
from provgraph.bench import fairness


def test_quick_fairness_drill_and_weighted_run(tmp_path: Path) -> None:
    out = tmp_path / "fairness.json"
    fairness.main(["--quick", "--json", str(out)])
    got = orjson.loads(out.read_bytes())
    drill, antagonist = got["drill"], got["antagonist"]
    assert antagonist not in got["victims"] and len(got["victims"]) == 4
    assert max(got["graph"]["tenant_edges"].values()) == got["graph"]["tenant_edges"][antagonist]
    off, on = drill["antagonist"]
    assert off["run"] == "antagonist, flags off" and on["run"] == "antagonist, flags on"
    assert off["throttled"] == 0 and off["heavy"] == 0  # flags off: nothing admitted away, nothing pooled
    assert on["throttled"] > 0 and on["heavy"] > 0
    assert drill["antagonist_named_first"] is True
    runs = drill["runs"]
    assert set(runs) == {"solo", "antagonist, flags off", "antagonist, flags on"}
    for flow, result in runs["antagonist, flags on"].items():
        if not flow.startswith("antagonist:"):
            assert result["errors"] == 0 and result["dropped"] == 0, (flow, result["error_samples"])
            assert result["ok"] > 0
    assert set(drill["verdicts"]) == set(got["victims"])
    weighted = got["weighted"]
    assert sorted(weighted["weights"].values()) == [1, 2, 4]
    assert abs(sum(weighted["cpu_share"].values()) - 1.0) < 1e-3
    for statuses in weighted["statuses"].values():
        assert set(statuses) == {"200"}
    assert 0.0 < weighted["jain_index"] <= 1.0
