"""Atomic, deterministic Parquet writes and reads of the published tables.

Why atomic: a crash mid-write must leave the last good file in place, so every write goes to
a temporary file in the same folder, is fsynced, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from instruct_assets.lib.schema import conform

#: Fixed write settings, so the same frame gives the same bytes (shared by ``lib.chunks``).
COMPRESSION, COMPRESSION_LEVEL, ROW_GROUP_ROWS = "zstd", 1, 128 * 1024


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success fsync and rename it over ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet(frame: pl.DataFrame, target: Path, schema: pl.Schema | None = None) -> Path:
    """Write ``frame`` (conformed to ``schema`` when given) atomically as zstd Parquet.

    Statistics and row-group size are fixed so the same frame gives the same bytes.
    """
    if schema is not None:
        frame = conform(frame, schema)
    with atomic_path(target) as tmp:
        write_parquet_file(frame, tmp)
    return target


def write_options() -> dict[str, object]:
    """The fixed settings of every polars Parquet write, as ``write_parquet`` keywords (read
    at call time, so tests can shrink the row groups; ``bench/floors.py`` writes with them)."""
    return {"compression": COMPRESSION, "compression_level": COMPRESSION_LEVEL,
            "statistics": True, "row_group_size": ROW_GROUP_ROWS}


def write_parquet_file(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` in place with the fixed settings (callers that manage
    atomicity themselves: :func:`write_parquet`, ``chunks.ChunkedParquetWriter``)."""
    frame.write_parquet(path, **write_options())


def compact_row_groups(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` regathered as one compact chunk per row group, when it has nested columns.

    Why: a ``messages`` column built from parsed JSON (normalization) references its text in
    the parser's buffers, and polars 2.1 writes it at 2.5x the CPU of the same rows read
    back from Parquet (1.5M page faults against 0.15M at a million rows). A gather in
    row-group slices makes the layout canonical: written, the same rows give the same bytes
    whatever the frame's history. Frames read from Parquet and gathered are compact already
    (for them this costs time and memory), so only the ingestion calls it.
    """
    if frame.height == 0 or not any(dtype.is_nested() for dtype in frame.dtypes):
        return frame
    index = np.arange(frame.height, dtype=np.int64)
    return pl.concat([frame[index[start:start + ROW_GROUP_ROWS]]
                      for start in range(0, frame.height, ROW_GROUP_ROWS)], rechunk=False)


def read_parquet_or_empty(path: Path, schema: pl.Schema) -> pl.DataFrame:
    """Read ``path``, or an empty frame of ``schema`` when it does not exist."""
    if not path.exists():
        return pl.DataFrame(schema=schema)
    return pl.read_parquet(path)
