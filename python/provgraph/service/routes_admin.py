"""Admin routes: tenants (and their quotas), keys (create, list, revoke, rotate) and the optimization flags."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from provgraph.clock import rfc3339
from provgraph.errors import BadRequestError, NotFoundError
from provgraph.service.http import Request, authorize, json_response, read_json
from provgraph.service.keys import (
    ADMISSION,
    AUDIT,
    CONFIG,
    GRAPH,
    RECEIPTS,
    REGISTRY,
    SCHEDULER,
    STORE,
)
from provgraph.store.accounting import storage_report

__all__ = ["add_admin_routes"]


async def create_tenant(request: Request) -> web.Response:
    key = authorize(request, "admin")
    body = await read_json(request)
    registry, audit = request.app[REGISTRY], request.app[AUDIT]
    tenant = await asyncio.get_running_loop().run_in_executor(None, registry.create_tenant, body,
                                                              audit.stager(key))
    audit.notify()
    request.app[GRAPH].load_tenant(tenant.num)
    return json_response({"tenant_id": tenant.tenant_id}, status=201)


async def list_tenants(request: Request) -> web.Response:
    authorize(request, "admin")
    return json_response({"tenants": sorted(request.app[REGISTRY].tenants)})


async def put_quota(request: Request) -> web.Response:
    admin = authorize(request, "admin")
    body = await read_json(request)
    registry, audit = request.app[REGISTRY], request.app[AUDIT]
    quota = await asyncio.get_running_loop().run_in_executor(None, registry.set_quota, request.match_info["tenant"],
                                                             body, audit.stager(admin))
    audit.notify()
    return json_response(quota.to_json())


async def get_quota(request: Request) -> web.Response:
    authorize(request, "admin")
    tid = request.match_info["tenant"]
    quota = request.app[REGISTRY].tenant(tid).quota
    if quota is None:
        raise NotFoundError(f"tenant {tid!r} has no quota (not rate-limited, weight 1)", {"tenant_id": tid})
    return json_response(quota.to_json())


async def put_retention(request: Request) -> web.Response:
    """Replace a tenant's retention policy (docs/evidence.md "Retention"); an admin change."""
    admin = authorize(request, "admin")
    body = await read_json(request)
    registry, audit = request.app[REGISTRY], request.app[AUDIT]
    retention = await asyncio.get_running_loop().run_in_executor(
        None, registry.set_retention, request.match_info["tenant"], body, audit.stager(admin))
    audit.notify()
    return json_response({**retention.to_json(), "default": False})


async def get_retention(request: Request) -> web.Response:
    """The tenant's policy in force: its own, or the server's default (`default`: true)."""
    authorize(request, "admin")
    tenant = request.app[REGISTRY].tenant(request.match_info["tenant"])
    policy = tenant.retention or request.app[CONFIG].default_retention
    return json_response({**policy.to_json(), "default": tenant.retention is None})


def _signals(request: Request) -> dict[str, dict[str, Any]]:
    app = request.app
    return app[SCHEDULER].signals(app[REGISTRY].weights(), app[ADMISSION].throttled)


async def tenant_signals(request: Request) -> web.Response:
    """A tenant's noisy-neighbor signals (docs/scheduling.md); zeros for a tenant with no recent work."""
    authorize(request, "admin")
    tid = request.match_info["tenant"]
    tenant = request.app[REGISTRY].tenant(tid)  # 404 for an unknown tenant
    sig = _signals(request).get(tid)
    if sig is None:
        sig = {"cpu_share": 0.0, "weight": tenant.weight, "queue_wait_ms": {"p50": None, "p99": None}, "throttled": 0,
               "shed": 0, "heavy": 0, "bulk": 0, "victim_inflation": 1.0, "harm": 0.0}
    return json_response({"tenant_id": tid, **sig})


async def all_signals(request: Request) -> web.Response:
    """Every tenant with recent work, by harm (then CPU share), highest first."""
    authorize(request, "admin")
    sig = _signals(request)
    ranked = sorted(sig.items(), key=lambda kv: (-float(kv[1]["harm"]), -float(kv[1]["cpu_share"]), kv[0]))
    return json_response({"tenants": [{"tenant_id": t, **s} for t, s in ranked]})


async def create_key(request: Request) -> web.Response:
    admin = authorize(request, "admin")
    body = await read_json(request)
    registry, audit = request.app[REGISTRY], request.app[AUDIT]
    key, rec = await asyncio.get_running_loop().run_in_executor(None, registry.create_key, body, audit.stager(admin))
    audit.notify()
    return json_response({"key": key, "key_id": rec.key_id, **{k: v for k, v in rec.to_json().items()
                                                                 if k != "key_id"}}, status=201)


async def list_keys(request: Request) -> web.Response:
    authorize(request, "admin")
    return json_response({"keys": request.app[REGISTRY].list_keys(request.query.get("tenant_id"))})


async def revoke_key(request: Request) -> web.Response:
    admin = authorize(request, "admin")
    registry, audit = request.app[REGISTRY], request.app[AUDIT]
    rec = await asyncio.get_running_loop().run_in_executor(None, registry.revoke_key, request.match_info["key_id"],
                                                           audit.stager(admin))
    audit.notify()
    return json_response({**rec.to_json(), "revoked": True})


async def rotate_key(request: Request) -> web.Response:
    admin = authorize(request, "admin")
    body = await read_json(request)
    registry, audit = request.app[REGISTRY], request.app[AUDIT]
    secret, rec, until = await asyncio.get_running_loop().run_in_executor(
        None, registry.rotate_key, request.match_info["key_id"], body, audit.stager(admin))
    audit.notify()
    listed = next(k for k in registry.list_keys() if k["key_id"] == rec.key_id)
    # grace_until is the end of the secret just replaced (the listing omits one already ended: grace_s 0)
    return json_response({"key": secret, **listed, "grace_until": rfc3339(until)}, status=201)


async def get_flags(request: Request) -> web.Response:
    authorize(request, "admin")
    return json_response(request.app[CONFIG].flags.describe())


async def put_flags(request: Request) -> web.Response:
    admin = authorize(request, "admin")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequestError('expected {"flag.name": "value", ...}')
    flags = request.app[CONFIG].flags
    changed = flags.update(body)
    if changed:  # a PUT that changes nothing is no admin change
        await request.app[AUDIT].record(admin, "admin.flags.update", {"type": "flags", "id": None}, changed)
    return json_response(flags.describe())


async def storage(request: Request) -> web.Response:
    """GET /v1/admin/storage: rows and bytes per table (LMDB pages in use) and per tenant, and each
    tenant's receipts stored against their full JSON (docs/storage.md "Accounting"). It scans the
    tenant tables (off the loop): seconds on a large data dir."""
    authorize(request, "admin")
    app = request.app
    registry = app[REGISTRY]
    tenants = {t.num: tid for tid, t in registry.tenants.items()}
    admin_chain = registry.chain_tenant("_admin")
    tenants[admin_chain.num] = admin_chain.tenant_id
    codecs = app[RECEIPTS].codecs

    def full_bytes(num: int, rows: list[tuple[bytes, int]]) -> int:
        return sum(len(b) for _, b in codecs.rows(num, rows))

    report = await asyncio.get_running_loop().run_in_executor(None, storage_report, app[STORE], tenants, full_bytes)
    return json_response(report)


def add_admin_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/admin/tenants", create_tenant)
    router.add_get("/v1/admin/tenants", list_tenants)
    router.add_put("/v1/admin/tenants/{tenant}/quota", put_quota)
    router.add_get("/v1/admin/tenants/{tenant}/quota", get_quota)
    router.add_put("/v1/admin/tenants/{tenant}/retention", put_retention)
    router.add_get("/v1/admin/tenants/{tenant}/retention", get_retention)
    router.add_get("/v1/admin/tenants/{tenant}/signals", tenant_signals)
    router.add_get("/v1/admin/signals", all_signals)
    router.add_get("/v1/admin/storage", storage)
    router.add_post("/v1/admin/keys", create_key)
    router.add_get("/v1/admin/keys", list_keys)
    router.add_delete("/v1/admin/keys/{key_id}", revoke_key)
    router.add_post("/v1/admin/keys/{key_id}/rotate", rotate_key)
    router.add_get("/v1/admin/flags", get_flags)
    router.add_put("/v1/admin/flags", put_flags)
