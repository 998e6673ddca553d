"""The data dir's on-disk format version and the migrations between versions, run when a Store opens."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provgraph.errors import FormatVersionError

if TYPE_CHECKING:
    from provgraph.store.env import Store, Txn

__all__ = [
    "FORMAT_VERSION",
    "FORMAT_VERSION_KEY",
    "MIGRATIONS",
    "UNAUDITED_KEY",
    "AppliedMigration",
    "Migration",
    "check_version",
    "parse_version",
    "run_migrations",
]

# meta row holding the version, as ASCII decimal (readable with mdb_dump); a data dir written
# before versions existed has no such row: version 0.
FORMAT_VERSION_KEY = b"format_version"
# meta row: the migrations done by an open that no audit receipt records yet (JSON list of
# AppliedMigration.to_json()); a server's start-up turns them into receipts in the `_admin` chain and
# deletes the row in the same transaction, whichever process (serve, load, verify, backup) migrated.
UNAUDITED_KEY = b"migrations_unaudited"


@dataclass(frozen=True)
class Migration:
    """Moves a data dir from version `to - 1` to `to`.

    `apply` runs inside the one write transaction of the open (with every table of this code
    already opened, so it may fill a new table), after the migrations before it and before the
    new version is stamped: if any step raises, nothing of the migration is written."""

    to: int
    description: str
    apply: Callable[[Store, Txn], None]


@dataclass(frozen=True)
class AppliedMigration:
    """One migration done on open; the app records these (e.g. as admin audit receipts)."""

    from_version: int
    to_version: int
    description: str

    def to_json(self) -> dict[str, Any]:
        return {"from_version": self.from_version, "to_version": self.to_version,
                "description": self.description}


def _stamp(store: Store, txn: Txn) -> None:
    """0 -> 1: the layout of version 1 is version 0's; only the version row is new (written by
    run_migrations for every migration)."""


# In order: MIGRATIONS[i] moves version i to i + 1. A layout change is one function appended here,
# with a fixture of the previous release's data dir in tests/fixtures (scripts/make_datadir_fixture.py).
def _receipt_compaction(store: Store, txn: Txn) -> None:
    """1 -> 2: receipt compaction. The tables receipt_dict and receipts_compact are new (opened, so
    created, empty); from now on a receipts row may hold a compact form (first byte 0 or 1, never
    `{`), which a release before this one would misread: hence the version. Nothing is rewritten:
    the full receipts already stored stay as they are and read the same."""


def _receipt_packs(store: Store, txn: Txn) -> None:
    """2 -> 3: receipt packs. A receipts row may now hold a pack of consecutive compact receipts
    under the key of its first seq (first byte 2; docs/receipts.md "Packs"), which a release
    before this one would misread. Nothing is rewritten on open: compact rows of one receipt read
    as before, and `provgraph receipts migrate --to compact` (or the admin endpoint) packs them."""


def _compact_records(store: Store, txn: Txn) -> None:
    """3 -> 4: compact records. The table record_dict is new (opened, so created, empty); from now on
    a preflights or decision_log row may hold a compact form (first byte 1, never `{`; docs/storage.md
    "Compact records"), which a release before this one would misread. Nothing is rewritten: JSON
    rows read as before, and age out (preflights are swept, the decision log is bounded)."""


def _evidence(store: Store, txn: Txn) -> None:
    """4 -> 5: the evidence store. The tables evidence and evidence_blobs are new (opened, so
    created, empty), and larger blobs live in <data dir>/evidence/; a release before this one would
    not know them (a backup it made would leave them out). Nothing stored before is rewritten."""


def _chain_packs(store: Store, txn: Txn) -> None:
    """5 -> 6: chain packs. A receipts row may now hold a chain pack (first byte 3; docs/receipts.md
    "Packs"): compact forms without their prev_hash, given back from the chain when read, which a
    release before this one would misread. Nothing is rewritten: packs and rows already stored
    read as before, and the issuer starts a chain pack after them."""


def _purges(store: Store, txn: Txn) -> None:
    """6 -> 7: purge with proof. The tables purges and evidence_purged are new (opened, so created,
    empty); a release before this one would serve a purged blob's 404 instead of its 410 and would
    not list its manifests. Nothing stored before is rewritten."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "stamp the format version (layout unchanged from the unversioned release)", _stamp),
    Migration(2, "receipt compaction: receipt dictionaries and compact receipt forms (tables receipt_dict, "
                 "receipts_compact)", _receipt_compaction),
    Migration(3, "receipt packs: runs of compact receipts stored as one row (table receipts)", _receipt_packs),
    Migration(4, "compact records: preflights and decision log entries in a compact form with a per-tenant "
                 "dictionary (table record_dict)", _compact_records),
    Migration(5, "evidence store: content-addressed evidence per tenant (tables evidence, evidence_blobs, "
                 "files in evidence/)", _evidence),
    Migration(6, "chain packs: compact receipts without their prev_hash, which the chain gives back "
                 "(table receipts)", _chain_packs),
    Migration(7, "purge with proof: signed purge manifests with RFC 6962 roots, tombstones of purged evidence "
                 "(tables purges, evidence_purged)", _purges),
)
FORMAT_VERSION = MIGRATIONS[-1].to

if [m.to for m in MIGRATIONS] != list(range(1, len(MIGRATIONS) + 1)):  # pragma: no cover - a coding error
    raise RuntimeError("MIGRATIONS must move version i to i + 1, in order")


def parse_version(raw: bytes | None, where: str) -> int:
    """The version a meta row says (no row: 0); anything but a non-negative decimal is refused."""
    if raw is None:
        return 0
    text = bytes(raw).decode("ascii", "replace")
    if not text.isdigit():
        raise FormatVersionError(
            f"data dir {where} has an unreadable format version {text!r}; refusing to open it",
            {"found": text, "supported": FORMAT_VERSION})
    return int(text)


def check_version(version: int, where: str) -> None:
    """Refuse a data dir written by a newer release: this code would misread its layout."""
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"data dir {where} has format version {version}, newer than the {FORMAT_VERSION} this "
            f"provgraph knows; run a release that supports version {version} (the data dir is left as it is)",
            {"found": version, "supported": FORMAT_VERSION})


def run_migrations(store: Store, txn: Txn, from_version: int) -> list[AppliedMigration]:
    """Apply, in `txn`, every migration from `from_version` to FORMAT_VERSION and stamp it."""
    done = []
    for migration in MIGRATIONS[from_version:]:
        migration.apply(store, txn)
        done.append(AppliedMigration(migration.to - 1, migration.to, migration.description))
    meta = store.db("meta")
    txn.put(FORMAT_VERSION_KEY, str(FORMAT_VERSION).encode(), db=meta)
    if done:
        earlier = txn.get(UNAUDITED_KEY, db=meta)
        pending = (json.loads(bytes(earlier)) if earlier else []) + [m.to_json() for m in done]
        txn.put(UNAUDITED_KEY, json.dumps(pending).encode(), db=meta)
    return done
