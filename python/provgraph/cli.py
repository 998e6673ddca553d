"""The `provgraph` command: serve, flags, load, verify, backup, restore, demo."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import ssl
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provgraph.bench.server import JsonClient

from provgraph.flags import PROFILES

__all__ = ["main"]


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("PROVGRAPH_DATA_DIR", "./provgraph-data"))


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def setup_logging(level: str) -> None:
    """Log lines to stderr, each with the id of the request it was written for ("-" outside one)."""
    from provgraph.service.middleware import RequestIdLogFilter

    handler = logging.StreamHandler()
    # On the handler, not a logger: a logger's filter misses the records of its child loggers.
    handler.addFilter(RequestIdLogFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


def server_tls(cert: str, key: str) -> ssl.SSLContext:
    """The TLS context `serve --tls-cert --tls-key` listens with (TLS 1.2 at least, HTTP/1.1 only)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert, key)
    return ctx


def cmd_serve(args: argparse.Namespace) -> int:
    import uvloop
    from aiohttp import web

    from provgraph.config import Config, parse_flag_assignments
    from provgraph.flags import FlagRegistry
    from provgraph.service import create_app
    from provgraph.service.app import follow_process

    setup_logging(args.log_level)
    tls = None
    if args.tls_cert:
        try:  # before anything opens the store: a bad certificate is a start-up error
            tls = server_tls(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            print(f"provgraph serve: cannot load the TLS certificate {args.tls_cert} and key {args.tls_key}: {exc}",
                  file=sys.stderr)
            return 2
    flags = FlagRegistry(args.profile, parse_flag_assignments(args.flag or []))
    config = Config(data_dir=_data_dir(args.data_dir), host=args.host, port=args.port, flags=flags,
                    max_body_bytes=args.max_body_bytes, policy_bundle=args.policy_bundle,
                    evidence_max_bytes=min(args.evidence_max_bytes, args.max_body_bytes),
                    evidence_inline_max=args.evidence_inline_max,
                    decision_cache_ttl_s=args.decision_cache_ttl, fault_injection=args.enable_fault_injection,
                    preflight_ttl_s=args.preflight_ttl, preflight_retention_s=args.preflight_retention,
                    preflight_sweep_interval_s=args.preflight_sweep_interval, heavy_work=args.heavy_work,
                    pool_workers=args.pool_workers, pool_nice=args.pool_nice, queue_bound=args.queue_bound, time_budget_s=args.time_budget,
                    max_visited=args.max_visited or None, migrate_chunk=args.migrate_chunk)
    if args.metrics_token:  # else $PROVGRAPH_METRICS_TOKEN, read by Config
        config.metrics_token = args.metrics_token
    app = create_app(config)
    follow_process(app)
    if config.flags["service.http"] == "lean":
        from provgraph.service.lean import serve_lean

        uvloop.run(serve_lean(app, args.host, args.port, args.backlog, lambda msg: print(msg, flush=True),
                              keepalive_timeout=args.keepalive_timeout, head_timeout=args.head_timeout,
                              max_connections=args.max_connections, ssl_context=tls))
        return 0
    # aiohttp's server has neither a request-head time limit nor a connection cap: --head-timeout and
    # --max-connections apply to the lean front end only.
    uvloop.install()
    web.run_app(app, host=args.host, port=args.port, access_log=None, backlog=args.backlog,
                keepalive_timeout=args.keepalive_timeout, ssl_context=tls,
                print=lambda msg: print(msg, flush=True))
    return 0


def cmd_flags(args: argparse.Namespace) -> int:
    """Print the flag registry: every flag with its value in the chosen profile, default (the
    optimized profile's value), baseline, choices, start-up or run-time, kind and description."""
    import orjson

    from provgraph.config import parse_flag_assignments
    from provgraph.flags import FlagRegistry

    described = FlagRegistry(args.profile, parse_flag_assignments(args.flag or [])).describe()
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(described, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    print(f"profile: {described['profile']}  (DEFAULT: the optimized profile's value, BASELINE: the rollback "
          "profile's; `serve --profile P --flag name=value`)\n")
    row = "{:<24} {:<9} {:<9} {:<9} {:<23} {:<9} {}"
    print(row.format("FLAG", "VALUE", "DEFAULT", "BASELINE", "CHOICES", "WHEN", "KIND"))
    for name, f in described["flags"].items():
        print(row.format(name, f["value"], f["default"], f["baseline"], "|".join(f["choices"]),
                         "start-up" if f["startup"] else "run-time", f["kind"]))
        print(textwrap.fill(f["description"], width=100, initial_indent="    ", subsequent_indent="    "))
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from provgraph.actions.audit import offline_stager
    from provgraph.graph.bulk import bulk_load, read_edge_file
    from provgraph.store import Store
    from provgraph.tenancy import Registry

    store = Store(_data_dir(args.data_dir))
    try:
        registry = Registry(store)
        if args.tenant not in registry.tenants:
            registry.create_tenant({"tenant_id": args.tenant}, offline_stager(store))
            print(f"created tenant {args.tenant}")
        batch = read_edge_file(Path(args.file))
        result = bulk_load(store, registry.tenants[args.tenant].num, batch)
        print(f"loaded {int(result['edges']):,} edges into {args.tenant} in {result['seconds']:.2f} s "
              f"({result['edges_per_s']:,.0f} edges/s)")
    finally:
        store.close()
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check every signature and the whole hash chain of a tenant's receipts."""
    import base64

    import orjson

    from provgraph._core import verify_chain

    receipts: list[bytes] = []
    if args.url:
        try:
            client = verify_client(args.url, args.key or os.environ.get("PROVGRAPH_KEY"), args.cacert,
                                   args.insecure)
        except ValueError as exc:  # refused before any connection
            print(f"provgraph verify: {exc}", file=sys.stderr)
            return 2
        try:
            keys = {k["key_id"]: base64.b64decode(k["public_key"]) for k in client.ok("GET", "/v1/keys")["keys"]}
            receipts += [orjson.dumps(r) for r in client.receipts(args.tenant)]
        except (OSError, RuntimeError) as exc:  # unreachable, TLS refused, or an error answer
            print(f"provgraph verify: {args.url}: {exc}", file=sys.stderr)
            return 2
        finally:
            client.close()
    else:
        from provgraph.actions.pipeline import ReceiptLog
        from provgraph.store import Store
        from provgraph.tenancy import Registry

        store = Store(_data_dir(args.data_dir))
        try:
            tenant = Registry(store).chain_tenant(args.tenant)  # _admin too: the admin changes
            with store.read() as txn:
                keys = {bytes(k).decode(): base64.b64decode(orjson.loads(v)["public_key"])
                        for k, v in txn.cursor(db=store.db("signing_keys"))}
            log = ReceiptLog(store)
            after = 0
            while page := log.page(tenant.num, after, 10_000):
                receipts += page
                after += len(page)
        finally:
            store.close()
    report = verify_chain(receipts, keys)
    if report["ok"]:
        print(f"tenant {args.tenant}: {report['checked']} receipts, every signature and the chain verify")
        return 0
    print(f"tenant {args.tenant}: FAILED at seq {report['first_bad_seq']}: {report['reason']} "
          f"({report['checked']} checked)", file=sys.stderr)
    return 1


def cmd_receipts_migrate(args: argparse.Namespace) -> int:
    """Rewrite a data dir's stored receipts into one form, in bounded transactions; a migration left
    running (by a crash, or a server stopped mid-way) to the same form is resumed."""
    from provgraph.actions.migrate import Migration, run_offline
    from provgraph.store import Store
    from provgraph.store.owner import running_server
    from provgraph.tenancy import Registry

    data_dir = _data_dir(args.data_dir)
    pid = running_server(data_dir)
    if pid is not None:  # its receipt dictionaries in memory would no longer be LMDB's
        print(f"provgraph receipts migrate: a server (pid {pid}) has {data_dir} open: stop it, or migrate online "
              "with POST /v1/admin/receipts/migrate", file=sys.stderr)
        return 2
    store = Store(data_dir)
    try:
        tenant = Registry(store).tenant(args.tenant) if args.tenant else None
        state = Migration.load(store)
        if state is not None and state.state == "running" and (state.to, state.tenant_id) == (args.to, args.tenant):
            print(f"provgraph receipts migrate: resuming migration {state.job_id} ({state.scanned} of {state.total} "
                  "scanned)")
        else:
            state = Migration.start(store, args.to, args.tenant, tenant.num if tenant is not None else None)
        state = run_offline(store, state, args.chunk)
    finally:
        store.close()
    print(f"provgraph receipts migrate: {state.migrated} of {state.scanned} receipts rewritten to {state.to}")
    return 0


def cmd_verify_purge(args: argparse.Namespace) -> int:
    """Check a purge manifest offline: its signature, its Merkle root against its items, and every
    item's inclusion proof (fetched from a server with --url, or read from a bundle --file)."""
    import orjson

    from provgraph.evidence.purge import check_bundle

    if args.file:
        try:
            bundle = orjson.loads(Path(args.file).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            print(f"provgraph verify-purge: {args.file}: {exc}", file=sys.stderr)
            return 2
    else:
        if not (args.url and args.tenant and args.manifest):
            print("provgraph verify-purge: give --file, or --url with --tenant and --manifest", file=sys.stderr)
            return 2
        try:
            client = verify_client(args.url, args.key or os.environ.get("PROVGRAPH_KEY"), args.cacert, args.insecure)
        except ValueError as exc:
            print(f"provgraph verify-purge: {exc}", file=sys.stderr)
            return 2
        base = f"/v1/tenants/{args.tenant}/purges/{args.manifest}"
        try:
            manifest = client.ok("GET", base)
            items = client.ok("GET", f"{base}/items")["items"]
            proofs = {i["hash"]: client.ok("GET", f"{base}/proof/{i['hash']}") for i in items}
            bundle = {"manifest": manifest, "items": items, "proofs": proofs,
                      "keys": client.ok("GET", "/v1/keys")["keys"]}
        except (OSError, RuntimeError) as exc:
            print(f"provgraph verify-purge: {args.url}: {exc}", file=sys.stderr)
            return 2
        finally:
            client.close()
        if args.save:
            Path(args.save).write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
    try:
        problems = check_bundle(bundle)
    except (KeyError, TypeError, ValueError) as exc:
        print(f"provgraph verify-purge: not a purge bundle: {exc!r}", file=sys.stderr)
        return 2
    m = bundle["manifest"]
    for p in problems:
        print(f"provgraph verify-purge: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"purge {m['manifest_id']} of tenant {m['tenant_id']}: the signature, the root over {m['item_count']} "
          "items and every inclusion proof verify")
    return 0


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: it may resolve anywhere
        return False


def verify_client(url: str, key: str | None, cacert: str | None, insecure: bool) -> JsonClient:
    """A client for `verify --url`: TLS for https (the system trust store, or only `cacert`); plain
    http only to loopback unless `insecure`, since the bearer key would cross the network in clear.
    ValueError, before any connection, for a URL it refuses."""
    from urllib.parse import urlsplit

    from provgraph.bench.server import JsonClient

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"--url {url!r}: the scheme must be https (or http)")
    host = parts.hostname
    if not host:
        raise ValueError(f"--url {url!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"--url {url!r}: give scheme://host[:port] only (the API paths are fixed)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"--url {url!r}: {exc}") from None
    if parts.scheme == "http":
        if cacert:
            raise ValueError(f"--cacert needs an https URL, not {url!r}")
        if not insecure and not _is_loopback(host):
            raise ValueError(f"refusing plain http to {host}: the API key would cross the network in clear "
                             "text; use https (with --cacert for a self-signed certificate), or --insecure")
        return JsonClient(port, key, host)
    try:
        context = ssl.create_default_context(cafile=cacert)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"--cacert {cacert}: {exc}") from None
    return JsonClient(port, key, host, ssl_context=context)


def cmd_backup(args: argparse.Namespace) -> int:
    from provgraph.store.backup import backup

    done = backup(_data_dir(args.data_dir), Path(args.out))
    print(f"backed up {_data_dir(args.data_dir)} (format version {done.format_version}, {done.files} files) "
          f"to {done.path} ({done.bytes:,} bytes)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from provgraph.store.backup import restore

    done = restore(Path(args.archive), _data_dir(args.data_dir))
    print(f"restored {args.archive} (format version {done.format_version}, {done.files} files, "
          f"{done.bytes:,} bytes) into {done.path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from provgraph.bench.demo import run_demo

    return run_demo(quick=args.quick, out_dir=Path(args.out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="provgraph", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--data-dir", default=None, help="default: $PROVGRAPH_DATA_DIR or ./provgraph-data")
    serve.add_argument("--profile", choices=PROFILES, default="optimized",
                       help="every flag at its optimized (default) or baseline (rollback) value; "
                            "`provgraph flags` lists them")
    serve.add_argument("--flag", action="append", help="a flag over the profile, e.g. graph.engine=lmdb")
    serve.add_argument("--max-body-bytes", type=int, default=64 << 20, help="larger bodies get 413")
    serve.add_argument("--evidence-max-bytes", type=int, default=32 << 20,
                       help="larger evidence uploads get 413 (at most --max-body-bytes)")
    serve.add_argument("--evidence-inline-max", type=int, default=64 << 10,
                       help="evidence up to this size is stored in LMDB, larger in content-addressed files")
    serve.add_argument("--backlog", type=int, default=1024,
                       help="listen backlog: connections the kernel holds until accepted (aiohttp's 128 "
                            "overflows under connection bursts; a dropped SYN is retried after 1, 3, 7... s)")
    serve.add_argument("--keepalive-timeout", type=float, default=75.0,
                       help="seconds an idle keep-alive connection stays open")
    serve.add_argument("--head-timeout", type=float, default=10.0,
                       help="seconds a request head may take to arrive whole, from its first byte (or from "
                            "connecting); later, 408 and the connection closes (lean front end)")
    serve.add_argument("--max-connections", type=int, default=10_000,
                       help="open connections; beyond it a new one is closed as soon as it is accepted "
                            "(lean front end)")
    serve.add_argument("--policy-bundle", default="authz", help="bundle whose data.provgraph.authz.decision "
                       "answers /decide")
    serve.add_argument("--decision-cache-ttl", type=float, default=5.0,
                       help="seconds a cached decision lives (a bundle's manifest may override it)")
    serve.add_argument("--preflight-ttl", type=float, default=900.0, help="seconds a preflight stays executable")
    serve.add_argument("--preflight-retention", type=float, default=86_400.0,
                       help="seconds an expired preflight is kept (execute answers 410 or 409), then removed")
    serve.add_argument("--preflight-sweep-interval", type=float, default=30.0,
                       help="seconds between sweeps of preflights past their retention")
    serve.add_argument("--enable-fault-injection", action="store_true",
                       help="allow PUT /v1/admin/faults (drills only)")
    serve.add_argument("--heavy-work", type=int, default=500_000,
                       help="scheduling.fair: queries estimated to read more edges than this run in the worker pool")
    serve.add_argument("--pool-workers", type=int, default=2, help="threads of the heavy-work pool")
    serve.add_argument("--pool-nice", type=int, default=19, help="nice value of the heavy-work pool's threads")
    serve.add_argument("--migrate-chunk", type=_positive_int, default=500,
                       help="receipts a migration between storage forms rewrites per write job")
    serve.add_argument("--queue-bound", type=int, default=16,
                       help="heavy queries queued per tenant; beyond, 503 overloaded")
    serve.add_argument("--time-budget", type=float, default=5.0,
                       help="seconds a heavy query may wait and run; beyond, 503 overloaded")
    serve.add_argument("--max-visited", type=int, default=5_000_000,
                       help="nodes a traversal may reach; beyond, 422 work_cap (0: no cap)")
    serve.add_argument("--metrics-token", default=None,
                       help="a bearer token GET /metrics requires (default: $PROVGRAPH_METRICS_TOKEN; unset: open)")
    serve.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve HTTPS (with --tls-key)")
    serve.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                       help="log lines go to stderr, each with its request's X-Request-Id")
    serve.set_defaults(fn=cmd_serve)

    flags = sub.add_parser("flags", help="print every flag: value, default, baseline, choices, kind, description")
    flags.add_argument("--profile", choices=PROFILES, default="optimized",
                       help="show the values `serve --profile` would start with")
    flags.add_argument("--flag", action="append", help="as `serve --flag`: a flag over the profile")
    flags.add_argument("--json", action="store_true", help="the JSON of GET /v1/admin/flags")
    flags.set_defaults(fn=cmd_flags)

    load = sub.add_parser("load", help="bulk-load a CSV or .npz edge file (server stopped)")
    load.add_argument("--tenant", required=True)
    load.add_argument("--data-dir", default=None)
    load.add_argument("file")
    load.set_defaults(fn=cmd_load)

    verify = sub.add_parser("verify", help="verify a tenant's receipts: signatures and hash chain")
    verify.add_argument("--tenant", required=True)
    where = verify.add_mutually_exclusive_group()
    where.add_argument("--data-dir", default=None, help="read the LMDB store directly (default)")
    where.add_argument("--url", default=None, help="read through a running server's API")
    verify.add_argument("--key", default=None, help="API key for --url (or $PROVGRAPH_KEY)")
    verify.add_argument("--cacert", default=None,
                        help="PEM CA bundle to trust for an https --url (default: the system trust store)")
    verify.add_argument("--insecure", action="store_true",
                        help="allow a plain http --url to a host other than loopback (the key goes in clear)")
    verify.set_defaults(fn=cmd_verify)

    vp = sub.add_parser("verify-purge", help="verify a purge manifest offline: signature, Merkle root, every proof")
    vp.add_argument("--file", default=None, help="a bundle saved by --save (manifest, items, proofs, keys)")
    vp.add_argument("--url", default=None, help="fetch the bundle from a running server's API")
    vp.add_argument("--tenant", default=None)
    vp.add_argument("--manifest", default=None, help="the manifest_id")
    vp.add_argument("--key", default=None, help="API key for --url (or $PROVGRAPH_KEY)")
    vp.add_argument("--cacert", default=None, help="PEM CA bundle to trust for an https --url")
    vp.add_argument("--insecure", action="store_true", help="allow a plain http --url to a host other than loopback")
    vp.add_argument("--save", default=None, help="with --url: write the bundle here too, for checking later")
    vp.set_defaults(fn=cmd_verify_purge)

    receipts = sub.add_parser("receipts", help="stored receipts: migrate between the full and compact forms")
    rsub = receipts.add_subparsers(dest="receipts_command", required=True)
    migrate = rsub.add_parser("migrate", help="rewrite stored receipts into one form (server stopped; a server "
                              "does the same online: POST /v1/admin/receipts/migrate)")
    migrate.add_argument("--to", required=True, choices=["compact", "full"])
    migrate.add_argument("--tenant", default=None, help="one tenant (default: every tenant)")
    migrate.add_argument("--data-dir", default=None)
    migrate.add_argument("--chunk", type=_positive_int, default=1000, help="receipts per write transaction")
    migrate.set_defaults(fn=cmd_receipts_migrate)

    backup = sub.add_parser("backup", help="write a consistent copy of a data dir (LMDB + signing keys) to one "
                            "archive; safe while the server runs")
    backup.add_argument("--data-dir", default=None, help="default: $PROVGRAPH_DATA_DIR or ./provgraph-data")
    backup.add_argument("--out", required=True, help="the archive to write (.tar.zst); never overwritten")
    backup.set_defaults(fn=cmd_backup)

    restore = sub.add_parser("restore", help="unpack a backup into a new or empty data dir, checking every digest")
    restore.add_argument("archive")
    restore.add_argument("--data-dir", required=True, help="the data dir to create (absent or empty)")
    restore.set_defaults(fn=cmd_restore)

    demo = sub.add_parser("demo", help="before/after benchmark of the hot paths on a temporary server")
    demo.add_argument("--quick", action="store_true", help="a small version in under a minute")
    demo.add_argument("--out", default="demo-results", help="where the JSON and Markdown reports go")
    demo.set_defaults(fn=cmd_demo)

    args = parser.parse_args(argv)
    if args.command == "serve" and (args.tls_cert is None) != (args.tls_key is None):
        serve.error("--tls-cert and --tls-key go together: give both, or neither for plain HTTP")
    from provgraph.errors import ProvgraphError

    try:
        return int(args.fn(args))
    except ProvgraphError as exc:
        print(f"provgraph {args.command}: {exc.message} {exc.details or ''}".rstrip(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
