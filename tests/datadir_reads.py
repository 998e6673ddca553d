"""Helpers of the backup and migration tests: the reads a data dir must answer alike, the CLI, fixtures."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import orjson
import zstandard
from provgraph.bench.server import JsonClient

FIXTURES = Path(__file__).parent / "fixtures"


def receipts(client: JsonClient, tenant: str) -> list[Any]:
    return client.receipts(tenant)


def read_all(admin: JsonClient, reader_keys: dict[str, str], queries: list[dict[str, Any]],
             bundle: str = "authz") -> dict[str, Any]:
    """Tenants, the bundle's revisions, the signing keys and, per tenant (read with its own key),
    graph query answers, every receipt and the decision log: the shape the fixture recorded."""
    reads: dict[str, Any] = {
        "tenants": admin.ok("GET", "/v1/admin/tenants"),
        "bundle": admin.ok("GET", f"/v1/bundles/{bundle}"),
        "signing_keys": admin.ok("GET", "/v1/keys"),
        "per_tenant": {},
    }
    for tenant, key in reader_keys.items():
        reader = admin.with_key(key)
        base = f"/v1/tenants/{tenant}"
        got = receipts(reader, tenant)
        reads["per_tenant"][tenant] = {
            "queries": [{"request": q, "answer": reader.ok("POST", f"{base}/graph/query", q)} for q in queries],
            "receipts": got,
            "receipt_count": len(got),
            "decisions": reader.ok("GET", f"{base}/decisions?limit=1000"),
        }
    return reads


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`provgraph <args>` in a child process (the data dir's LMDB is opened once per process)."""
    # check=False: the tests assert on the exit code themselves (refusals exit 2)
    return subprocess.run([sys.executable, "-m", "provgraph", *args], check=False, capture_output=True, text=True,
                          timeout=120)


def unpack_fixture(name: str, into: Path) -> dict[str, Any]:
    """Unpack tests/fixtures/<name>.tar.zst into the data dir `into`; returns <name>.json."""
    into.mkdir(parents=True)
    with (FIXTURES / f"{name}.tar.zst").open("rb") as raw, \
            zstandard.ZstdDecompressor().stream_reader(raw) as zin, tarfile.open(fileobj=zin, mode="r|") as tar:
        tar.extractall(into, filter="data")
    expected: dict[str, Any] = orjson.loads((FIXTURES / f"{name}.json").read_bytes())
    return expected
