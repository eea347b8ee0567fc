"""Readers: raw file bytes -> records (JSON objects as text) + units that are not records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from instruct_assets.lib.readers.base import (
    MAX_RECORD_BYTES,
    READ_REJECTS_SCHEMA,
    FileRejected,
    RawBatch,
    excerpt,
)
from instruct_assets.lib.readers.files import read_bytes, reject_binary, sniff_container
from instruct_assets.lib.readers.json_records import read_json, read_jsonl
from instruct_assets.lib.readers.tabular import read_csv, read_parquet
from instruct_assets.lib.readers.text import read_text

__all__ = ["MAX_RECORD_BYTES", "FileRejected", "RawBatch", "read_file", "reject_oversized"]


def read_file(path: Path, max_record_bytes: int = MAX_RECORD_BYTES,
              data: bytes | None = None, offsets: np.ndarray | None = None) -> RawBatch:
    """Read any supported file; a file that cannot be read at all is one reject unit, and a
    record over ``max_record_bytes`` is a ``too_large`` reject. ``data``: the file's content
    as ``read_bytes`` returns it, when the caller already holds it (with its JSON Lines
    ``offsets`` when known)."""
    batch = _read_any(path, max_record_bytes, data, offsets)
    if batch.table is not None:  # the JSONL fast path: every line is under the ceiling
        return batch
    return reject_oversized(batch, max_record_bytes)


def _read_any(path: Path, max_record_bytes: int, data: bytes | None = None,
              offsets: np.ndarray | None = None) -> RawBatch:
    try:
        if data is None:
            data = read_bytes(path)
        container = sniff_container(path, data)
        if container != "parquet":
            reject_binary(data)
        if container == "jsonl":
            return read_jsonl(data, max_record_bytes, offsets=offsets)
        if container == "json":
            return read_json(data, max_record_bytes)
        if container in ("csv", "tsv"):
            return read_csv(data, "," if container == "csv" else "\t")
        if container == "parquet":
            return read_parquet(data)
        return read_text(data)
    except FileRejected as exc:
        return RawBatch.build(None, [(0, exc.reason_code, exc.detail, exc.raw)], "unreadable")
    except OSError as exc:
        return RawBatch.build(None, [(0, "unreadable_file", str(exc), None)], "unreadable")


def reject_oversized(batch: RawBatch, max_bytes: int) -> RawBatch:
    records = batch.records
    size = pl.col("raw").str.len_bytes()
    big = records.filter(size > max_bytes)
    if big.height == 0:
        return batch
    rejects = [
        (row, "too_large",
         f"record is {len(raw.encode()):,} bytes, over the {max_bytes:,}-byte ceiling"
         f"{_largest_field(raw)}", excerpt(raw))
        for row, raw in big.select("source_row", "raw").iter_rows()
    ]
    too_large = pl.DataFrame(rejects, schema=READ_REJECTS_SCHEMA, orient="row")
    return RawBatch.build(records.filter(size <= max_bytes),
                          pl.concat([batch.rejects, too_large]).sort("source_row"),
                          batch.container, batch.notes)


def _largest_field(raw: str) -> str:
    """``; largest field 'output' (52,428,800 characters)``, or "" when not an object."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(record, dict) or not record:
        return ""
    sizes = {k: len(v) if isinstance(v, str) else len(json.dumps(v, ensure_ascii=False))
             for k, v in record.items()}
    key = max(sizes, key=lambda k: sizes[k])
    return f"; largest field {key!r} ({sizes[key]:,} characters)"
