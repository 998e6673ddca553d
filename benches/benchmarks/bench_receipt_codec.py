"""asv: receipt compaction (issue 16): the compact codec on an R1 sample (provgraph.bench.storage's
corpus, one tenant's chain of 2,000 signed receipts), encode and reconstruct of the whole chain in one
batched call each, with a warm dictionary (steady state), and the compact bytes per receipt."""

from __future__ import annotations

from typing import Any


class ReceiptCodec:
    def setup(self) -> None:
        from provgraph._core import ReceiptCodec as Codec
        from provgraph.bench.storage import r1_corpus

        corpus = r1_corpus(2000, seed=1, tenants=1)
        self.rows = [(json, seq) for seq, json in next(iter(corpus.values()))]
        self.codec: Any = Codec()
        forms, _, _ = self.codec.encode("", self.rows)  # the dictionary warm, as on a running server
        self.forms = [(form, seq) for form, (_, seq) in zip(forms, self.rows, strict=True)]
        self.form_bytes = sum(len(f) for f, _ in self.forms)

    def time_encode_2000(self) -> None:
        self.codec.encode("", self.rows)

    def time_reconstruct_2000(self) -> None:
        self.codec.decode_many("", self.forms)

    def track_compact_bytes_per_receipt(self) -> float:
        return self.form_bytes / len(self.forms)

    track_compact_bytes_per_receipt.unit = "bytes"  # type: ignore[attr-defined]
