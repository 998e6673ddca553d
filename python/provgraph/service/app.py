"""The aiohttp application factory: storage, registry, graph, then routes, in that order."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from provgraph._core import policy_vm_fallbacks
from provgraph.actions.audit import OPERATOR, Audit
from provgraph.actions.manager import ActionManager
from provgraph.actions.pipeline import Issuer, ReceiptLog
from provgraph.actions.signing import KeyRing
from provgraph.config import Config
from provgraph.flags import subscribe_process, subscribe_writer
from provgraph.graph.manager import GraphManager
from provgraph.policy.manager import PolicyManager
from provgraph.service.keys import (
    ACTIONS,
    AUDIT,
    CONFIG,
    GENERATED_ADMIN_KEY,
    GRAPH,
    ISSUER,
    KEYRING,
    METRICS,
    POLICY,
    READY,
    RECEIPTS,
    REGISTRY,
    STORE,
    WRITER,
)
from provgraph.service.metrics import Metrics
from provgraph.service.middleware import error_and_metrics_middleware
from provgraph.service.routes_actions import issuer_ctx, preflight_sweep_ctx, setup_action_routes
from provgraph.service.routes_admin import setup_admin_routes
from provgraph.service.routes_graph import setup_graph_routes
from provgraph.service.routes_health import setup_health_routes
from provgraph.service.routes_policy import policy_ctx, setup_policy_routes
from provgraph.store import Store, Writer
from provgraph.tenancy import Registry

__all__ = ["create_app", "follow_process_flags"]

log = logging.getLogger(__name__)


def setup_storage(app: web.Application) -> None:
    """Open LMDB, start the writer, load tenants and their graph snapshots; close in reverse."""

    async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG]
        store = Store(config.data_dir, map_size=config.map_size, sync=config.sync)
        writer = Writer(store, max_group=config.group_commit_max, defer_s=config.group_commit_defer_s,
                        window_max_s=config.group_window_max_s, window_step_s=config.group_window_step_s,
                        slow_commit_s=config.group_window_slow_s)
        stop_writer_flags = subscribe_writer(config.flags, writer)
        registry = Registry(store)
        metrics = app[METRICS]
        keyring = KeyRing(store)
        issuer = Issuer(store, writer, keyring, max_attempts=config.issuer_max_attempts,
                        linger_s=config.issuer_linger_s, on_issued=metrics.observe_issued)
        audit = Audit(issuer, writer)
        await audit.record_migrations(store)
        generated = registry.ensure_admin_key(config.admin_key, audit.stager(OPERATOR))
        if generated:
            app[GENERATED_ADMIN_KEY] = generated
            print(f"provgraph: generated admin key (shown once): {generated}", flush=True)
        graph = GraphManager(store, writer, config.rebuild_min_delta, config.rebuild_fraction)
        for tenant in registry.tenants.values():
            graph.load_tenant(tenant.num)
        policy = PolicyManager(store, writer, config.policy_bundle, config.decision_cache_entries,
                               config.decision_cache_ttl_s, config.decision_log_retention,
                               on_eval_error=app[METRICS].policy_eval_errors.inc, flags=config.flags)
        app[STORE], app[WRITER], app[REGISTRY], app[GRAPH], app[POLICY] = store, writer, registry, graph, policy
        app[KEYRING], app[ISSUER], app[RECEIPTS], app[AUDIT] = keyring, issuer, ReceiptLog(store), audit
        app[ACTIONS] = ActionManager(store, writer, policy, graph, issuer, config.preflight_ttl_s,
                                     config.preflight_retention_s)

        def refresh() -> None:
            metrics.set_graph_stats(graph.stats())
            metrics.writer_nice.set(writer.nice)
            metrics.policy_cache_entries.set(policy.cache.stats()["entries"])
            metrics.outbox_depth.set(issuer.depth("outbox"))
            metrics.dlq_depth.set(issuer.depth("dlq"))
            metrics.preflights_stored.set(app[ACTIONS].stored())

        metrics.on_scrape(refresh)
        metrics.read_counter("provgraph_store_commit_groups", "Group commits (one transaction each)",
                             lambda: writer.groups)
        metrics.read_counter("provgraph_store_commit_jobs", "Write jobs committed", lambda: writer.jobs)
        metrics.read_counter("provgraph_graph_snapshot_rebuilds", "Snapshot rebuilds", lambda: graph.rebuilds)
        metrics.read_counter("provgraph_policy_decision_log_dropped",
                             "Decision log entries shed because the writer fell behind", lambda: policy.log.dropped)
        metrics.read_counter("provgraph_policy_vm_fallbacks",
                             "Evaluations the bytecode VM failed and the interpreter redid", policy_vm_fallbacks)
        metrics.read_counters("provgraph_policy_cache_events", "Decision cache events (entries is a gauge)",
                              "event", lambda: {k: v for k, v in policy.cache.stats().items() if k != "entries"})
        app[READY]["ready"] = True
        yield
        app[READY]["ready"] = False
        graph.close()
        stop_writer_flags()
        writer.close()
        store.close()

    app.cleanup_ctx.append(storage_ctx)
    app.cleanup_ctx.append(policy_ctx)  # after storage: it needs the policy manager
    app.cleanup_ctx.append(issuer_ctx)  # drains the outbox before the server listens, and on shutdown
    app.cleanup_ctx.append(preflight_sweep_ctx)


def create_app(config: Config | None = None) -> web.Application:
    config = config or Config()
    # error_and_metrics is the only middleware: it wraps every handler, errors included.
    app = web.Application(middlewares=[error_and_metrics_middleware], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[METRICS] = Metrics()
    app[READY] = {"ready": False}
    setup_storage(app)
    setup_health_routes(app)
    setup_admin_routes(app)
    setup_graph_routes(app)
    setup_policy_routes(app)
    setup_action_routes(app)

    stop_watching: list[Callable[[], None]] = []

    async def watch_collector(app: web.Application) -> None:
        stop_watching.append(app[METRICS].watch_collector())

    async def stop_watching_collector(app: web.Application) -> None:
        for stop in stop_watching:
            stop()

    app.on_startup.append(watch_collector)
    app.on_cleanup.append(stop_watching_collector)
    return app


def follow_process_flags(app: web.Application) -> None:
    """Let the process follow the process-wide flags of `app` (GIL switch interval, runtime.gc)
    while it serves: the entry point that serves `app` calls this, create_app does not, so an app
    built elsewhere (a test) leaves the process alone. Start-up contexts run first (aiohttp puts
    them at the head of on_startup): what start-up built is what runtime.gc=frozen freezes; at
    clean-up the heap goes back to the collector."""
    stop: list[Callable[[], None]] = []

    async def follow(app: web.Application) -> None:
        stop.append(subscribe_process(app[CONFIG].flags))

    async def release(app: web.Application) -> None:
        for s in stop:
            s()

    app.on_startup.append(follow)
    app.on_cleanup.append(release)
