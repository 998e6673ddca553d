"""The tightest vectorized numpy Q1 we could write: the baseline graph-inproc's Q1 ratio is measured against.

`provgraph.graph.reference.NumpyCsr` is the test oracle: it is written to be obviously right
(every query, every filter, errors checked), and expands every 2-hop path. This one is written to
be fast at one thing, Q1 with an edge-type filter, and still exact (graph-inproc checks its answer
against the engine's on every seed it times). It uses the same score bound the engine does, so
the ratio is between two implementations of one algorithm, not between two algorithms:

- rows are sorted by weight descending, so the n-th best 1-hop score `thr` is known at once, and
  is a lower bound of the answer's n-th score (n distinct nodes reach it);
- a path seed -> u -> v scores w1 * w2 <= w1, so only the first hops with w1 >= thr are expanded,
  and in u's row only the prefix with w2 >= thr / w1: one `searchsorted` for every such row at
  once, over a key that is sorted across the whole edge array (row id + 1 - weight);
- those rows are gathered with one `np.repeat`/`cumsum` index and masked through a 256-entry
  type table; the best score per node and the top n (score desc, id asc) come from one lexsort
  and one `np.unique`.

Everything a query can share is built once: local ids in external-id order (a tie on score is
then a tie on local id), a dict for the external -> local lookup (faster than a searchsorted from
Python), int64 indices, float64 weights, the type tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["TightNumpyQ1"]

# The cut of a row is taken a hair below thr / w1, so rounding in that division never drops a path
# scoring exactly thr (a tie the answer may need); the extra entries are reduced away like any other.
_SLACK = 1.0 - 1e-12
# Below this many 2-hop entries in all, a seed with fewer than n 1-hop nodes has them all expanded.
_SMALL = 256


class TightNumpyQ1:
    """One tenant's graph for Q1 only (see the module doc)."""

    def __init__(self, src: NDArray[np.int64], dst: NDArray[np.int64], w: NDArray[np.float32],
                 etype: NDArray[np.uint8], nodes: NDArray[np.int64] | None = None) -> None:
        parts = [src, dst] if nodes is None else [nodes, src, dst]
        self.ext = np.unique(np.concatenate(parts))
        s = np.searchsorted(self.ext, src)
        d = np.searchsorted(self.ext, dst)
        order = np.lexsort((-w.astype(np.float64), s))  # rows by source, each by weight descending
        self.local = {int(v): i for i, v in enumerate(self.ext.tolist())}
        self.indptr = np.zeros(len(self.ext) + 1, dtype=np.int64)
        np.cumsum(np.bincount(s, minlength=len(self.ext)), out=self.indptr[1:])
        self.dst = d[order].astype(np.int64)
        self.w = w[order].astype(np.float64)
        self.etype = np.ascontiguousarray(etype[order], dtype=np.uint8)
        # sorted over the whole array: rows ascending, and inside a row 1 - w ascending
        self.key = s[order].astype(np.float64) + (1.0 - self.w)
        self._tables: dict[tuple[int, ...], NDArray[np.bool_]] = {}
        self.mark = np.zeros(len(self.ext), dtype=np.int64)  # see _best
        self._positions = np.arange(len(self.dst) + len(self.ext), dtype=np.int64)

    def table(self, types: Sequence[int]) -> NDArray[np.bool_]:
        key = tuple(types)
        t = self._tables.get(key)
        if t is None:
            t = np.zeros(256, dtype=np.bool_)
            t[list(key)] = True
            self._tables[key] = t
        return t

    def _gather(self, starts: NDArray[np.int64], lengths: NDArray[np.int64],
                wu: NDArray[np.float64], table: NDArray[np.bool_]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """The 2-hop candidates through the rows at `starts`, each its first `lengths` entries: (node, score) of the
        entries whose type passes."""
        pos = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
        ok = table[self.etype[pos]]
        return self.dst[pos][ok], np.repeat(wu, lengths)[ok] * self.w[pos][ok]

    def _best(self, cand: NDArray[np.int64], score: NDArray[np.float64], n: int,
              ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """The n best distinct nodes (score desc, id asc) of the entries (cand, score), each node at its
        best score; fewer when fewer distinct nodes.

        Entries below the 4n-th best score go first when n distinct nodes remain above (a node with an
        entry there scores no more). Each node's best entry is found without a sort by node: entries
        in score order write their position into a per-node scratch array, the last write (the best)
        wins, and an entry is its node's best when the scratch holds its own position (every slot read
        was written by this query, so the scratch is never cleared)."""
        m = len(score)
        if m > 4 * n:
            cutoff = np.partition(score, m - 4 * n)[m - 4 * n]
            top = score >= cutoff
            order = np.flatnonzero(top)[np.argsort(score[top], kind="stable")]
            c = cand[order]
            self.mark[c] = self._positions[:len(c)]
            best = self.mark[c] == self._positions[:len(c)]
            if np.count_nonzero(best) < n:  # too few distinct nodes up there: all entries
                order = np.argsort(score, kind="stable")
                c = cand[order]
                self.mark[c] = self._positions[:m]
                best = self.mark[c] == self._positions[:m]
        else:
            order = np.argsort(score, kind="stable")
            c = cand[order]
            self.mark[c] = self._positions[:m]
            best = self.mark[c] == self._positions[:m]
        nodes, scores = c[best], score[order][best]  # distinct, score ascending
        if len(scores) > n:
            tail = scores >= scores[-n]  # the n-th best and every tie with it
            nodes, scores = nodes[tail], scores[tail]
        pick = np.lexsort((nodes, -scores))[:n]
        return nodes[pick], scores[pick]

    def topn(self, seed: int, n: int, edge_types: Sequence[int]) -> list[tuple[int, float]]:
        """Q1, 2 hops: the n best (node, score) by max product of weights, (score desc, id asc)."""
        s = self.local[seed]
        table = self.table(edge_types)
        a, b = self.indptr[s], self.indptr[s + 1]
        ok = table[self.etype[a:b]]
        d1 = self.dst[a:b][ok]
        w1 = self.w[a:b][ok]  # descending
        reported = d1 != s
        c1, s1 = d1[reported], w1[reported]
        starts = self.indptr[d1]
        lengths = self.indptr[d1 + 1] - starts
        if len(c1) < n and lengths.sum() <= _SMALL:
            # few paths in all: expand them all (a bound would cost more than it saves)
            c2, s2 = self._gather(starts, lengths, w1, table)
        else:
            if len(c1) >= n:
                thr = s1[n - 1]
            else:
                # Too few 1-hop nodes for a bound: the best n entries of each row give n distinct
                # nodes (if the answer has n at all), whose n-th score is one.
                c2, s2 = self._gather(starts, np.minimum(lengths, n), w1, table)
                keep = c2 != s
                _, best = self._best(np.concatenate((c1, c2[keep])), np.concatenate((s1, s2[keep])), n)
                thr = best[n - 1] if len(best) == n else 0.0
            k = int(np.count_nonzero(w1 >= thr))
            u, wu, starts = d1[:k], w1[:k], starts[:k]
            cuts = np.searchsorted(self.key, u + (1.0 - thr / wu * _SLACK), side="right")
            # within the row: at thr 0 the search value u + 1 equals the key of a weight-1 entry
            # starting row u + 1
            cuts = np.minimum(cuts, starts + lengths[:k])
            c2, s2 = self._gather(starts, np.maximum(cuts - starts, 0), wu, table)
        cand = np.concatenate((c1, c2))
        score = np.concatenate((s1, s2))
        keep = cand != s
        nodes, scores = self._best(cand[keep], score[keep], n)
        return list(zip(self.ext[nodes].tolist(), scores.tolist()))
