"""Admission: each tenant with a quota has a token bucket (rps, burst); a request that finds it empty is
answered 429 `rate_limited` with Retry-After before anything of it runs. Tenants without a quota, and
the health, metrics and admin routes (they never reach `admit`), are not limited. Flag admission.quota
(on: enforced, off: every request admitted, the baseline)."""

from __future__ import annotations

import math
import time

from provgraph.errors import RateLimitedError
from provgraph.service.scheduling import Account, Activity
from provgraph.tenancy.registry import Tenant

__all__ = ["Admission"]


class Admission:
    """Token buckets per tenant, refilled lazily from the monotonic clock on each request (no timer):
    `tokens = min(burst, tokens + elapsed * rps)`, one token per admitted request. Runs on the event
    loop only (no lock). A quota change takes effect on the tenant's next request: the bucket keeps
    its tokens, capped to the new burst."""

    def __init__(self, activity: Activity | None = None) -> None:
        self.enabled = True
        self.activity = activity or Activity()  # every tenant's requests in flight (the signals' harm)
        # tenant_id -> [tokens, monotonic time of the last refill]
        self._buckets: dict[str, list[float]] = {}
        self.throttled: dict[str, int] = {}  # tenant_id -> requests answered 429
        self.inflight: dict[str, int] = {}  # tenant_id -> admitted requests not answered yet

    def set_enabled(self, value: str) -> None:
        """Follow flag admission.quota ("on" | "off"); turning it on starts every bucket full."""
        enabled = value == "on"
        if enabled and not self.enabled:
            self._buckets.clear()
        self.enabled = enabled

    def admit(self, tenant: Tenant, account: Account | None = None) -> None:
        """Take one token of `tenant`'s bucket, or raise RateLimitedError (429, Retry-After: the whole
        seconds until one is back). With the request's `account`, also take one of the tenant's
        `concurrency` slots (429 when none is free), which `account.release()` gives back when the
        request is answered. The account's request counts as its tenant's work in flight from here
        until `account.release()`, whether it is admitted or not."""
        if account is not None:
            account.begin(tenant.tenant_id, self.activity)
        quota = tenant.quota
        if quota is None or not self.enabled:
            return
        tid = tenant.tenant_id
        if account is not None and self.inflight.get(tid, 0) >= quota.concurrency:
            self.throttled[tid] = self.throttled.get(tid, 0) + 1
            raise RateLimitedError(f"tenant {tid!r} has its quota of {quota.concurrency} requests in flight",
                                   1, {"tenant_id": tid, "reason": "concurrency"})
        now = time.monotonic()
        bucket = self._buckets.get(tenant.tenant_id)
        if bucket is None:
            bucket = self._buckets[tenant.tenant_id] = [float(quota.burst), now]
        tokens = min(float(quota.burst), bucket[0] + (now - bucket[1]) * quota.rps)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            self.throttled[tenant.tenant_id] = self.throttled.get(tenant.tenant_id, 0) + 1
            retry = max(1, math.ceil((1.0 - tokens) / quota.rps))
            raise RateLimitedError(f"tenant {tenant.tenant_id!r} is over its quota of {quota.rps:g} requests/s "
                                   f"(burst {quota.burst})", retry, {"tenant_id": tenant.tenant_id})
        bucket[0] = tokens - 1.0
        if account is not None:
            self.inflight[tid] = self.inflight.get(tid, 0) + 1
            account.release_fn = lambda: self._release(tid)

    def _release(self, tid: str) -> None:
        left = self.inflight.get(tid, 0) - 1
        if left > 0:
            self.inflight[tid] = left
        else:
            self.inflight.pop(tid, None)
