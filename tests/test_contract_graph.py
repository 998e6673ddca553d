"""Contract tests of the graph API against a real server: writes, queries, errors, isolation."""

from __future__ import annotations

import itertools
import os
from typing import Any

import orjson
import pytest
from conftest import Api, Server

_ids = itertools.count()


def fresh(admin: Api) -> tuple[str, Api]:
    name = f"g{next(_ids)}"
    return name, admin.new_tenant(name)


def base(t: str) -> str:
    return f"/v1/tenants/{t}/graph"


def small_graph(api: Api, t: str) -> None:
    api.ok("POST", base(t) + "/edges", {"edges": [
        {"src": 1, "dst": 2, "type": 0, "w": 0.5}, {"src": 1, "dst": 3, "type": 1, "w": 0.9},
        {"src": 2, "dst": 4, "type": 0, "w": 1.0}, {"src": 3, "dst": 4, "type": 2, "w": 0.5},
        {"src": 3, "dst": 5, "type": 6, "w": 0.8}, {"src": 4, "dst": 1, "type": 0, "w": 0.3}]})


def test_health_ready_metrics_openapi(server: Server) -> None:
    anon = server.api(key=None)
    assert anon.get("/healthz") == (200, {"status": "ok"})
    assert anon.get("/readyz") == (200, {"ready": True})
    status, text = anon.get("/metrics")
    assert status == 200 and b"provgraph_http_request_duration_seconds" in text
    status, spec = anon.get("/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.") and "/v1/tenants/{tenant}/graph/query" in spec["paths"]


def test_auth_required_and_scoped(admin: Api) -> None:
    t, api = fresh(admin)
    status, body = admin.with_key(None).post(base(t) + "/query", {"query": "topn", "seed": 1})
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert admin.with_key("pgk_nope").post(base(t) + "/query", {"query": "topn", "seed": 1})[0] == 401
    reader_key = admin.ok("POST", "/v1/admin/keys", {"tenant_id": t, "scopes": ["read"]}, status=201)["key"]
    status, body = admin.with_key(reader_key).post(base(t) + "/edges", {"edges": [{"src": 1, "dst": 2}]})
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert api.post("/v1/admin/tenants", {"tenant_id": "nope"})[0] == 403


def test_tenant_isolation(admin: Api) -> None:
    a, api_a = fresh(admin)
    b, api_b = fresh(admin)
    small_graph(api_a, a)
    # b's key on a's path: 403 for reads and writes, and nothing written
    assert api_b.post(base(a) + "/query", {"query": "topn", "seed": 1})[0] == 403
    assert api_b.post(base(a) + "/edges", {"edges": [{"src": 1, "dst": 9, "w": 0.1}]})[0] == 403
    assert api_a.ok("GET", base(a) + "/stats")["edges"] == 6
    # the same node ids in b's own space don't exist: 404, not a's data
    status, body = api_b.post(base(b) + "/query", {"query": "topn", "seed": 1})
    assert status == 404 and body["error"]["code"] == "unknown_node"
    assert admin.post(base("no-such-tenant") + "/query", {"query": "topn", "seed": 1})[0] == 404


def test_tenant_and_key_admin_errors(admin: Api) -> None:
    t, _ = fresh(admin)
    assert admin.post("/v1/admin/tenants", {"tenant_id": t})[0] == 409
    status, body = admin.post("/v1/admin/tenants", {"tenant_id": "Bad Id!"})
    assert status == 422 and body["error"]["code"] == "invalid_value"
    assert admin.post("/v1/admin/keys", {"tenant_id": t, "scopes": ["fly"]})[0] == 422
    assert admin.post("/v1/admin/keys", {"tenant_id": "missing", "scopes": ["read"]})[0] == 404


def test_write_rows_columns_ndjson_and_read_your_writes(admin: Api) -> None:
    t, api = fresh(admin)
    small_graph(api, t)
    got = api.ok("POST", base(t) + "/query", {"query": "topn", "seed": 1, "hops": 2, "n": 10})
    assert got["results"][0] == {"node": 3, "score": pytest.approx(0.9)}
    # columns: a new strongest edge is visible in the very next query
    assert api.ok("POST", base(t) + "/edges", {"src": [1], "dst": [7], "type": [0], "w": [1.0]}) == {"written": 1}
    got = api.ok("POST", base(t) + "/query", {"query": "topn", "seed": 1, "hops": 1, "n": 1})
    assert got["results"] == [{"node": 7, "score": 1.0}]
    # NDJSON
    ndjson = b'{"src": 7, "dst": 8, "type": 3, "w": 0.25}\n{"src": 8, "dst": 1, "w": 0.5}\n'
    status, _, raw = api.raw("POST", base(t) + "/edges", ndjson, {"Content-Type": "application/x-ndjson"})
    assert status == 200 and orjson.loads(raw) == {"written": 2}
    assert api.ok("POST", base(t) + "/query", {"query": "path", "src": 1, "dst": 8}) == {"path": [1, 7, 8]}
    # update an existing pair: weight changes, no duplicate edge
    api.ok("POST", base(t) + "/edges", {"edges": [{"src": 1, "dst": 7, "type": 0, "w": 0.01}]})
    stats = api.ok("GET", base(t) + "/stats")
    assert stats["edges"] == 9
    got = api.ok("POST", base(t) + "/query", {"query": "topn", "seed": 1, "hops": 1, "n": 1})
    assert got["results"] == [{"node": 3, "score": pytest.approx(0.9)}]


def test_queries_filters_and_explain(admin: Api) -> None:
    t, api = fresh(admin)
    small_graph(api, t)
    api.ok("POST", base(t) + "/nodes", {"nodes": [{"id": 5, "type": 4, "attrs": {"name": "five"}}]})
    q = base(t) + "/query"
    assert api.ok("POST", q, {"query": "neighborhood", "seed": 1, "depth": 3}) == {"count": 4}
    assert api.ok("POST", q, {"query": "neighborhood", "seed": 1, "depth": 3, "limit": 2}) == {"count": 2}
    assert api.ok("POST", q, {"query": "neighborhood", "seed": 1, "node_types": [4]}) == {"count": 1}
    # only types 0..4: 3 -> 5 (type 6) is not traversed
    got = api.ok("POST", q, {"query": "topn", "seed": 1, "edge_types": [0, 1, 2, 3, 4]})
    assert [r["node"] for r in got["results"]] == [3, 2, 4]
    assert api.ok("POST", q, {"query": "path", "src": 1, "dst": 5, "max_depth": 1}) == {"path": None}
    assert api.ok("POST", q, {"query": "path", "src": 1, "dst": 5}) == {"path": [1, 3, 5]}
    got = api.ok("POST", q, {"query": "topdegree", "seed": 1, "depth": 2, "n": 2})
    assert got["results"] == [{"node": 3, "degree": 2}, {"node": 2, "degree": 1}]
    for engine in ("csr", "lmdb"):
        with admin.flags_set({"graph.engine": engine}):
            got = api.ok("POST", q, {"query": "topn", "seed": 1, "explain": True})
        plan = got["plan"]
        assert plan["engine"] == engine
        assert {"snapshot_version", "delta_rows", "rows_scanned", "edges_scanned", "micros"} <= plan.keys()
        assert plan["rows_scanned"] >= 1


def test_engines_agree_over_http(admin: Api) -> None:
    import random

    t, api = fresh(admin)
    rng = random.Random(7)
    edges = {(rng.randrange(40), rng.randrange(40)): (rng.choice([0.25, 0.5, 1.0, rng.random() or 1.0]),
                                                      rng.randrange(8)) for _ in range(300)}
    api.ok("POST", base(t) + "/edges", {"edges": [{"src": s, "dst": d, "w": w, "type": ty}
                                                   for (s, d), (w, ty) in edges.items()]})
    api.ok("POST", base(t) + "/delete", {"nodes": [3], "edges": [[s, d] for s, d in list(edges)[:20]]})
    q = base(t) + "/query"
    nodes = sorted({n for pair in edges for n in pair} - {3})
    specs = [spec for seed in nodes
             for spec in ({"query": "topn", "seed": seed, "n": 5, "edge_types": [0, 1, 2, 3, 4]},
                          {"query": "neighborhood", "seed": seed, "depth": 2},
                          {"query": "path", "src": seed, "dst": nodes[-1]},
                          {"query": "topdegree", "seed": seed, "n": 4})]
    answers = {}
    for engine in ("csr", "lmdb"):
        with admin.flags_set({"graph.engine": engine}):
            answers[engine] = [api.ok("POST", q, spec) for spec in specs]
    for spec, a, b in zip(specs, answers["csr"], answers["lmdb"]):
        assert a == b, (spec, a, b)
    # the engine is the server's flag, not a query field
    status, body = api.post(q, {**specs[0], "engine": "lmdb"})
    assert (status, body["error"]["details"]) == (400, {"field": "engine", "flag": "graph.engine"})


def test_fast_path_answers_byte_for_byte(admin: Api) -> None:
    """Plain topn/neighborhood specs take the native fast path; the same spec with a key the fast
    path does not know (and the full path ignores) takes the full path: the bytes must agree,
    on weights whose products print in every float form (exponents, subnormals, long digits)."""
    import random

    t, api = fresh(admin)
    rng = random.Random(11)
    weights = [1.0, 0.5, 0.1, 1 / 3, 0.7, 1e-7, 1e-20, 1e-38, 3e-45, 0.123456789, 0.999999]
    edges = {(rng.randrange(30), rng.randrange(30)): (rng.choice(weights), rng.randrange(4)) for _ in range(200)}
    api.ok("POST", base(t) + "/edges", {"edges": [{"src": s, "dst": d, "w": w, "type": ty}
                                                   for (s, d), (w, ty) in edges.items()]})
    q = base(t) + "/query"
    seeds = sorted({s for s, _ in edges})
    specs: list[dict[str, Any]] = []
    for seed in seeds:
        specs += [{"query": "topn", "seed": seed}, {"query": "topn", "seed": seed, "hops": 1, "n": 3},
                  {"query": "topn", "seed": seed, "edge_types": [0, 2], "node_types": None, "explain": False},
                  {"query": "neighborhood", "seed": seed, "depth": 2, "limit": 7},
                  {"query": "neighborhood", "seed": seed, "edge_types": [1]}]
    floats = 0
    for spec in specs:
        fast = api.raw("POST", q, orjson.dumps(spec))
        full = api.raw("POST", q, orjson.dumps({**spec, "note": "unknown keys go the full path"}))
        assert fast[0] == full[0] == 200 and fast[2] == full[2], (spec, fast, full)
        floats += fast[2].count(b"e-")
    assert floats > 0  # some scores did print with an exponent


def test_delete_nodes_and_edges(admin: Api) -> None:
    t, api = fresh(admin)
    small_graph(api, t)
    got = api.ok("POST", base(t) + "/delete", {"nodes": [4], "edges": [[1, 2]]})
    assert got == {"edges_deleted": 4, "nodes_deleted": 1}
    q = base(t) + "/query"
    assert api.post(q, {"query": "topn", "seed": 4})[0] == 404
    for engine in ("csr", "lmdb"):
        with admin.flags_set({"graph.engine": engine}):
            got = api.ok("POST", q, {"query": "topn", "seed": 1})
        assert [r["node"] for r in got["results"]] == [3, 5]
    # re-creating node 4 does not bring its old edges back
    api.ok("POST", base(t) + "/edges", {"edges": [{"src": 4, "dst": 9, "w": 0.5}]})
    assert api.ok("POST", q, {"query": "topn", "seed": 3, "hops": 1}) == {"results": [
        {"node": 5, "score": pytest.approx(0.8)}]}


@pytest.mark.parametrize("body, status, code", [
    ({"edges": [{"src": 1, "dst": 2, "w": 0.5}, {"src": 2, "dst": 3, "w": 1.5}]}, 422, "invalid_value"),
    ({"edges": [{"src": 1, "dst": 2, "w": 0.5}, {"src": 2, "dst": 3, "w": 0}]}, 422, "invalid_value"),
    ({"edges": [{"src": 1, "dst": 2, "w": 0.5}, {"src": "x", "dst": 3}]}, 400, "bad_request"),
    ({"edges": [{"src": 1, "dst": 2, "w": 0.5}, {"src": 2, "dst": 3, "type": 300}]}, 422, "invalid_value"),
    ({"src": [1, 2], "dst": [2], "w": [0.5, 0.5], "type": [0, 0]}, 400, "bad_request"),
    ({"edges": [{"src": 1, "dst": 2, "w": 0.5}, {"src": 2 ** 63, "dst": 3}]}, 422, "invalid_value"),
    ({"nothing": True}, 400, "bad_request"),
])
def test_bad_batch_writes_nothing(admin: Api, body: dict[str, Any], status: int, code: str) -> None:
    t, api = fresh(admin)
    got, err = api.post(base(t) + "/edges", body)
    assert (got, err["error"]["code"]) == (status, code), err
    assert set(err["error"]) == {"code", "message", "details", "request_id"}
    assert api.ok("GET", base(t) + "/stats")["edges"] == 0
    for engine in ("csr", "lmdb"):
        with admin.flags_set({"graph.engine": engine}):
            assert api.post(base(t) + "/query", {"query": "topn", "seed": 1})[0] == 404


def test_malformed_oversized_and_wrong_type(admin: Api) -> None:
    t, api = fresh(admin)
    status, _, raw = api.raw("POST", base(t) + "/edges", b'{"edges": [', {})
    assert status == 400 and orjson.loads(raw)["error"]["code"] == "bad_request"
    status, _, raw = api.raw("POST", base(t) + "/edges", b"src,dst\n1,2\n", {"Content-Type": "text/csv"})
    assert status == 415 and orjson.loads(raw)["error"]["code"] == "unsupported_media_type"
    big = orjson.dumps({"src": list(range(200_000)), "dst": list(range(1, 200_001))})
    assert len(big) > 1 << 20  # the fixture server allows 1 MiB
    status, _, raw = api.raw("POST", base(t) + "/edges", big, {})
    assert status == 413 and orjson.loads(raw)["error"]["code"] == "payload_too_large"
    assert api.ok("GET", base(t) + "/stats")["edges"] == 0
    q = base(t) + "/query"
    small_graph(api, t)
    for spec, code in [({"query": "bogus", "seed": 1}, 400), ({"query": "topn"}, 400),
                       ({"query": "topn", "seed": 1, "hops": 3}, 422), ({"query": "topn", "seed": 1.5}, 400),
                       ({"query": "topn", "seed": 1, "edge_types": [999]}, 422),
                       ({"query": "path", "src": 1, "dst": 12345}, 404), ([1, 2], 400),
                       ({"query": "topn", "seed": 1, "engine": "lmdb"}, 400)]:
        status, body = api.post(q, spec)
        assert status == code, (spec, body)
        assert "error" in body
    status, body = api.get("/v1/nope")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_flags_switch_engine(admin: Api) -> None:
    t, api = fresh(admin)
    small_graph(api, t)
    q = base(t) + "/query"
    with admin.flags_set({"graph.engine": "lmdb"}):
        assert admin.flag("graph.engine") == "lmdb"
        got = api.ok("POST", q, {"query": "topn", "seed": 1, "explain": True})
        assert got["plan"]["engine"] == "lmdb"
        assert admin.call("PUT", "/v1/admin/flags", {"graph.engine": "fast"})[0] == 400
        assert api.call("PUT", "/v1/admin/flags", {"graph.engine": "csr"})[0] == 403
        assert admin.flag("graph.engine") == "lmdb"
        admin.ok("PUT", "/v1/admin/flags", {"graph.engine": "csr"})
        assert api.ok("POST", q, {"query": "topn", "seed": 1, "explain": True})["plan"]["engine"] == "csr"


def test_restart_keeps_everything(server_factory: Any) -> None:
    srv = server_factory()
    admin = srv.api()
    api = admin.new_tenant("keep")
    small_graph(api, "keep")
    before = api.ok("POST", base("keep") + "/query", {"query": "topn", "seed": 1})
    srv.stop()
    srv2 = server_factory(data_dir=srv.data_dir)
    api2 = srv2.api(api.key)
    assert api2.ok("POST", base("keep") + "/query", {"query": "topn", "seed": 1}) == before


def test_writer_priority_flag_at_run_time(admin: Api) -> None:
    """runtime.writer_priority changes the writer thread's nice value in the running server (raising it
    needs root or CAP_SYS_NICE: the server runs as this test's user); writes go on either way."""
    t, api = fresh(admin)
    anon = admin.with_key(None)

    def nice() -> float:
        status, text = anon.get("/metrics")
        assert status == 200
        line = next(ln for ln in text.decode().splitlines() if ln.startswith("provgraph_store_writer_nice "))
        return float(line.split()[1])

    with admin.flags_set({"runtime.writer_priority": "normal"}):
        assert nice() == os.getpriority(os.PRIO_PROCESS, 0)
        small_graph(api, t)
    with admin.flags_set({"runtime.writer_priority": "high"}):
        process = os.getpriority(os.PRIO_PROCESS, 0)  # the server inherits this process's nice value
        assert nice() == (process - 10 if os.geteuid() == 0 else process)
    assert api.ok("POST", base(t) + "/edges", {"edges": [{"src": 7, "dst": 8}]}, status=200) is not None


def test_gc_flag_at_run_time(admin: Api) -> None:
    """runtime.gc=frozen (the default) freezes the heap the server built at start-up; default hands it
    back to the collector; turning it on again runs one full collection first (timed, like every
    collection, in provgraph_gc_pause_seconds) and freezes what is alive."""
    anon = admin.with_key(None)

    def sample(name: str) -> float:
        status, text = anon.get("/metrics")
        assert status == 200
        return float(next(ln for ln in text.decode().splitlines() if ln.startswith(name + " ")).split()[1])

    frozen = 'provgraph_gc_frozen_objects'
    full = 'provgraph_gc_pause_seconds_count{generation="2"}'
    # modules, routes, handlers: frozen at start with the optimized profile's runtime.gc=frozen
    assert (sample(frozen) > 1000) == (admin.flag("runtime.gc") == "frozen")
    with admin.flags_set({"runtime.gc": "default"}):
        assert sample(frozen) == 0
        full_before = sample(full)
        with admin.flags_set({"runtime.gc": "frozen"}):
            assert sample(frozen) > 1000
            assert sample(full) >= full_before + 1  # the collection before freezing
    t, api = fresh(admin)
    small_graph(api, t)  # and it serves as before
