"""The evidence area: the evidence store (on the storage area's LMDB and writer) and its routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from provgraph.evidence.store import EvidenceStore
from provgraph.service.keys import CONFIG, EVIDENCE, STORE, WRITER
from provgraph.service.routes_evidence import add_evidence_routes

__all__ = ["setup_evidence"]


async def evidence_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[EVIDENCE] = EvidenceStore(app[STORE], app[WRITER], config.data_dir, config.evidence_inline_max,
                                  config.evidence_max_bytes)
    yield


def setup_evidence(app: web.Application) -> None:
    app.cleanup_ctx.append(evidence_ctx)
    add_evidence_routes(app.router)
