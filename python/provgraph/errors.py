"""The exceptions of provgraph, defined once: each carries its HTTP status and error code."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackupError",
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "FormatVersionError",
    "InvalidArgumentError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProvgraphError",
    "PurgedError",
    "RateLimitedError",
    "UnauthorizedError",
    "UnknownNodeError",
    "UnknownTenantError",
    "UnsupportedMediaTypeError",
]


class ProvgraphError(Exception):
    """Base of every provgraph error; `status` and `code` give the HTTP answer."""

    status: int = 500
    code: str = "internal_error"
    # response headers the answer carries besides the JSON body (e.g. Retry-After)
    headers: dict[str, str] = {}  # noqa: RUF012 — read-only default, replaced per instance when set

    def __init__(self, message: str = "", details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message or self.code.replace("_", " ")
        self.details = details or {}

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequestError(ProvgraphError, ValueError):
    status, code = 400, "bad_request"


class UnauthorizedError(ProvgraphError):
    status, code = 401, "unauthorized"


class ForbiddenError(ProvgraphError):
    status, code = 403, "forbidden"


class NotFoundError(ProvgraphError, LookupError):
    status, code = 404, "not_found"


class PurgedError(ProvgraphError):
    """Evidence removed by a purge: its manifest (in `details`) proves what was removed, and when."""

    status, code = 410, "purged"


class ConflictError(ProvgraphError):
    status, code = 409, "conflict"


class PayloadTooLargeError(ProvgraphError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaTypeError(ProvgraphError):
    status, code = 415, "unsupported_media_type"


class RateLimitedError(ProvgraphError):
    """Over the tenant's quota (rps and burst): 429 with Retry-After, the whole seconds until a
    token is back; nothing of the request was done."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after_s: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, {**(details or {}), "retry_after_s": retry_after_s})
        self.headers = {"Retry-After": str(retry_after_s)}


class InvalidArgumentError(ProvgraphError, ValueError):
    """A well-formed request whose values are invalid (the native core raises it too)."""

    status, code = 422, "invalid_value"


class FormatVersionError(ProvgraphError):
    """A data dir this code must not open: written by a newer release, or its version unreadable."""

    status, code = 500, "format_version"


class BackupError(ProvgraphError):
    """A backup archive that cannot be restored (corrupt, incomplete, not a backup) or a bad target."""

    status, code = 400, "bad_backup"


class UnknownNodeError(NotFoundError, KeyError):
    """A seed, source or destination node the tenant does not have (raised by the native core)."""

    code = "unknown_node"

    def __init__(self, node: Any = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"unknown node {node}", details or {"node": node})
        self.node = node

    def __str__(self) -> str:
        return self.message


class UnknownTenantError(NotFoundError):
    code = "unknown_tenant"


class BundleError(BadRequestError):
    """An OPA bundle that cannot be accepted; `details` names the file and the reason."""

    code = "bundle_invalid"


__all__ += ["BundleError"]


class PolicyCompileError(BundleError):
    """Rego that does not parse or compile, or a bad data document; the message names
    file:line:col (raised by the native core)."""


class PolicyEvalError(ProvgraphError):
    """A policy evaluation that failed, e.g. a complete rule with two different values (raised
    by the native core); the decision endpoint fails closed on it."""

    status, code = 500, "policy_eval_error"


__all__ += ["PolicyCompileError", "PolicyEvalError"]


class OverloadedError(ProvgraphError):
    """Load-dependent refusal: the tenant's heavy-work queue is full, or a query ran past its time
    budget. 503 with Retry-After; nothing was written."""

    status, code = 503, "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, {**(details or {}), "retry_after_s": retry_after_s})
        self.headers = {"Retry-After": str(retry_after_s)}


class TimeBudgetError(OverloadedError):
    """A graph query that ran past its time budget (raised by the native core)."""

    def __init__(self, *_: Any) -> None:
        super().__init__("query ran past its time budget", 1, {"reason": "time_budget"})


class WorkCapError(InvalidArgumentError):
    """A traversal that reached more nodes than the server's work cap (raised by the native core):
    deterministic, so 422, naming the cap; narrower depth, limit or type filters fit under it."""

    code = "work_cap"

    def __init__(self, cap: Any = None) -> None:
        super().__init__(f"query reached more than {cap} nodes, the server's work cap (--max-visited)",
                         {"cap": cap, "reason": "work_cap"})
        self.cap = cap


__all__ += ["OverloadedError", "TimeBudgetError", "WorkCapError"]
