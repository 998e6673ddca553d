"""The served OpenAPI document is the one in docs/ and documents every route of the app."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

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


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    doc = orjson.loads((ROOT / "python" / "provgraph" / "service" / "openapi.json").read_bytes())
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()
            if method in ("get", "post", "put", "delete")]


def test_every_guarded_operation_documents_its_auth_answers() -> None:
    # Every operation but the four open ones takes a bearer key (401 without one); all but
    # /v1/keys, which any valid key may read, also check a scope or the tenant (403). Of the open
    # ones, /metrics answers 401 when the server has a --metrics-token (and no key is ever checked).
    for path, method, op in _operations():
        codes = set(op["responses"])
        if op.get("security") == []:
            assert "403" not in codes and ("401" in codes) == (path == "/metrics"), f"{method} {path}"
            continue
        assert "401" in codes, f"{method} {path} does not document 401"
        if path != "/v1/keys":
            assert "403" in codes, f"{method} {path} does not document 403"


def test_every_body_taking_operation_documents_the_body_errors() -> None:
    for path, method, op in _operations():
        if "requestBody" in op:
            # a body of any bytes (evidence) has no type or syntax to refuse: only its size
            any_bytes = set(op["requestBody"]["content"]) == {"*/*"}
            missing = ({"413"} if any_bytes else {"400", "413", "415"}) - set(op["responses"])
            assert not missing, f"{method} {path} does not document {sorted(missing)}"


def test_every_answer_has_a_schema_or_no_body() -> None:
    # scripts/run_schemathesis.py validates bodies against these; a documented body without a
    # schema would let any body through.
    for path, method, op in _operations():
        for status, response in op["responses"].items():
            for media, content in response.get("content", {}).items():
                assert "schema" in content, f"{method} {path} {status} {media} has no schema"
