"""Bounded-memory stage work: read Parquet in row chunks, write Parquet chunk by chunk.

Why: ten million conversations do not fit in memory at once (about 3 GB per million rows
while a stage works on them), so every stage walks its wide input in chunks of at most
``chunk_rows`` rows and keeps only narrow columns (keys, hashes, scores) across chunks.
At or below one chunk a stage reads and writes exactly as it would in one piece, so the
common case pays nothing for the ability to stream.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
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
    ``chunk_rows`` rows; a chunk may span files. One chunk is one plain read. No files: one
    empty frame of ``schema`` (its ``columns``), so callers need no special case."""
    files = list(files)
    if not files:
        empty = pl.DataFrame(schema=schema or {})
        yield empty.select(columns) if columns is not None and schema is not None else empty
        return
    total = parquet_rows(files)
    if total <= chunk_rows:
        yield pl.read_parquet(files, columns=columns)
        return
    scan = pl.scan_parquet(files)
    if columns is not None:
        scan = scan.select(columns)
    for offset, length in chunk_bounds(total, chunk_rows):
        yield scan.slice(offset, length).collect()


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
    "parquet_rows", "spill_dir",
]
