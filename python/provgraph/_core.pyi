"""Typed stub of the native module `provgraph._core` (Rust, built by maturin from rust/provgraph-py)."""

from typing import Literal, final, overload

import numpy as np
import numpy.typing as npt

__all__ = ["CsrGraph", "__version__", "canonical_hash", "canonicalize", "canonicalize_json"]

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
    def topn(self, seed: int, n: int = 10, hops: int = 2, edge_types: list[int] | None = None,
             node_types: list[int] | None = None, explain: Literal[False] = False) -> list[tuple[int, float]]:
        """Q1: the n strongest nodes within `hops` (1 or 2) out-edges; score = max product of weights."""
    @overload
    def topn(self, seed: int, n: int = 10, hops: int = 2, edge_types: list[int] | None = None,
             node_types: list[int] | None = None, *,
             explain: Literal[True]) -> tuple[list[tuple[int, float]], dict[str, int]]: ...
    @overload
    def topn(self, seed: int, n: int = 10, hops: int = 2, edge_types: list[int] | None = None,
             node_types: list[int] | None = None, explain: bool = False
             ) -> list[tuple[int, float]] | tuple[list[tuple[int, float]], dict[str, int]]: ...

    @overload
    def neighborhood_size(self, seed: int, depth: int = 3, limit: int = 50000,
                          edge_types: list[int] | None = None, node_types: list[int] | None = None,
                          explain: Literal[False] = False) -> int:
        """Q2: distinct nodes at distance 1..depth over out-edges, capped at `limit`."""
    @overload
    def neighborhood_size(self, seed: int, depth: int = 3, limit: int = 50000,
                          edge_types: list[int] | None = None, node_types: list[int] | None = None, *,
                          explain: Literal[True]) -> tuple[int, dict[str, int]]: ...
    @overload
    def neighborhood_size(self, seed: int, depth: int = 3, limit: int = 50000,
                          edge_types: list[int] | None = None, node_types: list[int] | None = None,
                          explain: bool = False) -> int | tuple[int, dict[str, int]]: ...

    @overload
    def path(self, src: int, dst: int, max_depth: int = 4, edge_types: list[int] | None = None,
             explain: Literal[False] = False) -> list[int] | None:
        """Q3: the lexicographically smallest shortest path of at most `max_depth` edges, or None."""
    @overload
    def path(self, src: int, dst: int, max_depth: int = 4, edge_types: list[int] | None = None, *,
             explain: Literal[True]) -> tuple[list[int] | None, dict[str, int]]: ...
    @overload
    def path(self, src: int, dst: int, max_depth: int = 4, edge_types: list[int] | None = None,
             explain: bool = False) -> list[int] | None | tuple[list[int] | None, dict[str, int]]: ...

    @overload
    def topdegree(self, seed: int, depth: int = 2, n: int = 10, edge_types: list[int] | None = None,
                  node_types: list[int] | None = None, explain: Literal[False] = False) -> list[tuple[int, int]]:
        """Q4: the n highest out-degree nodes among those at distance 1..depth."""
    @overload
    def topdegree(self, seed: int, depth: int = 2, n: int = 10, edge_types: list[int] | None = None,
                  node_types: list[int] | None = None, *,
                  explain: Literal[True]) -> tuple[list[tuple[int, int]], dict[str, int]]: ...
    @overload
    def topdegree(self, seed: int, depth: int = 2, n: int = 10, edge_types: list[int] | None = None,
                  node_types: list[int] | None = None, explain: bool = False
                  ) -> list[tuple[int, int]] | tuple[list[tuple[int, int]], dict[str, int]]: ...

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

__all__ += ["PolicyBundle", "DecisionCache"]

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

    def eval(self, path: str, input_json: bytes | None = None) -> bytes | None:
        """JSON of `data.<path>` (`"a/b/c"` or `"a.b.c"`; `""` = the whole data document) with
        `input_json` as `input`; None when undefined. Raises `provgraph.errors.PolicyEvalError`
        on evaluation errors (e.g. conflicting outputs), `InvalidArgumentError` on bad input JSON."""

    def eval_timed(self, path: str, input_json: bytes | None = None) -> tuple[bytes | None, int]:
        """`eval` plus the evaluation time in nanoseconds (input parsing included)."""

    @property
    def packages(self) -> list[str]:
        """Packages of the modules, dotted, without the `data.` prefix (e.g. `provgraph.authz`)."""

    @property
    def compile_id(self) -> int:
        """Process-unique id of this compilation."""

@final
class DecisionCache:
    """Bounded decision cache (moka: TinyLFU admission, LRU eviction) with a TTL per entry.

    An entry is returned only if it was stored under the epoch passed to `get` (the active
    bundle revision's) and its TTL has not passed. Thread-safe.
    """

    def __new__(cls, max_entries: int = 100_000) -> DecisionCache: ...

    def get(self, tenant: str, action: str, resource_type: str, digest: bytes, epoch: int) -> bytes | None:
        """The cached decision bytes, or None (absent, expired, invalidated or other epoch).
        `digest` must be 32 bytes."""

    def put(self, tenant: str, action: str, resource_type: str, digest: bytes, epoch: int,
            value: bytes, ttl_s: float) -> None:
        """Store `value` under the key and `epoch` for `ttl_s` seconds (0 stores nothing)."""

    def invalidate(self, tenant: str | None = None, action: str | None = None,
                   resource_type: str | None = None) -> None:
        """Drop entries matching every given field; no field = everything. Effective on return."""

    def stats(self) -> dict[str, int]:
        """hits, misses, stale (other epoch), inserts, invalidations, entries."""
