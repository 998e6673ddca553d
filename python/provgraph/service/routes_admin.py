"""Admin routes: tenants, keys and the optimization flags."""

from __future__ import annotations

import asyncio

from aiohttp import web

from provgraph.errors import BadRequestError
from provgraph.service.http import Request, authorize, json_response, read_json
from provgraph.service.keys import CONFIG, GRAPH, REGISTRY

__all__ = ["setup_admin_routes"]


async def create_tenant(request: Request) -> web.Response:
    authorize(request, "admin")
    body = await read_json(request)
    registry = request.app[REGISTRY]
    tenant = await asyncio.get_running_loop().run_in_executor(None, registry.create_tenant, body)
    request.app[GRAPH].load_tenant(tenant.num)
    return json_response({"tenant_id": tenant.tenant_id}, status=201)


async def list_tenants(request: Request) -> web.Response:
    authorize(request, "admin")
    return json_response({"tenants": sorted(request.app[REGISTRY].tenants)})


async def create_key(request: Request) -> web.Response:
    authorize(request, "admin")
    body = await read_json(request)
    registry = request.app[REGISTRY]
    key, rec = await asyncio.get_running_loop().run_in_executor(None, registry.create_key, body)
    return json_response({"key": key, "key_id": rec.key_id, **{k: v for k, v in rec.to_json().items()
                                                                 if k != "key_id"}}, status=201)


async def get_flags(request: Request) -> web.Response:
    authorize(request, "admin")
    return json_response(request.app[CONFIG].flags.describe())


async def put_flags(request: Request) -> web.Response:
    authorize(request, "admin")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequestError('expected {"flag.name": "value", ...}')
    flags = request.app[CONFIG].flags
    flags.update(body)
    return json_response(flags.describe())


def setup_admin_routes(app: web.Application) -> None:
    app.router.add_post("/v1/admin/tenants", create_tenant)
    app.router.add_get("/v1/admin/tenants", list_tenants)
    app.router.add_post("/v1/admin/keys", create_key)
    app.router.add_get("/v1/admin/flags", get_flags)
    app.router.add_put("/v1/admin/flags", put_flags)
