"""Bounded-memory stage work: read Parquet in row chunks, write Parquet chunk by chunk.

Why: ten million conversations do not fit in memory at once (about 3 GB per million rows
while a stage works on them), so every stage walks its wide input in chunks of at most
``chunk_rows`` rows and keeps only narrow columns (keys, hashes, scores) across chunks.
At or below one chunk a stage reads and writes exactly as it would in one piece, so the
common case pays nothing for the ability to stream.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import polars as pl
import pyarrow.parquet as pq

from instruct_assets.lib.parquet_io import (
    COMPRESSION,
    COMPRESSION_LEVEL,
    ROW_GROUP_ROWS,
    atomic_path,
    write_parquet_file,
)
from instruct_assets.lib.schema import conform

#: Rows below which a read is one plain read (threads cost more than they save there).
PARALLEL_READ_ROWS = 200_000

#: Rows a stage holds in memory at once. One million keeps every stage under about 3.5 GB
#: while it works (measured per stage by ``bench/run.py``) and leaves room for the narrow
#: columns kept across chunks at ten million rows.
DEFAULT_CHUNK_ROWS = 1_000_000


def parquet_rows(files: Sequence[Path]) -> int:
    """Total rows of ``files``, from their footers (no data read)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def chunk_bounds(total: int, chunk_rows: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of each chunk of ``total`` rows; one empty chunk when empty."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if total == 0:
        return [(0, 0)]
    return [(off, min(chunk_rows, total - off)) for off in range(0, total, chunk_rows)]


def iter_parquet_chunks(files: Sequence[Path], columns: list[str] | None = None,
                        chunk_rows: int = DEFAULT_CHUNK_ROWS, schema: pl.Schema | None = None
                        ) -> Iterator[pl.DataFrame]:
    """The rows of ``files`` (in this order, each in its row order) as frames of at most
    ``chunk_rows`` rows; a chunk may span files. Each chunk is read by :func:`read_rows`
    (row-group ranges in parallel). No files: one empty frame of ``schema`` (its
    ``columns``), so callers need no special case."""
    files = list(files)
    if not files:
        empty = pl.DataFrame(schema=schema or {})
        yield empty.select(columns) if columns is not None and schema is not None else empty
        return
    starts = row_group_starts(files)
    for offset, length in chunk_bounds(starts[-1], chunk_rows):
        yield read_rows(files, columns, offset, length, starts)


def row_group_starts(files: Sequence[Path]) -> list[int]:
    """The first row of each row group of ``files`` (read one after another), then the
    total, from the footers."""
    sizes = [md.row_group(i).num_rows for md in (pq.ParquetFile(f).metadata for f in files)
             for i in range(md.num_row_groups)]
    return [0, *itertools.accumulate(sizes)]


def read_rows(files: Sequence[Path], columns: list[str] | None = None, offset: int = 0,
              length: int | None = None, starts: list[int] | None = None) -> pl.DataFrame:
    """Rows ``offset .. offset + length`` of ``files`` (to the end when ``length`` is None;
    ``starts``: their :func:`row_group_starts` when the caller has them), read by
    row-group ranges in parallel threads (one per polars thread) and stacked in order.

    Why: polars 2.1 decodes the nested ``messages`` column of one file on one core (a 1M-row
    read: 0.9 s wall for 0.9 CPU-s); two threads on two halves took 0.5 s. The ranges are cut
    at row-group boundaries, so no row group is decoded twice. The rows are those of one
    read; only the frame's chunking differs.
    """
    starts = row_group_starts(files) if starts is None else starts
    length = starts[-1] - offset if length is None else length
    scan = pl.scan_parquet(files)
    if columns is not None:
        scan = scan.select(columns)
    end = offset + length
    inner = [s for s in starts if offset < s < end]
    n = min(pl.thread_pool_size(), len(inner) + 1, max(1, length // PARALLEL_READ_ROWS))
    if n <= 1:
        if offset == 0 and end == starts[-1]:
            return pl.read_parquet(files, columns=columns)
        return scan.slice(offset, length).collect()
    # the row-group boundary nearest each even share of the range
    cuts = sorted({min(inner, key=lambda s, k=k: abs(s - (offset + k * length // n)))
                   for k in range(1, n)})
    bounds = list(zip([offset, *cuts], [*cuts, end], strict=True))
    with ThreadPoolExecutor(max_workers=len(bounds)) as pool:
        parts = list(pool.map(lambda b: scan.slice(b[0], b[1] - b[0]).collect(), bounds))
    return pl.concat(parts, how="vertical", rechunk=False)


SPILL_PREFIX = ".spill-"


@contextlib.contextmanager
def spill_dir(parent: Path) -> Iterator[Path]:
    """A temporary folder under ``parent`` for rows a stage puts back in order, removed
    afterwards. Folders a killed run left behind (SIGKILL skips cleanup) are removed first,
    so they never pile up beside the outputs."""
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f"{SPILL_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=SPILL_PREFIX) as folder:
        yield Path(folder)


class ChunkedParquetWriter:
    """Write frames one after another into one Parquet file, atomically.

    Nothing is visible at ``target`` until the context exits without an error; then the
    file is fsynced and renamed over the previous one (a crash leaves the last good file).
    A single frame is written as ``parquet_io.write_parquet`` writes it, so a one-chunk run
    gives the bytes of an unchunked write; more frames stream through a pyarrow writer with
    the same compression and row-group size. ``schema`` conforms every frame (required when
    no frame may come, so an empty file still has its columns).
    """

    def __init__(self, target: Path, schema: pl.Schema | None = None) -> None:
        self.target = target
        self.schema = schema
        self.rows = 0
        self._pending: pl.DataFrame | None = None
        self._writer: pq.ParquetWriter | None = None
        self._atomic = atomic_path(target)
        self._tmp: Path | None = None

    def __enter__(self) -> ChunkedParquetWriter:
        self._tmp = self._atomic.__enter__()
        return self

    def write(self, frame: pl.DataFrame) -> None:
        if self.schema is not None:
            frame = conform(frame, self.schema)
        self.rows += frame.height
        if self._writer is None and self._pending is None:
            self._pending = frame  # perhaps the only frame: one plain write at the end
            return
        self.stream()
        self._append(frame)

    def stream(self) -> None:
        """Start the streaming writer now (more frames will follow): the frame held back
        for a one-frame write is written, so the caller need not keep it in memory."""
        if self._writer is not None or self._pending is None:
            return
        first, self._pending = self._pending, None
        self._writer = pq.ParquetWriter(
            self._tmp, first.to_arrow().schema, compression=COMPRESSION,
            compression_level=COMPRESSION_LEVEL, write_statistics=True)
        self._append(first)

    def _append(self, frame: pl.DataFrame) -> None:
        assert self._writer is not None
        table = frame.to_arrow()
        if table.schema != self._writer.schema:
            table = table.cast(self._writer.schema)
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
                else:
                    pending = self._pending
                    if pending is None:
                        pending = pl.DataFrame(schema=self.schema or {})
                    assert self._tmp is not None
                    write_parquet_file(pending, self._tmp)
        finally:
            if self._writer is not None:  # an error: close what was written, then discard
                self._writer.close()
            self._pending = None
            self._atomic.__exit__(exc_type, exc, tb)


__all__ = [
    "DEFAULT_CHUNK_ROWS", "ChunkedParquetWriter", "chunk_bounds", "iter_parquet_chunks",
    "parquet_rows", "read_rows", "row_group_starts", "spill_dir",
]
