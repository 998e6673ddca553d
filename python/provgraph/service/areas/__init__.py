"""The service's areas, each set up by one `setup_<area>(app)` that owns its routes, its start-up and
its clean-up; `provgraph.service.app.create_app` calls them in the order their contexts must start."""

from provgraph.service.areas.actions import setup_actions
from provgraph.service.areas.admin import setup_admin
from provgraph.service.areas.evidence import setup_evidence
from provgraph.service.areas.graph import setup_graph
from provgraph.service.areas.health import setup_health
from provgraph.service.areas.policy import setup_policy
from provgraph.service.areas.storage import setup_storage

__all__ = ["setup_actions", "setup_admin", "setup_evidence", "setup_graph", "setup_health", "setup_policy",
           "setup_storage"]
