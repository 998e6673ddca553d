"""asv: policy decisions in-process — cache hit (with key hashing), miss on the example bundle, key hashing."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import latencies_us

_SAMPLES: dict[str, np.ndarray] = {}


def _inputs(count: int, seed: int = 42) -> list[dict[str, Any]]:
    from provgraph.bench.decide import ROLES, policy_input

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        body = policy_input(rng, "t1")
        out.append({"tenant_id": "t1", "actor": {"id": f"user:{i % 20}", "roles": list(ROLES[i % len(ROLES)])},
                    **body})
    return out


def _key_part(x: dict[str, Any]) -> dict[str, Any]:
    return {"actor": x["actor"], "resource": {"id": x["resource"]["id"], "attributes": x["resource"]["attributes"]},
            "context": x["context"]}


class DecisionTails:
    """p50/p95/p99 (µs, Python call included) of a cache hit and of a miss on the example bundle."""

    params = [50, 95, 99]
    param_names = ["percentile"]
    unit = "us"
    timeout = 300

    def setup(self, percentile: int) -> None:
        if _SAMPLES:
            return
        import orjson
        from provgraph._core import DecisionCache, PolicyBundle, canonical_hash
        from provgraph.policy.bundle import load_example_bundle, parse_bundle

        bundle = parse_bundle("authz", load_example_bundle())
        compiled = PolicyBundle.compile(bundle.modules, bundle.data_json())
        inputs = _inputs(2000)
        encoded = [orjson.dumps(x) for x in inputs]
        keys = [_key_part(x) for x in inputs]
        cache = DecisionCache(100_000)
        for x, k in zip(inputs, keys):
            cache.put("t1", x["action"], x["resource"]["type"], canonical_hash(k), 1, b"{}", 3600.0)
        idx = np.arange(len(inputs))
        _SAMPLES["miss"] = latencies_us(lambda i: compiled.eval("provgraph/authz/decision", encoded[i]), idx)
        _SAMPLES["hit"] = latencies_us(
            lambda i: cache.get("t1", inputs[i]["action"], inputs[i]["resource"]["type"],
                                canonical_hash(keys[i]), 1), idx)

    def track_cache_hit_with_key_hash(self, percentile: int) -> float:
        return float(np.percentile(_SAMPLES["hit"], percentile))

    def track_miss_example_bundle(self, percentile: int) -> float:
        return float(np.percentile(_SAMPLES["miss"], percentile))


class KeyHashing:
    """Decision-cache key hashing: BLAKE3 of the RFC 8785 form of the key's input part."""

    def setup(self) -> None:
        self.keys = [_key_part(x) for x in _inputs(1000)]

    def time_canonical_hash_1000_keys(self) -> None:
        from provgraph._core import canonical_hash

        for k in self.keys:
            canonical_hash(k)
