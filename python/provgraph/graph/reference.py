"""Independent numpy implementation of graph queries Q1-Q4: test oracle and benchmark baseline."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["DEFAULT_TOPN_EDGE_TYPES", "NumpyCsr"]

# WORKLOADS.md Q1 default: traverse edge types {0,1,2,3,4}; `None` means every type.
DEFAULT_TOPN_EDGE_TYPES: tuple[int, ...] = (0, 1, 2, 3, 4)
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_TYPE_VALUES = 256  # edge and node types are uint8
# Below this many entries sorting beats any pass over an n-sized scratch array.
_DENSE_MIN = 2048

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


def _type_table(types: Sequence[int] | None) -> BoolArray | None:
    """256-entry lookup table of allowed types, or None when every type is allowed."""
    if types is None:
        return None
    return _cached_type_table(tuple(int(t) for t in types))


@functools.lru_cache(maxsize=256)
def _cached_type_table(types: tuple[int, ...]) -> BoolArray:
    # Cached because queries repeat the same few filters and building costs several µs.
    table = np.zeros(_TYPE_VALUES, dtype=np.bool_)
    table[[t for t in types if 0 <= t < _TYPE_VALUES]] = True  # out-of-range types match nothing
    table.flags.writeable = False  # shared between calls
    return table


class NumpyCsr:
    """One tenant's graph as an immutable CSR over local ids 0..n-1 (sorted external ids).

    Because local ids follow external-id order, ordering or comparing by local id is the
    same as by external id, and every row is sorted by destination.
    """

    def __init__(
        self,
        ext_ids: IntArray,
        node_types: NDArray[np.uint8],
        indptr: IntArray,
        indices: IntArray,
        weights: NDArray[np.float32],
        etypes: NDArray[np.uint8],
    ) -> None:
        self.ext_ids = ext_ids
        self.node_types = node_types
        self.indptr = indptr
        self.indices = indices
        self.weights = weights
        self.etypes = etypes
        # Widened once here rather than per query; float64(w) is exact for float32 input.
        self.weights64 = weights.astype(np.float64)
        self.out_degree = np.diff(indptr)

    @classmethod
    def from_edges(
        cls,
        src: ArrayLike,
        dst: ArrayLike,
        w: ArrayLike,
        etype: ArrayLike,
        nodes: ArrayLike | None = None,
        node_types: ArrayLike | None = None,
    ) -> NumpyCsr:
        """Build from edge columns (int64, int64, float32, uint8) plus optional extra nodes.

        A repeated (src, dst) keeps its last occurrence. Nodes seen only in edges have type
        0; `node_types` (uint8, parallel to `nodes`) sets types, the last entry of a
        repeated node winning.
        """
        src_ids = np.asarray(src, dtype=np.int64).ravel()
        dst_ids = np.asarray(dst, dtype=np.int64).ravel()
        w32 = np.asarray(w, dtype=np.float32).ravel()
        et = np.asarray(etype, dtype=np.uint8).ravel()
        if not len(src_ids) == len(dst_ids) == len(w32) == len(et):
            raise ValueError("src, dst, w and etype must have the same length")
        extra = np.zeros(0, dtype=np.int64)
        if nodes is not None:
            extra = np.asarray(nodes, dtype=np.int64).ravel()
        ext_ids = np.unique(np.concatenate([src_ids, dst_ids, extra]))
        count = len(ext_ids)

        types = np.zeros(count, dtype=np.uint8)
        if node_types is not None:
            given = np.asarray(node_types, dtype=np.uint8).ravel()
            if len(given) != len(extra):
                raise ValueError("node_types must be parallel to nodes")
            # Fancy assignment with repeated indices keeps the last value written.
            types[np.searchsorted(ext_ids, extra)] = given

        src_local = np.searchsorted(ext_ids, src_ids)
        dst_local = np.searchsorted(ext_ids, dst_ids)
        # Unique pair keys on the reversed arrays: the first occurrence found there is the
        # last write, and np.unique returns them sorted by (src, dst) — i.e. CSR order.
        keys = (src_local * count + dst_local)[::-1]
        unique_keys, first = np.unique(keys, return_index=True)
        kept = len(keys) - 1 - first
        row_of_edge = unique_keys // count
        indices = unique_keys % count
        indptr = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of_edge, minlength=count), out=indptr[1:])
        return cls(ext_ids, types, indptr, indices.astype(np.int64), w32[kept], et[kept])

    # ---- helpers -------------------------------------------------------------------------

    @property
    def node_count(self) -> int:
        return len(self.ext_ids)

    @property
    def edge_count(self) -> int:
        return len(self.indices)

    def _local(self, node: int) -> int:
        """Local id of an external id; KeyError when the node is not in the graph."""
        node = int(node)
        if not _I64_MIN <= node <= _I64_MAX:
            raise KeyError(node)
        position = int(np.searchsorted(self.ext_ids, node))
        if position >= len(self.ext_ids) or int(self.ext_ids[position]) != node:
            raise KeyError(node)
        return position

    def has_node(self, node: int) -> bool:
        try:
            self._local(node)
        except KeyError:
            return False
        return True

    def _row_positions(self, rows: IntArray) -> tuple[IntArray, IntArray]:
        """Edge positions of all `rows` concatenated, and the length of each row."""
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        total = int(lengths.sum())
        # position = start of its row + index within the row, built without a Python loop.
        offsets = np.cumsum(lengths) - lengths
        positions = np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)
        return positions, lengths

    def _dense(self, count: int) -> bool:
        """Whether `count` scattered entries are cheaper handled with an n-sized array than
        sorted: sorting costs O(count log count), a dense pass O(n)."""
        return count > max(_DENSE_MIN, self.node_count >> 5)

    def _distinct(self, nodes: IntArray) -> IntArray:
        """Sorted distinct values of `nodes` (local ids)."""
        if not self._dense(len(nodes)):
            return np.unique(nodes)
        seen = np.zeros(self.node_count, dtype=np.bool_)
        seen[nodes] = True
        return np.flatnonzero(seen)

    def _expand(self, frontier: IntArray, edge_table: BoolArray | None) -> IntArray:
        """Out-neighbours (with repeats) of `frontier` over allowed edge types."""
        positions, _ = self._row_positions(frontier)
        if edge_table is not None:
            positions = positions[edge_table[self.etypes[positions]]]
        return self.indices[positions]

    def _bfs_layers(
        self, seed: int, depth: int, edge_table: BoolArray | None
    ) -> tuple[list[IntArray], BoolArray]:
        """BFS layers 1..depth (each node in the first layer it reaches) and the visited mask."""
        visited = np.zeros(self.node_count, dtype=np.bool_)
        visited[seed] = True
        frontier = np.array([seed], dtype=np.int64)
        layers: list[IntArray] = []
        for _ in range(depth):
            reached = self._expand(frontier, edge_table)
            fresh = self._distinct(reached[~visited[reached]])
            if len(fresh) == 0:
                break
            visited[fresh] = True
            layers.append(fresh)
            frontier = fresh
        return layers, visited

    def _reported(self, nodes: IntArray, node_table: BoolArray | None) -> IntArray:
        return nodes if node_table is None else nodes[node_table[self.node_types[nodes]]]

    # ---- queries -------------------------------------------------------------------------

    def topn(
        self,
        seed: int,
        n: int = 10,
        hops: int = 2,
        edge_types: Sequence[int] | None = DEFAULT_TOPN_EDGE_TYPES,
        node_types: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """Q1: the `n` strongest nodes within `hops` (1 or 2) by max product of weights."""
        if hops not in (1, 2):
            raise ValueError("hops must be 1 or 2")
        if n < 0:
            raise ValueError("n must be >= 0")
        origin = self._local(seed)
        edge_table = _type_table(edge_types)
        first = np.arange(self.indptr[origin], self.indptr[origin + 1], dtype=np.int64)
        if edge_table is not None:
            first = first[edge_table[self.etypes[first]]]
        hop1_nodes = self.indices[first]
        hop1_scores = self.weights64[first]
        candidates, scores = hop1_nodes, hop1_scores
        if hops == 2 and len(hop1_nodes):
            second, lengths = self._row_positions(hop1_nodes)
            # Paths through the same intermediate share its first-hop weight.
            second_scores = np.repeat(hop1_scores, lengths) * self.weights64[second]
            if edge_table is not None:
                allowed = edge_table[self.etypes[second]]
                second, second_scores = second[allowed], second_scores[allowed]
            candidates = np.concatenate([hop1_nodes, self.indices[second]])
            scores = np.concatenate([hop1_scores, second_scores])
        keep = candidates != origin
        node_table = _type_table(node_types)
        if node_table is not None:
            keep &= node_table[self.node_types[candidates]]
        candidates, scores = candidates[keep], scores[keep]
        if len(candidates) == 0 or n == 0:
            return []
        if self._dense(len(candidates)):
            # Best score per node by scatter-max into an n-sized array (scores are > 0).
            best_of = np.zeros(self.node_count, dtype=np.float64)
            np.maximum.at(best_of, candidates, scores)
            candidates = np.flatnonzero(best_of)
            scores = best_of[candidates]
        else:
            # Best score per node: sort by (node, score desc), keep each node's first entry.
            order = np.lexsort((-scores, candidates))
            candidates, scores = candidates[order], scores[order]
            head = np.ones(len(candidates), dtype=np.bool_)
            head[1:] = candidates[1:] != candidates[:-1]
            candidates, scores = candidates[head], scores[head]
        if len(scores) > n:
            # Only nodes scoring at least the n-th best can be in the answer (ties kept).
            cutoff = np.partition(scores, len(scores) - n)[len(scores) - n]
            contenders = scores >= cutoff
            candidates, scores = candidates[contenders], scores[contenders]
        # Local-id order equals external-id order, so this is (score desc, id asc).
        best = np.lexsort((candidates, -scores))[:n]
        return [
            (int(node), float(score))
            for node, score in zip(self.ext_ids[candidates[best]], scores[best])
        ]

    def neighborhood_size(
        self,
        seed: int,
        depth: int = 3,
        limit: int = 50_000,
        edge_types: Sequence[int] | None = None,
        node_types: Sequence[int] | None = None,
    ) -> int:
        """Q2: distinct (reported) nodes at BFS distance 1..depth, capped at `limit`."""
        origin = self._local(seed)
        if limit <= 0:
            return 0
        edge_table = _type_table(edge_types)
        node_table = _type_table(node_types)
        visited = np.zeros(self.node_count, dtype=np.bool_)
        visited[origin] = True
        frontier = np.array([origin], dtype=np.int64)
        count = 0
        for _ in range(depth):
            reached = self._expand(frontier, edge_table)
            fresh = self._distinct(reached[~visited[reached]])
            if len(fresh) == 0:
                break
            visited[fresh] = True
            count += len(self._reported(fresh, node_table))
            if count >= limit:  # the answer is min(count, limit): stop early
                return limit
            frontier = fresh
        return count

    def path(
        self,
        src: int,
        dst: int,
        max_depth: int = 4,
        edge_types: Sequence[int] | None = None,
    ) -> list[int] | None:
        """Q3: lexicographically smallest shortest path (external ids), or None."""
        start = self._local(src)
        goal = self._local(dst)
        if start == goal:
            return [int(src)]
        edge_table = _type_table(edge_types)
        layer_of = np.full(self.node_count, -1, dtype=np.int64)
        layer_of[start] = 0
        layers: list[IntArray] = [np.array([start], dtype=np.int64)]
        while layer_of[goal] < 0:
            if len(layers) > max_depth:
                return None
            reached = self._expand(layers[-1], edge_table)
            fresh = self._distinct(reached[layer_of[reached] < 0])
            if len(fresh) == 0:
                return None
            layer_of[fresh] = len(layers)
            layers.append(fresh)
        goal_depth = len(layers) - 1

        # good[k]: nodes of layer k with an allowed out-edge into good[k + 1]; one mask is
        # enough because layers are disjoint and membership is checked together with layer_of.
        good = np.zeros(self.node_count, dtype=np.bool_)
        good[goal] = True
        for k in range(goal_depth - 1, 0, -1):
            layer = layers[k]
            positions, lengths = self._row_positions(layer)
            owners = np.repeat(layer, lengths)
            targets = self.indices[positions]
            hits = good[targets] & (layer_of[targets] == k + 1)
            if edge_table is not None:
                hits &= edge_table[self.etypes[positions]]
            good[owners[hits]] = True

        route = [start]
        current = start
        for k in range(1, goal_depth + 1):
            row = np.arange(self.indptr[current], self.indptr[current + 1], dtype=np.int64)
            if edge_table is not None:
                row = row[edge_table[self.etypes[row]]]
            targets = self.indices[row]
            targets = targets[good[targets] & (layer_of[targets] == k)]
            current = int(targets.min())  # smallest local id = smallest external id
            route.append(current)
        return [int(node) for node in self.ext_ids[np.array(route, dtype=np.int64)]]

    def topdegree(
        self,
        seed: int,
        depth: int = 2,
        n: int = 10,
        edge_types: Sequence[int] | None = None,
        node_types: Sequence[int] | None = None,
    ) -> list[tuple[int, int]]:
        """Q4: the `n` nodes at distance 1..depth with the highest total out-degree."""
        if n < 0:
            raise ValueError("n must be >= 0")
        origin = self._local(seed)
        layers, _ = self._bfs_layers(origin, depth, _type_table(edge_types))
        if not layers or n == 0:
            return []
        reached = self._reported(np.concatenate(layers), _type_table(node_types))
        degrees = self.out_degree[reached]
        best = np.lexsort((reached, -degrees))[:n]
        return [
            (int(node), int(degree))
            for node, degree in zip(self.ext_ids[reached[best]], degrees[best])
        ]
