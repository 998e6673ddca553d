"""Per-tenant graph state: durable writes through the group-commit writer, queries on either engine."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from provgraph._core import CsrGraph
from provgraph.errors import BadRequestError, InvalidArgumentError
from provgraph.graph.lmdb_engine import LmdbGraphEngine, TypeSet
from provgraph.graph.model import DeleteBatch, EdgeBatch, NodeBatch
from provgraph.graph.storage import GraphTables
from provgraph.store import Store, Txn, Writer

__all__ = ["QUERY_KINDS", "GraphManager"]

log = logging.getLogger(__name__)
QUERY_KINDS = ("topn", "neighborhood", "path", "topdegree")
_LIMITS = {"n": 10_000, "limit": 10_000_000}
# A write of at least this many edges, nodes or deletions is a bulk job for the writer (Writer.submit).
BULK_ROWS = 64


def _int(spec: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> int:
    value = spec.get(name, default)
    if value is None:
        raise BadRequestError(f"{name} is required")
    if type(value) is not int:
        raise BadRequestError(f"{name} must be an integer", {"field": name})
    if not lo <= value <= hi:
        raise InvalidArgumentError(f"{name} must be in [{lo}, {hi}]", {"field": name, "value": value})
    return value


def _types(spec: dict[str, Any], name: str) -> list[int] | None:
    value = spec.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise BadRequestError(f"{name} must be a list of integers", {"field": name})
    if any(not 0 <= v <= 255 for v in value):
        raise InvalidArgumentError(f"{name} values must be in 0..255", {"field": name})
    return value


def _set(types: list[int] | None) -> TypeSet:
    return None if types is None else frozenset(types)


_I64 = (-(1 << 63), (1 << 63) - 1)


class _CsrRunner:
    """Q1–Q4 on a tenant's CsrGraph, answering (value, plan counters)."""

    def __init__(self, g: CsrGraph, et: list[int] | None, nt: list[int] | None, explain: bool) -> None:
        self.g, self.et, self.nt, self.explain = g, et, nt, explain

    def _split(self, res: Any) -> tuple[Any, dict[str, Any]]:
        return res if self.explain else (res, {})

    def topn(self, seed: int, hops: int, n: int) -> tuple[Any, dict[str, Any]]:
        return self._split(self.g.topn(seed, n=n, hops=hops, edge_types=self.et, node_types=self.nt,
                                       explain=self.explain))

    def neighborhood_size(self, seed: int, depth: int, limit: int) -> tuple[Any, dict[str, Any]]:
        return self._split(self.g.neighborhood_size(seed, depth=depth, limit=limit, edge_types=self.et,
                                                    node_types=self.nt, explain=self.explain))

    def path(self, src: int, dst: int, max_depth: int) -> tuple[Any, dict[str, Any]]:
        return self._split(self.g.path(src, dst, max_depth=max_depth, edge_types=self.et, explain=self.explain))

    def topdegree(self, seed: int, depth: int, n: int) -> tuple[Any, dict[str, Any]]:
        return self._split(self.g.topdegree(seed, depth=depth, n=n, edge_types=self.et, node_types=self.nt,
                                            explain=self.explain))

    def plan_header(self) -> dict[str, Any]:
        return {"engine": "csr", "snapshot_version": self.g.snapshot_version, "delta_rows": self.g.delta_rows}


class _LmdbRunner:
    """Q1–Q4 on the LMDB adjacency of one tenant, same shape as _CsrRunner."""

    def __init__(self, engine: LmdbGraphEngine, tenant: int, et: TypeSet, nt: TypeSet) -> None:
        self.e, self.t, self.et, self.nt = engine, tenant, et, nt

    def topn(self, seed: int, hops: int, n: int) -> tuple[Any, dict[str, Any]]:
        return self.e.topn(self.t, seed, hops=hops, n=n, edge_types=self.et, node_types=self.nt)

    def neighborhood_size(self, seed: int, depth: int, limit: int) -> tuple[Any, dict[str, Any]]:
        return self.e.neighborhood_size(self.t, seed, depth=depth, limit=limit, edge_types=self.et,
                                        node_types=self.nt)

    def path(self, src: int, dst: int, max_depth: int) -> tuple[Any, dict[str, Any]]:
        return self.e.path(self.t, src, dst, max_depth=max_depth, edge_types=self.et)

    def topdegree(self, seed: int, depth: int, n: int) -> tuple[Any, dict[str, Any]]:
        return self.e.topdegree(self.t, seed, depth=depth, n=n, edge_types=self.et, node_types=self.nt)

    def plan_header(self) -> dict[str, Any]:
        return {"engine": "lmdb", "snapshot_version": None, "delta_rows": 0}


class GraphManager:
    """Holds one CsrGraph per tenant (snapshot + overlay) and the LMDB tables behind them."""

    def __init__(self, store: Store, writer: Writer, rebuild_min_delta: int = 20_000,
                 rebuild_fraction: float = 0.05) -> None:
        self.store, self.writer = store, writer
        self.tables = GraphTables(store.dbs)
        self.lmdb = LmdbGraphEngine(self.tables, store.env)
        self.graphs: dict[int, CsrGraph] = {}
        self.rebuild_min_delta = rebuild_min_delta
        self.rebuild_fraction = rebuild_fraction
        self._rebuilding: set[int] = set()
        self._rebuild_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="provgraph-rebuild")
        # The nice value rebuilds run at (None: the thread's own). A rebuild is CPU-heavy background
        # work (a 1.5M-edge tenant: ~220 ms); beside the event loop on one core it would take half the
        # core for that long, so with scheduling.fair on it runs at the heavy pool's low priority.
        self.rebuild_nice: int | None = None
        self._base_nice = os.getpriority(os.PRIO_PROCESS, 0)  # the creating thread's (Linux: per thread)
        self._rebuild_nice_set: int | None = None  # what the rebuild thread runs at now
        self.rebuilds = 0
        self.edges_written = 0

    # ---- lifecycle ---------------------------------------------------------------------
    def load_tenant(self, tenant: int) -> CsrGraph:
        """Build the tenant's CSR snapshot from LMDB (startup, or a tenant created at run time)."""
        with self.store.read() as txn:
            src, dst, w, et, nodes, types = self.tables.load_tenant(txn, tenant)
        graph = CsrGraph.from_edges(src, dst, w, et, nodes, types)
        self.graphs[tenant] = graph
        return graph

    def graph(self, tenant: int) -> CsrGraph:
        g = self.graphs.get(tenant)
        return g if g is not None else self.load_tenant(tenant)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ---- writes ------------------------------------------------------------------------
    def _submit(self, job: Callable[[Txn], tuple[Any, Callable[[], None] | None]], rows: int = 0,
                cpu: Callable[[int], None] | None = None) -> Future[Any]:
        """Queue `job` for the writer (a bulk job from BULK_ROWS rows). With `cpu`, the writer
        thread's CPU for the job, its staging and its publish step, is reported to it (in two parts,
        before the job's future resolves)."""
        if cpu is not None:
            job = _timed(job, cpu)
        return self.writer.submit(job, bulk=rows >= BULK_ROWS)

    def stage_edges(self, txn: Txn, tenant: int, batch: EdgeBatch) -> Callable[[], None]:
        """Write `batch` in the caller's transaction; returns the step that publishes it after commit."""
        g = self.graph(tenant)
        self.tables.put_edges(txn, tenant, batch)

        def publish() -> None:
            g.upsert_edges(batch.src, batch.dst, batch.w, batch.etype)
            self.edges_written += len(batch)
            self.maybe_rebuild(tenant)

        return publish

    def stage_delete(self, txn: Txn, tenant: int,
                     batch: DeleteBatch) -> tuple[dict[str, int], Callable[[], None]]:
        g = self.graph(tenant)
        edges, nodes = self.tables.delete(txn, tenant, batch)

        def publish() -> None:
            g.delete_edges(batch.src, batch.dst)
            g.delete_nodes(batch.nodes)
            self.maybe_rebuild(tenant)

        return {"edges_deleted": edges, "nodes_deleted": nodes}, publish

    def write_edges(self, tenant: int, batch: EdgeBatch, cpu: Callable[[int], None] | None = None) -> Future[int]:
        return self._submit(lambda txn: (len(batch), self.stage_edges(txn, tenant, batch)), len(batch), cpu)

    def write_nodes(self, tenant: int, batch: NodeBatch, cpu: Callable[[int], None] | None = None) -> Future[int]:
        g = self.graph(tenant)

        def job(txn: Txn) -> tuple[int, Callable[[], None]]:
            self.tables.put_nodes(txn, tenant, batch)

            def publish() -> None:
                g.upsert_nodes(batch.ids, batch.types)
                self.maybe_rebuild(tenant)

            return len(batch.ids), publish

        return self._submit(job, len(batch.ids), cpu)

    def delete(self, tenant: int, batch: DeleteBatch, cpu: Callable[[int], None] | None = None
               ) -> Future[dict[str, int]]:
        return self._submit(lambda txn: self.stage_delete(txn, tenant, batch), len(batch.src) + len(batch.nodes),
                            cpu)

    def maybe_rebuild(self, tenant: int) -> None:
        g = self.graphs[tenant]
        threshold = max(self.rebuild_min_delta, int(self.rebuild_fraction * g.node_count))
        if g.delta_rows < threshold:
            return
        with self._rebuild_lock:
            if tenant in self._rebuilding:
                return
            self._rebuilding.add(tenant)
        self._pool.submit(self._rebuild, tenant)

    def _rebuild(self, tenant: int) -> None:
        t0 = time.perf_counter()
        self._follow_rebuild_nice()
        try:
            version = self.graphs[tenant].rebuild()
            self.rebuilds += 1
            log.info("tenant %d snapshot v%d rebuilt in %.1f ms", tenant, version, (time.perf_counter() - t0) * 1e3)
        except Exception:
            log.exception("snapshot rebuild failed for tenant %d", tenant)
        finally:
            with self._rebuild_lock:
                self._rebuilding.discard(tenant)

    def _follow_rebuild_nice(self) -> None:
        """On the rebuild thread: take on `rebuild_nice` (when None, the nice of the thread that
        created this manager, the process's own)."""
        want = self.rebuild_nice if self.rebuild_nice is not None else self._base_nice
        if want == self._rebuild_nice_set:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), want)
            self._rebuild_nice_set = want
        except (OSError, AttributeError) as exc:  # raising it back needs CAP_SYS_NICE; not Linux
            log.info("rebuild thread priority (nice %d) not applied: %s", want, exc)
            self._rebuild_nice_set = want  # do not retry at every rebuild

    # ---- queries -----------------------------------------------------------------------
    def query_json(self, tenant: int, raw: bytes, engine: str, max_work: int | None = None
                   ) -> tuple[str, bytes | int] | None:
        """The fast path of query(): a plain topn or neighborhood spec on the CSR engine, answered
        in one native call as (kind, the JSON bytes query() would give), or left unrun as (kind, its
        work estimate) when that is over `max_work`; None otherwise, and then query() answers,
        every error included."""
        if engine != "csr":
            return None
        return self.graph(tenant).query_json(raw, max_work)

    def estimate(self, tenant: int, spec: Any) -> int:
        """The edges the query `spec` is estimated to read on the CSR engine (CsrGraph.estimate_work);
        0 for a topn (two hops, pruned by score bound: always cheap) and for a spec query() would
        refuse (it then fails inline, at once)."""
        if not isinstance(spec, dict):
            return 0
        g = self.graph(tenant)
        try:
            kind = spec.get("query")
            if kind == "neighborhood":  # not topn: two hops, pruned, always cheap (see spec.rs)
                return g.estimate_work(spec["seed"], spec.get("depth", 3), spec.get("limit", 50_000))
            if kind == "path":
                return g.estimate_work(spec["src"], spec.get("max_depth", 4))
            if kind == "topdegree":
                return g.estimate_work(spec["seed"], spec.get("depth", 2))
        except (KeyError, TypeError, ValueError, OverflowError):
            pass
        return 0

    def query(self, tenant: int, spec: Any, engine: str) -> dict[str, Any]:
        """Run one query spec (the JSON body of /graph/query) on `engine` ("csr" or "lmdb")."""
        if not isinstance(spec, dict):
            raise BadRequestError("body must be a JSON object")
        if "engine" in spec:  # it used to be a per-request override; a flag has one delivery path
            raise BadRequestError("engine is not a query field: it is the flag graph.engine (PUT /v1/admin/flags)",
                                  {"field": "engine", "flag": "graph.engine"})
        kind = spec.get("query")
        if kind not in QUERY_KINDS:
            raise BadRequestError(f"query must be one of {list(QUERY_KINDS)}", {"query": kind})
        explain = spec.get("explain", False) is True
        et, nt = _types(spec, "edge_types"), _types(spec, "node_types")
        if engine == "csr":
            run: Any = _CsrRunner(self.graph(tenant), et, nt, explain)
        else:
            run = _LmdbRunner(self.lmdb, tenant, _set(et), _set(nt))
        out: dict[str, Any]
        if kind == "topn":
            rows, plan = run.topn(_int(spec, "seed", None, *_I64), _int(spec, "hops", 2, 1, 2),
                                  _int(spec, "n", 10, 0, _LIMITS["n"]))
            out = {"results": [{"node": v, "score": s} for v, s in rows]}
        elif kind == "neighborhood":
            count, plan = run.neighborhood_size(_int(spec, "seed", None, *_I64), _int(spec, "depth", 3, 1, 8),
                                                _int(spec, "limit", 50_000, 0, _LIMITS["limit"]))
            out = {"count": count}
        elif kind == "path":
            path, plan = run.path(_int(spec, "src", None, *_I64), _int(spec, "dst", None, *_I64),
                                  _int(spec, "max_depth", 4, 1, 8))
            out = {"path": path}
        else:
            drows, plan = run.topdegree(_int(spec, "seed", None, *_I64), _int(spec, "depth", 2, 1, 4),
                                        _int(spec, "n", 10, 0, _LIMITS["n"]))
            out = {"results": [{"node": v, "degree": d} for v, d in drows]}
        if explain:
            out["plan"] = {**run.plan_header(), **plan}
        return out

    def stats(self) -> dict[str, Any]:
        return {"tenants": len(self.graphs), "rebuilds": self.rebuilds, "edges_written": self.edges_written,
                "nodes": sum(g.node_count for g in self.graphs.values()),
                "edges": sum(g.edge_count for g in self.graphs.values()),
                "delta_rows": sum(g.delta_rows for g in self.graphs.values()),
                "memory_bytes": sum(g.memory_bytes for g in self.graphs.values())}


def _timed(job: Callable[[Txn], tuple[Any, Callable[[], None] | None]], cpu: Callable[[int], None]
           ) -> Callable[[Txn], tuple[Any, Callable[[], None] | None]]:
    """`job`, reporting to `cpu` the thread CPU of its staging (when it returns) and of its publish
    step (when that ends, before the writer resolves the job's future)."""
    clock = time.thread_time_ns

    def timed(txn: Txn) -> tuple[Any, Callable[[], None] | None]:
        c0 = clock()
        try:
            result, after = job(txn)
        finally:
            cpu(clock() - c0)
        if after is None:
            return result, None
        publish = after

        def timed_publish() -> None:
            c1 = clock()
            try:
                publish()
            finally:
                cpu(clock() - c1)

        return result, timed_publish

    return timed
