"""The graph area: per-tenant graph engines (CSR snapshots with their write overlays) and the graph routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from provgraph.graph.manager import GraphManager
from provgraph.service.keys import CONFIG, GRAPH, METRICS, REGISTRY, STORE, WRITER
from provgraph.service.routes_graph import add_graph_routes

__all__ = ["setup_graph"]


async def graph_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load every tenant's graph snapshot before serving; stop the background rebuilds on the way out."""
    config, metrics = app[CONFIG], app[METRICS]
    graph = GraphManager(app[STORE], app[WRITER], config.rebuild_min_delta, config.rebuild_fraction)
    for tenant in app[REGISTRY].tenants.values():
        graph.load_tenant(tenant.num)
    app[GRAPH] = graph
    metrics.on_scrape(lambda: metrics.set_graph_stats(graph.stats()))
    metrics.read_counter("provgraph_graph_snapshot_rebuilds", "Snapshot rebuilds", lambda: graph.rebuilds)

    def fair(value: str) -> None:  # scheduling.fair: rebuilds at the heavy pool's priority, below the loop
        graph.rebuild_nice = config.pool_nice if value == "on" and config.pool_nice else None

    stop = config.flags.subscribe("scheduling.fair", fair)
    yield
    stop()
    graph.close()


def setup_graph(app: web.Application) -> None:
    app.cleanup_ctx.append(graph_ctx)
    add_graph_routes(app.router)
