"""Shared pieces of every export: split selection, tool parsing, JSON encoding, line writing.

Why one module: each format must see exactly the same rows in the same order (sorted by
the warehouse key ``(source, example_id)``) and the same parsed tools, so two formats of one
split always line up row for row and two runs give identical bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import polars as pl

from instruct_assets.lib.export.atomic import atomic_writer, start_writeback
from instruct_assets.lib.keys import KEY, adjacent_repeats, key_order, key_sorted
from instruct_assets.lib.schema import MESSAGE_DTYPE

#: Columns an export reads from the split frame.
REQUIRED_COLUMNS: tuple[str, ...] = ("example_id", "source", "messages", "tools")

#: The only way the project serialises JSON by hand: what ``struct.json_encode`` produces.
JSON_SEPARATORS: tuple[str, str] = (",", ":")

#: Shared Python-side row element expressions (used inside ``list.eval``).
ROLE = pl.element().struct.field("role")
CONTENT = pl.element().struct.field("content")


def dumps(value: object) -> str:
    """Compact JSON with non-ASCII kept: byte-identical to polars ``struct.json_encode``."""
    return json.dumps(value, ensure_ascii=False, separators=JSON_SEPARATORS)


def split_rows(frame: pl.DataFrame | pl.LazyFrame, split: str | None) -> pl.DataFrame:
    """The rows of ``split`` (all rows if ``split`` is None or the frame has no ``split``
    column), sorted by ``(source, example_id)``, with ``messages`` as ``list[struct{role,
    content}]`` in that field order.

    Raises on a missing column or a duplicated key: a duplicate key would make the row
    order depend on input order, breaking byte-determinism.
    """
    lf = frame.lazy()
    names = lf.collect_schema().names()
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"split frame lacks columns {missing}; has {names}")
    if split is not None and "split" in names:
        lf = lf.filter(pl.col("split") == split)
    messages = pl.col("messages")
    if lf.collect_schema()["messages"] != pl.List(MESSAGE_DTYPE):
        # Rebuild the message struct by field name: a cast would map fields by position.
        messages = messages.list.eval(pl.struct(role=ROLE, content=CONTENT))
    rows = lf.select(
        pl.col("source").cast(pl.String),
        pl.col("example_id").cast(pl.String),
        messages.cast(pl.List(MESSAGE_DTYPE)).alias("messages"),
        pl.col("tools").cast(pl.String),
    ).collect()
    # Split sets are written in key order: then the rows stand as they are. Otherwise the
    # integer key order, then a lazy gather: an eager gather of the wide rows re-copies
    # every message string.
    if key_sorted(rows, strict=True):
        return rows
    order = key_order(rows)
    rows = rows.lazy().select(pl.all().gather(order)).collect()
    if adjacent_repeats(rows.select(KEY)):
        raise ValueError("(source, example_id) is not unique in the split frame")
    return rows


def _parse_tools(raw: str) -> tuple[str, list[str] | None]:
    """Classify one ``tools`` string: ('ok', items) | ('empty', None) | ('invalid', None)."""
    text = raw.strip()
    if not text:
        return "empty", None
    try:
        value = json.loads(text)
    except ValueError:
        return "invalid", None
    if isinstance(value, dict):  # a single tool written without the list
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        return "invalid", None  # tools are JSON-schema objects; anything else is malformed
    if not value:
        return "empty", None
    return "ok", [dumps(item) for item in value]


def with_tools(rows: pl.DataFrame) -> pl.DataFrame:
    """Add ``tools_json`` (compact JSON list text, or null when the example has no tools),
    ``tools_items`` (each tool as JSON text) and ``tools_status`` ('none' | 'empty' | 'ok' |
    'invalid').

    Why per distinct value: tool lists repeat massively (one schema shared by thousands of
    rows), so parsing each distinct string once in Python is cheap and keeps the per-row
    work a vectorised join. Empty lists and ``""`` count as no tools.
    """
    uniques = rows.get_column("tools").drop_nulls().unique().sort().to_list()
    parsed = [_parse_tools(raw) for raw in uniques]
    table = pl.DataFrame(
        {
            "tools": uniques,
            "tools_status": [status for status, _ in parsed],
            "tools_items": [items for _, items in parsed],
            "tools_json": [("[" + ",".join(items) + "]") if items else None for _, items in parsed],
        },
        schema={
            "tools": pl.String,
            "tools_status": pl.String,
            "tools_items": pl.List(pl.String),
            "tools_json": pl.String,
        },
    )
    return rows.join(table, on="tools", how="left", maintain_order="left").with_columns(
        pl.col("tools_status").fill_null("none")
    )


def key_list(rows: pl.DataFrame, mask: pl.Expr) -> list[dict[str, str]]:
    """``[{"source", "example_id"}, ...]`` of the rows where ``mask`` holds, in key order."""
    return rows.filter(mask).select(KEY).to_dicts()


def encode_records(values: pl.DataFrame, *, raw: str | None = None) -> pl.Series:
    """One compact JSON object text per row of ``values`` (keys = column names, in order);
    a null value omits its key. ``raw`` names the last column, whose text is already JSON
    and is spliced in verbatim (e.g. the parsed ``tools`` list).

    Why fragments: ``struct.json_encode`` writes nulls as ``null``. The leading columns
    that are never null are encoded by one ``json_encode``; each optional column after them
    becomes a ``,"key":value`` fragment (null where the value is null) spliced in with
    ``concat_str(ignore_nulls=True)``, so the big text is written in one pass and a frame
    without optional values costs a single ``json_encode``.
    """
    names = values.columns
    if raw is not None and names[-1] != raw:
        raise ValueError("the raw JSON column must be the last one")
    if values.height == 0:
        return pl.Series("line", [], dtype=pl.String)
    nulls = {c: values.get_column(c).null_count() for c in names}
    if nulls[names[0]]:
        raise ValueError(f"first key {names[0]!r} must never be null")
    # A column null on every row is a key no record carries.
    names = [c for c in names if nulls[c] < values.height]
    lead = 1  # the leading run of never-null columns, encoded together
    while lead < len(names) and not nulls[names[lead]] and names[lead] != raw:
        lead += 1
    base = pl.struct(names[:lead]).struct.json_encode()
    rest = names[lead:]
    if not rest:
        return values.select(base.alias("line")).to_series()
    fragments = []
    for c in rest:
        if c == raw:
            fragment = pl.concat_str(pl.lit("," + dumps(c) + ":"), pl.col(c))
        else:  # '{"key":value}' -> ',"key":value'
            encoded = pl.struct(c).struct.json_encode()
            fragment = pl.concat_str(
                pl.lit(","), encoded.str.strip_prefix("{").str.strip_suffix("}")
            )
        fragments.append(pl.when(pl.col(c).is_not_null()).then(fragment))
    spliced = pl.concat_str([base.str.head(-1), *fragments, pl.lit("}")], ignore_nulls=True)
    carries = pl.any_horizontal([pl.col(c).is_not_null() for c in rest])
    mask = values.select(carries).to_series()
    return by_mask(values, mask, spliced, base).alias("line")


def by_mask(
    frame: pl.DataFrame, mask: pl.Series, when_true: pl.Expr, otherwise: pl.Expr
) -> pl.Series:
    """``when_true`` evaluated only on rows where ``mask`` holds, ``otherwise`` on the rest,
    in the original row order.

    Why: ``pl.when`` evaluates both branches on every row; an expensive branch needed by few
    rows (e.g. tool-call detection) should cost only those rows.
    """
    indexed = frame.with_row_index("_row")
    hit = indexed.filter(mask).select("_row", when_true.alias("value"))
    rest = indexed.filter(~mask).select("_row", otherwise.alias("value"))
    if hit.height == 0:
        return rest.get_column("value")
    if rest.height == 0:
        return hit.get_column("value")
    merged = pl.concat([hit, rest])
    return merged.get_column("value").gather(merged.get_column("_row").arg_sort())


#: Rows encoded and written at a time: bounds the memory of one export to one chunk's text.
#: Small enough that the allocator reuses the chunk buffers: 100k-row chunks measured five
#: times the page faults (and seconds of kernel time at 1M rows).
CHUNK_ROWS = 5_000


def row_chunks(rows: pl.DataFrame, chunk: int = CHUNK_ROWS) -> Iterator[pl.DataFrame]:
    """``rows`` in consecutive slices of ``chunk`` rows (zero-copy views)."""
    for offset in range(0, rows.height, chunk):
        yield rows.slice(offset, chunk)


def _write_values(handle: BinaryIO, lines: pl.Series, terminator: str) -> None:
    if lines.len():
        pl.DataFrame({"l": lines}).write_csv(
            handle, include_header=False, quote_style="never", line_terminator=terminator
        )


#: Bytes of text written between two ``atomic.start_writeback`` calls.
WRITEBACK_BYTES = 16 << 20


class LineSink:
    """Writes JSON texts to an open binary handle as JSONL (one per line) or as a JSON
    array with one element per line, chunk by chunk; :meth:`close` writes the array's end.

    Why ``write_csv(quote_style="never")``: it streams a single string column to the file
    from Rust, many times faster than joining in Python, and writes values verbatim; that is
    safe because JSON text never holds a raw newline (checked here).
    """

    def __init__(self, handle: BinaryIO, *, json_array: bool = False) -> None:
        self.handle = handle
        self.json_array = json_array
        self.pending: pl.Series | None = None  # a JSON array's last element has no comma
        self.unsynced = 0  # bytes written since the last ``start_writeback``

    def write(self, chunk: pl.Series) -> None:
        if chunk.null_count():
            raise ValueError("export line is null")
        if chunk.str.contains("\n", literal=True).any():
            raise ValueError("export line holds a raw newline")
        self._write(chunk)
        # Start the disk writeback of every ~16 MB written (see ``atomic.start_writeback``).
        self.unsynced += int(chunk.str.len_bytes().sum() or 0)
        if self.unsynced >= WRITEBACK_BYTES:
            start_writeback(self.handle)
            self.unsynced = 0

    def _write(self, chunk: pl.Series) -> None:
        if not self.json_array:
            _write_values(self.handle, chunk, "\n")
            return
        if not chunk.len():
            return
        if self.pending is None:
            self.handle.write(b"[\n")
        else:
            _write_values(self.handle, self.pending, ",\n")
        _write_values(self.handle, chunk.head(-1), ",\n")
        self.pending = chunk.tail(1)

    def close(self) -> None:
        if not self.json_array:
            return
        if self.pending is None:
            self.handle.write(b"[]\n")
        else:
            _write_values(self.handle, self.pending, "\n")
            self.handle.write(b"]\n")


def write_lines(
    path: str | os.PathLike[str],
    lines: pl.Series | Iterable[pl.Series],
    *,
    json_array: bool = False,
) -> int:
    """Atomically write one JSON text per line (JSONL), or a JSON array with one element
    per line (see :class:`LineSink`); return the bytes written. ``lines`` is one series or
    an iterable of series (chunks, written as they come, so only one chunk's text is in
    memory at a time)."""
    chunks = [lines] if isinstance(lines, pl.Series) else lines
    target = Path(path)
    with atomic_writer(target) as handle:
        sink = LineSink(handle, json_array=json_array)
        for chunk in chunks:
            sink.write(chunk)
        sink.close()
    return target.stat().st_size
