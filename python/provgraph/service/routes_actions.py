"""Action routes: preflight, execute, approvals, batch; receipts, verification, signing keys, DLQ."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from provgraph._core import verify_receipt
from provgraph.actions.manager import BULK_ACTIONS, MAX_BATCH
from provgraph.actions.migrate import TARGETS, Migration
from provgraph.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    InvalidArgumentError,
    NotFoundError,
)
from provgraph.service.http import (
    INT64_MAX,
    Request,
    answer_after,
    authorize,
    chain_of,
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
    RECEIPTS,
    REGISTRY,
    SCHEDULER,
    STORE,
    WRITER,
)
from provgraph.store import Txn

__all__ = ["add_action_routes"]


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
    app = request.app
    concurrent = app[CONFIG].flags["orchestration.batching"] == "on"
    items = body.get("actions") if isinstance(body, dict) else None
    count = len(items) if isinstance(items, list) and len(items) <= MAX_BATCH else 0  # else: refused below
    # a large batch waits for its tenant's turn (scheduling.fair), its preparation charged to the tenant
    async with app[SCHEDULER].bulk_turn(tenant.tenant_id, tenant.weight, count, BULK_ACTIONS) as turn:
        results = await app[ACTIONS].batch(key, tenant, body, _cache_on(request), concurrent,
                                           turn.add if turn else None)
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
    """Inject signing or storage failures into the issuer, or a delay into every commit of the writer
    (as a slow disk would: `commit_delay_ms`, 0 clears it); drills, needs --enable-fault-injection."""
    authorize(request, "admin")
    app = request.app
    if not app[CONFIG].fault_injection:
        raise ForbiddenError("fault injection is disabled (start with --enable-fault-injection)")
    body = await read_json(request)
    if not isinstance(body, dict) or any(k not in ("sign", "commit", "commit_delay_ms") or type(v) is not int
                                         or not 0 <= v <= 60_000 for k, v in body.items()):
        raise BadRequestError('expected {"sign"?: n, "commit"?: n, "commit_delay_ms"?: n} (0..60000)')
    body = dict(body)
    writer = app[WRITER]
    if "commit_delay_ms" in body:
        delay_s = body.pop("commit_delay_ms") / 1000
        writer.commit_delay = (lambda: delay_s) if delay_s else None
    app[ISSUER].faults.update(body)
    delay = writer.commit_delay
    return json_response({"faults": {**app[ISSUER].faults,
                                     "commit_delay_ms": round(delay() * 1000) if delay is not None else 0}})


async def start_migration(request: Request) -> web.Response:
    """POST /v1/admin/receipts/migrate {"to": "compact"|"full", "tenant_id"?}: rewrite stored receipts
    into that form, online, in bounded chunks (provgraph.actions.migrate); 202 with its job id, 409
    while another runs. The start is an admin change: a receipt in the tenant's chain (or _admin)."""
    admin = authorize(request, "admin")
    body = await read_json(request)
    if not isinstance(body, dict) or set(body) - {"to", "tenant_id"} or "to" not in body:
        raise BadRequestError('expected {"to": "compact"|"full", "tenant_id"?: tenant}')
    to, tid = body["to"], body.get("tenant_id")
    if to not in TARGETS:
        raise InvalidArgumentError(f"to must be one of {list(TARGETS)}", {"to": to})
    if tid is not None and not isinstance(tid, str):
        raise BadRequestError("tenant_id must be a string")
    app = request.app
    tenant = app[REGISTRY].tenant(tid) if tid is not None else None  # 404 for an unknown tenant
    issuer = app[ISSUER]
    if issuer.migrating:
        assert issuer.migration is not None
        raise ConflictError("a receipt migration is running", {"job_id": issuer.migration.job_id})
    migration = await asyncio.get_running_loop().run_in_executor(
        None, Migration.start, app[STORE], to, tid, tenant.num if tenant is not None else None)
    start = issuer.start_migration(migration)
    audit = app[AUDIT]

    def job(txn: Txn) -> tuple[None, None]:
        start(txn)
        audit.stage(txn, admin, "admin.receipts.migrate", tenant, {"type": "receipts", "id": tid or "*"},
                    {"job_id": migration.job_id, "to": to, "tenant_id": tid})
        return None, None

    await asyncio.wrap_future(app[WRITER].submit(job))
    issuer.migration_started(migration)
    return json_response({"job_id": migration.job_id}, status=202)


async def migration_state(request: Request) -> web.Response:
    authorize(request, "admin")
    migration = request.app[ISSUER].migration
    if migration is None:
        return json_response({"state": "idle", "migrated": 0, "remaining": 0, "errors": []})
    return json_response(migration.answer())


def add_action_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/tenants/{tenant}/actions/preflight", preflight)
    router.add_post("/v1/tenants/{tenant}/actions:batch", batch)
    router.add_get("/v1/tenants/{tenant}/actions/{preflight_id}", get_preflight)
    router.add_post("/v1/tenants/{tenant}/actions/{preflight_id}/execute", execute)
    router.add_post("/v1/tenants/{tenant}/approvals/{preflight_id}/grant", grant)
    router.add_post("/v1/tenants/{tenant}/approvals/{preflight_id}/reject", reject)
    router.add_get("/v1/tenants/{tenant}/receipts", list_receipts)
    router.add_get("/v1/tenants/{tenant}/receipts/{receipt_id}", get_receipt)
    router.add_get("/v1/tenants/{tenant}/receipts/{receipt_id}/verify", verify)
    router.add_get("/v1/keys", public_keys)
    router.add_post("/v1/admin/signing-keys/rotate", rotate_key)
    router.add_get("/v1/admin/dlq", dlq)
    router.add_post("/v1/admin/dlq/replay", dlq_replay)
    router.add_put("/v1/admin/faults", faults)
    router.add_post("/v1/admin/receipts/migrate", start_migration)
    router.add_get("/v1/admin/receipts/migrate", migration_state)
