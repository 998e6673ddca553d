"""Tenants and API keys: creation, hashing, and the scope checks every request goes through."""

from provgraph.tenancy.registry import SCOPES, KeyRecord, Registry, Tenant

__all__ = ["SCOPES", "KeyRecord", "Registry", "Tenant"]
