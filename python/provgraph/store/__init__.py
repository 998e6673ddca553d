"""Embedded LMDB storage: one environment, a sub-database per table, tenant-prefixed keys."""

from provgraph.store.env import Store, Writer
from provgraph.store.keys import node_key, tenant_prefix, decode_node_key

__all__ = ["Store", "Writer", "node_key", "tenant_prefix", "decode_node_key"]
