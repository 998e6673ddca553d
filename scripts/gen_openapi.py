"""Write python/provgraph/service/openapi.json from docs/openapi.yaml (the source of truth)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "docs" / "openapi.yaml"
TARGET = ROOT / "python" / "provgraph" / "service" / "openapi.json"


def render() -> bytes:
    return orjson.dumps(yaml.safe_load(SOURCE.read_text()), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


if __name__ == "__main__":
    TARGET.write_bytes(render())
    print(f"wrote {TARGET}")
    sys.exit(0)
