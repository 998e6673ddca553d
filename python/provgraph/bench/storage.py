"""`python -m provgraph.bench storage`: receipt storage on the R1 corpus (WORKLOADS.md), in one run per
mode: bytes per receipt as stored values and on disk (LMDB pages in use after a compacting copy), the
compact codec's encode and reconstruct-and-verify throughput, and the zstd trained-dictionary anchor.

R1 here: receipts of the shapes the service signs (the issuer's fields, approvals and evidence
included) for 50 tenants (Zipf), ~20 actors per tenant, 12 actions, 8 resource types, resource ids
Zipf over 100k, 5 policy revisions, 0-3 evidence references, signed on per-tenant chains with a
real Ed25519 key (provgraph._core.ReceiptSigner, the issuer's signer), in batches as the issuer
signs them. Each mode's rows are written the way the issuer writes them (tenant|seq keys; the
compact mode with its dictionary rows) into a fresh LMDB, then copied compacted: the copy's size
over the receipts is the on-disk figure."""

from __future__ import annotations

import argparse
import base64
import gc
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import orjson
import zstandard

from provgraph._core import ReceiptCodec, ReceiptSigner, receipt_pack_forms, uuid7, verify_receipt
from provgraph.actions.model import rfc3339
from provgraph.actions.pipeline import (
    PACKS,
    dict_key,
    prev_of,
    put_packed,
    receipt_key,
    row_holding,
)
from provgraph.bench.report import format_table, write_json
from provgraph.store.keys import scan_prefix, tenant_prefix

__all__ = ["main", "r1_corpus"]

ACTIONS = ["deploy", "graph.write", "graph.delete", "config.update", "key.rotate", "export.run", "user.invite",
           "role.grant", "bundle.activate", "job.cancel", "scale.set", "secret.read"]
RESOURCE_TYPES = ["service", "graph", "config", "key", "export", "user", "role", "job"]
BATCH = 1000


@contextmanager
def _no_gc() -> Iterator[None]:
    """A timed section without Python's cyclic collector (as timeit runs): its passes over the
    corpus's millions of objects are the harness's cost, not the codec's."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _zipf(rng: np.random.Generator, n: int, s: float, size: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return rng.choice(n, size=size, p=w / w.sum())


def r1_corpus(receipts: int, seed: int = 1, tenants: int = 50) -> dict[str, list[tuple[int, bytes]]]:
    """Per tenant id: its signed receipts `(seq, stored JSON)` in chain order."""
    rng = np.random.default_rng(seed)
    owner = _zipf(rng, tenants, 1.0, receipts)
    signer = ReceiptSigner(bytes(range(32)))
    revisions = [f"2026-11-{d:02d}.1" for d in (3, 10, 17, 24, 30)]
    t0 = 1_764_000_000.0
    intents: dict[str, list[dict[str, Any]]] = {}
    res_ids = _zipf(rng, 100_000, 1.1, receipts)
    for i in range(receipts):
        tenant = f"t{int(owner[i]):02d}"
        at = t0 + i * 0.05 + float(rng.random()) * 0.01
        approvals = [{"actor": f"user:sec{int(rng.integers(0, 4))}", "at": rfc3339(at - 1.0 - k), "receipt_id": uuid7()}
                     for k in range(2 if rng.random() < 0.08 else 0)]
        evidence = [{"hash": rng.bytes(32).hex(), "size": int(rng.integers(200, 5_000_000))}
                    for _ in range(int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1])))]
        intents.setdefault(tenant, []).append({
            "receipt_id": uuid7(), "tenant_id": tenant, "executed_at": rfc3339(at),
            "issued_at": rfc3339(at + 0.002 + float(rng.random()) * 0.01),
            "actor": {"id": f"user:u{int(rng.integers(0, 20))}", "roles": [["operator"], ["admin"], ["analyst"]][
                int(rng.integers(0, 3))]},
            "action": ACTIONS[int(rng.integers(0, len(ACTIONS)))],
            "resource": {"type": RESOURCE_TYPES[int(rng.integers(0, len(RESOURCE_TYPES)))], "id": f"r{int(res_ids[i])}"},
            "policy": {"bundle": "authz", "revision": revisions[int(rng.integers(0, 5))], "decision_id": uuid7(),
                       "decision": "allow"},
            "preflight_id": uuid7(), "request_hash": rng.bytes(32).hex(), "result_hash": rng.bytes(32).hex(),
            "approvals": approvals, "evidence": evidence,
        })
    out: dict[str, list[tuple[int, bytes]]] = {}
    for tenant, items in intents.items():
        head, seq, rows = bytes(32), 1, []
        for k in range(0, len(items), BATCH):
            signed, head = signer.sign_batch(head, seq, [orjson.dumps(r) for r in items[k:k + BATCH]])
            rows += [(s, json) for s, _, _, json in signed]
            seq += len(signed)
        out[tenant] = rows
    return out


def _issue_order(corpus: dict[str, list[tuple[int, bytes]]], nums: dict[str, int]) -> list[bytes]:
    """Every receipt's key in the order a running issuer commits them: by execution time across
    tenants, so that each commit appends to many tenants' chains at once."""
    timed = sorted((orjson.loads(j)["executed_at"], receipt_key(nums[t], s)) for t, rows in corpus.items()
                   for s, j in rows)
    return [k for _, k in timed]


def _packed_commits(budget: int, prevs: dict[bytes, bytes] | None = None) -> Any:
    """A writer for `_on_disk` that stores compact rows as the issuer does with packs: per commit,
    each tenant's consecutive receipts through `put_packed` (the tenant's last pack filled first);
    with `prevs` (each receipt key's prev_hash: its form leaves it out) in chain packs."""
    def write(cur: Any, commit: list[tuple[bytes, bytes]]) -> None:
        runs: dict[int, tuple[int, list[bytes], list[bytes]]] = {}
        for key, form in sorted(commit):
            tenant, seq = int.from_bytes(key[:4], "big"), int.from_bytes(key[4:12], "big")
            first, forms, hashes = runs.setdefault(tenant, (seq, [], []))
            assert first + len(forms) == seq, "a tenant's receipts in one commit are consecutive"
            forms.append(form)
            if prevs is not None:
                hashes.append(prevs[key])
        for tenant, (first, forms, hashes) in runs.items():
            put_packed(cur, tenant, first, forms, budget, hashes if prevs is not None else None)
    return write


def _plain(cur: Any, commit: list[tuple[bytes, bytes]]) -> None:
    cur.putmulti(sorted(commit))


def _on_disk(rows: list[tuple[bytes, bytes]], dict_rows: list[tuple[bytes, bytes]], write: Any = _plain,
             keep: Path | None = None) -> int:
    """Bytes of a compacted LMDB copy holding `rows` (the receipts table, written in this order, a
    commit per BATCH rows, each commit's rows through `write`) and `dict_rows`; with `keep`, the copy
    is left there.

    The order decides the bytes for rows of one receipt each: LMDB splits a page in half when a key
    lands inside the tree, so rows appended to many tenants' chains at once (a running server)
    leave pages about 60% full, where rows written in key order fill them (~92%). Packs take
    overflow pages of their own, full whatever the order."""
    with tempfile.TemporaryDirectory() as tmp:
        env = lmdb.open(str(Path(tmp) / "db"), map_size=1 << 34, max_dbs=4, sync=False, metasync=False)
        receipts, dictionary = env.open_db(b"receipts"), env.open_db(b"receipt_dict")
        for k in range(0, len(rows), BATCH):  # a commit per batch, as the issuer's
            with env.begin(write=True) as txn:
                write(txn.cursor(db=receipts), rows[k:k + BATCH])
        with env.begin(write=True) as txn:
            txn.cursor(db=dictionary).putmulti(dict_rows)
        out = keep if keep is not None else Path(tmp) / "copy"
        out.mkdir(parents=True, exist_ok=True)
        env.copy(str(out), compact=True)
        env.close()
        return (out / "data.mdb").stat().st_size


def _all_back(env_dir: Path, codecs: dict[int, ReceiptCodec], chains: dict[int, list[tuple[int, bytes]]]) -> bool:
    """Every receipt of every chain read back from `env_dir`'s rows (packs expanded, prev_hash
    given back from the chain) is its signed receipt byte for byte."""
    env = lmdb.open(str(env_dir), readonly=True, max_dbs=4, lock=False)
    try:
        db = env.open_db(b"receipts", create=False)
        with env.begin() as txn:
            for tenant, rows in chains.items():
                stored = [(v, int.from_bytes(k[4:12], "big")) for k, v in scan_prefix(txn.cursor(db=db),
                                                                                       tenant_prefix(tenant))]
                if codecs[tenant].decode_rows("", stored) != rows:
                    return False
    finally:
        env.close()
    return True


def _read_one(env_dir: Path, codecs: dict[int, ReceiptCodec], keys: list[tuple[int, int]]) -> dict[str, float]:
    """p50/p99 µs of reading one receipt by (tenant, seq) from a receipts table (find its row, one
    seek and at most one step back for a pack; slice its form; reconstruct it), in one process."""
    env = lmdb.open(str(env_dir), readonly=True, max_dbs=4, lock=False)
    times = []
    try:
        db = env.open_db(b"receipts", create=False)
        with env.begin() as txn:
            cur = txn.cursor(db=db)
            for tenant, seq in keys:
                t = time.perf_counter_ns()
                row = row_holding(cur, tenant, seq)
                assert row is not None
                got = codecs[tenant].decode_rows("", [(row[1], row[0])], seq)
                times.append(time.perf_counter_ns() - t)
                assert got and got[0][0] == seq
    finally:
        env.close()
    a = np.array(times) / 1000
    return {"p50_us": round(float(np.percentile(a, 50)), 2), "p99_us": round(float(np.percentile(a, 99)), 2)}


def run(receipts: int, seed: int) -> dict[str, Any]:
    t = time.perf_counter()
    corpus = r1_corpus(receipts, seed)
    built_s = time.perf_counter() - t
    nums = {tenant: i + 1 for i, tenant in enumerate(sorted(corpus))}
    n = sum(len(rows) for rows in corpus.values())
    full_rows = [(receipt_key(nums[t], s), j) for t, rows in corpus.items() for s, j in rows]
    json_bytes = sum(len(j) for _, j in full_rows)
    # compact: encode (one call per batch, as the issuer does), then reconstruct-and-verify
    codecs = {t: ReceiptCodec() for t in corpus}
    compact_rows, dict_rows, forms = [], [], {}
    with _no_gc():
        t = time.perf_counter()
        for tenant, rows in corpus.items():
            codec, got = codecs[tenant], []
            for k in range(0, len(rows), BATCH):
                out, first, added = codec.encode("", [(j, s) for s, j in rows[k:k + BATCH]])
                got += out
                dict_rows += [(dict_key(nums[tenant], first + i), e) for i, e in enumerate(added)]
            forms[tenant] = got
        encode_s = time.perf_counter() - t
    # the issuer's layout: forms without prev_hash (chain packs give it back), same dictionary
    chain_codecs = {t: ReceiptCodec() for t in corpus}
    chain_forms: dict[str, list[bytes]] = {}
    with _no_gc():
        t = time.perf_counter()
        for tenant, rows in corpus.items():
            codec, got = chain_codecs[tenant], []
            for k in range(0, len(rows), BATCH):
                got += codec.encode("", [(j, s) for s, j in rows[k:k + BATCH]], elide_prev=True)[0]
            chain_forms[tenant] = got
        chain_encode_s = time.perf_counter() - t
    chain_rows = [(receipt_key(nums[t_], s_), c) for t_, rows in corpus.items()
                  for (s_, _), c in zip(rows, chain_forms[t_], strict=True)]
    prevs = {receipt_key(nums[t_], s_): prev_of(j) for t_, rows in corpus.items() for s_, j in rows}
    for tenant, rows in corpus.items():
        compact_rows += [(receipt_key(nums[tenant], s), c) for (s, _), c in zip(rows, forms[tenant], strict=True)]
    with _no_gc():
        t = time.perf_counter()
        back = {t_: codecs[t_].decode_many("", [(c, s) for (s, _), c in zip(rows, forms[t_], strict=True)])
                for t_, rows in corpus.items()}
        decode_s = time.perf_counter() - t
    exact = all(b == j for t_, rows in corpus.items() for b, (_, j) in zip(back[t_], rows, strict=True))
    pk = ReceiptSigner(bytes(range(32))).public_key
    sample = [b for t_ in back for b in back[t_][:200]]
    t = time.perf_counter()
    for b in sample:
        verify_receipt(b, pk)
    verify_s = (time.perf_counter() - t) / len(sample)
    compact_bytes = sum(len(c) for _, c in compact_rows)
    entry_bytes = sum(len(e) for _, e in dict_rows)
    # the zstd anchor: a 32 KB dictionary trained on a sample, each receipt compressed alone
    samples: list[bytes | bytearray | memoryview] = [j for _, j in full_rows[:: max(1, n // 5000)]]
    zdict = zstandard.train_dictionary(32 * 1024, samples)
    zc = zstandard.ZstdCompressor(level=19, dict_data=zdict)
    z_bytes = sum(len(zc.compress(j)) for _, j in full_rows[:: max(1, n // 20_000)])
    z_count = len(full_rows[:: max(1, n // 20_000)])
    order = _issue_order(corpus, nums)

    def issued(rows: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        by_key = dict(rows)
        return [(k, by_key[k]) for k in order]

    full_disk, compact_disk = _on_disk(issued(full_rows), []), _on_disk(issued(compact_rows), dict_rows)
    full_sorted, compact_sorted = _on_disk(sorted(full_rows), []), _on_disk(sorted(compact_rows), dict_rows)
    budget = 4096 - 16  # one overflow page of LMDB's default 4 KiB pages (pack_budget of a Store)
    by_num = {nums[t_]: codecs[t_] for t_ in corpus}
    chain_by_num = {nums[t_]: chain_codecs[t_] for t_ in corpus}
    rng = np.random.default_rng(seed + 7)
    picks = [(nums[t_], s_) for t_ in corpus for s_, _ in corpus[t_]]
    sample_keys = [picks[int(i)] for i in rng.integers(0, len(picks), 20_000)]
    with tempfile.TemporaryDirectory() as keep:
        packed_disk = _on_disk(issued(compact_rows), dict_rows, _packed_commits(budget))
        chain_disk = _on_disk(issued(chain_rows), dict_rows, _packed_commits(budget, prevs), keep=Path(keep) / "chain")
        _on_disk(issued(compact_rows), dict_rows, keep=Path(keep) / "single")
        read_chain = _read_one(Path(keep) / "chain", chain_by_num, sample_keys)
        read_single = _read_one(Path(keep) / "single", by_num, sample_keys)
        chain_exact = _all_back(Path(keep) / "chain", chain_by_num, {nums[t_]: rows for t_, rows in corpus.items()})
    return {
        "receipts": n, "tenants": len(corpus), "corpus_build_s": round(built_s, 1), "exact": exact and chain_exact,
        "full": {"value_bytes_per_receipt": round(json_bytes / n, 1), "on_disk_bytes_per_receipt": round(full_disk / n, 1),
                 "on_disk_key_order_bytes_per_receipt": round(full_sorted / n, 1)},
        "compact": {"value_bytes_per_receipt": round(compact_bytes / n, 1),
                    "dictionary_bytes_per_receipt": round(entry_bytes / n, 1),
                    "dictionary_entries": len(dict_rows),
                    "on_disk_bytes_per_receipt": round(compact_disk / n, 1),
                    "on_disk_key_order_bytes_per_receipt": round(compact_sorted / n, 1),
                    "packed_on_disk_bytes_per_receipt": round(packed_disk / n, 1),
                    "chain_value_bytes_per_receipt": round(sum(len(c) for _, c in chain_rows) / n, 1),
                    "chain_packed_on_disk_bytes_per_receipt": round(chain_disk / n, 1),
                    "chain_encode_per_s": round(n / chain_encode_s),
                    "read_one_chain_packed": read_chain, "read_one_unpacked": read_single,
                    "escaped": sum(c[0] == 0 for _, c in compact_rows),
                    "encode_per_s": round(n / encode_s), "reconstruct_per_s": round(n / decode_s),
                    "reconstruct_and_verify_per_s": round(1 / (decode_s / n + verify_s))},
        "zstd_dict_anchor_bytes_per_receipt": round(z_bytes / z_count, 1),
    }


# Per-action storage: the actions of R1 that execute at once (allowed, no dual control, no graph
# effect) on the bundle's resource types, by an actor with a role that grants them, and ~5% by an
# analyst, whom the policy denies (a stored preflight and no receipt).
EXECUTABLE = [("deploy", "service"), ("export.create", "export"), ("key.read", "key"), ("bundle.read", "bundle"),
              ("config.update", "tenant"), ("user.invite", "tenant"), ("receipt.read", "receipt"),
              ("job.cancel", "service"), ("scale.set", "service"), ("secret.read", "key")]
ADMIN_KEY = "pga_storage_bench_admin_key_01234567"
MODES = {"baseline": {"receipts.storage": "full", "records.storage": "json"},
         "compact": {"receipts.storage": "compact", "records.storage": "compact"}}


def per_action(actions: int, seed: int, tenants: int = 10, actors: int = 20) -> dict[str, Any]:
    """Bytes per executed action on disk (LMDB pages in use, GET /v1/admin/storage), per table and in
    all, after the same `actions` actions through a real server's actions:batch in each mode of
    MODES; every receipt issued. The baseline is every record as JSON (the layout before compaction)."""
    from provgraph.bench.server import ServerProcess
    from provgraph.policy.bundle import load_example_bundle

    rng = np.random.default_rng(seed)
    owner = _zipf(rng, tenants, 1.0, actions)
    res_ids = _zipf(rng, 100_000, 1.1, actions)
    plan = [(int(owner[i]), int(rng.integers(0, actors)), EXECUTABLE[int(rng.integers(0, len(EXECUTABLE)))],
             f"r{int(res_ids[i])}", bool(rng.random() < 0.05), rng.bytes(8).hex()) for i in range(actions)]
    out: dict[str, Any] = {}
    for mode, flags in MODES.items():
        with tempfile.TemporaryDirectory() as tmp:
            extra = [a for name, value in flags.items() for a in ("--flag", f"{name}={value}")]
            with ServerProcess(Path(tmp) / "data", ADMIN_KEY, extra) as srv:
                admin = srv.client()
                status, _, body = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(),
                                            {"Content-Type": "application/gzip"})
                if status not in (200, 201):
                    raise RuntimeError(f"bundle upload: {status} {body!r}")
                keys: dict[tuple[int, int, bool], Any] = {}
                for t in range(tenants):
                    admin.ok("POST", "/v1/admin/tenants", {"tenant_id": f"t{t:02d}"}, status=201)
                    for a in range(actors):
                        for denied in (False, True):
                            keys[(t, a, denied)] = srv.client(admin.ok("POST", "/v1/admin/keys", {
                                "tenant_id": f"t{t:02d}", "scopes": ["read", "write"], "actor": f"user:u{a}",
                                "roles": ["analyst"] if denied else ["admin"]}, status=201)["key"])
                executed = 0
                by_key: dict[tuple[int, int, bool], list[dict[str, Any]]] = {}
                for t, a, (action, rtype), rid, denied, nonce in plan:
                    by_key.setdefault((t, a, denied), []).append(
                        {"action": action, "resource": {"type": rtype, "id": rid}, "payload": {"nonce": nonce}})
                    if len(by_key[(t, a, denied)]) == 50:
                        executed += _batch(keys[(t, a, denied)], t, by_key.pop((t, a, denied)))
                for (t, a, denied), items in by_key.items():
                    executed += _batch(keys[(t, a, denied)], t, items)
                deadline = time.monotonic() + 120
                while b"provgraph_receipt_outbox_depth 0.0" not in srv.client(None).raw("GET", "/metrics")[2]:
                    if time.monotonic() > deadline:
                        raise RuntimeError("receipts not issued within 120 s")
                    time.sleep(0.1)
                srv.client().ok("GET", "/v1/tenants/t00/decisions?limit=1")  # the decision log flushed
                report = admin.ok("GET", "/v1/admin/storage")
        tables = {name: v["bytes"] for name, v in report["tables"].items() if v["rows"]}
        out[mode] = {"flags": flags, "executed": executed,
                     "per_table_bytes_per_action": {n: round(b / executed, 1) for n, b in sorted(tables.items())},
                     "bytes_per_action": round(sum(tables.values()) / executed, 1)}
    out["ratio"] = round(out["compact"]["bytes_per_action"] / out["baseline"]["bytes_per_action"], 3)
    return out


def _batch(client: Any, tenant: int, items: list[dict[str, Any]]) -> int:
    """One actions:batch; how many of its actions executed."""
    got = client.ok("POST", f"/v1/tenants/t{tenant:02d}/actions:batch", {"actions": items})
    return sum("receipt_id" in r for r in got["results"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m provgraph.bench storage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--receipts", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--actions", type=int, default=20_000,
                   help="executed actions of the per-action part (through a real server), 0 to leave it out")
    p.add_argument("--quick", action="store_true", help="20,000 receipts, 2,000 actions")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    receipts = 20_000 if args.quick else args.receipts
    r = run(receipts, args.seed)
    actions = min(args.actions, 2_000) if args.quick else args.actions
    if actions:
        r["per_action"] = per_action(actions, args.seed)
    full, compact = r["full"], r["compact"]
    print(f"R1: {r['receipts']:,} receipts, {r['tenants']} tenants (seed {args.seed}); every compact form "
          f"reconstructs its receipt byte for byte: {r['exact']}")
    disk, keyed = "on disk B/receipt (issue order)", "on disk B/receipt (key order)"
    print(format_table([
        {"mode": "full", "value B/receipt": full["value_bytes_per_receipt"], "dictionary B/receipt": "-",
         disk: full["on_disk_bytes_per_receipt"], keyed: full["on_disk_key_order_bytes_per_receipt"]},
        {"mode": "compact, a row per receipt", "value B/receipt": compact["value_bytes_per_receipt"],
         "dictionary B/receipt": compact["dictionary_bytes_per_receipt"],
         disk: compact["on_disk_bytes_per_receipt"], keyed: compact["on_disk_key_order_bytes_per_receipt"]},
        {"mode": "compact, packed", "value B/receipt": compact["value_bytes_per_receipt"],
         "dictionary B/receipt": compact["dictionary_bytes_per_receipt"],
         disk: compact["packed_on_disk_bytes_per_receipt"], keyed: "-"},
        {"mode": "compact, chain packs (the issuer's layout)", "value B/receipt": compact["chain_value_bytes_per_receipt"],
         "dictionary B/receipt": compact["dictionary_bytes_per_receipt"],
         disk: compact["chain_packed_on_disk_bytes_per_receipt"], keyed: "-"},
        {"mode": "zstd, trained 32 KB dictionary (anchor)", "value B/receipt": r["zstd_dict_anchor_bytes_per_receipt"],
         "dictionary B/receipt": "-", disk: "-", keyed: "-"},
    ], ["mode", "value B/receipt", "dictionary B/receipt", disk, keyed]))
    print("on disk = LMDB's compacted copy of the receipts and dictionary tables / receipts; issue order = "
          "the rows committed as a running issuer commits them (by execution time, many tenants per commit), "
          "key order = each tenant's chain written in one run (the best page fill LMDB gives unpacked rows)")
    print(f"compact: encode {compact['encode_per_s']:,}/s ({compact['chain_encode_per_s']:,}/s without prev_hash), "
          f"reconstruct {compact['reconstruct_per_s']:,}/s, "
          f"reconstruct + verify {compact['reconstruct_and_verify_per_s']:,}/s (one core, batched calls); "
          f"{compact['dictionary_entries']:,} dictionary entries; {compact['escaped']} receipts kept whole")
    rp, ru = compact["read_one_chain_packed"], compact["read_one_unpacked"]
    print(f"one receipt read by seq and reconstructed (in-process, 20,000 random): chain packed p50 {rp['p50_us']} "
          f"µs p99 {rp['p99_us']} µs (the forms before it in its pack decoded and hashed); a row per receipt p50 "
          f"{ru['p50_us']} µs p99 {ru['p99_us']} µs")
    print(f"ratios: compact value / zstd anchor = "
          f"{compact['chain_value_bytes_per_receipt'] / r['zstd_dict_anchor_bytes_per_receipt']:.2f} without prev_hash "
          f"({compact['value_bytes_per_receipt'] / r['zstd_dict_anchor_bytes_per_receipt']:.2f} with), "
          f"chain packed on disk / full on disk = "
          f"{compact['chain_packed_on_disk_bytes_per_receipt'] / full['on_disk_bytes_per_receipt']:.2f}")
    if "per_action" in r:
        pa = r["per_action"]
        names = sorted(set(pa["baseline"]["per_table_bytes_per_action"]) | set(pa["compact"]["per_table_bytes_per_action"]))
        print(f"per executed action, every table (LMDB pages in use / actions; {pa['compact']['executed']:,} "
              f"executed of {actions:,} through actions:batch, ~5% denied):")
        print(format_table([{"table": n, **{m: pa[m]["per_table_bytes_per_action"].get(n, 0) for m in MODES}}
                            for n in names] + [{"table": "all", **{m: pa[m]["bytes_per_action"] for m in MODES}}],
                           ["table", *MODES]))
        print(f"ratio compact / baseline (receipts full, records JSON): {pa['ratio']:.3f}")
    if args.json is not None:
        write_json(args.json, {"seed": args.seed, **r})
    return 0 if r["exact"] else 1



def compaction_showcase(data_dir: Path, admin: Any) -> dict[str, Any]:
    """The demo's step: one stored receipt of the tenant with the most compact rows, read from its
    LMDB row and reconstructed here from the row and the tenant's dictionary rows alone (a second
    reader beside the running server), compared byte for byte with what the API serves, and its
    signature checked; with GET /v1/admin/storage's totals."""
    report = admin.ok("GET", "/v1/admin/storage")
    tenant, info = max(report["tenants"].items(), key=lambda kv: kv[1]["receipts"]["compact_rows"])
    if info["receipts"]["compact_rows"] == 0:
        return {"tenant": None, "totals": report["totals"]}
    env = lmdb.open(str(data_dir / "lmdb"), readonly=True, max_dbs=64)
    try:
        with env.begin() as txn:
            record = txn.get(tenant.encode(), db=env.open_db(b"tenants", txn=txn, create=False))
            assert record is not None, tenant
            num = orjson.loads(record)["num"]
            prefix = tenant_prefix(num)
            rows = scan_prefix(txn.cursor(db=env.open_db(b"receipts", txn=txn, create=False)), prefix)
            row = None
            for key, value in rows:
                if value[:1] in (b"\x01", *PACKS):
                    row = (key, value)  # the tenant's last compact row or pack
            entries = [value for _, value in
                       scan_prefix(txn.cursor(db=env.open_db(b"receipt_dict", txn=txn, create=False)), prefix)]
    finally:
        env.close()
    assert row is not None
    first = int.from_bytes(row[0][4:12], "big")
    forms = receipt_pack_forms(row[1]) if row[1][:1] in PACKS else [row[1]]
    seq = first + len(forms) - 1  # the row's last receipt, sliced out of its pack alone
    (got_seq, rebuilt), = ReceiptCodec(entries).decode_rows("", [(row[1], first)], seq)
    assert got_seq == seq
    receipt = orjson.loads(rebuilt)
    served = admin.raw("GET", f"/v1/tenants/{tenant}/receipts/{receipt['receipt_id']}")[2]
    keys = {k["key_id"]: k["public_key"] for k in admin.ok("GET", "/v1/keys")["keys"]}
    verify_receipt(rebuilt, base64.b64decode(keys[receipt["signer"]["key_id"]]))  # raises if it does not hold
    verified = admin.ok("GET", f"/v1/tenants/{tenant}/receipts/{receipt['receipt_id']}/verify")
    return {"tenant": tenant, "seq": seq, "receipt_id": receipt["receipt_id"], "stored_bytes": len(forms[-1]),
            "pack": {"first_seq": first, "receipts": len(forms), "bytes": len(row[1])} if row[1][:1] in PACKS
            else None,
            "json_bytes": len(rebuilt), "identical_to_served": rebuilt == served, "signature_verified": True,
            "server_verify": verified, "dictionary_entries": len(entries), "totals": report["totals"]}


def showcase_line(s: dict[str, Any]) -> str:
    t = s["totals"]
    storage = (f"GET /v1/admin/storage: {t['receipts']:,} receipts, {t['receipt_bytes_full']:,} B as JSON, "
               f"{t['receipt_bytes_stored']:,} B stored")
    if s["tenant"] is None:
        return f"receipt compaction: no compact receipt stored; {storage}"
    p = s.get("pack")
    pack = (f", one of {p['receipts']} in a {p['bytes']} B pack from seq {p['first_seq']} (sliced out alone)"
            if p else "")
    return (f"receipt compaction: tenant {s['tenant']} seq {s['seq']} is {s['stored_bytes']} B stored for "
            f"{s['json_bytes']} B of RFC 8785 JSON ({s['stored_bytes'] / s['json_bytes']:.2f}x){pack}; rebuilt from "
            f"its row and {s['dictionary_entries']} dictionary rows: "
            f"{'byte-identical to the API answer' if s['identical_to_served'] else 'DIFFERENT from the API answer'}"
            f", Ed25519 signature verified; {storage}")
