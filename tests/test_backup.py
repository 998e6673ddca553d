"""provgraph backup / restore: a backup taken while a real server writes restores to identical reads and
verifying chains; damaged archives and non-empty targets are refused, leaving nothing behind."""

from __future__ import annotations

import io
import stat
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard
from conftest import Api, Server
from datadir_reads import cli, read_all, receipts, unpack_fixture
from provgraph.policy.bundle import load_example_bundle
from provgraph.store.migrations import FORMAT_VERSION

GZ = {"Content-Type": "application/gzip"}
TENANTS = ("north", "south")
QUERIES: list[dict[str, Any]] = [
    {"query": "topn", "seed": 1, "hops": 2, "n": 10},
    {"query": "neighborhood", "seed": 1, "depth": 3, "limit": 50000},
    {"query": "path", "src": 1, "dst": 6, "max_depth": 6},
    {"query": "topdegree", "seed": 1, "depth": 2, "n": 10},
]


def deploy(n: int) -> dict[str, Any]:
    return {"action": "deploy", "resource": {"type": "service", "id": f"s{n}"}, "payload": {"n": n}}


def populate(admin: Api) -> dict[str, dict[str, Api]]:
    status, _, body = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(), GZ)
    assert status == 201, body
    keys: dict[str, dict[str, Api]] = {}
    for i, tenant in enumerate(TENANTS):
        op = admin.new_tenant(tenant, roles=("operator",))
        reader = admin.with_key(admin.ok("POST", "/v1/admin/keys", {"tenant_id": tenant, "scopes": ["read"]},
                                         status=201)["key"])
        keys[tenant] = {"op": op, "reader": reader}
        base = f"/v1/tenants/{tenant}"
        op.ok("POST", f"{base}/graph/edges", {"edges": [{"src": s, "dst": s + 1, "type": s % 3, "w": 0.2 + 0.1 * s}
                                                        for s in range(1, 6 + i)]})
        op.ok("POST", f"{base}/graph/delete", {"edges": [[2, 3]]})
        op.ok("POST", f"{base}/decide", {"action": "deploy", "resource": {"type": "service", "id": "x"}})
        op.ok("POST", f"{base}/actions:batch", {"actions": [deploy(n) for n in range(4)]})
        if i == 0:
            admin.ok("POST", "/v1/admin/signing-keys/rotate", status=201)
    return keys


def settle(client: Api, tenant: str, count: int, timeout: float = 30.0) -> list[Any]:
    """The tenant's receipts once `count` are issued (issuance is asynchronous)."""
    deadline = time.monotonic() + timeout
    while len(got := receipts(client, tenant)) < count:
        assert time.monotonic() < deadline, f"{tenant}: {len(got)} of {count} receipts issued"
        time.sleep(0.05)
    return got


def verify_chains(data_dir: Path) -> None:
    for tenant in TENANTS:
        run = cli("verify", "--tenant", tenant, "--data-dir", str(data_dir))
        assert run.returncode == 0, run.stderr
        assert "every signature and the chain verify" in run.stdout


def test_backup_while_the_server_writes_restores_identical_reads(tmp_path: Path,
                                                                 server_factory: Callable[..., Server]) -> None:
    srv = server_factory()
    admin = srv.api()
    keys = populate(admin)
    op = keys["north"]["op"].with_key(keys["north"]["op"].key)
    stop = threading.Event()
    executed = [0]
    errors: list[BaseException] = []

    def write() -> None:  # graph writes and actions, as fast as one client goes, until stopped
        try:
            n = 100
            while not stop.is_set():
                op.ok("POST", "/v1/tenants/north/graph/edges", {"edges": [{"src": n, "dst": n + 1, "w": 0.5}]})
                op.ok("POST", "/v1/tenants/north/actions:batch", {"actions": [deploy(n)]})
                executed[0] += 1
                n += 1
        except Exception as exc:  # noqa: BLE001 — any failure is surfaced by the test below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while executed[0] < 10 and not errors:
            time.sleep(0.01)
        before = settle(admin.with_key(keys["north"]["reader"].key), "north", 4)
        run = cli("backup", "--data-dir", str(srv.data_dir), "--out", str(tmp_path / "live.tar.zst"))
        during = executed[0]
        while executed[0] < during + 5 and not errors:  # the server kept taking writes after the copy
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join(30)
    assert not errors, errors
    assert run.returncode == 0, run.stderr
    assert stat.S_IMODE((tmp_path / "live.tar.zst").stat().st_mode) == 0o600  # it holds the seeds

    north_total = 4 + executed[0]
    readers = {t: keys[t]["reader"].key or "" for t in TENANTS}
    original_north = settle(keys["north"]["reader"], "north", north_total)

    # the live backup: a consistent point in the middle of the writes
    assert cli("restore", str(tmp_path / "live.tar.zst"), "--data-dir", str(tmp_path / "live")).returncode == 0
    live = server_factory(data_dir=tmp_path / "live")
    live_north = receipts(live.api(keys["north"]["reader"].key), "north")
    assert len(before) <= len(live_north) < north_total
    # the same chain up to where the copy was taken (receipts still in its outbox are issued on start)
    assert [r["receipt_id"] for r in live_north] == [r["receipt_id"] for r in original_north[:len(live_north)]]
    assert live_north[:len(before)] == before
    assert read_all(live.api(), {"south": readers["south"]}, QUERIES)["per_tenant"] == \
        read_all(admin, {"south": readers["south"]}, QUERIES)["per_tenant"]
    live.stop()
    verify_chains(tmp_path / "live")

    # quiesced: every read equal
    settle(keys["south"]["reader"], "south", 4)
    want = read_all(admin, readers, QUERIES)  # also flushes the decision logs into the store
    run = cli("backup", "--data-dir", str(srv.data_dir), "--out", str(tmp_path / "quiet.tar.zst"))
    assert run.returncode == 0, run.stderr
    assert f"format version {FORMAT_VERSION}" in run.stdout
    target = tmp_path / "quiet"
    target.mkdir()  # an existing empty directory is a fine target
    run = cli("restore", str(tmp_path / "quiet.tar.zst"), "--data-dir", str(target))
    assert run.returncode == 0, run.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert stat.S_IMODE((target / "keys").stat().st_mode) == 0o700
    seeds = list((target / "keys").iterdir())
    assert len(seeds) == len(want["signing_keys"]["keys"]) == 2
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in seeds)
    restored = server_factory(data_dir=target)
    assert read_all(restored.api(), readers, QUERIES) == want
    assert want["per_tenant"]["north"]["receipt_count"] == north_total
    # the restored server signs on: a new receipt continues the chain
    done = restored.api(keys["south"]["op"].key).ok("POST", "/v1/tenants/south/actions:batch",
                                                    {"actions": [deploy(999)]})
    assert "receipt_id" in done["results"][0]
    settle(restored.api(keys["south"]["reader"].key), "south", 5)
    restored.stop()
    verify_chains(target)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A good backup of the v0 fixture (no server needed)."""
    tmp = tmp_path_factory.mktemp("good")
    unpack_fixture("datadir-v0", tmp / "data")
    run = cli("backup", "--data-dir", str(tmp / "data"), "--out", str(tmp / "b.tar.zst"))
    assert run.returncode == 0, run.stderr
    return (tmp / "b.tar.zst").read_bytes()


def members(data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            out.append((m, f.read() if f else b""))
    return out


def repack(items: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, body in items:
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if info.isfile() else None)
    return zstandard.ZstdCompressor().compress(buf.getvalue())


def with_manifest(items: list[tuple[tarfile.TarInfo, bytes]], **changes: Any) -> list[tuple[tarfile.TarInfo, bytes]]:
    manifest = orjson.loads(items[0][1])
    manifest.update(changes)
    return [(items[0][0], orjson.dumps(manifest)), *items[1:]]


def damaged(good: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (archive bytes, what the error says)."""
    items = members(good)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    tampered = [(m, (b[:100] + bytes([b[100] ^ 1]) + b[101:]) if m.name == "lmdb/data.mdb" else b) for m, b in items]
    evil = tarfile.TarInfo("keys/../../evil")
    return {
        "flipped byte": (bytes(flipped), "damaged"),
        "truncated": (good[: len(good) // 2], "damaged"),
        "not an archive": (b"provgraph? no" * 100, "damaged or not a backup"),
        "tampered file": (repack(tampered), "lmdb/data.mdb does not match its manifest digest"),
        "file missing": (repack([(m, b) for m, b in items if not m.name.startswith("keys/")]), "incomplete"),
        "extra path": (repack([*items, (evil, b"x")]), "unexpected path 'keys/../../evil'"),
        "no manifest": (repack(items[1:]), "is not a provgraph backup"),
        "newer format": (repack(with_manifest(items, format_version=FORMAT_VERSION + 1)),
                         f"newer than the {FORMAT_VERSION} this provgraph knows"),
        "foreign manifest": (repack(with_manifest(items, format="something-else")), "is not a provgraph-backup/1"),
    }


@pytest.mark.parametrize("case", ["flipped byte", "truncated", "not an archive", "tampered file", "file missing",
                                  "extra path", "no manifest", "newer format", "foreign manifest"])
def test_a_bad_archive_is_refused_and_leaves_nothing(archive: bytes, tmp_path: Path, case: str) -> None:
    data, says = damaged(archive)[case]
    bad = tmp_path / "bad.tar.zst"
    bad.write_bytes(data)
    run = cli("restore", str(bad), "--data-dir", str(tmp_path / "restored"))
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert says in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.zst"]  # no target, no staging left


def test_the_good_archive_restores_and_verifies(archive: bytes, tmp_path: Path) -> None:
    (tmp_path / "b.tar.zst").write_bytes(archive)
    run = cli("restore", str(tmp_path / "b.tar.zst"), "--data-dir", str(tmp_path / "data"))
    assert run.returncode == 0, run.stderr
    for tenant in ("acme", "globex"):
        assert cli("verify", "--tenant", tenant, "--data-dir", str(tmp_path / "data")).returncode == 0


def test_restore_into_a_non_empty_dir_is_refused(archive: bytes, tmp_path: Path) -> None:
    (tmp_path / "b.tar.zst").write_bytes(archive)
    target = tmp_path / "data"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    run = cli("restore", str(tmp_path / "b.tar.zst"), "--data-dir", str(target))
    assert run.returncode == 2
    assert "is not empty" in run.stderr
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.zst", "data"]


def test_backup_refuses_a_missing_data_dir_and_an_existing_archive(archive: bytes, tmp_path: Path) -> None:
    run = cli("backup", "--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "b.tar.zst"))
    assert run.returncode == 2 and "is not a provgraph data dir" in run.stderr
    assert not (tmp_path / "b.tar.zst").exists() and not (tmp_path / "nothing").exists()
    unpack_fixture("datadir-v0", tmp_path / "data")
    (tmp_path / "b.tar.zst").write_bytes(b"keep me")
    run = cli("backup", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "b.tar.zst"))
    assert run.returncode == 2 and "never overwrites" in run.stderr
    assert (tmp_path / "b.tar.zst").read_bytes() == b"keep me"


def test_backup_refuses_a_data_dir_missing_a_signing_key_seed(tmp_path: Path) -> None:
    unpack_fixture("datadir-v0", tmp_path / "data")
    seed = min((tmp_path / "data" / "keys").iterdir())
    seed.unlink()
    run = cli("backup", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "b.tar.zst"))
    assert run.returncode == 2 and "signing-key seeds missing" in run.stderr and seed.stem in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no archive, no staging left
