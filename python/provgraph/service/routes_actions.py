"""Action routes: preflight, execute, approvals, batch; receipts, verification, signing keys, DLQ."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from provgraph._core import verify_receipt
from provgraph.errors import BadRequestError, ForbiddenError, NotFoundError
from provgraph.service.http import (
    INT64_MAX,
    Request,
    answer_after,
    authorize,
    chain_of,
    in_background,
    json_response,
    parse_json,
    query_int,
    read_body,
    read_json,
    tenant_of,
)
from provgraph.service.keys import (
    ACTIONS,
    AUDIT,
    CONFIG,
    ISSUER,
    KEYRING,
    METRICS,
    RECEIPTS,
    REGISTRY,
    WRITER,
)

__all__ = ["issuer_ctx", "preflight_sweep_ctx", "setup_action_routes"]

log = logging.getLogger(__name__)


def _cache_on(request: Request) -> bool:
    return request.app[CONFIG].flags["policy.cache"] == "on"


async def preflight(request: Request) -> web.Response:
    key, tenant = tenant_of(request, "write")
    body = parse_json(await read_body(request))
    ack = request.app[CONFIG].flags["actions.preflight_ack"]
    answer = await request.app[ACTIONS].preflight(key, tenant, body, _cache_on(request), ack)
    return json_response(answer, status=201)


async def execute(request: Request) -> web.StreamResponse:
    key, tenant = tenant_of(request, "write")
    body = parse_json(await read_body(request))
    idem = request.headers.get("Idempotency-Key")
    done = request.app[ACTIONS].submit_execute(key, tenant, request.match_info["preflight_id"], body, idem)
    return await answer_after(request, done, json_response)


async def get_preflight(request: Request) -> web.Response:
    _, tenant = tenant_of(request, "read")
    return json_response(request.app[ACTIONS].get_preflight(tenant, request.match_info["preflight_id"]))


async def grant(request: Request) -> web.StreamResponse:
    key, tenant = tenant_of(request, "approve")
    done = request.app[ACTIONS].submit_review(key, tenant, request.match_info["preflight_id"], True)
    return await answer_after(request, done, json_response)


async def reject(request: Request) -> web.StreamResponse:
    key, tenant = tenant_of(request, "approve")
    done = request.app[ACTIONS].submit_review(key, tenant, request.match_info["preflight_id"], False)
    return await answer_after(request, done, json_response)


async def batch(request: Request) -> web.Response:
    key, tenant = tenant_of(request, "write")
    body = parse_json(await read_body(request))
    concurrent = request.app[CONFIG].flags["orchestration.batching"] == "on"
    results = await request.app[ACTIONS].batch(key, tenant, body, _cache_on(request), concurrent)
    return json_response({"results": results})


def _receipt_response(raw: bytes) -> web.Response:
    return web.Response(body=raw, content_type="application/json")


async def get_receipt(request: Request) -> web.Response:
    _, tenant = chain_of(request, "read")
    raw = request.app[RECEIPTS].get(tenant.num, request.match_info["receipt_id"])
    if raw is None:
        raise NotFoundError("unknown receipt", {"receipt_id": request.match_info["receipt_id"]})
    return _receipt_response(raw)


async def list_receipts(request: Request) -> web.Response:
    _, tenant = chain_of(request, "read")
    # after_seq + 1 is packed as an unsigned 64-bit seq: int64 keeps it in range.
    after = query_int(request, "after_seq", 0, 0, INT64_MAX)
    limit = query_int(request, "limit", 100, 1, 1000)
    rows = request.app[RECEIPTS].page(tenant.num, after, limit)
    last = orjson.loads(rows[-1])["seq"] if rows else after
    body = b'{"receipts":[' + b",".join(rows) + b'],"next_after_seq":' + str(last).encode() + b"}"
    return web.Response(body=body, content_type="application/json")


async def verify(request: Request) -> web.Response:
    """Signature with the signer's public key, and the link to the previous receipt of the tenant."""
    _, tenant = chain_of(request, "read")
    log = request.app[RECEIPTS]
    raw = log.get(tenant.num, request.match_info["receipt_id"])
    if raw is None:
        raise NotFoundError("unknown receipt", {"receipt_id": request.match_info["receipt_id"]})
    receipt = orjson.loads(raw)
    keys = request.app[KEYRING].public_key_bytes()
    out: dict[str, Any] = {"receipt_id": receipt["receipt_id"], "seq": receipt["seq"],
                           "key_id": receipt["signer"]["key_id"]}
    try:
        verify_receipt(raw, keys[receipt["signer"]["key_id"]])
        out["signature"] = True
    except (ValueError, KeyError) as exc:
        out.update(signature=False, reason=str(exc))
    if receipt["seq"] == 1:
        out["chain"] = receipt["prev_hash"] == "0" * 64
    else:
        prev = log.by_seq(tenant.num, receipt["seq"] - 1)
        try:
            prev_hash = verify_receipt(prev, keys[orjson.loads(prev)["signer"]["key_id"]]) if prev else None
        except (ValueError, KeyError):
            prev_hash = None
        out["chain"] = prev_hash is not None and prev_hash.hex() == receipt["prev_hash"]
    out["valid"] = bool(out["signature"] and out["chain"])
    return json_response(out)


async def public_keys(request: Request) -> web.Response:
    request.app[REGISTRY].authenticate(request.headers.get("Authorization"))
    return json_response({"keys": request.app[KEYRING].public_keys()})


async def rotate_key(request: Request) -> web.Response:
    admin = authorize(request, "admin")
    ring = request.app[KEYRING]
    previous = ring.active.key_id
    signer = await asyncio.get_running_loop().run_in_executor(None, ring.rotate)
    await request.app[AUDIT].record(admin, "admin.signing_key.rotate", {"type": "signing_key", "id": signer.key_id},
                                    {"key_id": signer.key_id, "previous": previous})
    return json_response({"key_id": signer.key_id, "keys": ring.public_keys()}, status=201)


async def dlq(request: Request) -> web.Response:
    authorize(request, "admin")
    issuer = request.app[ISSUER]
    return json_response({"depth": issuer.depth("dlq"), "entries": issuer.dlq()})


async def dlq_replay(request: Request) -> web.Response:
    authorize(request, "admin")
    body = await read_json(request) if request.can_read_body else {}
    ids = body.get("receipt_ids") if isinstance(body, dict) else None
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise BadRequestError("receipt_ids must be a list of strings")
    moved = await asyncio.wrap_future(request.app[WRITER].submit(request.app[ISSUER].replay_job(ids)))
    return json_response({"replayed": moved})


async def faults(request: Request) -> web.Response:
    """Inject signing or storage failures into the issuer (drills; needs --enable-fault-injection)."""
    authorize(request, "admin")
    if not request.app[CONFIG].fault_injection:
        raise ForbiddenError("fault injection is disabled (start with --enable-fault-injection)")
    body = await read_json(request)
    if not isinstance(body, dict) or any(k not in ("sign", "commit") or type(v) is not int or v < 0
                                         for k, v in body.items()):
        raise BadRequestError('expected {"sign"?: n, "commit"?: n}')
    request.app[ISSUER].faults.update(body)
    return json_response({"faults": request.app[ISSUER].faults})


def setup_action_routes(app: web.Application) -> None:
    app.router.add_post("/v1/tenants/{tenant}/actions/preflight", preflight)
    app.router.add_post("/v1/tenants/{tenant}/actions:batch", batch)
    app.router.add_get("/v1/tenants/{tenant}/actions/{preflight_id}", get_preflight)
    app.router.add_post("/v1/tenants/{tenant}/actions/{preflight_id}/execute", execute)
    app.router.add_post("/v1/tenants/{tenant}/approvals/{preflight_id}/grant", grant)
    app.router.add_post("/v1/tenants/{tenant}/approvals/{preflight_id}/reject", reject)
    app.router.add_get("/v1/tenants/{tenant}/receipts", list_receipts)
    app.router.add_get("/v1/tenants/{tenant}/receipts/{receipt_id}", get_receipt)
    app.router.add_get("/v1/tenants/{tenant}/receipts/{receipt_id}/verify", verify)
    app.router.add_get("/v1/keys", public_keys)
    app.router.add_post("/v1/admin/signing-keys/rotate", rotate_key)
    app.router.add_get("/v1/admin/dlq", dlq)
    app.router.add_post("/v1/admin/dlq/replay", dlq_replay)
    app.router.add_put("/v1/admin/faults", faults)


async def issuer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Drain the outbox before serving (nothing acknowledged is lost), then keep issuing until shutdown."""
    issuer = app[ISSUER]
    issuer.bind(asyncio.get_running_loop())
    await issuer.drain()
    async with in_background(issuer.run()):
        yield
    await issuer.drain()


async def preflight_sweep_ctx(app: web.Application) -> AsyncIterator[None]:
    """Every `preflight_sweep_interval_s`, remove the preflights past their retention (a failed sweep
    is logged and tried again at the next interval)."""
    actions, config, metrics = app[ACTIONS], app[CONFIG], app[METRICS]

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(config.preflight_sweep_interval_s)
            try:
                metrics.preflights_swept.inc(await actions.sweep())
            except Exception:  # logged; the next interval tries again
                log.exception("preflight sweep failed")

    async with in_background(sweeper()):
        yield
