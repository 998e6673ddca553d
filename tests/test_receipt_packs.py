"""Receipt packs (docs/receipts.md, "Packs"): compact receipts stored as runs of one tenant's chain in
one row read back byte for byte by id, by seq and in pages starting anywhere inside a pack, whatever
sizes the commits had and however tenants interleave; a migration packs rows of one receipt each (the
previous release's layout) and unpacks them again with the same reads."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
from provgraph._core import ReceiptSigner, receipt_pack_forms, uuid7
from provgraph.actions.migrate import Migration, run_offline
from provgraph.actions.pipeline import (
    CHAIN,
    PACKS,
    ReceiptCodecs,
    ReceiptLog,
    dict_key,
    pack_budget,
    prev_of,
    put_packed,
    receipt_key,
    row_count,
)
from provgraph.store import Store, Txn
from provgraph.store.keys import scan_prefix, tenant_prefix


def _chain(tenant: str, n: int, rng: random.Random) -> list[tuple[int, str, bytes]]:
    """`n` signed receipts of one chain: (seq, receipt id, stored JSON); sizes vary (evidence 0-3,
    a long inline string now and then, so some forms are far bigger than others)."""
    signer = ReceiptSigner(bytes(range(32)))
    intents = []
    for i in range(n):
        extra = {"note": "x" * rng.choice([0, 0, 0, 300, 3000, 5000])} if rng.random() < 0.1 else {}
        intents.append(orjson.dumps({
            "receipt_id": uuid7(), "tenant_id": tenant, "executed_at": f"2026-12-07T10:{i // 60 % 60:02d}:{i % 60:02d}.000001Z",
            "issued_at": f"2026-12-07T10:{i // 60 % 60:02d}:{i % 60:02d}.004000Z",
            "actor": {"id": f"user:u{i % 7}", "roles": ["operator"]}, "action": "deploy",
            "resource": {"type": "service", "id": f"s{rng.randrange(50)}"}, "policy": None, "preflight_id": None,
            "request_hash": "ab" * 32, "result_hash": "cd" * 32, "approvals": [],
            "evidence": [{"hash": f"{k:064x}", "size": k} for k in range(rng.randrange(4))], **extra}))
    signed, _ = signer.sign_batch(bytes(32), 1, intents)
    return [(seq, orjson.loads(json)["receipt_id"], json) for seq, _, _, json in signed]


def _store_interleaved(store: Store, chains: dict[int, list[tuple[int, str, bytes]]], rng: random.Random,
                       packed: bool = True, chain: bool = True) -> None:
    """Commit the chains as a running issuer does: commits of 1-40 receipts, tenants interleaved,
    each commit's compact forms packed after the tenant's last pack (or, `packed` False, a row per
    receipt: the layout before packs), with the dictionary entries and index rows. `chain`: the
    forms leave prev_hash out and go in chain packs (the issuer's layout); else they carry it
    (the layout before chain packs, and what a migration packs)."""
    chain = chain and packed
    codecs = ReceiptCodecs(store)
    budget = pack_budget(store)
    at = dict.fromkeys(chains, 0)
    while any(at[t] < len(c) for t, c in chains.items()):
        tenant = rng.choice([t for t, c in chains.items() if at[t] < len(c)])
        batch = chains[tenant][at[tenant]:at[tenant] + rng.randint(1, 40)]
        at[tenant] += len(batch)
        forms, first, added = codecs.codec(tenant).encode("", [(json, seq) for seq, _, json in batch],
                                                          elide_prev=chain)

        def job(txn: Txn, tenant: int = tenant, batch: list[tuple[int, str, bytes]] = batch,
                forms: list[bytes] = forms, first: int = first, added: list[bytes] = added) -> None:
            cur = txn.cursor(db=store.db("receipts"))
            if packed:
                put_packed(cur, tenant, batch[0][0], forms, budget,
                           [prev_of(json) for _, _, json in batch] if chain else None)
            else:
                cur.putmulti([(receipt_key(tenant, seq), f) for (seq, _, _), f in zip(batch, forms, strict=True)])
            txn.cursor(db=store.db("receipt_dict")).putmulti(
                [(dict_key(tenant, first + i), e) for i, e in enumerate(added)])
            txn.cursor(db=store.db("receipt_index")).putmulti(
                [(bytes.fromhex(rid.replace("-", "")), receipt_key(tenant, seq)) for seq, rid, _ in batch])

        store.write_direct(job)
        codecs.keep(tenant, first + len(added))


def _rows(store: Store, tenant: int) -> list[tuple[bytes, bytes]]:
    with store.read() as txn:
        return list(scan_prefix(txn.cursor(db=store.db("receipts")), tenant_prefix(tenant)))


def _assert_full(rows: list[tuple[bytes, bytes]], budget: int) -> None:
    """Every pack of a chain's rows is within the budget and full: the receipt after it did not fit."""
    for (_, v), (_, nxt) in zip(rows, rows[1:] + [(b"", b"")], strict=True):
        if v[:1] not in PACKS:  # a form too big for a pack alone is a row of its own
            assert len(v) > budget - 5
            continue
        forms = receipt_pack_forms(v)
        assert len(forms) == row_count(v)
        if len(v) > budget:  # a chain form too big for a pack: a chain pack of one
            assert v[:1] == CHAIN and len(forms) == 1
            continue
        if nxt[:1] == v[:1]:
            assert len(v) + 2 + len(receipt_pack_forms(nxt)[0]) > budget


def _check_reads(store: Store, chains: dict[int, list[tuple[int, str, bytes]]], rng: random.Random) -> None:
    log = ReceiptLog(store)
    for tenant, chain in chains.items():
        for seq, rid, json in chain:
            assert log.by_seq(tenant, seq) == json
            assert log.get(tenant, rid) == json
            assert log.get(tenant + 100, rid) is None  # another tenant's id is not found
        assert log.by_seq(tenant, 0) is None and log.by_seq(tenant, len(chain) + 1) is None
        every = [json for _, _, json in chain]
        assert log.page(tenant, 0, 10_000) == every
        for after in rng.sample(range(len(chain) + 1), min(40, len(chain) + 1)) + [len(chain) - 1, len(chain)]:
            limit = rng.choice([1, 2, 7, 16, 100])
            assert log.page(tenant, after, limit) == every[after:after + limit], (tenant, after, limit)


@pytest.mark.parametrize(("seed", "chain"), [(1, True), (2, True), (3, True), (4, False)])
def test_packed_chains_read_back_byte_for_byte_from_anywhere(tmp_path: Path, seed: int, chain: bool) -> None:
    rng = random.Random(seed)
    store = Store(tmp_path / "lmdb", sync=False)
    kinds = {CHAIN} if chain else {PACKS[0], b"\x01"}
    try:
        chains = {t: _chain(f"t{t}", rng.randint(1, 400), rng) for t in (1, 2, 3, 7)}
        _store_interleaved(store, chains, rng, chain=chain)
        budget = pack_budget(store)
        for tenant, receipts in chains.items():
            rows = _rows(store, tenant)
            assert sum(row_count(v) for _, v in rows) == len(receipts)
            firsts = [int.from_bytes(k[4:12], "big") for k, _ in rows]
            assert firsts == sorted(firsts) and firsts[0] == 1  # each row keyed by its first seq
            _assert_full(rows, budget)
            assert {v[:1] for _, v in rows} <= kinds
        _check_reads(store, chains, rng)
    finally:
        store.close()


def test_migration_packs_single_rows_and_unpacks_them_with_the_same_reads(tmp_path: Path) -> None:
    """A chain stored a row per compact receipt (the previous release) is packed by `migrate --to
    compact` in chunks that end inside runs (the next chunk fills the pack the last one left
    open), then `--to full` writes a full row per receipt; reads are the same at every step."""
    rng = random.Random(5)
    store = Store(tmp_path / "lmdb", sync=False)
    try:
        chains = {t: _chain(f"t{t}", n, rng) for t, n in ((1, 130), (2, 57))}
        _store_interleaved(store, chains, rng, packed=False)
        assert all(v[:1] == b"\x01" for t in chains for _, v in _rows(store, t))
        _check_reads(store, chains, rng)
        big = sum(len(v) + 5 > pack_budget(store) for t in chains for _, v in _rows(store, t))  # stay as they are
        state = run_offline(store, Migration.start(store, "compact", None, None), limit=13)
        assert state.state == "done" and state.migrated == 187 - big and not state.errors
        for tenant, chain in chains.items():
            rows = _rows(store, tenant)
            assert all(v[:1] != b"{" for _, v in rows) and sum(row_count(v) for _, v in rows) == len(chain)
            _assert_full(rows, pack_budget(store))  # chunks left no small packs behind
        _check_reads(store, chains, rng)
        again = run_offline(store, Migration.start(store, "compact", None, None), limit=13)
        assert again.migrated == 0  # already packed: nothing to do
        state = run_offline(store, Migration.start(store, "full", None, None), limit=5)
        assert state.state == "done" and state.migrated == 187
        for tenant, chain in chains.items():
            assert [v for _, v in _rows(store, tenant)] == [json for _, _, json in chain]
        _check_reads(store, chains, rng)
    finally:
        store.close()


def test_chain_packs_migrate_to_full_and_back_with_the_same_reads(tmp_path: Path) -> None:
    """The issuer's chain packs (prev_hash given back from the chain) unpack to full rows with
    `--to full`, and `--to compact` packs those again as plain packs; reads are the same throughout."""
    rng = random.Random(9)
    store = Store(tmp_path / "lmdb", sync=False)
    try:
        chains = {t: _chain(f"t{t}", n, rng) for t, n in ((1, 90), (4, 41))}
        _store_interleaved(store, chains, rng)
        assert {v[:1] for t in chains for _, v in _rows(store, t)} == {CHAIN}
        state = run_offline(store, Migration.start(store, "full", None, None), limit=4)
        assert state.state == "done" and state.migrated == 131 and not state.errors
        for tenant, chain in chains.items():
            assert [v for _, v in _rows(store, tenant)] == [json for _, _, json in chain]
        _check_reads(store, chains, rng)
        state = run_offline(store, Migration.start(store, "compact", None, None), limit=11)
        assert state.state == "done" and not state.errors
        assert CHAIN not in {v[:1] for t in chains for _, v in _rows(store, t)}  # a migration writes plain packs
        _check_reads(store, chains, rng)
    finally:
        store.close()
