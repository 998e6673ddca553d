"""provgraph: the governed hot path of a multi-tenant intelligence-graph platform."""

from provgraph._core import CsrGraph

__all__ = ["CsrGraph", "__version__"]
__version__ = "0.1.0"
