"""Evidence routes: upload (content-addressed, stored once per tenant), download (ETag, Range), and
purges with their manifests, items and inclusion proofs."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from aiohttp import web

from provgraph.errors import (
    BadRequestError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
    PurgedError,
)
from provgraph.evidence import merkle
from provgraph.evidence.purge import manifest_leaves
from provgraph.evidence.store import FILE, hash_bytes
from provgraph.service.http import (
    Request,
    authorize,
    bytes_answer,
    json_response,
    read_json,
    tenant_of,
)
from provgraph.service.keys import CONFIG, EVIDENCE, PURGER, REGISTRY

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
    digest = hash_bytes(h)  # not a hash: nothing can be stored under it
    record = store.get_record(tenant.num, digest) if digest is not None else None
    if record is None:
        purged = request.app[PURGER].purged_by(tenant.num, digest) if digest is not None else None
        if purged is not None:
            raise PurgedError(f"evidence {h} was purged", {"manifest_id": purged})
        raise NotFoundError(f"unknown evidence {h!r}", {"hash": h})
    if record.where == FILE:
        data = await asyncio.get_running_loop().run_in_executor(None, store.read, tenant.num, record)
    else:
        data = store.read(tenant.num, record)
    return bytes_answer(request, data, record.content_type, f'"{record.hash}"')


def _time_us(body: dict[str, Any], name: str, required: bool) -> int | None:
    """An RFC 3339 time with a zone (`Z` or an offset) of the body, as µs since the epoch."""
    value = body.get(name)
    if value is None and not required:
        return None
    try:
        at = dt.datetime.fromisoformat(value) if isinstance(value, str) else None  # (3.11 reads "Z")
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise BadRequestError(f"{name} must be an RFC 3339 time with its zone, e.g. 2026-01-31T00:00:00Z",
                              {"field": name})
    delta = at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


async def purge(request: Request) -> web.Response:
    """Purge a tenant's evidence past its retention (admin): 201 the signed manifest."""
    admin = authorize(request, "admin")
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"tenant_id", "before", "kinds", "reason", "as_of"}:
        raise BadRequestError('expected {"tenant_id", "before", "kinds": ["evidence"], "reason", "as_of"?}')
    tid, kinds, reason = body.get("tenant_id"), body.get("kinds"), body.get("reason")
    if not isinstance(tid, str):
        raise BadRequestError("tenant_id is required", {"field": "tenant_id"})
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise BadRequestError("kinds must be a list of kinds, e.g. [\"evidence\"]", {"field": "kinds"})
    if kinds != ["evidence"]:
        raise InvalidArgumentError('kinds must be ["evidence"] (the one kind purged so far)', {"field": "kinds"})
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 1000:
        raise BadRequestError("reason is required: 1 to 1000 characters", {"field": "reason"})
    before = _time_us(body, "before", True)
    as_of = _time_us(body, "as_of", False)
    assert before is not None
    tenant = request.app[REGISTRY].tenant(tid)  # 404 for an unknown tenant
    policy = tenant.retention or request.app[CONFIG].default_retention
    now_us = time.time_ns() // 1000
    manifest = await request.app[PURGER].purge(admin, tenant, policy, before, reason,
                                               as_of if as_of is not None else now_us, body)
    return json_response(manifest, status=201)


def _stored_purge(request: Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    _, tenant = tenant_of(request, "read")
    mid = request.match_info["manifest_id"]
    stored = request.app[PURGER].get(tenant.num, mid)
    if stored is None:
        raise NotFoundError(f"unknown purge manifest {mid!r}", {"manifest_id": mid})
    return stored["manifest"], stored["items"]


async def get_purge(request: Request) -> web.Response:
    return json_response(_stored_purge(request)[0])


async def purge_items(request: Request) -> web.Response:
    return json_response({"items": _stored_purge(request)[1]})


async def purge_proof(request: Request) -> web.Response:
    """{"leaf_index", "tree_size", "audit_path"} of one purged item (RFC 6962 §2.1.1)."""
    manifest, items = _stored_purge(request)
    h = request.match_info["hash"]
    index = next((i for i, item in enumerate(items) if item["hash"] == h), None)
    if index is None:
        raise NotFoundError(f"{h!r} is not in purge manifest {manifest['manifest_id']}", {"hash": h})
    path = merkle.audit_path(manifest_leaves(manifest, items), index)
    return json_response({"leaf_index": index, "tree_size": len(items), "audit_path": [p.hex() for p in path]})


def add_evidence_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/tenants/{tenant}/evidence", put_evidence)
    router.add_get("/v1/tenants/{tenant}/evidence/{hash}", get_evidence)
    router.add_post("/v1/admin/purge", purge)
    router.add_get("/v1/tenants/{tenant}/purges/{manifest_id}", get_purge)
    router.add_get("/v1/tenants/{tenant}/purges/{manifest_id}/items", purge_items)
    router.add_get("/v1/tenants/{tenant}/purges/{manifest_id}/proof/{hash}", purge_proof)
