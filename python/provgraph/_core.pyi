"""Typed stub of the native module `provgraph._core` (Rust, built by maturin from rust/provgraph-py)."""

from typing import Literal, final, overload

import numpy as np
import numpy.typing as npt

__all__ = ["CsrGraph", "__version__"]

__version__: str

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
