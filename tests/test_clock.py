"""provgraph.clock.rfc3339 must give exactly datetime's output: receipts sign these strings."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime

import pytest
from provgraph.clock import now_rfc3339, rfc3339


def reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize("ts", [
    0.0, 1.0, 0.5, 1e-7, 5e-7, 1.5e-6, 2.5e-6,  # half-microsecond ties round to even
    1_798_761_599.9999995, 1_798_761_599.9999994, 1_798_761_599.99999999,  # rounds into the next second
    1_767_225_599.999_999_7,  # ... and the next year
    951_782_400.25,  # 2000-02-29
    4_102_444_799.000_001,
])
def test_edges_match_datetime(ts: float) -> None:
    assert rfc3339(ts) == reference(ts)


def test_random_timestamps_match_datetime() -> None:
    rng = random.Random(7)
    for _ in range(50_000):
        whole = rng.randrange(0, 4_000_000_000)
        frac = rng.choice([rng.random(), 0.9999995, 0.0000005, 0.9999994999, 0.5, 0.9999999999, 0.0000025])
        ts = whole + frac
        assert rfc3339(ts) == reference(ts), ts


def test_same_second_from_many_threads() -> None:
    # the per-second cache is shared: threads formatting different seconds never mix them up
    bad: list[tuple[float, str]] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(5_000):
            ts = 1_790_000_000 + rng.randrange(0, 4) + rng.random()
            got = rfc3339(ts)
            if got != reference(ts):
                bad.append((ts, got))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


def test_now_is_now() -> None:
    before = datetime.now(UTC)
    got = datetime.strptime(now_rfc3339(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    after = datetime.now(UTC)
    assert before.replace(microsecond=0) <= got <= after
