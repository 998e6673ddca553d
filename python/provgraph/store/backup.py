"""`provgraph backup` and `restore`: a data dir (consistent LMDB copy + signing-key seeds) as one .tar.zst."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import blake3
import lmdb
import orjson
import zstandard

from provgraph.errors import BackupError
from provgraph.store.migrations import (
    FORMAT_VERSION,
    FORMAT_VERSION_KEY,
    check_version,
    parse_version,
)

__all__ = ["BACKUP_FORMAT", "BackupSummary", "backup", "restore"]

BACKUP_FORMAT = "provgraph-backup/1"
MANIFEST = "manifest.json"
LMDB_DIR, LMDB_FILE = "lmdb", "lmdb/data.mdb"
KEYS_DIR = "keys"
EVIDENCE_DIR = "evidence"  # evidence/<tenant, 8 hex>/<2 hex>/<hash>: content-addressed blobs
# every directory of a restored data dir, with its mode; files in them get _FILE_MODE. Keys are
# secrets: 0600 files in a 0700 directory, and the rest of the data dir is no more open than that.
_DIR_MODES = {LMDB_DIR: 0o700, KEYS_DIR: 0o700, EVIDENCE_DIR: 0o700}
_FILE_MODE = 0o600
_EVIDENCE_PARTS = re.compile(r"[0-9a-f]{8}/([0-9a-f]{2})/\1[0-9a-f]{62}")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BackupSummary:
    """What a backup or restore handled: shown by the CLI, checked by tests."""

    path: Path
    format_version: int
    files: int
    bytes: int


def _digest(path: Path) -> str:
    h = blake3.blake3()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _snapshot(lmdb_dir: Path, into: Path) -> tuple[int, set[str], list[str]]:
    """Compact copy of the environment from one read transaction, with the format version, the
    signing-key ids that snapshot holds and the paths (in the data dir) of the evidence files its
    records name.

    Read-only, but with the lock file: the copy registers as a reader, so a running server keeps
    writing and does not reuse the pages the copy still reads."""
    try:
        env = lmdb.open(str(lmdb_dir), readonly=True, max_dbs=64, subdir=True, readahead=False)
    except lmdb.Error as exc:
        raise BackupError(f"cannot open the LMDB store in {lmdb_dir}: {exc}") from exc
    try:
        with env.begin() as txn:
            try:
                meta = env.open_db(b"meta", txn=txn, create=False)
                version = parse_version(txn.get(FORMAT_VERSION_KEY, db=meta), str(lmdb_dir.parent))
            except lmdb.NotFoundError:
                raise BackupError(f"{lmdb_dir} holds no provgraph data (no meta table)") from None
            # a newer layout may keep data elsewhere too: a backup by this code could miss it
            check_version(version, str(lmdb_dir.parent))
            try:
                signing = env.open_db(b"signing_keys", txn=txn, create=False)
                key_ids = {bytes(k).decode() for k, _ in txn.cursor(db=signing)}
            except lmdb.NotFoundError:
                key_ids = set()
            evidence_files = _evidence_files(env, txn)
            env.copy(str(into), compact=True, txn=txn)
    finally:
        env.close()
    return version, key_ids, evidence_files


def _evidence_files(env: Any, txn: Any) -> list[str]:
    """`evidence/<tenant>/<hh>/<hash>` of every evidence record whose bytes are a file (the
    evidence store's layout; such files are written before their record and never change)."""
    from provgraph.evidence.store import FILE, EvidenceRecord

    try:
        db = env.open_db(b"evidence", txn=txn, create=False)
    except lmdb.NotFoundError:
        return []
    out = []
    for key, value in txn.cursor(db=db):
        record = EvidenceRecord.from_value(bytes(key[4:]), bytes(value))
        if record.where == FILE:
            out.append(f"{EVIDENCE_DIR}/{int.from_bytes(key[:4], 'big'):08x}/{record.hash[:2]}/{record.hash}")
    return out


def backup(data_dir: Path, out: Path) -> BackupSummary:
    """Write `out`: manifest.json (format version, created_at, every file with its size and BLAKE3),
    lmdb/data.mdb (a consistent compact copy, safe while a server runs) and keys/*.seed.

    The seeds are copied after the LMDB snapshot: a key rotated meanwhile only adds a seed, so every
    key the copy references is in the archive (checked)."""
    lmdb_dir = data_dir / LMDB_DIR
    if not (lmdb_dir / "data.mdb").is_file():
        raise BackupError(f"{data_dir} is not a provgraph data dir (no {LMDB_FILE})")
    if out.exists():
        raise BackupError(f"{out} exists; a backup never overwrites a file")
    out.parent.mkdir(parents=True, exist_ok=True)
    # staging beside the archive: the LMDB copy can be as large as the store, keep it off /tmp
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        staged = Path(tmp)
        (staged / LMDB_DIR).mkdir()
        version, key_ids, evidence_files = _snapshot(lmdb_dir, staged / LMDB_DIR)
        keys_dir = staged / KEYS_DIR
        keys_dir.mkdir()
        source_keys = data_dir / KEYS_DIR
        if source_keys.is_dir():
            for seed in sorted(source_keys.iterdir()):
                if seed.is_file() and seed.suffix == ".seed":
                    shutil.copyfile(seed, keys_dir / seed.name)
        missing = sorted(k for k in key_ids if not (keys_dir / f"{k}.seed").is_file())
        if missing:
            raise BackupError(f"signing-key seeds missing from {source_keys}: {missing}; the receipts they "
                              "signed could be verified but never signed again", {"missing": missing})
        files = [LMDB_FILE] + [f"{KEYS_DIR}/{p.name}" for p in sorted(keys_dir.iterdir())]
        source = {f: staged / f for f in files} | {f: data_dir / f for f in evidence_files}  # blobs: as they are
        listed: list[dict[str, Any]] = []
        for f, path in source.items():
            digest = _digest(path)
            if f.startswith(f"{EVIDENCE_DIR}/") and digest != PurePosixPath(f).name:
                raise BackupError(f"evidence file {path} does not hold the bytes it is named for", {"path": f})
            listed.append({"path": f, "size": path.stat().st_size, "blake3": digest})
        manifest = {
            "format": BACKUP_FORMAT,
            "format_version": version,
            "created_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            "files": listed,
        }
        partial = staged / "archive.tar.zst"
        # the seeds are secrets: the archive is as private as the keys directory
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as raw:
            cctx = zstandard.ZstdCompressor(level=3, write_checksum=True, threads=-1)
            with cctx.stream_writer(raw, closefd=False) as zout, \
                    tarfile.open(fileobj=zout, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                body = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
                tar.addfile(_info(MANIFEST, len(body), 0o600), io.BytesIO(body))
                for d in (LMDB_DIR, KEYS_DIR):
                    tar.addfile(_info(d, 0, _DIR_MODES[d], directory=True))
                for entry in listed:
                    with source[entry["path"]].open("rb") as src:
                        tar.addfile(_info(entry["path"], entry["size"], _FILE_MODE), src)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, out)  # all or nothing: a failed backup leaves no archive behind
    return BackupSummary(out, version, len(listed), out.stat().st_size)


def _info(name: str, size: int, mode: int, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, 0
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info


def _read_manifest(tar: tarfile.TarFile, archive: Path) -> tuple[tarfile.TarInfo, dict[str, Any]]:
    member = tar.next()
    if member is None or member.name != MANIFEST or not member.isfile():
        raise BackupError(f"{archive} is not a provgraph backup (it does not start with {MANIFEST})")
    f = tar.extractfile(member)
    if f is None:
        raise BackupError(f"{archive}: unreadable {MANIFEST}")
    try:
        manifest = orjson.loads(f.read())
    except orjson.JSONDecodeError as exc:
        raise BackupError(f"{archive}: {MANIFEST} is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(f"{archive} is not a {BACKUP_FORMAT} archive",
                          {"format": manifest.get("format") if isinstance(manifest, dict) else None})
    files = manifest.get("files")
    if (not isinstance(files, list) or not isinstance(manifest.get("format_version"), int)
            or not all(isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("blake3"), str)
                       and isinstance(e.get("size"), int) for e in files)):
        raise BackupError(f"{archive}: malformed {MANIFEST}")
    version = manifest["format_version"]
    if version > FORMAT_VERSION:
        raise BackupError(f"{archive} holds a data dir of format version {version}, newer than the {FORMAT_VERSION} "
                          f"this provgraph knows; restore it with a release that supports version {version}",
                          {"found": version, "supported": FORMAT_VERSION})
    for entry in files:
        _check_name(entry["path"], archive)
    if LMDB_FILE not in {e["path"] for e in files}:
        raise BackupError(f"{archive}: the manifest lists no {LMDB_FILE}")
    return member, manifest


def _check_name(name: str, archive: Path) -> None:
    """Only the data dir's own layout: nothing absolute, no '..', no file outside its directories."""
    p = PurePosixPath(name)
    evidence = len(p.parts) == 4 and p.parts[0] == EVIDENCE_DIR and _EVIDENCE_PARTS.fullmatch("/".join(p.parts[1:]))
    if p.is_absolute() or ".." in p.parts or not (evidence or (len(p.parts) == 2 and p.parts[0] in (LMDB_DIR,
                                                                                                  KEYS_DIR))):
        raise BackupError(f"{archive}: unexpected path {name!r} in the archive")


def _copy_member(src: IO[bytes], dest: Path) -> tuple[int, str]:
    h = blake3.blake3()
    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size, h.hexdigest()


def restore(archive: Path, data_dir: Path) -> BackupSummary:
    """Unpack `archive` into `data_dir` (absent or empty), checking every file against the manifest.

    Files are unpacked into a staging directory beside `data_dir` and moved into place only once
    every digest matched, so a bad archive leaves nothing behind."""
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(f"{data_dir} is not empty; restore only into a new or empty directory")
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore.", dir=data_dir.parent))
    try:
        try:
            manifest, seen = _unpack(archive, staged)
        except (tarfile.TarError, zstandard.ZstdError, OSError, EOFError) as exc:
            raise BackupError(f"{archive} is damaged or not a backup: {exc}") from None
        expected = {e["path"]: e for e in manifest["files"]}
        missing = sorted(set(expected) - set(seen))
        if missing:
            raise BackupError(f"{archive} is incomplete: {missing} missing", {"missing": missing})
        for path, (size, digest) in seen.items():
            if (size, digest) != (expected[path]["size"], expected[path]["blake3"]):
                raise BackupError(f"{archive} is damaged: {path} does not match its manifest digest",
                                  {"path": path})
        for d, mode in _DIR_MODES.items():
            os.chmod(staged / d, mode)
        os.chmod(staged, 0o700)
        if data_dir.exists():
            data_dir.rmdir()  # empty, checked above
        os.replace(staged, data_dir)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    total = sum(size for size, _ in seen.values())
    return BackupSummary(data_dir, manifest["format_version"], len(seen), total)


def _unpack(archive: Path, staged: Path) -> tuple[dict[str, Any], dict[str, tuple[int, str]]]:
    for d in _DIR_MODES:
        (staged / d).mkdir(mode=0o700)
    seen: dict[str, tuple[int, str]] = {}
    with archive.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as zin, \
            tarfile.open(fileobj=zin, mode="r|") as tar:
        first, manifest = _read_manifest(tar, archive)
        listed = {e["path"] for e in manifest["files"]}
        for member in tar:  # from the first member again (tarfile's iterator), the manifest included
            if member is first or (member.isdir() and member.name in _DIR_MODES):
                continue
            _check_name(member.name, archive)
            if not member.isfile() or member.name not in listed or member.name in seen:
                raise BackupError(f"{archive}: unexpected member {member.name!r}")
            src = tar.extractfile(member)
            if src is None:
                raise BackupError(f"{archive}: unreadable member {member.name!r}")
            (staged / member.name).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            seen[member.name] = _copy_member(src, staged / member.name)
    return manifest, seen
