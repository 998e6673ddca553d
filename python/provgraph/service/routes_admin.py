"""Admin routes: tenants, keys (create, list, revoke, rotate) and the optimization flags."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from provgraph.clock import rfc3339
from provgraph.errors import BadRequestError
from provgraph.service.http import Request, authorize, in_background, json_response, read_json
from provgraph.service.keys import AUDIT, CONFIG, GRAPH, REGISTRY

__all__ = ["key_usage_ctx", "setup_admin_routes"]

log = logging.getLogger(__name__)

USAGE_TICK_S = 1.0  # the resolution of last_used_at
USAGE_FLUSH_S = 60.0  # how often changed last-use times are written (and at shutdown)


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


def setup_admin_routes(app: web.Application) -> None:
    app.router.add_post("/v1/admin/tenants", create_tenant)
    app.router.add_get("/v1/admin/tenants", list_tenants)
    app.router.add_post("/v1/admin/keys", create_key)
    app.router.add_get("/v1/admin/keys", list_keys)
    app.router.add_delete("/v1/admin/keys/{key_id}", revoke_key)
    app.router.add_post("/v1/admin/keys/{key_id}/rotate", rotate_key)
    app.router.add_get("/v1/admin/flags", get_flags)
    app.router.add_put("/v1/admin/flags", put_flags)
    app.cleanup_ctx.append(key_usage_ctx)


async def key_usage_ctx(app: web.Application) -> AsyncIterator[None]:
    """Tick the registry's coarse clock every USAGE_TICK_S and write changed last-use times every
    USAGE_FLUSH_S and at shutdown (a crash loses at most that interval of last-use times)."""
    registry = app[REGISTRY]
    loop = asyncio.get_running_loop()

    async def ticker() -> None:
        since_flush = 0.0
        while True:
            await asyncio.sleep(USAGE_TICK_S)
            registry.tick()
            since_flush += USAGE_TICK_S
            if since_flush >= USAGE_FLUSH_S:
                since_flush = 0.0
                try:
                    await loop.run_in_executor(None, registry.flush_usage)
                except Exception:  # logged; the next interval writes them
                    log.exception("writing key last-use times failed")

    async with in_background(ticker()):
        yield
    await loop.run_in_executor(None, registry.flush_usage)
