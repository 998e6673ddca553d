"""The HTTP service: an aiohttp app that only translates HTTP to calls of the area modules."""

from provgraph.service.app import create_app

__all__ = ["create_app"]
