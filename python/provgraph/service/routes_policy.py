"""Policy routes: bundles (upload, activate, list, download, stats), OPA's Data API, /decide, cache, log."""

from __future__ import annotations

import asyncio
import re
import time

import orjson
from aiohttp import web

from provgraph.errors import BadRequestError, InvalidArgumentError, NotFoundError
from provgraph.policy.manager import new_decision_id
from provgraph.service.http import (
    INT64_MAX,
    Request,
    authorize,
    json_bytes_response,
    json_response,
    parse_json,
    query_int,
    read_body,
    read_json,
    tenant_of,
)
from provgraph.service.keys import AUDIT, CONFIG, METRICS, POLICY, REGISTRY

__all__ = ["add_policy_routes"]

_GZIP_TYPES = frozenset({"application/gzip", "application/x-gzip", "application/octet-stream",
                         "application/vnd.openpolicyagent.bundles"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_WAIT = re.compile(r"wait=(\d+)")


def _bundle_name(request: Request) -> str:
    name = request.match_info["name"]
    if not _NAME.fullmatch(name):
        raise InvalidArgumentError("bundle names match [A-Za-z0-9][A-Za-z0-9._-]{0,127}", {"name": name})
    return name


async def put_bundle(request: Request) -> web.Response:
    admin = authorize(request, "admin")
    name = _bundle_name(request)
    activate = request.query.get("activate", "true").lower() not in ("false", "0", "no")
    raw = await read_body(request, _GZIP_TYPES)
    pm = request.app[POLICY]
    loop = asyncio.get_running_loop()
    _, rev = await loop.run_in_executor(None, pm.prepare_upload, name, raw)  # parse + compile off the loop
    created = await asyncio.wrap_future(pm.store_revision(rev, activate))
    if activate:
        pm.install(rev)
        await request.app[AUDIT].record(admin, "admin.bundle.activate", {"type": "bundle", "id": name},
                                        {"name": name, "revision": rev.revision, "digest": rev.digest})
    active = pm.active.get(name)
    return json_response({"name": name, "revision": rev.revision, "digest": rev.digest,
                          "active": active is not None and active.revision == rev.revision},
                         status=201 if created else 200)


async def activate_bundle(request: Request) -> web.Response:
    admin = authorize(request, "admin")
    name = _bundle_name(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("revision"), str):
        raise BadRequestError('expected {"revision": "..."}')
    pm = request.app[POLICY]
    rev = await asyncio.get_running_loop().run_in_executor(None, pm.activate_stored, name, body["revision"])
    await asyncio.wrap_future(pm.persist_active(name, rev.revision))
    pm.install(rev)  # from here on no decision of the previous revision is served
    await request.app[AUDIT].record(admin, "admin.bundle.activate", {"type": "bundle", "id": name},
                                    {"name": name, "revision": rev.revision, "digest": rev.digest})
    return json_response({"name": name, "revision": rev.revision, "digest": rev.digest, "active": True})


async def list_bundle(request: Request) -> web.Response:
    authorize(request, "admin")
    name = _bundle_name(request)
    revisions = request.app[POLICY].list_revisions(name)
    if not revisions:
        raise NotFoundError(f"no bundle {name!r}", {"name": name})
    active = request.app[POLICY].active.get(name)
    return json_response({"name": name, "active_revision": active.revision if active else None,
                          "revisions": revisions})


async def download_bundle(request: Request) -> web.StreamResponse:
    """The active bundle as stored (gzip passthrough), strong ETag, If-None-Match, OPA long polling."""
    authorize(request, "read")
    name = _bundle_name(request)
    pm = request.app[POLICY]
    rev = pm.active.get(name)
    if rev is None or rev.raw is None:
        raise NotFoundError(f"no active bundle {name!r}", {"name": name})
    wait = _WAIT.search(request.headers.get("Prefer", ""))
    etag = f'"{rev.digest}"'
    if request.headers.get("If-None-Match") == etag and wait:
        timeout = min(float(wait.group(1)), request.app[CONFIG].long_poll_max_s)
        deadline = time.monotonic() + timeout
        while pm.active[name].digest == rev.digest and time.monotonic() < deadline:
            await pm.wait_change(name, deadline - time.monotonic())
        rev = pm.active[name]
        etag = f'"{rev.digest}"'
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    assert rev.raw is not None
    return web.Response(body=rev.raw, headers={"ETag": etag, "Content-Type": "application/gzip",
                                               "X-Bundle-Revision": rev.revision})


async def bundle_stats(request: Request) -> web.Response:
    authorize(request, "admin")
    name = _bundle_name(request)
    pm = request.app[POLICY]
    rev = pm.active.get(name)
    if rev is None:
        raise NotFoundError(f"no active bundle {name!r}", {"name": name})
    vm_eligible = rev.compiled is not None and rev.compiled.vm_eligible
    return json_response({"name": name, "revision": rev.revision, "stats": rev.stats.summary(),
                          "cache": pm.cache.stats(), "vm_eligible": vm_eligible})


async def data_api(request: Request) -> web.Response:
    """OPA's Data API: POST/GET /v1/data/{path} -> {"result": ..., "decision_id": ...}."""
    authorize(request, "read")
    t0 = time.perf_counter_ns()
    path = request.match_info.get("path", "").strip("/")
    input_json: bytes | None = None
    if request.method == "POST" and request.can_read_body:
        body = parse_json(await read_body(request))
        if body is not None and not isinstance(body, dict):
            raise BadRequestError("body must be a JSON object with an optional input")
        if isinstance(body, dict) and "input" in body:
            input_json = orjson.dumps(body["input"])
    result, eval_ns, _ = request.app[POLICY].eval_data(path, input_json)  # errors: 500 policy_eval_error
    response = b'{"decision_id":"' + new_decision_id().encode() + b'"'
    if result is not None:
        response += b',"result":' + result
    if request.query.get("metrics") == "true":
        response += b',"metrics":' + orjson.dumps({"timer_rego_query_eval_ns": eval_ns,
                                                   "timer_server_handler_ns": time.perf_counter_ns() - t0})
    return web.Response(body=response + b"}", content_type="application/json")


async def decide(request: Request) -> web.Response:
    key, tenant = tenant_of(request, "read")
    raw = await read_body(request)
    app = request.app
    pm = app[POLICY]
    metrics = app[METRICS]
    use_cache = app[CONFIG].flags["policy.cache"] == "on"
    t0 = time.perf_counter()
    hit = pm.decide_cached(tenant.tenant_id, key.actor, key.roles, raw) if use_cache else None
    if hit is not None:
        body, entry, rev = hit
        pm.log.record_json(tenant.num, entry)
        metrics.observe_decision(rev.name, rev.revision, True, time.perf_counter() - t0)
        return json_bytes_response(body)
    response, log_entry = pm.decide(tenant.tenant_id, key.actor, key.roles, parse_json(raw), use_cache)
    if log_entry:
        pm.log.record(tenant.num, log_entry)
        metrics.observe_decision(response["bundle"], response["revision"], response["cached"],
                                 time.perf_counter() - t0)
    return json_response(response)


async def invalidate(request: Request) -> web.Response:
    authorize(request, "admin")
    body = await read_json(request)
    if not isinstance(body, dict) or any(k not in ("tenant_id", "action", "resource_type") for k in body):
        raise BadRequestError('expected {"tenant_id"?, "action"?, "resource_type"?}')
    for k, v in body.items():
        if not isinstance(v, str):
            raise BadRequestError(f"{k} must be a string", {"field": k})
    if "tenant_id" in body:
        request.app[REGISTRY].tenant(body["tenant_id"])
    request.app[POLICY].cache.invalidate(body.get("tenant_id"), body.get("action"), body.get("resource_type"))
    return json_response({"invalidated": body or "all"})


async def decisions(request: Request) -> web.Response:
    _, tenant = tenant_of(request, "read")
    limit = query_int(request, "limit", 100, 1, 10_000)
    before = query_int(request, "before_ns", None, 0, INT64_MAX)
    pm = request.app[POLICY]
    pending = pm.log.flush()  # read-your-decisions: what this server decided so far is in the answer
    if pending is not None:
        await asyncio.wrap_future(pending)
    return json_response({"decisions": pm.log.query(tenant.num, limit, before)})


def add_policy_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/bundles/{name}", put_bundle)
    router.add_get("/v1/bundles/{name}", list_bundle)
    router.add_post("/v1/bundles/{name}/activate", activate_bundle)
    router.add_get("/v1/bundles/{name}/download", download_bundle)
    router.add_get("/v1/bundles/{name}/stats", bundle_stats)
    router.add_post("/v1/data", data_api)
    router.add_get("/v1/data", data_api)
    router.add_post("/v1/data/{path:.*}", data_api)
    router.add_get("/v1/data/{path:.*}", data_api)
    router.add_post("/v1/tenants/{tenant}/decide", decide)
    router.add_get("/v1/tenants/{tenant}/decisions", decisions)
    router.add_post("/v1/cache/invalidate", invalidate)
