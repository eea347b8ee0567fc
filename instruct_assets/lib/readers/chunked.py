"""JSON Lines files in pieces of at most ``chunk_rows`` lines, for bounded-memory ingestion.

Why: a 7.6 GB JSONL file cannot be held (nor parsed) whole. A piece is a run of whole lines
cut just after a newline, so UTF-8 characters are never split and line numbers (the records'
``source_row``) continue across pieces exactly as in the whole file. A file of at most
``chunk_rows`` lines is one piece holding the bytes ``files.read_bytes`` returns, so the
reader then does exactly what it does for a whole file.

Only JSON Lines (``.jsonl``/``.ndjson``, and a ``.json`` or unnamed file whose first record is
followed by more, which ``read_json`` reads as JSON Lines) is cut. JSON arrays, single
objects, CSV, Parquet and text are read whole (``read_file``): their parsers need the whole
document, and such files are small in practice.
"""

from __future__ import annotations

import gzip
import itertools
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from instruct_assets.lib.readers import reject_oversized
from instruct_assets.lib.readers.base import MAX_RECORD_BYTES, FileRejected, RawBatch
from instruct_assets.lib.readers.files import (
    BOM,
    GZIP_MAGIC,
    read_bytes,
    reject_binary,
    sniff_container,
)
from instruct_assets.lib.readers.json_records import line_offsets, newline_ends, read_jsonl

#: A plain file up to ``chunk_rows`` x this many bytes is read into memory in one go (its
#: pieces are then cut from memory); larger files and gzip streams are read block by block.
WHOLE_BYTES_PER_ROW = 1024
#: Bytes read from a stream at a time while looking for the next cut.
BLOCK = 1 << 26


class StreamBroken(Exception):
    """A file failed (corrupt gzip, I/O error) after some of its pieces were used: the
    caller must redo the source reading this file whole, as the unchunked path does."""


@dataclass
class Piece:
    """Whole lines ``first_line ..`` of a file; ``whole`` when it is the entire file."""

    data: bytes
    first_line: int
    index: int
    whole: bool
    #: line offsets of a whole JSON Lines piece read in memory (the reader reuses them)
    offsets: np.ndarray | None = None


def file_pieces(path: Path, chunk_rows: int) -> Iterator[Piece] | None:
    """The pieces of ``path``; None when it must be read by ``read_file`` from disk (not
    JSON Lines, unreadable, mislabelled, or failing before its first piece is complete).

    A file of at most ``chunk_rows`` lines is one ``whole`` piece: the caller reads its bytes
    with ``read_file(data=...)``, exactly as an unchunked run does.
    """
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
        size = path.stat().st_size
    except OSError:
        return None
    gz = magic == GZIP_MAGIC
    if not gz and path.suffix.lower() == ".gz":
        return None
    if not gz and size <= chunk_rows * WHOLE_BYTES_PER_ROW:
        try:
            data = read_bytes(path)
        except (FileRejected, OSError):
            return None
        container = sniff_container(path, data[:65536])
        if container not in ("jsonl", "json"):
            return iter([Piece(data, 0, 0, True)])
        offsets = line_offsets(data) if container == "jsonl" else None
        lines = (len(offsets) - 1 if offsets is not None
                 else data.count(b"\n") + (1 if data and data[-1:] != b"\n" else 0))
        if lines <= chunk_rows:
            return iter([Piece(data, 0, 0, True, offsets)])
        if not _cuttable(path, data):
            return None
        return _memory_pieces(data, line_offsets(data) if offsets is None else offsets,
                              chunk_rows)
    return _stream_pieces(path, gz, chunk_rows)


def _cuttable(path: Path, first_piece: bytes) -> bool:
    """JSON Lines, or a JSON file ``read_json`` reads as JSON Lines: its whole-document parse
    fails ("Extra data" after a complete first value, or any error in a text that starts
    with ``{`` and has line breaks), which a complete first value in ``first_piece`` (a run
    of whole lines) followed by more text proves."""
    container = sniff_container(path, first_piece[:65536])
    if container == "jsonl":
        return True
    if container != "json" or first_piece[:65536].lstrip()[:1] != b"{":
        return False
    text = first_piece.decode("utf-8", errors="surrogateescape")
    start = len(text) - len(text.lstrip())
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):
        return False
    return bool(text[end:].strip())


def _memory_pieces(data: bytes, offsets: np.ndarray, chunk_rows: int) -> Iterator[Piece]:
    """Pieces of ``chunk_rows`` lines of ``data``, cut at its line starts ``offsets``
    (``line_offsets``, already computed to count the lines)."""
    cuts = [*offsets[:-1:chunk_rows].tolist(), len(data)]
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        yield Piece(data[a:b], i * chunk_rows, i, False)


def _open(path: Path, gz: bool) -> BinaryIO:
    return gzip.open(path, "rb") if gz else open(path, "rb")


_STREAM_ERRORS = (OSError, EOFError, zlib.error)


def _stream_pieces(path: Path, gz: bool, chunk_rows: int) -> Iterator[Piece] | None:
    """Pieces read block by block; None when the file is not JSON Lines or fails before its
    first piece is complete (the whole-file reader then reports it as it does today)."""
    pieces = _cut(_blocks(path, gz), chunk_rows)
    try:
        piece = next(pieces)
    except _STREAM_ERRORS:
        return None
    if piece.whole:
        return iter([piece])
    if not _cuttable(path, piece.data):
        return None
    return _continue(piece, pieces)


def _continue(first: Piece, rest: Iterator[Piece]) -> Iterator[Piece]:
    yield first
    try:
        yield from rest
    except _STREAM_ERRORS as exc:
        raise StreamBroken(f"{type(exc).__name__}: {exc}") from exc


def _blocks(path: Path, gz: bool) -> Iterator[bytes]:
    """The file's (decompressed) bytes in blocks, without a leading UTF-8 BOM."""
    with _open(path, gz) as fh:
        first = True
        while block := fh.read(BLOCK):
            if first and block.startswith(BOM):
                block = block[len(BOM):]
            first = False
            yield block


def _cut(blocks: Iterator[bytes], chunk_rows: int) -> Iterator[Piece]:
    """Join blocks into pieces of ``chunk_rows`` lines (the last one may be shorter); a
    stream of at most ``chunk_rows`` lines is one ``whole`` piece."""
    held: list[memoryview] = []
    lines = start = index = 0
    for block in blocks:
        view = memoryview(block)
        ends = newline_ends(view)
        pos = used = 0
        while len(ends) - used >= chunk_rows - lines:
            k = used + chunk_rows - lines - 1
            cut = int(ends[k])
            held.append(view[pos:cut])
            yield Piece(b"".join(held), start, index, False)
            held, lines = [], 0
            start, index = start + chunk_rows, index + 1
            pos, used = cut, k + 1
        if pos < len(view):
            held.append(view[pos:])
            lines += len(ends) - used
    data = b"".join(held)
    if index == 0:
        yield Piece(data, 0, 0, True)
    elif data:
        yield Piece(data, start, index, False)


def read_piece(piece: Piece, path: Path,
               max_record_bytes: int = MAX_RECORD_BYTES, table: bool = True) -> RawBatch:
    """One piece of a cut JSON Lines file -> records/rejects numbered within the piece.

    The first piece carries the file-level check (binary content) and raises
    ``FileRejected`` for it; blank pieces are allowed (``read_jsonl(piece=True)``).
    """
    if piece.index == 0:
        reject_binary(piece.data)
    batch = read_jsonl(piece.data, max_record_bytes, piece=True, table=table)
    return batch if batch.table is not None else reject_oversized(batch, max_record_bytes)
