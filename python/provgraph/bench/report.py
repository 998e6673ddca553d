"""Formatting helpers for benchmark and demo reports: text/markdown tables, JSON, percentiles."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

__all__ = ["format_table", "percentiles_us", "to_markdown", "write_json"]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0:
            return "0"
        a = abs(value)
        if a >= 1000:
            return f"{value:,.0f}"
        if a >= 100:
            return f"{value:.1f}"
        if a >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return str(value)


def _is_numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _grid(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> tuple[list[list[str]], list[bool]]:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    numeric = [
        any(_is_numeric(r.get(c)) for r in rows)
        and all(r.get(c) is None or _is_numeric(r.get(c)) for r in rows)
        for c in columns
    ]
    return cells, numeric


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain, aligned text table (numbers right-aligned; missing/None/NaN shown as ``-``)."""
    cells, numeric = _grid(rows, columns)
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        out = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(out).rstrip()

    parts = [line(list(columns)), "  ".join("-" * w for w in widths)]
    parts.extend(line(row) for row in cells)
    return "\n".join(parts)


def to_markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured markdown table (numeric columns right-aligned)."""
    cells, numeric = _grid(rows, columns)

    def esc(v: str) -> str:
        return v.replace("|", "\\|")

    head = "| " + " | ".join(esc(c) for c in columns) + " |"
    sep = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    body = ["| " + " | ".join(esc(v) for v in row) + " |" for row in cells]
    return "\n".join([head, sep, *body])


def _default(obj: Any) -> Any:
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON (orjson; numpy arrays/scalars and dataclasses supported).

    NaN/inf floats are written as ``null``. The file is replaced atomically.
    """
    data = orjson.dumps(
        obj,
        default=_default,
        option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE,
    )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, p)


def percentiles_us(samples: np.ndarray[Any, Any]) -> dict[str, float]:
    """``p50``/``p95``/``p99``/``max`` (plus ``count``, ``mean``) in µs from durations in ns."""
    a = np.asarray(samples, dtype=np.float64).ravel()
    if a.size == 0:
        nan = float("nan")
        return {"count": 0.0, "mean": nan, "p50": nan, "p95": nan, "p99": nan, "max": nan}
    p50, p95, p99 = np.percentile(a, [50.0, 95.0, 99.0])
    return {
        "count": float(a.size),
        "mean": float(a.mean()) / 1e3,
        "p50": float(p50) / 1e3,
        "p95": float(p95) / 1e3,
        "p99": float(p99) / 1e3,
        "max": float(a.max()) / 1e3,
    }
