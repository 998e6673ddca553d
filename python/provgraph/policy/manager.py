"""Bundles in LMDB, compiled revisions, activation epochs, the decision cache and the /decide path."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from provgraph._core import DecisionCache, PolicyBundle, canonical_hash, uuid7
from provgraph.clock import now_rfc3339
from provgraph.errors import (
    BadRequestError,
    BundleError,
    ConflictError,
    NotFoundError,
    PolicyCompileError,
    PolicyEvalError,
)
from provgraph.flags import FlagRegistry
from provgraph.policy.bundle import Bundle, parse_bundle
from provgraph.policy.decision_log import DecisionLog
from provgraph.store import Store, Txn, Writer
from provgraph.store.keys import scan_prefix

__all__ = ["DECISION_PATH", "PolicyManager", "Revision", "decision_key", "parse_decision_request"]

DECISION_PATH = "provgraph/authz/decision"
DEFAULT_TTL_S = 5.0
_SAMPLES = 100_000  # latency samples kept per revision and outcome for the stats endpoint


def _key(name: str, revision: str) -> bytes:
    return name.encode() + b"\x00" + revision.encode()


def new_decision_id() -> str:
    """A UUIDv7 (time-ordered, 74 random bits), made in Rust: ~0.3 µs, vs ~6 µs for a uuid4 from
    os.urandom (a syscall per decision)."""
    return uuid7()


@dataclass
class RevisionStats:
    """Latency samples (µs) by cache outcome, bounded, plus counters."""

    samples: dict[str, array[float]] = field(default_factory=lambda: {"hit": array("d"), "miss": array("d")})
    evaluations: int = 0
    errors: int = 0

    def record(self, outcome: str, micros: float) -> None:
        buf = self.samples.setdefault(outcome, array("d"))
        if len(buf) >= _SAMPLES:
            del buf[: _SAMPLES // 2]
        buf.append(micros)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"evaluations": self.evaluations, "errors": self.errors}
        total = 0
        for outcome, buf in self.samples.items():
            total += len(buf)
            if len(buf):
                p50, p95, p99 = np.percentile(np.frombuffer(buf, dtype=np.float64), [50, 95, 99]).tolist()
                out[outcome] = {"count": len(buf), "p50_us": p50, "p95_us": p95, "p99_us": p99}
            else:
                out[outcome] = {"count": 0}
        all_us = [np.frombuffer(b, dtype=np.float64) for b in self.samples.values() if len(b)]
        if all_us:
            p50, p95, p99 = np.percentile(np.concatenate(all_us), [50, 95, 99]).tolist()
            out.update({"p50_us": p50, "p95_us": p95, "p99_us": p99})
        hits = len(self.samples.get("hit", ()))
        out["hit_rate"] = hits / total if total else 0.0
        return out


@dataclass
class Revision:
    name: str
    revision: str
    digest: str
    size: int
    uploaded_at: str
    roots: list[str]
    ttl_s: float
    compiled: PolicyBundle | None = None
    raw: bytes | None = None
    epoch: int = 0
    activated_at: str | None = None
    stats: RevisionStats = field(default_factory=RevisionStats)

    def meta(self) -> dict[str, Any]:
        return {"name": self.name, "revision": self.revision, "digest": self.digest, "size": self.size,
                "uploaded_at": self.uploaded_at, "activated_at": self.activated_at, "roots": self.roots,
                "cache_ttl_s": self.ttl_s}


def _ttl(bundle: Bundle, default: float) -> float:
    meta = bundle.manifest.get("metadata")
    value = meta.get("provgraph", {}).get("cache_ttl_seconds") if isinstance(meta, dict) else None
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 86_400:
        raise BundleError("metadata.provgraph.cache_ttl_seconds must be a number in [0, 86400]",
                          {"file": ".manifest", "reason": "bad cache ttl"})
    return float(value)


class PolicyManager:
    """Owns bundle storage, activation (with epochs that fence the cache) and decisions."""

    def __init__(self, store: Store, writer: Writer, decision_bundle: str = "authz",
                 cache_entries: int = 100_000, default_ttl_s: float = DEFAULT_TTL_S,
                 log_retention: int = 100_000, on_eval_error: Callable[[], None] = lambda: None,
                 flags: FlagRegistry | None = None) -> None:
        self.store, self.writer = store, writer
        self.decision_bundle = decision_bundle
        self.default_ttl_s = default_ttl_s
        self.cache = DecisionCache(cache_entries)
        self.log = DecisionLog(store, writer, log_retention)
        self.active: dict[str, Revision] = {}
        self._epoch = 0
        self._changed: dict[str, asyncio.Event] = {}
        self.eval_errors = 0
        self._on_eval_error = on_eval_error
        self.flags = flags or FlagRegistry()
        self._load_active()

    def _use_vm(self) -> bool:
        """Flag policy.vm: rules on regorus's bytecode VM, else its interpreter."""
        return self.flags["policy.vm"] == "on"

    # ---- storage ---------------------------------------------------------------------------
    def _load_active(self) -> None:
        with self.store.read() as txn:
            actives = [(k.decode(), v.decode()) for k, v in txn.cursor(db=self.store.db("bundle_active"))]
        for name, revision in actives:
            rev = self._load_revision(name, revision)
            self._install(rev)

    def _load_revision(self, name: str, revision: str) -> Revision:
        with self.store.read() as txn:
            raw = txn.get(_key(name, revision), db=self.store.db("bundles"))
            meta_raw = txn.get(_key(name, revision), db=self.store.db("bundle_meta"))
        if raw is None or meta_raw is None:
            raise NotFoundError(f"bundle {name!r} has no revision {revision!r}",
                                {"name": name, "revision": revision})
        meta = orjson.loads(meta_raw)
        bundle = parse_bundle(name, bytes(raw))
        rev = Revision(name, bundle.revision, bundle.digest, bundle.size, meta["uploaded_at"], bundle.roots,
                       _ttl(bundle, self.default_ttl_s), raw=bytes(raw))
        rev.compiled = PolicyBundle.compile(bundle.modules, bundle.data_json())
        return rev

    def _install(self, rev: Revision) -> None:
        """Make `rev` active: a new epoch, so no cached decision of an older revision is ever served."""
        self._epoch += 1
        rev.epoch = self._epoch
        rev.activated_at = rev.activated_at or now_rfc3339()
        self.active[rev.name] = rev
        self._changed.setdefault(rev.name, asyncio.Event()).set()
        self._changed[rev.name] = asyncio.Event()

    def list_revisions(self, name: str) -> list[dict[str, Any]]:
        out = []
        with self.store.read() as txn:
            for _, v in scan_prefix(txn.cursor(db=self.store.db("bundle_meta")), name.encode() + b"\x00"):
                meta = orjson.loads(v)
                meta["active"] = self.active.get(name) is not None and self.active[name].revision == meta["revision"]
                out.append(meta)
        return out

    # ---- upload and activation (compile off the event loop: callers run these in a thread) --------
    def prepare_upload(self, name: str, raw: bytes) -> tuple[Bundle, Revision]:
        """Parse and compile a bundle; raises BundleError (400) with the reason. Stores nothing."""
        bundle = parse_bundle(name, raw)
        if not bundle.revision:
            raise BundleError("the manifest needs a non-empty revision", {"file": ".manifest",
                                                                           "reason": "missing revision"})
        try:
            compiled = PolicyBundle.compile(bundle.modules, bundle.data_json())
        except PolicyCompileError as exc:
            raise BundleError(f"bundle does not compile: {exc.message}",
                              {"reason": "compile error", "error": exc.message}) from None
        rev = Revision(name, bundle.revision, bundle.digest, bundle.size, now_rfc3339(), bundle.roots,
                       _ttl(bundle, self.default_ttl_s), compiled=compiled, raw=raw)
        return bundle, rev

    def store_revision(self, rev: Revision, activate: bool) -> Any:
        """Queue the durable write (raw + meta [+ active pointer]); returns the writer future."""
        meta = orjson.dumps(rev.meta())
        raw = rev.raw
        assert raw is not None

        def job(txn: Txn) -> tuple[bool, None]:
            key = _key(rev.name, rev.revision)
            old = txn.get(key, db=self.store.db("bundle_meta"))
            if old is not None:
                if orjson.loads(old)["digest"] != rev.digest:
                    raise ConflictError(f"revision {rev.revision!r} of {rev.name!r} exists with other content",
                                        {"name": rev.name, "revision": rev.revision})
            else:
                txn.put(key, raw, db=self.store.db("bundles"))
                txn.put(key, meta, db=self.store.db("bundle_meta"))
            if activate:
                txn.put(rev.name.encode(), rev.revision.encode(), db=self.store.db("bundle_active"))
            return old is None, None

        return self.writer.submit(job)

    def activate_stored(self, name: str, revision: str) -> Revision:
        """Load + compile a stored revision (for activation or rollback). Runs off the loop."""
        current = self.active.get(name)
        if current is not None and current.revision == revision:
            return current
        return self._load_revision(name, revision)

    def persist_active(self, name: str, revision: str) -> Any:
        def job(txn: Txn) -> tuple[None, None]:
            txn.put(name.encode(), revision.encode(), db=self.store.db("bundle_active"))
            return None, None

        return self.writer.submit(job)

    def install(self, rev: Revision) -> None:
        """Switch the active revision (on the event loop thread, after the write is durable)."""
        self._install(rev)

    async def wait_change(self, name: str, timeout: float) -> bool:
        event = self._changed.setdefault(name, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    # ---- evaluation --------------------------------------------------------------------------
    def bundle_for_path(self, path: str) -> Revision | None:
        """The active bundle whose roots cover `path` (longest root wins)."""
        segs = [s for s in path.split("/") if s]
        best: tuple[int, Revision] | None = None
        for rev in self.active.values():
            for root in rev.roots:
                rsegs = [s for s in root.split("/") if s]
                if segs[: len(rsegs)] == rsegs and (best is None or len(rsegs) > best[0]):
                    best = (len(rsegs), rev)
        return best[1] if best else None

    def eval_data(self, path: str, input_json: bytes | None) -> tuple[bytes | None, int, Revision | None]:
        rev = self.bundle_for_path(path)
        if rev is None or rev.compiled is None:
            return None, 0, None
        try:
            result, ns = rev.compiled.eval_timed(path, input_json, self._use_vm())
        except PolicyEvalError:
            self._count_error(rev)
            raise
        return result, ns, rev

    def _count_error(self, rev: Revision) -> None:
        self.eval_errors += 1
        rev.stats.errors += 1
        self._on_eval_error()

    def decide_cached(self, tenant_id: str, actor_id: str, roles: tuple[str, ...],
                      raw: bytes) -> tuple[bytes, bytes, Revision] | None:
        """The fast path of decide() for a decision in the cache: (response JSON, log entry JSON,
        the revision) in one native call from the raw body; None for anything else (a body
        decide() would refuse, a miss, no active bundle), and then decide() answers."""
        t0 = time.perf_counter_ns()
        rev = self.active.get(self.decision_bundle)
        if rev is None or rev.compiled is None:
            return None
        hit = self.cache.decide_hit(raw, tenant_id, actor_id, list(roles), rev.epoch, rev.name, rev.revision,
                                    DECISION_PATH, now_rfc3339())
        if hit is None:
            return None
        rev.stats.record("hit", (time.perf_counter_ns() - t0) / 1e3)
        return hit[0], hit[1], rev

    def decide(self, tenant_id: str, actor_id: str, roles: tuple[str, ...], body: Any,
               use_cache: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """The /decide path. Returns (response, log entry). Fails closed: any error is a deny."""
        t0 = time.perf_counter_ns()
        action, resource, context = parse_decision_request(body)
        rtype = resource["type"]
        rev = self.active.get(self.decision_bundle)
        decision_id = new_decision_id()
        if rev is None or rev.compiled is None:
            decision = {"allow": False, "reasons": [f"no active policy bundle {self.decision_bundle!r}"],
                        "obligations": []}
            response = {"decision": "deny", "reasons": decision["reasons"], "obligations": [],
                        "bundle": self.decision_bundle, "revision": None, "decision_id": decision_id,
                        "cached": False}
            return response, {}
        roles_l = list(roles)
        digest = canonical_hash(decision_key(actor_id, roles_l, resource, context))
        cached = self.cache.get(tenant_id, action, rtype, digest, rev.epoch) if use_cache else None
        eval_ns = 0
        if cached is not None:
            decision = orjson.loads(cached)
            outcome = "hit"
        else:
            outcome = "miss"
            policy_input = {"tenant_id": tenant_id, "actor": {"id": actor_id, "roles": roles_l},
                            "action": action, "resource": resource, "context": context}
            decision, eval_ns, cacheable = self._evaluate(rev, policy_input)
            if use_cache and cacheable:
                self.cache.put(tenant_id, action, rtype, digest, rev.epoch, orjson.dumps(decision), rev.ttl_s)
            rev.stats.evaluations += 1
        allow = decision["allow"] is True
        response = {"decision": "allow" if allow else "deny", "reasons": decision["reasons"],
                    "obligations": decision["obligations"], "bundle": rev.name, "revision": rev.revision,
                    "decision_id": decision_id, "cached": outcome == "hit"}
        micros = (time.perf_counter_ns() - t0) / 1e3
        rev.stats.record(outcome, micros)
        entry = {"decision_id": decision_id, "path": DECISION_PATH, "bundle": rev.name, "revision": rev.revision,
                 "input_hash": digest.hex(), "tenant_id": tenant_id, "actor": actor_id, "action": action,
                 "resource_type": rtype, "result": decision, "cached": outcome == "hit",
                 "timestamp": now_rfc3339(), "eval_ns": eval_ns}
        return response, entry

    def _evaluate(self, rev: Revision, policy_input: dict[str, Any]) -> tuple[dict[str, Any], int, bool]:
        """Evaluate the decision rule; an error or a malformed decision is a deny (never cached)."""
        assert rev.compiled is not None
        try:
            raw, ns = rev.compiled.eval_timed(DECISION_PATH, orjson.dumps(policy_input),
                                               self._use_vm())
        except PolicyEvalError as exc:
            self._count_error(rev)
            return {"allow": False, "reasons": [f"policy evaluation error: {exc.message}"],
                    "obligations": []}, 0, False
        if raw is None:
            return {"allow": False, "reasons": ["policy decision is undefined"], "obligations": []}, ns, True
        value = orjson.loads(raw)
        if not (isinstance(value, dict) and isinstance(value.get("allow"), bool)):
            self._count_error(rev)
            return {"allow": False, "reasons": ["policy decision is malformed (needs a boolean allow)"],
                    "obligations": []}, ns, False
        reasons = value.get("reasons", [])
        obligations = value.get("obligations", [])
        return {"allow": value["allow"], "reasons": reasons if isinstance(reasons, list) else [reasons],
                "obligations": obligations if isinstance(obligations, list) else [obligations]}, ns, True


def decision_key(actor_id: str, roles: list[str], resource: dict[str, Any], context: dict[str, Any]
                 ) -> dict[str, Any]:
    """What a cached decision is keyed on besides tenant, action and resource type (its canonical
    hash); DecisionCache.decide_hit builds the same in Rust."""
    return {"actor": {"id": actor_id, "roles": roles},
            "resource": {"id": resource.get("id"), "attributes": resource["attributes"]}, "context": context}


def parse_decision_request(body: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Validate {action, resource: {type, id?, attributes?}, context?}; returns them normalized."""
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise BadRequestError("action must be a non-empty string", {"field": "action"})
    resource = body.get("resource")
    if not isinstance(resource, dict) or not isinstance(resource.get("type"), str) or not resource["type"]:
        raise BadRequestError("resource must be an object with a non-empty string type", {"field": "resource"})
    rid = resource.get("id")
    if rid is not None and not isinstance(rid, str):
        raise BadRequestError("resource.id must be a string", {"field": "resource.id"})
    attributes = resource.get("attributes", {})
    if not isinstance(attributes, dict):
        raise BadRequestError("resource.attributes must be an object", {"field": "resource.attributes"})
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise BadRequestError("context must be an object", {"field": "context"})
    return action, {"type": resource["type"], "id": rid, "attributes": attributes}, context
