"""Graph routes: node and edge writes (rows, columns, NDJSON), deletes and queries."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
from aiohttp import web

from provgraph.graph.manager import BULK_ROWS
from provgraph.graph.model import parse_delete, parse_edges, parse_ndjson_edges, parse_nodes
from provgraph.service.http import (
    Request,
    answer_after,
    json_bytes_response,
    json_response,
    parse_json,
    read_body,
    tenant_of,
)
from provgraph.service.keys import CONFIG, GRAPH, METRICS, SCHEDULER

__all__ = ["add_graph_routes"]

_EDGE_TYPES = frozenset({"application/json", "application/x-ndjson"})
# Bodies above this are parsed off the event loop.
_OFFLOAD_BYTES = 1 << 20


async def _parse(raw: bytes, fn: Any) -> Any:
    if len(raw) < _OFFLOAD_BYTES:
        return fn(raw)
    return await asyncio.get_running_loop().run_in_executor(None, fn, raw)


async def write_nodes(request: Request) -> web.Response:
    _, tenant = tenant_of(request, "write")
    batch = await _parse(await read_body(request), lambda raw: parse_nodes(parse_json(raw)))
    app = request.app
    async with app[SCHEDULER].bulk_turn(tenant.tenant_id, tenant.weight, len(batch.ids), BULK_ROWS) as turn:
        n = await asyncio.wrap_future(app[GRAPH].write_nodes(tenant.num, batch, turn.add if turn else None))
    return json_response({"written": n})


async def write_edges(request: Request) -> web.Response:
    _, tenant = tenant_of(request, "write")
    raw = await read_body(request, _EDGE_TYPES)
    if request.content_type == "application/x-ndjson":
        batch = await _parse(raw, parse_ndjson_edges)
    else:
        batch = await _parse(raw, lambda r: parse_edges(parse_json(r)))
    app = request.app
    # a bulk write waits for its tenant's turn (scheduling.fair); the writer's CPU for it is charged to the tenant
    async with app[SCHEDULER].bulk_turn(tenant.tenant_id, tenant.weight, len(batch), BULK_ROWS) as turn:
        n = await asyncio.wrap_future(app[GRAPH].write_edges(tenant.num, batch, turn.add if turn else None))
    app[METRICS].graph_edges_written.inc(n)
    return json_response({"written": n})


async def delete(request: Request) -> web.Response:
    _, tenant = tenant_of(request, "write")
    batch = parse_delete(parse_json(await read_body(request)))
    app = request.app
    rows = len(batch.src) + len(batch.nodes)
    async with app[SCHEDULER].bulk_turn(tenant.tenant_id, tenant.weight, rows, BULK_ROWS) as turn:
        result = await asyncio.wrap_future(app[GRAPH].delete(tenant.num, batch, turn.add if turn else None))
    return json_response(result)


async def query(request: Request) -> web.StreamResponse:
    _, tenant = tenant_of(request, "read")
    raw = await read_body(request)
    app = request.app
    engine = app[CONFIG].flags["graph.engine"]
    graph = app[GRAPH]
    sched = app[SCHEDULER]
    num = tenant.num
    max_work = sched.max_work if engine == "csr" else None
    fast = graph.query_json(num, raw, engine, max_work)
    if fast is not None:
        kind, answer = fast
        if type(answer) is bytes:
            app[METRICS].count_query(kind, engine)
            return json_bytes_response(answer)
    else:
        spec = parse_json(raw)
        kind = str(spec.get("query")) if isinstance(spec, dict) else ""
        if max_work is None or graph.estimate(num, spec) <= max_work:
            body = orjson.dumps(graph.query(num, spec, engine))
            app[METRICS].count_query(spec["query"], engine)
            return json_bytes_response(body)

    def heavy() -> bytes:  # on a pool worker, the GIL released while the native query runs
        again = graph.query_json(num, raw, engine)
        if again is not None:
            return cast(bytes, again[1])
        return orjson.dumps(graph.query(num, parse_json(raw), engine))

    future = sched.submit(tenant.tenant_id, tenant.weight, heavy, kind)
    app[METRICS].count_query(kind, engine)
    return await answer_after(request, future, json_bytes_response)


async def stats(request: Request) -> web.Response:
    _, tenant = tenant_of(request, "read")
    g = request.app[GRAPH].graph(tenant.num)
    return json_response({"nodes": g.node_count, "edges": g.edge_count, "snapshot_version": g.snapshot_version,
                          "delta_rows": g.delta_rows, "memory_bytes": g.memory_bytes})


def add_graph_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/tenants/{tenant}/graph/nodes", write_nodes)
    router.add_post("/v1/tenants/{tenant}/graph/edges", write_edges)
    router.add_post("/v1/tenants/{tenant}/graph/delete", delete)
    router.add_post("/v1/tenants/{tenant}/graph/query", query)
    router.add_get("/v1/tenants/{tenant}/graph/stats", stats)
