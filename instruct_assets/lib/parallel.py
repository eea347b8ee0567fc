"""Row-local polars work on contiguous slices in threads (one slice per polars thread).

Why: most string kernels (regex scans, lowercasing, list joins) run single-threaded over a
column, so on a machine with several cores one big frame keeps one core busy. Slicing the
frame into one contiguous piece per core and running the same function on each piece in a
thread pool uses every core: polars releases the GIL while it computes. Only for work whose
value on a row depends on that row alone: the result must not depend on the slicing.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import polars as pl

T = TypeVar("T")

#: Rows per slice below which a frame is processed in one piece (threads cost more there).
MIN_SLICE_ROWS = 50_000


def slices(frame: pl.DataFrame, min_rows: int | None = None) -> list[pl.DataFrame]:
    """``frame`` cut into contiguous row slices, one per polars thread, each at least
    ``min_rows`` long (default :data:`MIN_SLICE_ROWS`; one slice when small). Zero-copy."""
    min_rows = MIN_SLICE_ROWS if min_rows is None else min_rows
    n = max(1, min(pl.thread_pool_size(), frame.height // max(min_rows, 1)))
    if n == 1:
        return [frame]
    size = -(-frame.height // n)
    return [frame.slice(i * size, size) for i in range(n)]


def map_slices(
    frame: pl.DataFrame, fn: Callable[[pl.DataFrame], T], min_rows: int | None = None
) -> list[T]:
    """``[fn(s) for s in slices(frame)]``, computed in parallel threads, in slice order."""
    parts = slices(frame, min_rows)
    if len(parts) == 1:
        return [fn(parts[0])]
    with ThreadPoolExecutor(max_workers=len(parts)) as pool:
        return list(pool.map(fn, parts))


def concat_slices(
    frame: pl.DataFrame,
    fn: Callable[[pl.DataFrame], pl.DataFrame],
    min_rows: int | None = None,
) -> pl.DataFrame:
    """``fn`` applied slice by slice (in parallel) and the results stacked in order: equal
    to ``fn(frame)`` for any row-local ``fn``."""
    parts = map_slices(frame, fn, min_rows)
    return parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical")


__all__ = ["MIN_SLICE_ROWS", "concat_slices", "map_slices", "slices"]
