"""Format versions: a data dir written by the previous release opens (migrated, same reads, chains verify);
a newer one is refused and left untouched."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import lmdb
import pytest
from conftest import Server
from datadir_reads import cli, read_all, unpack_fixture
from provgraph.errors import FormatVersionError
from provgraph.store import Store
from provgraph.store import migrations as mig

# the fixture's preflights expired long ago: keep the sweeper from removing them before they are read
KEEP_PREFLIGHTS = ["--preflight-retention", str(10 * 365 * 86_400)]


def stored_version(data_dir: Path) -> bytes | None:
    env = lmdb.open(str(data_dir / "lmdb"), readonly=True, max_dbs=64)
    try:
        with env.begin() as txn:
            return txn.get(mig.FORMAT_VERSION_KEY, db=env.open_db(b"meta", txn=txn, create=False))
    finally:
        env.close()


def digests(data_dir: Path) -> dict[str, str]:
    """Every data file's SHA-256 (LMDB's lock file is runtime state, not data)."""
    return {str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data_dir.rglob("*")) if p.is_file() and p.name != "lock.mdb"}


def test_migrations_are_in_order_and_end_at_the_current_version() -> None:
    assert [m.to for m in mig.MIGRATIONS] == list(range(1, len(mig.MIGRATIONS) + 1))
    assert mig.FORMAT_VERSION == len(mig.MIGRATIONS) >= 1
    assert all(m.description for m in mig.MIGRATIONS)


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4, 5, 6])
def test_an_older_release_fixture_opens_migrated_with_the_recorded_reads(tmp_path: Path, version: int) -> None:
    """A data dir written by each earlier release (v0: before format versions, v1: before receipt
    compaction, its receipts all full JSON; v2: before receipt packs, a row per compact receipt; v3:
    before compact records, its preflights and decision log JSON; v4: before the evidence store;
    v5: before chain packs; v6: before purges) opens migrated to the current version, reads as it did, takes writes (new receipts, preflights
    and decisions in the default compact forms, beside the old JSON ones) and verifies."""
    data = tmp_path / "data"
    expected = unpack_fixture(f"datadir-v{version}", data)
    assert stored_version(data) == (None if version == 0 else str(version).encode())
    srv = Server(data, expected["admin_key"], KEEP_PREFLIGHTS)
    srv.start()
    try:
        admin = srv.api(expected["admin_key"])
        readers = {t: k["reader"]["key"] for t, k in expected["keys"].items()}
        got = read_all(admin, readers, expected["queries"])
        want = expected["reads"]
        assert got["tenants"] == want["tenants"]
        assert got["bundle"] == want["bundle"]
        assert got["signing_keys"] == want["signing_keys"]
        for tenant, reads in want["per_tenant"].items():
            assert got["per_tenant"][tenant]["queries"] == reads["queries"]
            assert got["per_tenant"][tenant]["receipts"] == reads["receipts"]
            assert got["per_tenant"][tenant]["receipt_count"] == reads["receipt_count"] > 0
            assert got["per_tenant"][tenant]["decisions"] == reads["decisions"]
            keys = expected["keys"][tenant]
            pending = admin.with_key(keys["reader"]["key"]).ok(
                "GET", f"/v1/tenants/{tenant}/actions/{keys['pending_preflight']}")
            # only its status moves with time (pending, then expired)
            assert {k: v for k, v in pending.items() if k != "status"} == \
                {k: v for k, v in reads["pending_preflight"].items() if k != "status"}
            if "executed_preflight" in keys:  # recorded from v3 on
                assert admin.with_key(keys["reader"]["key"]).ok(
                    "GET", f"/v1/tenants/{tenant}/actions/{keys['executed_preflight']}") == reads["executed_preflight"]
        # the migrated data dir still takes writes with the old keys, and issues on the old chain
        op = admin.with_key(expected["keys"]["acme"]["op"]["key"])
        op.ok("POST", "/v1/tenants/acme/graph/edges", {"edges": [{"src": 1, "dst": 42, "w": 0.5}]})
        done = op.ok("POST", "/v1/tenants/acme/actions:batch", {"actions": [
            {"action": "deploy", "resource": {"type": "service", "id": "m"}, "payload": {}}]})
        assert "receipt_id" in done["results"][0]
        # the migration is an admin change: a receipt in the _admin chain, issued at start
        audit = admin.ok("GET", "/v1/tenants/_admin/receipts?after_seq=0&limit=1000")["receipts"]
        migrated = [r for r in audit if r["action"] == "admin.migration"]
        assert [r["resource"] for r in migrated] == [{"type": "data_dir", "id": f"format_version:{v}"}
                                                     for v in range(version + 1, mig.FORMAT_VERSION + 1)]
        assert migrated[0]["actor"]["id"] == "operator"
        # the old full receipts and the new one (stored compact by default) read back in one chain
        rid = done["results"][0]["receipt_id"]
        deadline = time.monotonic() + 10
        while op.get(f"/v1/tenants/acme/receipts/{rid}")[0] != 200:
            assert time.monotonic() < deadline, "the new receipt was not issued in 10 s"
            time.sleep(0.02)
        chain = op.receipts("acme", page=100)
        assert chain[-1]["receipt_id"] == rid
        assert [r["seq"] for r in chain] == list(range(1, len(chain) + 1))
    finally:
        srv.stop()
    assert f"migrated format version {version} -> {mig.FORMAT_VERSION}" in srv.log_path.read_text()
    run = cli("verify", "--tenant", "_admin", "--data-dir", str(data))
    assert run.returncode == 0, run.stderr
    assert stored_version(data) == str(mig.FORMAT_VERSION).encode()
    for tenant in expected["keys"]:
        run = cli("verify", "--tenant", tenant, "--data-dir", str(data))
        assert run.returncode == 0, run.stderr
        assert "every signature and the chain verify" in run.stdout
    store = Store(data)  # migrated once: opening again does nothing, and nothing is left to audit
    try:
        assert store.migrations == []
        with store.read() as txn:
            assert txn.get(mig.UNAUDITED_KEY, db=store.db("meta")) is None
    finally:
        store.close()


def test_a_failing_migration_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    unpack_fixture("datadir-v0", data)
    before = digests(data)

    def broken(store: Store, txn: Any) -> None:
        txn.put(b"half", b"done", db=store.db("meta"))
        raise RuntimeError("migration step failed")

    monkeypatch.setattr(mig, "MIGRATIONS", (mig.Migration(1, "fails half way", broken),))
    with pytest.raises(RuntimeError, match="migration step failed"):
        Store(data)
    assert digests(data) == before
    monkeypatch.undo()
    store = Store(data)  # the real list still starts from version 0
    try:
        assert [(m.from_version, m.to_version) for m in store.migrations] == [(v, v + 1) for v in range(mig.FORMAT_VERSION)]
        with store.read() as txn:
            assert txn.get(b"half", db=store.db("meta")) is None
    finally:
        store.close()


def stamp(data_dir: Path, value: bytes) -> None:
    store = Store(data_dir)
    try:
        store.write_direct(lambda txn: txn.put(mig.FORMAT_VERSION_KEY, value, db=store.db("meta")))
    finally:
        store.close()


def test_a_newer_data_dir_is_refused_and_left_untouched(tmp_path: Path) -> None:
    data = tmp_path / "data"
    unpack_fixture("datadir-v0", data)
    newer = mig.FORMAT_VERSION + 1
    stamp(data, str(newer).encode())
    before = digests(data)
    with pytest.raises(FormatVersionError) as err:
        Store(data)
    assert err.value.details == {"found": newer, "supported": mig.FORMAT_VERSION}
    message = f"format version {newer}, newer than the {mig.FORMAT_VERSION} this provgraph knows"
    assert message in err.value.message
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst\n1,2\n")
    for args in (["serve", "--port", "0", "--data-dir", str(data)],
                 ["verify", "--tenant", "acme", "--data-dir", str(data)],
                 ["load", "--tenant", "acme", "--data-dir", str(data), str(edges)],
                 ["backup", "--data-dir", str(data), "--out", str(tmp_path / "b.tar.zst")]):
        run = cli(*args)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert message in run.stderr, (args, run.stderr)
    assert digests(data) == before
    assert not (tmp_path / "b.tar.zst").exists()


def test_an_unreadable_version_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    unpack_fixture("datadir-v0", data)
    stamp(data, b"1.5")
    with pytest.raises(FormatVersionError, match="unreadable format version '1.5'"):
        Store(data)
    assert stored_version(data) == b"1.5"


def test_a_new_data_dir_is_stamped_current_without_migrations(tmp_path: Path) -> None:
    store = Store(tmp_path / "fresh")
    try:
        assert store.migrations == []
    finally:
        store.close()
    assert stored_version(tmp_path / "fresh") == str(mig.FORMAT_VERSION).encode()
