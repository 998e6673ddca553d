"""The bulk loader: CSV or .npz edge files (src, dst, type, w) straight into a tenant's LMDB rows."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import numpy as np

from provgraph.errors import BadRequestError
from provgraph.graph.model import EdgeBatch, validate_edge_arrays
from provgraph.graph.storage import GraphTables
from provgraph.store import Store

__all__ = ["bulk_load", "read_edge_file"]

CHUNK_EDGES = 5_000_000  # one transaction each; rows of later chunks merge, so keep chunks large


def read_edge_file(path: Path) -> EdgeBatch:
    """`.npz` with arrays src, dst, type, w; or CSV with a header naming those columns."""
    if path.suffix == ".npz":
        with np.load(path) as z:
            missing = {"src", "dst", "type", "w"} - set(z.files)
            if missing:
                raise BadRequestError(f"{path} lacks arrays {sorted(missing)}")
            return validate_edge_arrays(z["src"].astype(np.int64), z["dst"].astype(np.int64),
                                        z["w"].astype(np.float64), z["type"].astype(np.int64))
    with path.open() as f:
        header = [h.strip() for h in f.readline().split(",")]
    if not {"src", "dst"} <= set(header):
        raise BadRequestError(f"{path}: CSV header must name src,dst[,type][,w]", {"header": header})
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    col = {name: i for i, name in enumerate(header)}
    n = data.shape[0]
    src = data[:, col["src"]]
    dst = data[:, col["dst"]]
    if not (np.all(src == np.round(src)) and np.all(dst == np.round(dst))):
        raise BadRequestError(f"{path}: src and dst must be integers")
    w = data[:, col["w"]] if "w" in col else np.ones(n)
    t = data[:, col["type"]].astype(np.int64) if "type" in col else np.zeros(n, dtype=np.int64)
    return validate_edge_arrays(src.astype(np.int64), dst.astype(np.int64), w, t)


def bulk_load(store: Store, tenant_num: int, batch: EdgeBatch) -> dict[str, float]:
    """Write `batch` in transactions of CHUNK_EDGES edges; returns edges, seconds, edges/s."""
    tables = GraphTables(store.dbs)
    t0 = time.perf_counter()
    batch = batch.dedup_last()  # sorted by src: chunks then touch disjoint rows
    bounds = np.r_[0, np.flatnonzero(batch.src[1:] != batch.src[:-1]) + 1, len(batch)]
    start = 0
    while start < len(batch):
        end = int(bounds[np.searchsorted(bounds, min(start + CHUNK_EDGES, len(batch)))])
        part = EdgeBatch(batch.src[start:end], batch.dst[start:end], batch.w[start:end], batch.etype[start:end])
        store.write_direct(partial(tables.put_edges, tenant=tenant_num, batch=part))
        start = end
    seconds = time.perf_counter() - t0
    return {"edges": float(len(batch)), "seconds": seconds, "edges_per_s": len(batch) / seconds if seconds else 0.0}
