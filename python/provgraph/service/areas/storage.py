"""The storage area: LMDB, the group-commit writer, tenants and keys, signing keys, the receipt issuer
and the audit trail, which every other area writes through."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from provgraph.actions.audit import OPERATOR, Audit
from provgraph.actions.pipeline import Issuer, ReceiptCodecs, ReceiptLog
from provgraph.actions.signing import KeyRing
from provgraph.flags import subscribe_writer
from provgraph.service.keys import (
    AUDIT,
    CONFIG,
    GENERATED_ADMIN_KEY,
    ISSUER,
    KEYRING,
    METRICS,
    RECEIPTS,
    REGISTRY,
    STORE,
    WRITER,
)
from provgraph.store import Store, Writer, owner
from provgraph.store.accounting import table_pages
from provgraph.store.env import LATENCY_BUCKETS
from provgraph.tenancy import Registry

__all__ = ["setup_storage"]


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the store (migrating an older data dir), start the writer, load tenants and keys, install
    the admin key; record what the open migrated as audit receipts. Close in reverse."""
    config, metrics = app[CONFIG], app[METRICS]
    store = Store(config.data_dir, map_size=config.map_size, sync=config.sync)
    pid_file = owner.claim(config.data_dir)  # offline tools that must not write beside a server check it
    writer = Writer(store, max_group=config.group_commit_max, defer_s=config.group_commit_defer_s,
                    window_max_s=config.group_window_max_s, window_step_s=config.group_window_step_s,
                    slow_commit_s=config.group_window_slow_s)
    stop_writer_flags = subscribe_writer(config.flags, writer)
    registry = Registry(store)
    keyring = KeyRing(store)
    codecs = ReceiptCodecs(store)
    issuer = Issuer(store, writer, keyring, max_attempts=config.issuer_max_attempts,
                    linger_s=config.issuer_linger_s, on_issued=metrics.observe_issued, codecs=codecs)
    issuer.migrate_chunk = config.migrate_chunk
    receipts = ReceiptLog(store, codecs)

    def storage_mode(value: str) -> None:  # receipts.storage: the form of new receipts; dual checks reads
        issuer.storage = value
        receipts.check_dual = value == "dual"

    stop_storage_flag = config.flags.subscribe("receipts.storage", storage_mode)
    audit = Audit(issuer, writer)
    app[STORE], app[WRITER], app[REGISTRY], app[KEYRING] = store, writer, registry, keyring
    app[ISSUER], app[RECEIPTS], app[AUDIT] = issuer, receipts, audit
    await audit.record_migrations(store)
    generated = registry.ensure_admin_key(config.admin_key, audit.stager(OPERATOR))
    if generated:
        app[GENERATED_ADMIN_KEY] = generated
        print(f"provgraph: generated admin key (shown once): {generated}", flush=True)

    def refresh() -> None:
        metrics.writer_nice.set(writer.nice)
        metrics.outbox_depth.set(issuer.depth("outbox"))
        metrics.dlq_depth.set(issuer.depth("dlq"))

    metrics.on_scrape(refresh)
    metrics.read_counter("provgraph_store_commit_groups", "Group commits (one transaction each)",
                         lambda: writer.groups)
    metrics.read_counter("provgraph_store_commit_jobs", "Write jobs committed", lambda: writer.jobs)
    metrics.read_histogram("provgraph_store_commit_seconds", "A group's LMDB commit: page writes and fsyncs",
                           LATENCY_BUCKETS, lambda: (writer.commit_latency.counts, writer.commit_latency.sum_s))
    metrics.read_histogram("provgraph_store_write_wait_seconds",
                           "A request's write, from queued to durable (group window, apply, commit)",
                           LATENCY_BUCKETS, lambda: (writer.wait_latency.counts, writer.wait_latency.sum_s))
    pages: dict[str, dict[str, int]] = {}

    def read_pages() -> None:  # once per scrape, for both gauges
        with store.read() as txn:
            pages.update(table_pages(store, txn))

    metrics.on_scrape(read_pages)
    metrics.read_gauges("provgraph_storage_table_bytes", "LMDB pages in use by a table, times the page size",
                        "table", lambda: {t: float(v["bytes"]) for t, v in pages.items()})
    metrics.read_gauges("provgraph_storage_table_rows", "Rows in a table", "table",
                        lambda: {t: float(v["rows"]) for t, v in pages.items()})
    metrics.read_counter("provgraph_receipt_dual_checks", "Reads whose compact copy was checked (receipts.storage=dual)",
                         lambda: receipts.dual_checked)
    metrics.read_counter("provgraph_receipt_dual_mismatches",
                         "Dual-mode reads whose compact copy did not reconstruct the stored receipt",
                         lambda: receipts.dual_mismatches)
    yield
    stop_storage_flag()
    stop_writer_flags()
    writer.close()
    store.close()
    owner.release(pid_file)


def setup_storage(app: web.Application) -> None:
    app.cleanup_ctx.append(storage_ctx)
