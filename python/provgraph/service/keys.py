"""Typed application state keys, kept in one place."""

from __future__ import annotations

from aiohttp import web

from provgraph.actions.audit import Audit
from provgraph.actions.manager import ActionManager
from provgraph.actions.pipeline import Issuer, ReceiptLog
from provgraph.actions.signing import KeyRing
from provgraph.config import Config
from provgraph.evidence.purge import Purger
from provgraph.evidence.store import EvidenceStore
from provgraph.graph.manager import GraphManager
from provgraph.policy.manager import PolicyManager
from provgraph.service.admission import Admission
from provgraph.service.metrics import Metrics
from provgraph.service.scheduling import Scheduler
from provgraph.store import Store, Writer
from provgraph.tenancy import Registry

__all__ = [
           "ACTIONS",
           "ADMISSION",
           "AUDIT",
           "CONFIG",
           "EVIDENCE",
           "GENERATED_ADMIN_KEY",
           "GRAPH",
           "ISSUER",
           "KEYRING",
           "METRICS",
           "POLICY",
           "PURGER",
           "READY",
           "RECEIPTS",
           "REGISTRY",
           "SCHEDULER",
           "STORE",
           "WRITER",
]

CONFIG = web.AppKey("config", Config)
ADMISSION = web.AppKey("admission", Admission)
SCHEDULER = web.AppKey("scheduler", Scheduler)
STORE = web.AppKey("store", Store)
WRITER = web.AppKey("writer", Writer)
REGISTRY = web.AppKey("registry", Registry)
GRAPH = web.AppKey("graph", GraphManager)
POLICY = web.AppKey("policy", PolicyManager)
ACTIONS = web.AppKey("actions", ActionManager)
AUDIT = web.AppKey("audit", Audit)
EVIDENCE = web.AppKey("evidence", EvidenceStore)
PURGER = web.AppKey("purger", Purger)
ISSUER = web.AppKey("issuer", Issuer)
KEYRING = web.AppKey("keyring", KeyRing)
RECEIPTS = web.AppKey("receipts", ReceiptLog)
METRICS = web.AppKey("metrics", Metrics)
READY = web.AppKey("ready", dict)
GENERATED_ADMIN_KEY = web.AppKey("generated_admin_key", str)
