"""Docs that stay true: the LMDB index map covers every table, and the paths the docs name exist."""

from __future__ import annotations

import re
from pathlib import Path

from provgraph.store.env import TABLES

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md"),
               *(REPO / "python" / "provgraph").rglob("README.md")])
# A repository path in backticks: starts at a top-level folder of the checkout.
PATH = re.compile(r"`((?:docs|python|rust|scripts|tests|benches)/[A-Za-z0-9_./-]+?)/?`")


def test_storage_md_maps_every_table() -> None:
    text = (REPO / "docs" / "storage.md").read_text()
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    assert rows == set(TABLES), (f"tables without a row: {sorted(set(TABLES) - rows)}; "
                                 f"rows of no table: {sorted(rows - set(TABLES))}")


def test_paths_named_in_the_docs_exist() -> None:
    named = {(doc.relative_to(REPO).as_posix(), p) for doc in DOCS for p in PATH.findall(doc.read_text())}
    assert len(named) > 10  # the pattern still finds the paths the docs name
    missing = sorted((doc, p) for doc, p in named if not (REPO / p).exists())
    assert not missing, f"docs name paths that do not exist: {missing}"
