"""Embedded LMDB storage: one environment, a sub-database per table, tenant-prefixed keys."""

from provgraph.store.env import Store, Txn, Writer
from provgraph.store.keys import decode_node_key, node_key, tenant_prefix

__all__ = ["Store", "Txn", "Writer", "decode_node_key", "node_key", "tenant_prefix"]
