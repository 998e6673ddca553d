"""Typed stub of the native module `provgraph._core` (Rust, built by maturin from rust/provgraph-py)."""

from collections.abc import Iterable
from typing import Any, Literal, TypeAlias, final, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "CsrGraph",
    "TypeSet",
    "__version__",
    "canonical_hash",
    "canonical_hashes",
    "canonicalize",
    "canonicalize_json",
]

__version__: str

def canonicalize(obj: object) -> bytes:
    """RFC 8785 (JCS) canonical UTF-8 bytes of `obj`: dict, list, tuple, str, int, float, bool, None.

    Dict members are sorted by the UTF-16 code units of their names; no whitespace; strings
    escape only `"`, `\\` and controls below U+0020; numbers are IEEE-754 doubles printed as
    ECMAScript's Number.prototype.toString (ints beyond +/-2**53 are rounded to the nearest
    double, as JCS has no integers). Tuples count as arrays. NaN/Infinity, non-str dict keys,
    lone surrogates, nesting deeper than 127 and any other type raise
    `provgraph.errors.InvalidArgumentError` (a `ValueError`).
    """

def canonicalize_json(data: bytes) -> bytes:
    """Parse JSON text and return its RFC 8785 canonical bytes (the GIL is released).

    Malformed text, duplicate member names, lone surrogate escapes and numbers outside the
    double range raise `provgraph.errors.InvalidArgumentError` (a `ValueError`).
    """

def canonical_hash(obj: object) -> bytes:
    """The 32-byte BLAKE3 digest of `canonicalize(obj)`."""

def canonical_hashes(objs: Iterable[object]) -> list[bytes]:
    """`[canonical_hash(o) for o in objs]` in one call (lists and tuples are read directly).

    Saves the per-call overhead when hashing many keys; the first invalid item raises
    `provgraph.errors.InvalidArgumentError` with its index (`objs[i]: ...`).
    """

@final
class TypeSet:
    """A set of edge or node type codes (0..255), built once and passed to a query in place of a
    list (`edge_types=TypeSet([0, 1, 2, 3, 4])`), so a filter repeated on every call is not
    converted on every call. A code outside 0..255 raises `InvalidArgumentError`."""

    def __new__(cls, types: list[int]) -> TypeSet: ...
    def __contains__(self, t: int, /) -> bool: ...

_Types: TypeAlias = list[int] | TypeSet

@final
class CsrGraph:
    """One tenant's graph: an immutable CSR snapshot plus a delta overlay.

    Every write is visible to the next query (read-your-writes); `rebuild()` merges the
    overlay into a fresh snapshot (ids renumbered hubs first, rows sorted by weight) and
    swaps it in atomically while writes continue. Thread-safe; queries and writes release
    the GIL. Unknown seeds raise `provgraph.errors.UnknownNodeError` (a `KeyError`), bad
    arguments `provgraph.errors.InvalidArgumentError` (a `ValueError`). Semantics:
    docs/queries.md.
    """

    @staticmethod
    def from_edges(
        src: npt.NDArray[np.int64],
        dst: npt.NDArray[np.int64],
        w: npt.NDArray[np.float32],
        etype: npt.NDArray[np.uint8],
        nodes: npt.NDArray[np.int64] | None = None,
        node_types: npt.NDArray[np.uint8] | None = None,
    ) -> CsrGraph:
        """Build from edge columns (duplicate pairs: last wins) plus optional isolated/typed nodes."""

    @staticmethod
    def empty() -> CsrGraph:
        """A graph with no nodes."""

    @overload
    def topn(self, seed: int, n: int = 10, hops: int = 2, edge_types: _Types | None = None,
             node_types: _Types | None = None, explain: Literal[False] = False) -> list[tuple[int, float]]:
        """Q1: the n strongest nodes within `hops` (1 or 2) out-edges; score = max product of weights."""
    @overload
    def topn(self, seed: int, n: int = 10, hops: int = 2, edge_types: _Types | None = None,
             node_types: _Types | None = None, *,
             explain: Literal[True]) -> tuple[list[tuple[int, float]], dict[str, int]]: ...
    @overload
    def topn(self, seed: int, n: int = 10, hops: int = 2, edge_types: _Types | None = None,
             node_types: _Types | None = None, explain: bool = False
             ) -> list[tuple[int, float]] | tuple[list[tuple[int, float]], dict[str, int]]: ...

    @overload
    def neighborhood_size(self, seed: int, depth: int = 3, limit: int = 50000,
                          edge_types: _Types | None = None, node_types: _Types | None = None,
                          explain: Literal[False] = False) -> int:
        """Q2: distinct nodes at distance 1..depth over out-edges, capped at `limit`."""
    @overload
    def neighborhood_size(self, seed: int, depth: int = 3, limit: int = 50000,
                          edge_types: _Types | None = None, node_types: _Types | None = None, *,
                          explain: Literal[True]) -> tuple[int, dict[str, int]]: ...
    @overload
    def neighborhood_size(self, seed: int, depth: int = 3, limit: int = 50000,
                          edge_types: _Types | None = None, node_types: _Types | None = None,
                          explain: bool = False) -> int | tuple[int, dict[str, int]]: ...

    @overload
    def path(self, src: int, dst: int, max_depth: int = 4, edge_types: _Types | None = None,
             explain: Literal[False] = False) -> list[int] | None:
        """Q3: the lexicographically smallest shortest path of at most `max_depth` edges, or None."""
    @overload
    def path(self, src: int, dst: int, max_depth: int = 4, edge_types: _Types | None = None, *,
             explain: Literal[True]) -> tuple[list[int] | None, dict[str, int]]: ...
    @overload
    def path(self, src: int, dst: int, max_depth: int = 4, edge_types: _Types | None = None,
             explain: bool = False) -> list[int] | None | tuple[list[int] | None, dict[str, int]]: ...

    @overload
    def topdegree(self, seed: int, depth: int = 2, n: int = 10, edge_types: _Types | None = None,
                  node_types: _Types | None = None, explain: Literal[False] = False) -> list[tuple[int, int]]:
        """Q4: the n highest out-degree nodes among those at distance 1..depth."""
    @overload
    def topdegree(self, seed: int, depth: int = 2, n: int = 10, edge_types: _Types | None = None,
                  node_types: _Types | None = None, *,
                  explain: Literal[True]) -> tuple[list[tuple[int, int]], dict[str, int]]: ...
    @overload
    def topdegree(self, seed: int, depth: int = 2, n: int = 10, edge_types: _Types | None = None,
                  node_types: _Types | None = None, explain: bool = False
                  ) -> list[tuple[int, int]] | tuple[list[tuple[int, int]], dict[str, int]]: ...

    def query_json(self, body: bytes, max_work: int | None = None) -> tuple[str, bytes | int] | None:
        """A plain topn or neighborhood spec (the raw JSON body of /graph/query) answered in one
        call: (kind, the response bytes the Python path would write), or (kind, its work estimate)
        unrun when that is over `max_work`. None for anything else (other kinds, explain, unknown
        keys, bad values, an unknown seed, malformed JSON). A query that runs into the thread's
        budget (`set_query_budget`) raises WorkCapError / TimeBudgetError."""

    def estimate_work(self, seed: int, depth: int, limit: int = ..., topn: bool = False) -> int:
        """The edges a query is estimated to read before it runs: Q1 of `depth` hops with `topn`,
        else a traversal of `depth` levels that stops once it reached `limit` nodes (default: no
        limit). From the seed's row, up to 8 neighbours' rows and the mean degree; capped at the
        edge count; 0 for an unknown seed."""

    def has_node(self, id: int) -> bool:
        """Whether `id` is a live node."""

    def out_degree(self, id: int) -> int:
        """Out-edges of a live node (every type)."""

    def upsert_nodes(self, ids: npt.NDArray[np.int64], types: npt.NDArray[np.uint8]) -> None:
        """Create nodes or change their type."""

    def upsert_edges(self, src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64],
                     w: npt.NDArray[np.float32], etype: npt.NDArray[np.uint8]) -> None:
        """Insert or update edges; unknown endpoints are created with type 0. All or nothing."""

    def delete_edges(self, src: npt.NDArray[np.int64], dst: npt.NDArray[np.int64]) -> int:
        """Delete edges; returns how many existed."""

    def delete_nodes(self, ids: npt.NDArray[np.int64]) -> int:
        """Delete nodes and every edge into or out of them; returns how many existed."""

    def rebuild(self) -> int:
        """Merge the overlay into a new snapshot (writes keep flowing); returns the new snapshot version."""

    @property
    def node_count(self) -> int: ...
    @property
    def edge_count(self) -> int: ...
    @property
    def snapshot_version(self) -> int: ...
    @property
    def delta_rows(self) -> int:
        """Rows replaced + nodes created + tombstones in the overlay."""
    @property
    def memory_bytes(self) -> int: ...

__all__ += ["DecisionCache", "PolicyBundle", "policy_vm_fallbacks"]

@final
class PolicyBundle:
    """One compiled revision of an OPA-format policy bundle (Rego v1), immutable and thread-safe.

    Evaluation follows OPA v1.x semantics (regorus engine): Rego v1 syntax without
    `import rego.v1`, built-in errors make the expression undefined, undefined results are
    `None`. Each thread evaluates on its own clone of the compiled engine; the GIL is released.
    """

    @staticmethod
    def compile(modules: list[tuple[str, str]], data_json: bytes) -> PolicyBundle:
        """Compile `(path in bundle, Rego text)` modules with the merged data document (a JSON
        object; empty bytes = `{}`). Raises `provgraph.errors.PolicyCompileError` naming
        file:line:col and the reason."""

    def eval(self, path: str, input_json: bytes | None = None, vm: bool = True) -> bytes | None:
        """JSON of `data.<path>` (`"a/b/c"` or `"a.b.c"`; `""` = the whole data document) with
        `input_json` as `input`; None when undefined. Raises `provgraph.errors.PolicyEvalError`
        on evaluation errors (e.g. conflicting outputs), `InvalidArgumentError` on bad input JSON.
        `vm=True` (flag `policy.vm`) runs a rule path on regorus's bytecode VM once it has been
        planned (the first evaluation of a path and rules the VM cannot run use the interpreter;
        so does any evaluation the VM fails); `vm=False` always uses the interpreter."""

    def eval_timed(self, path: str, input_json: bytes | None = None, vm: bool = True) -> tuple[bytes | None, int]:
        """`eval` plus the evaluation time in nanoseconds (input parsing included)."""

    @property
    def vm_eligible(self) -> bool:
        """Whether rules of this revision may run on the bytecode VM: no rule can conflict (the VM
        does not report OPA's conflict errors, so a bundle where one is possible stays on the
        interpreter)."""

    def uses_vm(self, path: str) -> bool:
        """Whether `path`, evaluated once already, runs on the bytecode VM."""

    @property
    def packages(self) -> list[str]:
        """Packages of the modules, dotted, without the `data.` prefix (e.g. `provgraph.authz`)."""

    @property
    def compile_id(self) -> int:
        """Process-unique id of this compilation."""

@final
class DecisionCache:
    """Bounded decision cache (sharded, CLOCK eviction; see rust/provgraph-core/src/policy/cache.rs)
    with a TTL per entry.

    An entry is returned only if it was stored under the epoch passed to `get` (the active
    bundle revision's) and its TTL has not passed. Thread-safe.
    """

    def __new__(cls, max_entries: int = 100_000) -> DecisionCache: ...

    def get(self, tenant: str, action: str, resource_type: str, digest: bytes, epoch: int) -> bytes | None:
        """The cached decision bytes, or None (absent, expired, invalidated or other epoch).
        `digest` must be 32 bytes."""

    def decide_hit(self, body: bytes, tenant: str, actor: str, roles: list[str], epoch: int, bundle: str,
                   revision: str, path: str, timestamp: str) -> tuple[bytes, bytes] | None:
        """The /decide fast path: (response JSON, decision-log entry JSON) for a valid raw `body`
        whose decision is cached under `epoch`, with a new UUIDv7 decision id; None otherwise
        (an invalid body, a miss, another epoch), and then no lookup is counted."""

    def put(self, tenant: str, action: str, resource_type: str, digest: bytes, epoch: int,
            value: bytes, ttl_s: float) -> None:
        """Store `value` under the key and `epoch` for `ttl_s` seconds (0 stores nothing)."""

    def invalidate(self, tenant: str | None = None, action: str | None = None,
                   resource_type: str | None = None) -> None:
        """Drop entries matching every given field; no field = everything. Effective on return."""

    def stats(self) -> dict[str, int]:
        """hits, misses, stale (other epoch), inserts, invalidations, entries."""

__all__ += ["ReceiptCodec", "ReceiptSigner", "receipt_pack", "receipt_pack_forms", "uuid7", "verify_chain",
            "verify_receipt"]

@final
class ReceiptCodec:
    """A tenant's receipt dictionary and the compact form of its receipts (docs/receipts.md,
    "Compact form"): a template id plus each receipt's own values (raw UUIDs, hashes, signature,
    timestamp deltas, dictionary ids), reconstructed to the exact stored bytes.

    `entries` are the stored dictionary entries in id order. The GIL is released while encoding."""

    def __new__(cls, entries: list[bytes] = ...) -> ReceiptCodec: ...

    def encode(self, tenant_id: str, receipts: list[tuple[bytes, int]], elide_prev: bool = ...
               ) -> tuple[list[bytes], int, list[bytes]]:
        """The compact form of each stored receipt `(json, seq)` (`seq` is not stored: the row's key
        holds it; `tenant_id` is reserved, pass ""), the id of the first entry added and the entries
        added (to store in the same transaction). Each form was decoded back to its input before it
        is returned; a receipt that is not canonical JSON is kept whole (escape form). With
        `elide_prev` a form leaves its prev_hash out: it decodes only in a chain pack, which gives
        it back (`receipt_pack(..., prevs=...)`, `decode_rows`)."""

    def decode(self, data: bytes, tenant_id: str, seq: int, signed: bool = False) -> bytes:
        """The stored receipt JSON of a compact form, or its signed bytes (without `signature`) with
        `signed=True`; `InvalidArgumentError` for a form this dictionary cannot decode."""

    def decode_many(self, tenant_id: str, forms: list[tuple[bytes, int]], signed: bool = False) -> list[bytes]:
        """`decode` of many `(data, seq)` in one call (the GIL released)."""

    def decode_rows(self, tenant_id: str, rows: list[tuple[bytes, int]], want: int | None = None
                    ) -> list[tuple[int, bytes]]:
        """Every receipt of stored rows `(value, seq of the row's key)` as `(seq, stored JSON)` in
        order: a full row as it is, a compact form reconstructed, a pack expanded. With `want`,
        only the receipt of that seq (one form of a pack is sliced and decoded)."""

    def truncate(self, length: int) -> None:
        """Drop the entries from id `length` on (those of receipts that were not committed)."""

    def __len__(self) -> int: ...

    @property
    def entry_bytes(self) -> int:
        """Bytes of the entries."""

@final
class ReceiptSigner:
    """The issuer's Ed25519 key (RFC 8032): signs batches of receipts into a tenant's chain.

    `key_id` is the first 16 hex characters of BLAKE3(public_key). Receipt format and the
    verification recipe: docs/receipts.md and API.md ("Actions and receipts").
    """

    def __new__(cls, seed: bytes | None = None) -> ReceiptSigner:
        """The key of a 32-byte secret `seed`, or a fresh key from the OS CSPRNG."""

    @property
    def seed(self) -> bytes:
        """The 32-byte secret seed (store with restrictive permissions)."""

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""

    @property
    def key_id(self) -> str:
        """hex(BLAKE3(public_key))[:16]."""

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature (64 bytes) of `message`: for documents signed like a receipt, over
        their RFC 8785 bytes (purge manifests)."""

    def issue_outbox(self, prev_hash: bytes, next_seq: int, records: list[bytes],
                     issued_at: str) -> tuple[list[tuple[int, bytes, bytes]], bytes, list[float]]:
        """The issuer's path over raw outbox values `{"receipt": {...}, "executed_ts": t, ...}`:
        each receipt gets `issued_at` and is signed as by `sign_batch`. Returns
        `[(seq, receipt_id as 16 UUID bytes, receipt_json)]`, the new head and each record's
        `executed_ts`. The GIL is released; a bad record raises `InvalidArgumentError` and
        signs nothing."""

    def sign_batch(self, prev_hash: bytes, next_seq: int,
                   receipts: list[bytes]) -> tuple[list[tuple[int, str, bytes, bytes]], bytes]:
        """Sign `receipts` (JSON objects as bytes) in order as seq `next_seq`, `next_seq + 1`, ...

        Each receipt needs `receipt_id` and `tenant_id` and must not carry `seq`, `prev_hash`,
        `signer` or `signature` (the issuer sets them). `prev_hash` is the chain head (32 bytes:
        BLAKE3 of the previous receipt's signed bytes; 32 zero bytes exactly when `next_seq`
        is 1). Returns `[(seq, receipt_id, signed_hash, receipt_json)]` (receipt_json: RFC 8785
        canonical bytes, signature included) and the new head. The GIL is released; a bad
        input raises `provgraph.errors.InvalidArgumentError` and signs nothing.
        """

def verify_receipt(receipt_json: bytes, public_key: bytes) -> bytes:
    """Verify one receipt's Ed25519 signature; return BLAKE3 of its signed bytes (32 bytes).

    Raises `provgraph.errors.InvalidArgumentError` (a `ValueError`) naming what failed:
    bad JSON, missing signature, bad signature (base64 / length), unsupported signer.alg,
    signature mismatch.
    """

def verify_chain(receipts: list[bytes], keys: dict[str, bytes], start_seq: int = 1,
                 prev_hash: bytes | None = None) -> dict[str, Any]:
    """Verify one tenant's receipts in seq order: every signature (key by `signer.key_id`
    from `keys`, key_id -> 32-byte public key), one `tenant_id`, seq continuity and the
    prev_hash links. By default the chain starts at seq 1 after 64 zero hex digits; pass
    `start_seq` and the previous page's `head` as `prev_hash` to check a segment.

    Returns {"ok": bool, "checked": int, "first_bad_seq": int | None, "reason": str | None,
    "head": bytes}. `first_bad_seq` is the position where the chain breaks (for a gap, the
    missing seq); `reason` starts with one of: bad JSON, missing signature, bad signature,
    unsupported signer.alg, unknown key_id, signature mismatch, tenant_id mismatch,
    seq mismatch, prev_hash mismatch. `head` is BLAKE3 of the last verified signed bytes.
    """

__all__ += ["merge_adjacency", "set_query_budget", "union_ids"]

def merge_adjacency(old: bytes, incoming: bytes) -> tuple[bytes, bytes]:
    """Upsert the out-row records `incoming` (13 bytes each: dst i64, w f32, type u8, distinct dst)
    into the stored out-row `old`: (the merged row sorted by dst, one byte per incoming record in
    its order: 1 when its dst was new to the row)."""

def union_ids(old: bytes, new: bytes) -> bytes:
    """The sorted union without duplicates of two stored in-rows (little-endian i64 ids)."""

def set_query_budget(max_reached: int | None = None, timeout_s: float | None = None) -> None:
    """The budget of the graph queries the calling thread runs from now on: traversals (Q2-Q4)
    reaching more than `max_reached` nodes raise `provgraph.errors.WorkCapError` (deterministic),
    and queries still running `timeout_s` seconds from now raise `TimeBudgetError`. None: no limit
    (every thread starts with none). Checked every 256 rows and at the end; Q1 is not checked."""

def uuid7() -> str:
    """A fresh time-ordered UUIDv7 (RFC 9562), lowercase hyphenated."""


def policy_vm_fallbacks() -> int:
    """Evaluations that fell back from the bytecode VM to the interpreter since the process started."""


def receipt_pack(open: bytes | None, forms: list[bytes], budget: int = ...,
                 prevs: list[bytes] | None = ...) -> list[tuple[int, bytes]]:
    """Pack compact forms of consecutive receipts after `open` (the pack ending right before them,
    if it may take more): `[(index of the row's first receipt in forms, or -n for `open` rewritten
    with its n receipts first, value)]`; each value a pack of up to `budget` bytes, or a single
    form too big for one (docs/receipts.md, "Packs"). With `prevs` (each form's prev_hash, 32 bytes;
    forms encoded with `elide_prev`) they are chain packs (`open` one too), and a form too big for
    a pack is a chain pack of one."""


def receipt_pack_forms(value: bytes) -> list[bytes]:
    """The forms of a pack value, in order."""

__all__ += ["RecordCodec"]

@final
class RecordCodec:
    """One tenant's record dictionary (table record_dict) and the compact forms of its preflights and
    decision log entries (docs/storage.md, "Compact records"). `entries` are the stored entries
    `(id, value)`. An encode returns the form with the entries it uses that are not stored yet,
    `[(id, value)]`: the caller writes them in the record's transaction and, once it commits,
    calls `stored` with their ids. An encode returns None for a record the form cannot hold
    exactly (the caller stores its JSON); a form is returned only after decoding it gave back the
    same JSON value."""

    def __new__(cls, entries: list[tuple[int, bytes]] = ...) -> RecordCodec: ...

    def __len__(self) -> int: ...

    def encode_preflight(self, json: bytes, preflight_id: str) -> tuple[bytes, list[tuple[int, bytes]]] | None:
        """The compact form of a preflight's JSON (its id comes from the row's key)."""

    def decode_preflight(self, form: bytes, preflight_id: str) -> bytes:
        """A compact preflight -> its JSON; `InvalidArgumentError` for a form it cannot decode."""

    def encode_entry(self, json: bytes, key_us: int) -> tuple[bytes, list[tuple[int, bytes]]] | None:
        """The compact form of a decision log entry's JSON stored under a key of time `key_us` (µs)."""

    def decode_entry(self, form: bytes, key_us: int) -> bytes:
        """A compact decision log entry -> its JSON."""

    def stored(self, ids: list[int]) -> None:
        """Mark entries stored: the transaction that wrote them committed."""
