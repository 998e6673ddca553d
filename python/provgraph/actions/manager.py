"""Preflight → (approvals) → execute, each execution writing its effect and a receipt intent atomically."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import blake3
import orjson

from provgraph._core import uuid7
from provgraph.actions.model import ActionRequest, hash_hex, parse_action, rfc3339
from provgraph.actions.pipeline import Issuer
from provgraph.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    InvalidArgumentError,
    NotFoundError,
    ProvgraphError,
)
from provgraph.evidence.store import EvidenceStore
from provgraph.graph.manager import GraphManager
from provgraph.graph.model import parse_delete, parse_edges
from provgraph.policy.manager import PolicyManager
from provgraph.store import Store, Txn, Writer
from provgraph.store.keys import tenant_prefix
from provgraph.store.records import Fresh, RecordCodecs
from provgraph.tenancy import KeyRecord, Tenant

__all__ = ["ActionManager", "GoneError"]

MAX_BATCH = 1000
# A batch of at least this many actions is a bulk job (scheduling.fair: it takes a turn of the bulk
# gate, and its items are prepared in slices of BATCH_SLICE, the loop free for others in between).
BULK_ACTIONS = 64
BATCH_SLICE = 32


class GoneError(ProvgraphError):
    status, code = 410, "preflight_expired"


def _pf_key(tenant: int, preflight_id: str) -> bytes:
    try:
        return tenant_prefix(tenant) + uuid.UUID(preflight_id).bytes
    except ValueError:
        raise NotFoundError(f"unknown preflight {preflight_id!r}", {"preflight_id": preflight_id}) from None


def _required_approvers(obligations: list[Any]) -> int:
    return max((int(o.get("required_approvers", 0)) for o in obligations
                if isinstance(o, dict) and o.get("type") == "dual_control"), default=0)


class ActionManager:
    def __init__(self, store: Store, writer: Writer, policy: PolicyManager, graph: GraphManager, issuer: Issuer,
                 preflight_ttl_s: float = 900.0, preflight_retention_s: float = 86_400.0,
                 evidence: EvidenceStore | None = None) -> None:
        self.store, self.writer, self.policy, self.graph, self.issuer = store, writer, policy, graph, issuer
        self.evidence = evidence
        self.preflight_ttl_s = preflight_ttl_s
        # A preflight (and its execute's Idempotency-Key) is kept this long after it expires, then swept.
        self.preflight_retention_s = preflight_retention_s
        self.db = store.db("preflights")
        self.records = RecordCodecs(store, b"p")
        self.compact = False  # flag records.storage: preflights are stored in their compact form
        self.swept = 0  # preflights removed by `sweep` since start

    # ---- helpers ---------------------------------------------------------------------------------
    def _visible(self, txn: Txn, tenant: int, preflight_id: str) -> dict[str, Any]:
        """A preflight as a reader outside the writer sees it, including one answered before its
        commit landed (flag actions.preflight_ack=queued|applied: the writer's shadow of it)."""
        return self._parse(tenant, self.writer.get(txn, "preflights", _pf_key(tenant, preflight_id)), preflight_id)

    def _load(self, txn: Txn, tenant: int, preflight_id: str) -> dict[str, Any]:
        """A preflight as the writer's own transaction holds it (a job's view)."""
        return self._parse(tenant, txn.get(_pf_key(tenant, preflight_id), db=self.db), preflight_id)

    def _parse(self, tenant: int, raw: bytes | None, preflight_id: str) -> dict[str, Any]:
        """A stored preflight (JSON, or its compact form: first byte 1) -> the record."""
        if raw is None:
            raise NotFoundError(f"unknown preflight {preflight_id!r}", {"preflight_id": preflight_id})
        if raw[:1] != b"{":
            try:
                raw = self.records.of(tenant).decode_preflight(raw, preflight_id)
            except ValueError as exc:  # a damaged row or dictionary: the server's fault, never the client's
                raise RuntimeError(f"preflight {preflight_id} of tenant {tenant}: {exc}") from exc
        record: dict[str, Any] = orjson.loads(raw)
        return record

    def _put(self, txn: Txn, tenant: int, pf: dict[str, Any], fresh: Fresh, raw: bytes | None = None) -> None:
        """Store `pf` in the writer's `txn`: in its compact form (flag records.storage) with the
        dictionary entries it needs (noted in `fresh`: mark them stored once committed), or as JSON."""
        key = _pf_key(tenant, pf["preflight_id"])
        raw = raw if raw is not None else orjson.dumps(pf)
        got = self.records.of(tenant).encode_preflight(raw, pf["preflight_id"]) if self.compact else None
        txn.put(key, self.records.stored(txn, tenant, got, raw, fresh), db=self.db)

    def _decide(self, key: KeyRecord, tenant: Tenant, req: ActionRequest, use_cache: bool) -> dict[str, Any]:
        response, entry = self.policy.decide(tenant.tenant_id, key.actor, key.roles, req.decide_body(), use_cache)
        if entry:
            self.policy.log.record(tenant.num, entry)
        return response

    def _new_preflight(self, key: KeyRecord, tenant: Tenant, req: ActionRequest,
                       decision: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        return {
            "preflight_id": uuid7(), "tenant_id": tenant.tenant_id,
            "actor": {"id": key.actor, "roles": list(key.roles)},
            "action": req.action, "resource": req.receipt_resource(), "request_hash": req.request_hash,
            "decision": decision["decision"], "reasons": decision["reasons"],
            "obligations": decision["obligations"],
            "policy": {"bundle": decision["bundle"], "revision": decision["revision"],
                       "decision_id": decision["decision_id"], "decision": decision["decision"]},
            "created_at": now, "expires_ts": now + self.preflight_ttl_s, "expires_at": rfc3339(now + self.preflight_ttl_s),
            "status": "pending", "approvals": [], "rejection": None, "execution": None,
        }

    @staticmethod
    def _preflight_answer(pf: dict[str, Any]) -> dict[str, Any]:
        return {"preflight_id": pf["preflight_id"], "decision": pf["decision"], "reasons": pf["reasons"],
                "request_hash": pf["request_hash"], "obligations": pf["obligations"], "expires_at": pf["expires_at"],
                "required_approvers": _required_approvers(pf["obligations"])}

    # ---- preflight -------------------------------------------------------------------------------
    async def preflight(self, key: KeyRecord, tenant: Tenant, body: Any, use_cache: bool,
                        ack: str = "durable") -> dict[str, Any]:
        """Decide and store a preflight; `ack` (flag actions.preflight_ack) is when it answers:

        - "durable": after the record's commit (fsync);
        - "applied": once applied in the writer's transaction, before its fsync;
        - "queued": once queued for the writer, with no wait for it: the writer applies jobs in
          the order they were queued, so every later execute, grant or reject sees it, and reads
          see it at once (the writer's shadow of the record, until its commit lands).

        With "applied" or "queued" a crash before the commit loses the preflight, and its execute
        then answers 404 — nothing was executed or receipted on it."""
        req = parse_action(body)
        self._check_evidence(tenant, req)
        pf = self._new_preflight(key, tenant, req, self._decide(key, tenant, req, use_cache))
        row = _pf_key(tenant.num, pf["preflight_id"])
        raw = orjson.dumps(pf)
        job = self._store_job(tenant.num, pf, raw)
        if ack == "durable":
            await asyncio.wrap_future(self.writer.submit(job, coalesce=True))
        else:  # answered before its commit: reads see it until then through the writer's shadow
            done = self.writer.submit(job, durable=False, shadow={("preflights", row): raw}, coalesce=True)
            if ack == "applied":
                await asyncio.wrap_future(done)
        return self._preflight_answer(pf)

    # ---- execute ---------------------------------------------------------------------------------
    def _check_executable(self, pf: dict[str, Any], req: ActionRequest, now: float) -> None:
        if pf["request_hash"] != req.request_hash:
            raise ConflictError("request does not match the preflight",
                                {"expected": pf["request_hash"], "actual": req.request_hash})
        if pf["status"] == "executed":
            raise ConflictError("preflight already executed", {"receipt_id": pf["execution"]["receipt_id"]})
        if now > pf["expires_ts"]:
            raise GoneError("preflight expired", {"expires_at": pf["expires_at"]})
        if pf["decision"] != "allow":
            raise ForbiddenError("the policy denied this action", {"reasons": pf["reasons"]})
        if pf["status"] == "rejected":
            raise ForbiddenError("an approver rejected this action", {"rejection": pf["rejection"]})
        need = _required_approvers(pf["obligations"])
        if len(pf["approvals"]) < need:
            raise ForbiddenError("dual control: approvals missing",
                                 {"required_approvers": need, "approvals": len(pf["approvals"])})

    def _evidence_of(self, txn: Txn, tenant: int, req: ActionRequest) -> list[dict[str, Any]]:
        """The receipt's `evidence` of the hashes `req` names; 422 for one the tenant has not uploaded."""
        if not req.evidence:
            return []
        if self.evidence is None:
            raise InvalidArgumentError("this server stores no evidence", {"field": "evidence"})
        return self.evidence.resolve(txn, tenant, list(req.evidence))

    def _check_evidence(self, tenant: Tenant, req: ActionRequest) -> None:
        """422 for evidence the tenant has not uploaded (checked again when the action executes)."""
        if req.evidence:
            with self.store.read() as txn:
                self._evidence_of(txn, tenant.num, req)

    def _effect(self, req: ActionRequest) -> Callable[[Txn, int], tuple[Any, Callable[[], None] | None]]:
        """Validate the effect now (bad input writes nothing); return what applies it in the transaction."""
        if req.action == "graph.write":
            if not isinstance(req.payload, dict):
                raise BadRequestError("graph.write needs edges in payload")
            batch = parse_edges(req.payload)
            return lambda txn, t: ({"written": len(batch)}, self.graph.stage_edges(txn, t, batch))
        if req.action == "graph.delete":
            dbatch = parse_delete(req.payload)
            return lambda txn, t: self.graph.stage_delete(txn, t, dbatch)
        return lambda txn, t: ({"payload_hash": hash_hex(req.payload)}, None)

    def _execute_job(self, tenant: Tenant, pf_id: str | None, new_pf: dict[str, Any] | None, req: ActionRequest,
                     idem: bytes | None) -> Callable[[Txn], tuple[dict[str, Any], Callable[[], None]]]:
        effect = self._effect(req)
        receipt_id = uuid7()

        def job(txn: Txn) -> tuple[dict[str, Any], Callable[[], None]]:
            now = time.time()
            fresh: Fresh = []
            if idem is not None:
                first = txn.get(idem, db=self.store.db("idempotency"))
                if first is not None:
                    answer = orjson.loads(first)
                    if answer["preflight_id"] != (pf_id or ""):
                        raise ConflictError("Idempotency-Key already used for another preflight")
                    return answer["response"], lambda: None
            pf = new_pf if new_pf is not None else self._load(txn, tenant.num, pf_id or "")
            self._check_executable(pf, req, now)  # again inside the transaction: no double execution
            evidence = self._evidence_of(txn, tenant.num, req)  # stored still: a purge may have come between
            if evidence and self.evidence is not None:  # referenced now: the items are young again
                self.evidence.touch(txn, tenant.num, list(req.evidence), int(now * 1e6))
            result, publish = effect(txn, tenant.num)
            intent = {
                "receipt_id": receipt_id, "tenant_id": tenant.tenant_id, "executed_at": rfc3339(now),
                "actor": pf["actor"], "action": pf["action"], "resource": pf["resource"], "policy": pf["policy"],
                "preflight_id": pf["preflight_id"], "request_hash": pf["request_hash"],
                "result_hash": hash_hex(result), "approvals": pf["approvals"], "evidence": evidence,
            }
            self.issuer.put_intent(txn, tenant.num, intent, now)
            pf = {**pf, "status": "executed",
                  "execution": {"receipt_id": receipt_id, "executed_at": intent["executed_at"], "result": result}}
            if idem is not None:  # swept with the preflight
                pf["idempotency_row"] = idem.hex()
            self._put(txn, tenant.num, pf, fresh)
            response = {"receipt_id": receipt_id, "status": "executed", "preflight_id": pf["preflight_id"],
                        "result_hash": intent["result_hash"]}
            if idem is not None:
                txn.put(idem, orjson.dumps({"preflight_id": pf_id or "", "response": response}),
                        db=self.store.db("idempotency"))

            def after() -> None:
                self.records.committed(fresh)
                if publish is not None:
                    publish()
                self.issuer.notify()

            return response, after

        return job

    def submit_execute(self, key: KeyRecord, tenant: Tenant, preflight_id: str, body: Any,
                       idempotency_key: str | None) -> Future[dict[str, Any]]:
        """Check the request (errors raise here) and queue its execution; the future resolves with
        the answer once the effect and the receipt intent are durable (or at once for a repeated
        Idempotency-Key)."""
        req = parse_action(body)
        idem = None
        if idempotency_key is not None:
            idem = tenant_prefix(tenant.num) + blake3.blake3(idempotency_key.encode()).digest()
        with self.store.read() as txn:
            pf = self._visible(txn, tenant.num, preflight_id)  # 404 before anything else
            first = txn.get(idem, db=self.store.db("idempotency")) if idem is not None else None
        if first is not None and orjson.loads(first)["preflight_id"] == preflight_id:
            done: Future[dict[str, Any]] = Future()
            done.set_result(orjson.loads(first)["response"])
            return done
        self._check_executable(pf, req, time.time())
        return self.writer.submit(self._execute_job(tenant, preflight_id, None, req, idem), coalesce=True)

    # ---- approvals -------------------------------------------------------------------------------
    def submit_review(self, key: KeyRecord, tenant: Tenant, preflight_id: str, grant: bool
                      ) -> Future[dict[str, Any]]:
        """Queue a grant or reject by `key`'s actor (each is itself a receipt); the future resolves
        with the answer once it is durable."""
        receipt_id = uuid7()

        def job(txn: Txn) -> tuple[dict[str, Any], Callable[[], None]]:
            now = time.time()
            fresh: Fresh = []
            pf = self._load(txn, tenant.num, preflight_id)
            need = _required_approvers(pf["obligations"])
            if need == 0:
                raise ConflictError("this action needs no approval", {"preflight_id": preflight_id})
            if pf["status"] != "pending":
                raise ConflictError(f"preflight is {pf['status']}", {"status": pf["status"]})
            if now > pf["expires_ts"]:
                raise GoneError("preflight expired", {"expires_at": pf["expires_at"]})
            if key.actor == pf["actor"]["id"]:
                raise ForbiddenError("the requester cannot approve their own action", {"actor": key.actor})
            if any(a["actor"] == key.actor for a in pf["approvals"]):
                raise ConflictError("this approver has already granted", {"actor": key.actor})
            at = rfc3339(now)
            entry = {"actor": key.actor, "at": at, "receipt_id": receipt_id}
            if grant:
                pf["approvals"] = [*pf["approvals"], entry]
                status = "approved" if len(pf["approvals"]) >= need else "pending_approval"
            else:
                pf["status"], pf["rejection"] = "rejected", entry
                status = "rejected"
            self._put(txn, tenant.num, pf, fresh)
            intent = {
                "receipt_id": receipt_id, "tenant_id": tenant.tenant_id, "executed_at": at,
                "actor": {"id": key.actor, "roles": list(key.roles)},
                "action": "approval.grant" if grant else "approval.reject", "resource": pf["resource"],
                "policy": pf["policy"], "preflight_id": preflight_id, "request_hash": pf["request_hash"],
                "result_hash": hash_hex({"preflight_id": preflight_id, "grant": grant, "actor": key.actor}),
                "approvals": [], "evidence": [],
            }
            self.issuer.put_intent(txn, tenant.num, intent, now)

            def after() -> None:
                self.records.committed(fresh)
                self.issuer.notify()

            return ({"preflight_id": preflight_id, "receipt_id": receipt_id, "status": status,
                     "approvals": len(pf["approvals"]), "required_approvers": need}, after)

        return self.writer.submit(job, coalesce=True)

    def get_preflight(self, tenant: Tenant, preflight_id: str) -> dict[str, Any]:
        with self.store.read() as txn:
            pf = self._visible(txn, tenant.num, preflight_id)
        return {**self._preflight_answer(pf), "status": pf["status"], "approvals": pf["approvals"],
                "execution": pf["execution"], "actor": pf["actor"]}

    # ---- retention -------------------------------------------------------------------------------
    def stored(self) -> int:
        """Preflights in the store: pending, executed or expired, until swept."""
        return self.store.entries("preflights")

    async def sweep(self, now: float | None = None, budget: int = 256) -> int:
        """Remove every preflight that expired more than `preflight_retention_s` before `now`, with the
        Idempotency-Key row of its execute; returns how many. Runs as write jobs of at most `budget`
        rows looked at each, so a sweep never holds a commit group long.

        Rows are keyed tenant + UUIDv7 (creation order within a tenant): a tenant's scan stops at the
        first row created after the horizon (`now - retention`), since every later row expires later
        than that; rows before it are removed only when their own `expires_ts` says so."""
        now = time.time() if now is None else now
        start: bytes | None = b""
        removed = 0
        while start is not None:
            n, start = await asyncio.wrap_future(self.writer.submit(self._sweep_job(start, now, budget)))
            removed += n
        self.swept += removed
        return removed

    def _sweep_job(self, start: bytes, now: float, budget: int
                   ) -> Callable[[Txn], tuple[tuple[int, bytes | None], None]]:
        horizon = now - self.preflight_retention_s
        horizon_ms = int(horizon * 1000)

        def job(txn: Txn) -> tuple[tuple[int, bytes | None], None]:
            cur = txn.cursor(db=self.db)
            idempotency = self.store.db("idempotency")
            removed = 0
            if not cur.set_range(start):
                return (0, None), None
            for _ in range(budget):
                key = bytes(cur.key())
                if not key:  # past the last row
                    return (removed, None), None
                if int.from_bytes(key[4:10], "big") > horizon_ms:  # created after the horizon: next tenant
                    tenant = int.from_bytes(key[:4], "big")
                    if tenant == 0xFFFFFFFF or not cur.set_range(tenant_prefix(tenant + 1)):
                        return (removed, None), None
                    continue
                record = self._parse(int.from_bytes(key[:4], "big"), cur.value(), str(uuid.UUID(bytes=key[4:20])))
                if record["expires_ts"] + self.preflight_retention_s < now:
                    if record.get("idempotency_row"):
                        txn.delete(bytes.fromhex(record["idempotency_row"]), db=idempotency)
                    removed += 1
                    if not cur.delete():  # moves to the next row
                        return (removed, None), None
                elif not cur.next():
                    return (removed, None), None
            return (removed, bytes(cur.key()) or None), None

        return job

    def _store_job(self, tenant: int, pf: dict[str, Any], raw: bytes | None = None
                   ) -> Callable[[Txn], tuple[None, Callable[[], None]]]:
        def job(txn: Txn) -> tuple[None, Callable[[], None]]:
            fresh: Fresh = []
            self._put(txn, tenant, pf, fresh, raw)
            return None, lambda: self.records.committed(fresh)

        return job

    def _store_preflight(self, tenant: Tenant, pf: dict[str, Any], coalesce: bool) -> Future[Any]:
        return self.writer.submit(self._store_job(tenant.num, pf), coalesce=coalesce)

    # ---- batch -----------------------------------------------------------------------------------
    async def batch(self, key: KeyRecord, tenant: Tenant, body: Any, use_cache: bool,
                    concurrent: bool, cpu: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """Preflight + execute for every item in one round trip; each item is atomic on its own.

        `concurrent` (flag orchestration.batching): every item's job is queued at once, so the group
        commit writes them in a few transactions; off, items run one after another (the baseline).
        With `cpu` (a bulk batch under fair scheduling), items are prepared BATCH_SLICE at a time,
        the loop answering other requests in between, and the loop CPU of preparing them is reported
        to it.
        """
        if not isinstance(body, dict) or not isinstance(body.get("actions"), list):
            raise BadRequestError('expected {"actions": [...]}')
        items = body["actions"]
        if not 1 <= len(items) <= MAX_BATCH:
            raise BadRequestError(f"a batch holds 1 to {MAX_BATCH} actions", {"count": len(items)})
        results: list[dict[str, Any] | None] = [None] * len(items)
        # A stored denied/pending preflight's job answers None, an execution's the receipt fields.
        queued: list[tuple[int, Future[dict[str, Any] | None]]] = []

        async def finish(i: int, fut: Future[dict[str, Any] | None]) -> None:
            try:
                value = await asyncio.wrap_future(fut)
            except ProvgraphError as exc:
                results[i] = exc.to_json()
                return
            if value is not None:  # an execution (a stored denied/pending preflight answers None)
                results[i] = {"receipt_id": value["receipt_id"], "preflight_id": value["preflight_id"],
                              "result_hash": value["result_hash"]}

        clock = time.thread_time_ns
        c0 = clock() if cpu is not None else 0
        for i, item in enumerate(items):
            fut: Future[dict[str, Any] | None]
            if cpu is not None and i and i % BATCH_SLICE == 0:
                cpu(clock() - c0)
                await asyncio.sleep(0)  # a slice prepared: others' requests go first
                c0 = clock()
            try:
                req = parse_action(item)
                self._check_evidence(tenant, req)
                pf = self._new_preflight(key, tenant, req, self._decide(key, tenant, req, use_cache))
                if pf["decision"] != "allow":
                    results[i] = {"error": {"code": "forbidden", "message": "the policy denied this action",
                                            "details": {"reasons": pf["reasons"], "preflight_id": pf["preflight_id"]}}}
                    fut = self._store_preflight(tenant, pf, concurrent)
                elif _required_approvers(pf["obligations"]) > 0:
                    results[i] = {"status": "pending_approval", "preflight_id": pf["preflight_id"]}
                    fut = self._store_preflight(tenant, pf, concurrent)
                else:
                    fut = self.writer.submit(self._execute_job(tenant, None, pf, req, None), coalesce=concurrent)
            except ProvgraphError as exc:
                results[i] = exc.to_json()
                continue
            if concurrent:
                queued.append((i, fut))
            else:
                if cpu is not None:
                    cpu(clock() - c0)
                await finish(i, fut)
                if cpu is not None:
                    c0 = clock()
        if cpu is not None:
            cpu(clock() - c0)
        for i, fut in queued:
            await finish(i, fut)
        return [r if r is not None else {"error": {"code": "internal_error", "message": "no result"}}
                for r in results]
