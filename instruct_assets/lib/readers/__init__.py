"""Readers: raw file bytes -> records (JSON objects as text) + units that are not records."""

from __future__ import annotations

from pathlib import Path

from instruct_assets.lib.readers.base import FileRejected, RawBatch
from instruct_assets.lib.readers.files import read_bytes, reject_binary, sniff_container
from instruct_assets.lib.readers.json_records import read_json, read_jsonl
from instruct_assets.lib.readers.tabular import read_csv, read_parquet
from instruct_assets.lib.readers.text import read_text

__all__ = ["FileRejected", "RawBatch", "read_file"]


def read_file(path: Path) -> RawBatch:
    """Read any supported file; a file that cannot be read at all is one reject unit."""
    try:
        data = read_bytes(path)
        container = sniff_container(path, data)
        if container != "parquet":
            reject_binary(data)
        if container == "jsonl":
            return read_jsonl(data)
        if container == "json":
            return read_json(data)
        if container in ("csv", "tsv"):
            return read_csv(data, "," if container == "csv" else "\t")
        if container == "parquet":
            return read_parquet(data)
        return read_text(data)
    except FileRejected as exc:
        return RawBatch.build(None, [(0, exc.reason_code, exc.detail, exc.raw)], "unreadable")
    except OSError as exc:
        return RawBatch.build(None, [(0, "unreadable_file", str(exc), None)], "unreadable")
