"""Tabular containers -> raw records: CSV/TSV and Parquet.

Rows become JSON objects (column -> value) with polars' vectorised ``json_encode``, so the
format mappers treat a CSV of ``instruction,input,output`` exactly like Alpaca JSON.
"""

from __future__ import annotations

import csv
import io

import polars as pl

from instruct_assets.lib.readers.base import (
    FileRejected,
    RawBatch,
    decode_lossless,
    invalid_bytes_note,
    printable,
)


def read_csv(data: bytes, delimiter: str = ",") -> RawBatch:
    """Every data row with as many fields as the header; ragged rows are rejected.

    A row holding bytes that are not UTF-8 is an ``invalid_encoding`` reject naming its
    column; the other rows are read. Details name the row's first line in the file.
    """
    text, invalid_bytes = decode_lossless(data)
    if not text.strip():
        raise FileRejected("empty_file", "the file is empty")
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise FileRejected("invalid_csv", f"unreadable header: {exc}", text[:200]) from exc
    if invalid_bytes and (note := invalid_bytes_note(delimiter.join(header))) is not None:
        raise FileRejected("invalid_encoding", f"header: {note}", printable(text[:200]))
    header = _unique_names(header)
    width = len(header)
    columns: list[list[str | None]] = [[] for _ in header]
    rows: list[int] = []
    rejects = []
    index = 0
    line = reader.line_num + 1  # first line of the next row
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rejects.append((index, "invalid_csv", f"line {line}: CSV syntax: {exc}", ""))
            index += 1
            line = reader.line_num + 1
            continue
        where = f"line {line}"
        line = reader.line_num + 1
        if not fields:  # a blank line is not a record
            continue
        if len(fields) != width:
            rejects.append((index, "invalid_csv",
                            f"{where}: {len(fields)} fields where the header has {width}",
                            delimiter.join(fields)))
        elif invalid_bytes and (bad := _bad_column(header, fields)) is not None:
            rejects.append((index, "invalid_encoding", f"{where}: {bad}",
                            printable(delimiter.join(fields))))
        else:
            rows.append(index)
            for col, value in zip(columns, fields, strict=True):
                col.append(value if value != "" else None)
        index += 1
    frame = pl.DataFrame({name: col for name, col in zip(header, columns, strict=True)},
                         schema={name: pl.String for name in header})
    records = frame.select(
        pl.Series("source_row", rows, dtype=pl.Int64),
        pl.struct(pl.all()).struct.json_encode().alias("raw"),
    ) if width else None
    return RawBatch.build(records, rejects, "csv" if delimiter == "," else "tsv")


def _bad_column(header: list[str], fields: list[str]) -> str | None:
    """``column 'x': invalid UTF-8 byte 0xe9 at character 3`` for the first bad field."""
    for name, value in zip(header, fields, strict=True):
        note = invalid_bytes_note(value)
        if note is not None:
            return f"column {name!r}: {note}"
    return None


def _unique_names(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(header):
        name = name.strip() or f"column_{i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


def read_parquet(data: bytes) -> RawBatch:
    """Every row of a Parquet file; nested columns (``messages``) become nested JSON."""
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars raises several types for corrupt files
        raise FileRejected("unreadable_file", f"not a readable Parquet file: {exc}",
                           data[:200]) from exc
    binary = [n for n, t in frame.schema.items() if t == pl.Binary]
    if binary:
        frame = frame.with_columns(pl.col(binary).cast(pl.String, strict=False))
    records = frame.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("source_row"),
        pl.struct(pl.all()).struct.json_encode().alias("raw"),
    )
    return RawBatch.build(records, None, "parquet")
