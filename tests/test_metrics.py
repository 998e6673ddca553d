"""/metrics of a real server: the exposition parses, monotonic counts are counters, every label set stays bounded."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from typing import Any

import pytest
from conftest import Api, Server
from prometheus_client.parser import text_string_to_metric_families
from provgraph.policy.bundle import load_example_bundle
from provgraph.service.metrics import DECISION_REVISIONS_KEPT, Metrics

GZ = {"Content-Type": "application/gzip"}
# Every count the service keeps that only grows, by family name (the exposition adds _total).
COUNTERS = {
    "provgraph_graph_queries", "provgraph_graph_edges_written", "provgraph_graph_snapshot_rebuilds",
    "provgraph_store_commit_groups", "provgraph_store_commit_jobs", "provgraph_policy_eval_errors",
    "provgraph_policy_vm_fallbacks", "provgraph_policy_cache_events", "provgraph_policy_decision_log_dropped",
    "provgraph_receipts_issued", "provgraph_preflights_swept",
}


def scrape(server: Server) -> str:
    status, text = server.api(None).call("GET", "/metrics")
    assert status == 200
    return str(text.decode())


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def decide(api: Api, tenant: str) -> dict[str, Any]:
    body = {"action": "graph.read", "resource": {"type": "graph", "id": "g"}}
    return dict(api.ok("POST", f"/v1/tenants/{tenant}/decide", body))


def upload(admin: Api, revision: str) -> None:
    status, _, body = admin.raw("PUT", "/v1/bundles/authz", load_example_bundle(revision=revision), GZ)
    assert status == 201, body


@pytest.fixture(scope="module")
def tenant(server: Server) -> Api:
    admin = server.api()
    upload(admin, "m-0")
    api = admin.new_tenant("metr", roles=("analyst",))
    api.ok("POST", "/v1/tenants/metr/graph/edges", {"edges": [{"src": 1, "dst": 2}]})
    decide(api, "metr")
    return api


def test_monotonic_counts_are_counters(server: Server, tenant: Api) -> None:
    before = families(scrape(server))
    for name in COUNTERS:
        assert name in before, f"{name} missing from /metrics"
        assert before[name].type == "counter", f"{name} is a {before[name].type}"
    for name, family in before.items():
        if family.type == "gauge":
            assert not name.endswith("_total"), f"gauge {name} is named like a counter"
    tenant.ok("POST", "/v1/tenants/metr/graph/edges", {"edges": [{"src": 2, "dst": 3}]})
    after = families(scrape(server))

    def value(fams: dict[str, Any], name: str) -> float:
        return sum(s.value for s in fams[name].samples if s.name == name + "_total")

    # The writer's counts move with a write: read at scrape time, never copied into a gauge.
    assert value(after, "provgraph_store_commit_groups") > value(before, "provgraph_store_commit_groups")
    assert value(after, "provgraph_store_commit_jobs") > value(before, "provgraph_store_commit_jobs")
    assert value(after, "provgraph_graph_edges_written") == value(before, "provgraph_graph_edges_written") + 1
    # The writer's latency histograms move with it: each commit is timed, and the request's write from
    # queued to durable; the buckets are cumulative and end at +Inf with the count.
    for name in ("provgraph_store_commit_seconds", "provgraph_store_write_wait_seconds"):
        fam = after[name]
        assert fam.type == "histogram"
        buckets = [s for s in fam.samples if s.name == name + "_bucket"]
        count = next(s.value for s in fam.samples if s.name == name + "_count")
        assert [s.labels["le"] for s in buckets][-1] == "+Inf" and buckets[-1].value == count
        assert all(a.value <= b.value for a, b in itertools.pairwise(buckets))
        before_count = next(s.value for s in before[name].samples if s.name == name + "_count")
        assert count > before_count
        assert next(s.value for s in fam.samples if s.name == name + "_sum") > 0
    events = {s.labels["event"] for s in after["provgraph_policy_cache_events"].samples}
    assert events == {"hits", "misses", "stale", "inserts", "invalidations"}
    assert after["provgraph_policy_cache_entries"].type == "gauge"


def test_bundle_revisions_leave_the_series_count_bounded(server: Server, tenant: Api) -> None:
    admin = server.api()

    def decision_revisions(text: str) -> set[str]:
        fam = families(text)["provgraph_policy_decision_duration_seconds"]
        return {s.labels["revision"] for s in fam.samples}

    counts = []
    for i in range(1, 3 * DECISION_REVISIONS_KEPT + 1):
        upload(admin, f"m-{i}")
        got = decide(tenant, "metr")
        assert got["revision"] == f"m-{i}" and not got["cached"]
        decide(tenant, "metr")  # a hit as well: both outcomes of the revision have series
        text = scrape(server)
        revisions = decision_revisions(text)
        assert f"m-{i}" in revisions
        assert revisions == {f"m-{j}" for j in range(max(0, i - DECISION_REVISIONS_KEPT + 1), i + 1)}
        counts.append(sum(1 for ln in text.splitlines() if ln and not ln.startswith("#")))
    # Once the oldest revisions drop out, each new one replaces one: the exposition stops growing.
    steady = counts[DECISION_REVISIONS_KEPT:]
    assert max(steady) == min(steady), counts


def test_method_label_is_bounded() -> None:
    metrics = Metrics()
    for method in ("GET", "BREW", "X" * 40, "PROPFIND"):
        metrics.observe_request(method, "unmatched", 405, 0.001)
    fam = families(metrics.render().decode())["provgraph_http_request_duration_seconds"]
    assert {s.labels["method"] for s in fam.samples} == {"GET", "other"}
    assert {method for method, _, _ in metrics._request_children} == {"GET", "other"}


def test_promtool_accepts_the_exposition(server: Server, tenant: Api) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (Debian package prometheus: apt-get install prometheus)"
    got = subprocess.run([promtool, "check", "metrics"], input=scrape(server).encode(), capture_output=True,
                         timeout=60, check=False)
    assert got.returncode == 0, got.stdout.decode() + got.stderr.decode()


def test_metrics_token_guards_the_exposition(server_factory: Any) -> None:
    """With --metrics-token, /metrics answers only to that bearer token (per-tenant series name
    customers); without one it stays open (every other test here)."""
    server = server_factory(["--metrics-token", "scrape-secret-1"])
    open_api = server.api(None)
    status, body = open_api.get("/metrics")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert server.api("scrape-secret-2").get("/metrics")[0] == 401
    assert server.api().get("/metrics")[0] == 401  # the admin key is not the token
    status, text = server.api("scrape-secret-1").get("/metrics")
    assert status == 200 and b"provgraph_http_request_duration_seconds" in text
    assert open_api.get("/healthz")[0] == 200  # the other open routes stay open
