"""The evidence area: the evidence store and purges (on the storage area's LMDB, writer, signing keys and
issuer) and their routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from provgraph.evidence.purge import Purger
from provgraph.evidence.store import EvidenceStore
from provgraph.service.keys import CONFIG, EVIDENCE, ISSUER, KEYRING, METRICS, PURGER, STORE, WRITER
from provgraph.service.routes_evidence import add_evidence_routes

__all__ = ["setup_evidence"]

log = logging.getLogger(__name__)


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
    purger = app[PURGER] = Purger(store, app[KEYRING], app[ISSUER])
    orphans = await asyncio.get_running_loop().run_in_executor(None, purger.remove_orphans)
    if orphans:
        log.info("removed %d evidence files of purged items (a purge stopped before its unlinks)", orphans)
    yield


def setup_evidence(app: web.Application) -> None:
    app.cleanup_ctx.append(evidence_ctx)
    add_evidence_routes(app.router)
