"""The evidence area: the evidence store (on the storage area's LMDB and writer) and its routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from provgraph.evidence.store import EvidenceStore
from provgraph.service.keys import CONFIG, EVIDENCE, METRICS, STORE, WRITER
from provgraph.service.routes_evidence import add_evidence_routes

__all__ = ["setup_evidence"]


async def evidence_ctx(app: web.Application) -> AsyncIterator[None]:
    config, metrics = app[CONFIG], app[METRICS]
    store = app[EVIDENCE] = EvidenceStore(app[STORE], app[WRITER], config.data_dir, config.evidence_inline_max,
                                          config.evidence_max_bytes)
    # one tier until tiering moves items (docs/evidence.md): the label is there for warm and cold
    metrics.read_gauges("provgraph_evidence_items", "Evidence items held, by tier", "tier",
                        lambda: {"hot": float(store.items())})
    metrics.read_gauges("provgraph_evidence_bytes", "Bytes of the evidence held, by tier", "tier",
                        lambda: {"hot": float(store.bytes_held)})
    metrics.read_counters("provgraph_evidence_uploads", "Evidence uploads: new bytes stored, or bytes the tenant had",
                          "result", lambda: dict(store.uploads))
    yield


def setup_evidence(app: web.Application) -> None:
    app.cleanup_ctx.append(evidence_ctx)
    add_evidence_routes(app.router)
