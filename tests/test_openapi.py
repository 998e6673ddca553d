"""The served OpenAPI document is the one in docs/ and documents every route of the app."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import orjson
from provgraph.config import Config
from provgraph.service import create_app

ROOT = Path(__file__).resolve().parent.parent


def test_served_json_matches_yaml_source() -> None:
    spec = importlib.util.spec_from_file_location("gen_openapi", ROOT / "scripts" / "gen_openapi.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    served = (ROOT / "python" / "provgraph" / "service" / "openapi.json").read_bytes()
    assert served == mod.render(), "run scripts/gen_openapi.py after editing docs/openapi.yaml"


def test_every_route_is_documented(tmp_path: Path) -> None:
    app = create_app(Config(data_dir=tmp_path))
    paths = orjson.loads((ROOT / "python" / "provgraph" / "service" / "openapi.json").read_bytes())["paths"]
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if route.resource else ""
        assert path in paths, f"{path} not in docs/openapi.yaml"
        assert route.method.lower() in paths[path], f"{route.method} {path} not documented"
    documented = {(p, m) for p, ops in paths.items() for m in ops if re.fullmatch("get|post|put|delete", m)}
    served = {(r.resource.canonical, r.method.lower()) for r in app.router.routes()
              if r.resource and r.method != "HEAD"}
    assert documented == served
