"""asv: the cost admission adds to every tenant request (issue target: <= 2 µs in-process), with a quota
(a token-bucket refill and take, a concurrency slot taken and given back) and without one (the check
that there is none), both with the request counted in flight and ended (the signals' activity); and the per-request CPU accounting of fair scheduling (an Account opened, paused
and resumed over one wait, and charged to its tenant)."""

from __future__ import annotations


class Admission:
    def setup(self) -> None:
        from provgraph.service.admission import Admission as Adm
        from provgraph.service.scheduling import Account, Scheduler
        from provgraph.tenancy.quota import Quota
        from provgraph.tenancy.registry import Tenant

        self.admission = Adm()
        # a bucket that never runs dry, so every call is an admitted request
        self.limited = Tenant("t", 1, 0.0, Quota(rps=1e6, burst=1_000_000, concurrency=64, weight=1))
        self.free = Tenant("f", 2, 0.0)
        self.account = Account()
        self.Account = Account
        self.scheduler = Scheduler(workers=0)

    def time_admit_with_quota(self) -> None:
        self.admission.admit(self.limited, self.account)
        self.account.release()

    def time_admit_without_quota(self) -> None:
        self.admission.admit(self.free, self.account)
        self.account.release()

    def time_account_request(self) -> None:
        account = self.Account()
        account.tenant = "t"
        account.pause()
        account.resume()
        self.scheduler.charge(account, 0.001)
