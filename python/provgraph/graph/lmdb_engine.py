"""The `graph.engine = lmdb` path: Q1–Q4 read the LMDB adjacency directly (baseline and rollback)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import lmdb
import numpy as np

from provgraph.errors import UnknownNodeError
from provgraph.graph.model import ADJ
from provgraph.graph.storage import GraphTables
from provgraph.store.env import Txn
from provgraph.store.keys import node_key

__all__ = ["LmdbGraphEngine"]

TypeSet = frozenset[int] | None


class _Reader:
    """One query's view: a read transaction plus scan counters."""

    def __init__(self, tables: GraphTables, txn: Txn, tenant: int, edge_types: TypeSet) -> None:
        self.tables, self.txn, self.tenant = tables, txn, tenant
        self.mask = None if edge_types is None else np.array(sorted(edge_types), dtype=np.uint8)
        self.rows = 0
        self.edges = 0

    def row(self, node: int) -> np.ndarray:
        raw = self.txn.get(node_key(self.tenant, node), db=self.tables.out)
        self.rows += 1
        if not raw:
            return np.zeros(0, dtype=ADJ)
        r = np.frombuffer(raw, dtype=ADJ)
        self.edges += len(r)
        return r if self.mask is None else r[np.isin(r["t"], self.mask)]

    def exists(self, node: int) -> bool:
        return self.txn.get(node_key(self.tenant, node), db=self.tables.nodes) is not None

    def require(self, node: int) -> None:
        if not self.exists(node):
            raise UnknownNodeError(node)

    def type_ok(self, nodes: np.ndarray, node_types: TypeSet) -> np.ndarray:
        if node_types is None:
            return np.ones(len(nodes), dtype=bool)
        # Typed as never missing: every node reached through an edge has a node row (put_edges
        # creates both ends, delete removes a node's edges with it). Cast once, outside the loop.
        get = cast("Callable[..., bytes]", self.txn.get)
        db, t = self.tables.nodes, self.tenant
        return np.array([get(node_key(t, v), db=db)[0] in node_types for v in nodes.tolist()], dtype=bool)

    def degree(self, node: int) -> int:
        raw = self.txn.get(node_key(self.tenant, node), db=self.tables.out)
        return len(raw) // ADJ.itemsize if raw else 0

    def layers(self, seed: int, depth: int, stop_at: int | None = None) -> list[np.ndarray]:
        """BFS layers L1..L_depth (distinct nodes, first layer each appears in; seed excluded)."""
        visited = np.array([seed], dtype=np.int64)
        frontier = visited
        out: list[np.ndarray] = []
        total = 0
        for _ in range(depth):
            if len(frontier) == 0:
                break
            nxt = np.unique(np.concatenate([self.row(v)["dst"] for v in frontier.tolist()] or [visited[:0]]))
            nxt = np.setdiff1d(nxt, visited, assume_unique=True)
            out.append(nxt)
            visited = np.union1d(visited, nxt)
            frontier = nxt
            total += len(nxt)
            if stop_at is not None and total >= stop_at:
                break
        return out


class LmdbGraphEngine:
    """Stateless query functions over the LMDB tables of one environment."""

    name = "lmdb"

    def __init__(self, tables: GraphTables, env: lmdb.Environment) -> None:
        self.tables, self.env = tables, env

    def _plan(self, r: _Reader, t0: int) -> dict[str, Any]:
        return {"rows_scanned": r.rows, "edges_scanned": r.edges,
                "micros": (time.perf_counter_ns() - t0) // 1000}

    def topn(self, tenant: int, seed: int, hops: int = 2, n: int = 10, edge_types: TypeSet = None,
             node_types: TypeSet = None) -> tuple[list[tuple[int, float]], dict[str, Any]]:
        t0 = time.perf_counter_ns()
        with self.env.begin() as txn:
            r = _Reader(self.tables, txn, tenant, edge_types)
            r.require(seed)
            first = r.row(seed)
            nodes = [first["dst"]]
            scores = [first["w"].astype(np.float64)]
            if hops >= 2:
                for u, w1 in zip(first["dst"].tolist(), first["w"].astype(np.float64).tolist()):
                    second = r.row(u)
                    nodes.append(second["dst"])
                    scores.append(w1 * second["w"].astype(np.float64))
            cand = np.concatenate(nodes)
            score = np.concatenate(scores)
            keep = cand != seed
            cand, score = cand[keep], score[keep]
            # best score per node: sort by (node, -score) and take each node's first entry
            order = np.lexsort((-score, cand))
            cand, score = cand[order], score[order]
            first_of = np.r_[True, cand[1:] != cand[:-1]] if len(cand) else np.zeros(0, dtype=bool)
            cand, score = cand[first_of], score[first_of]
            ok = r.type_ok(cand, node_types)
            cand, score = cand[ok], score[ok]
            top = np.lexsort((cand, -score))[:n]
            result = [(int(c), float(s)) for c, s in zip(cand[top], score[top])]
            return result, self._plan(r, t0)

    def neighborhood_size(self, tenant: int, seed: int, depth: int = 3, limit: int = 50_000,
                          edge_types: TypeSet = None, node_types: TypeSet = None) -> tuple[int, dict[str, Any]]:
        t0 = time.perf_counter_ns()
        with self.env.begin() as txn:
            r = _Reader(self.tables, txn, tenant, edge_types)
            r.require(seed)
            layers = r.layers(seed, depth, stop_at=limit if node_types is None else None)
            count = sum(int(r.type_ok(layer, node_types).sum()) for layer in layers)
            return min(count, limit), self._plan(r, t0)

    def path(self, tenant: int, src: int, dst: int, max_depth: int = 4,
             edge_types: TypeSet = None) -> tuple[list[int] | None, dict[str, Any]]:
        t0 = time.perf_counter_ns()
        with self.env.begin() as txn:
            r = _Reader(self.tables, txn, tenant, edge_types)
            r.require(src)
            r.require(dst)
            if src == dst:
                return [src], self._plan(r, t0)
            layers = [np.array([src], dtype=np.int64)]
            visited = layers[0]
            rows: dict[int, np.ndarray] = {}
            found = False
            for _ in range(max_depth):
                parts = []
                for v in layers[-1].tolist():
                    rows[v] = r.row(v)["dst"]
                    parts.append(rows[v])
                nxt = np.setdiff1d(np.unique(np.concatenate(parts)) if parts else visited[:0], visited)
                if len(nxt) == 0:
                    break
                layers.append(nxt)
                visited = np.union1d(visited, nxt)
                if dst in set(nxt.tolist()):
                    found = True
                    break
            if not found:
                return None, self._plan(r, t0)
            depth = len(layers) - 1
            good: list[set[int]] = [set() for _ in range(depth + 1)]
            good[depth] = {dst}
            for k in range(depth - 1, -1, -1):
                good[k] = {v for v in layers[k].tolist() if not good[k + 1].isdisjoint(rows[v].tolist())}
            path = [src]
            for k in range(1, depth + 1):
                path.append(min(good[k].intersection(rows[path[-1]].tolist())))
            return path, self._plan(r, t0)

    def topdegree(self, tenant: int, seed: int, depth: int = 2, n: int = 10, edge_types: TypeSet = None,
                  node_types: TypeSet = None) -> tuple[list[tuple[int, int]], dict[str, Any]]:
        t0 = time.perf_counter_ns()
        with self.env.begin() as txn:
            r = _Reader(self.tables, txn, tenant, edge_types)
            r.require(seed)
            layers = r.layers(seed, depth)
            cand = np.concatenate(layers) if layers else np.zeros(0, dtype=np.int64)
            cand = cand[r.type_ok(cand, node_types)]
            deg = np.array([r.degree(v) for v in cand.tolist()], dtype=np.int64)
            top = np.lexsort((cand, -deg))[:n]
            return [(int(c), int(d)) for c, d in zip(cand[top], deg[top])], self._plan(r, t0)
