"""Evidence routes: upload (content-addressed, stored once per tenant) and download (ETag, Range)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from provgraph.errors import InvalidArgumentError, NotFoundError, PayloadTooLargeError
from provgraph.evidence.store import FILE
from provgraph.service.http import Request, bytes_answer, json_response, tenant_of
from provgraph.service.keys import EVIDENCE

__all__ = ["add_evidence_routes"]


async def put_evidence(request: Request) -> web.Response:
    """Any content type; 201 for new bytes, 200 (the same answer) when the tenant has them already;
    413 over the evidence size limit."""
    _, tenant = tenant_of(request, "write")
    store = request.app[EVIDENCE]
    limit = store.max_bytes
    too_large = PayloadTooLargeError(f"evidence over {limit} bytes", {"limit": limit})
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    if len(data) > limit:
        raise too_large
    record, new = await store.put(tenant.num, data, request.content_type or "application/octet-stream")
    return json_response(record.answer(), status=201 if new else 200)


async def get_evidence(request: Request) -> web.Response:
    _, tenant = tenant_of(request, "read")
    store = request.app[EVIDENCE]
    h = request.match_info["hash"]
    try:
        record = store.get_record(tenant.num, h)
    except InvalidArgumentError:  # not a hash: nothing can be stored under it
        record = None
    if record is None:
        raise NotFoundError(f"unknown evidence {h!r}", {"hash": h})
    if record.where == FILE:
        data = await asyncio.get_running_loop().run_in_executor(None, store.read, tenant.num, record)
    else:
        data = store.read(tenant.num, record)
    return bytes_answer(request, data, record.content_type, f'"{record.hash}"')


def add_evidence_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/tenants/{tenant}/evidence", put_evidence)
    router.add_get("/v1/tenants/{tenant}/evidence/{hash}", get_evidence)
