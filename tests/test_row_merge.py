"""The native row merges of the LMDB write path (merge_adjacency, union_ids) give exactly what the numpy
code they replaced gave (kept here as the reference), on random rows, sorted or not."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from provgraph._core import merge_adjacency, union_ids
from provgraph.graph.model import ADJ


def reference_merge(old: np.ndarray, incoming: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    merged = np.concatenate([old[~np.isin(old["dst"], incoming["dst"])], incoming])
    merged.sort(order="dst", kind="stable")
    return merged, ~np.isin(incoming["dst"], old["dst"])


def records(dsts: list[int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty(len(dsts), dtype=ADJ)
    out["dst"] = dsts
    out["w"] = rng.random(len(dsts), dtype=np.float32)
    out["t"] = rng.integers(0, 8, len(dsts))
    return out


ids = st.lists(st.integers(-(2**40), 2**40), max_size=40, unique=True)


@settings(max_examples=300, deadline=None)
@given(old=ids, new=ids, seed=st.integers(0, 1000), shuffle_incoming=st.booleans())
def test_merge_adjacency_matches_numpy(old: list[int], new: list[int], seed: int, shuffle_incoming: bool) -> None:
    old_rows = records(sorted(old), seed)
    incoming = records(new if shuffle_incoming else sorted(new), seed + 1)
    want_rows, want_fresh = reference_merge(old_rows, incoming)
    merged, mask = merge_adjacency(old_rows.tobytes(), incoming.tobytes())
    assert merged == want_rows.tobytes()
    assert np.array_equal(np.frombuffer(mask, dtype=bool), want_fresh)


@settings(max_examples=300, deadline=None)
@given(old=st.lists(st.integers(-(2**62), 2**62), max_size=40), new=st.lists(st.integers(-(2**62), 2**62), max_size=40))
def test_union_ids_matches_numpy(old: list[int], new: list[int]) -> None:
    a = np.unique(np.array(old, dtype="<i8"))  # stored in-rows are sorted and distinct
    b = np.array(new, dtype="<i8")
    assert union_ids(a.tobytes(), np.sort(b).tobytes()) == np.union1d(a, b).astype("<i8").tobytes()
    assert union_ids(a.tobytes(), b.tobytes()) == np.union1d(a, b).astype("<i8").tobytes()  # unsorted: sorted first
