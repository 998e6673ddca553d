"""Compact stored records (flag records.storage; docs/storage.md "Compact records"): each tenant's
record dictionaries, loaded from the table record_dict, around the Rust forms of preflights and
decision log entries (provgraph_core::records, `_core.RecordCodec`).

A compact record starts with the byte 1, never ``{``, so a reader tells it from a JSON record by
its first byte and both forms live in one table; a record the form cannot hold exactly (an
unknown field, an unusual value) is stored as JSON. Keys of record_dict: ``tenant | kind | id``
(4 + 1 + 4 bytes BE) -> the entry's value (a JSON text); ``kind`` is ``p`` (preflights) or ``d``
(the decision log), each with its own ids. An entry is written with every record that uses it
until one of them commits (`RecordCodecs.committed`, from the job's post-commit step), so a
rolled-back job or group never leaves a stored record pointing at an entry that is not stored.
"""

from __future__ import annotations

import struct
import threading

from provgraph._core import RecordCodec
from provgraph.store.env import Store, Txn
from provgraph.store.keys import scan_prefix, tenant_prefix

__all__ = ["Fresh", "RecordCodecs"]

_ID = struct.Struct(">I")

# entries written by a job, per tenant: handed to RecordCodecs.committed once its group commits
Fresh = list[tuple[int, list[int]]]


class RecordCodecs:
    """The record dictionaries of one kind of record (b"p": preflights, b"d": decision log), one
    per tenant, each loaded from the table on first use."""

    def __init__(self, store: Store, kind: bytes) -> None:
        self.store, self.kind = store, kind
        self.db = store.db("record_dict")
        self._codecs: dict[int, RecordCodec] = {}
        self._lock = threading.Lock()

    def of(self, tenant: int) -> RecordCodec:
        codec = self._codecs.get(tenant)
        if codec is not None:
            return codec
        with self._lock:
            codec = self._codecs.get(tenant)
            if codec is None:  # what is committed: entries are only ever written through this codec
                prefix = tenant_prefix(tenant) + self.kind
                with self.store.read() as txn:
                    entries = [(_ID.unpack(k[5:])[0], v) for k, v in scan_prefix(txn.cursor(db=self.db), prefix)]
                codec = self._codecs[tenant] = RecordCodec(entries)
        return codec

    def stored(self, txn: Txn, tenant: int, got: tuple[bytes, list[tuple[int, bytes]]] | None, raw: bytes,
               fresh: Fresh) -> bytes:
        """What to store for a record whose encode answered `got`: its compact form, the dictionary
        entries it needs written in `txn` (noted in `fresh`), or its JSON `raw` where there is no form."""
        if got is None:
            return raw
        form, entries = got
        if entries:
            prefix = tenant_prefix(tenant) + self.kind
            txn.cursor(db=self.db).putmulti([(prefix + _ID.pack(i), v) for i, v in entries])
            fresh.append((tenant, [i for i, _ in entries]))
        return form

    def committed(self, fresh: Fresh) -> None:
        for tenant, ids in fresh:
            self.of(tenant).stored(ids)
