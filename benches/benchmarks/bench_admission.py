"""asv: the cost admission adds to every tenant request (issue target: <= 2 µs in-process), with a quota
(a token-bucket refill and take) and without one (the check that there is none)."""

from __future__ import annotations


class Admission:
    def setup(self) -> None:
        from provgraph.service.admission import Admission as Adm
        from provgraph.tenancy.quota import Quota
        from provgraph.tenancy.registry import Tenant

        self.admission = Adm()
        # a bucket that never runs dry, so every call is an admitted request
        self.limited = Tenant("t", 1, 0.0, Quota(rps=1e6, burst=1_000_000, concurrency=64, weight=1))
        self.free = Tenant("f", 2, 0.0)

    def time_admit_with_quota(self) -> None:
        self.admission.admit(self.limited)

    def time_admit_without_quota(self) -> None:
        self.admission.admit(self.free)
