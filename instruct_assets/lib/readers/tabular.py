"""Tabular containers -> raw records: CSV/TSV and Parquet.

Rows become JSON objects (column -> value) with polars' vectorised ``json_encode``, so the
format mappers treat a CSV of ``instruction,input,output`` exactly like Alpaca JSON.
"""

from __future__ import annotations

import csv
import io

import polars as pl

from instruct_assets.lib.readers.base import FileRejected, RawBatch


def read_csv(data: bytes, delimiter: str = ",") -> RawBatch:
    """Every data row with as many fields as the header; ragged rows are rejected."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRejected(
            "invalid_encoding", f"invalid UTF-8 at byte {exc.start}: {exc.reason}", data[:200]
        ) from exc
    if not text.strip():
        raise FileRejected("empty_file", "the file is empty")
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise FileRejected("invalid_csv", f"unreadable header: {exc}", text[:200]) from exc
    header = _unique_names(header)
    width = len(header)
    columns: list[list[str | None]] = [[] for _ in header]
    rows: list[int] = []
    rejects = []
    index = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            rejects.append((index, "invalid_csv", f"CSV syntax: {exc}", ""))
            index += 1
            continue
        if not fields:  # a blank line is not a record
            continue
        if len(fields) != width:
            rejects.append((index, "invalid_csv",
                            f"{len(fields)} fields where the header has {width}",
                            delimiter.join(fields)))
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
