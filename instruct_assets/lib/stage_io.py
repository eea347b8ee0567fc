"""Reading the published outputs a stage depends on (one definition of what is "published").

Later stages read only promoted sources that are still registered (a deleted source folder
drops out), through the files ``publish`` wrote.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from instruct_assets.lib.chunks import read_rows
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.publish import published_sources
from instruct_assets.lib.schema import NORMALIZED_SCHEMA


def example_files(paths: DataPaths, sources: list[str]) -> list[Path]:
    """The published example files of ``sources`` in :func:`read_examples`' order (sources
    by name), for stages that walk them in chunks (``lib.chunks.iter_parquet_chunks``)."""
    return [paths.normalized_file(s) for s in sorted(sources)
            if paths.normalized_file(s).exists()]


def read_examples(paths: DataPaths, sources: list[str],
                  columns: list[str] | None = None) -> pl.DataFrame:
    """All published examples of ``sources``, in a fixed order: sources by name, each in its
    published order (file, row). Stages sort their own outputs; no re-sort here (it cost
    seconds per stage at a million rows). ``columns``: read only these (all by default).
    Read by row-group ranges in parallel (``chunks.read_rows``)."""
    files = example_files(paths, sources)
    if not files:
        empty = pl.DataFrame(schema=NORMALIZED_SCHEMA)
        return empty.select(columns) if columns is not None else empty
    return read_rows(files, columns)


def rejects_per_source(paths: DataPaths, sources: list[str]) -> dict[str, int]:
    out = {}
    for s in sources:
        f = paths.rejects_file(s)
        out[s] = pl.scan_parquet(f).select(pl.len()).collect().item() if f.exists() else 0
    return out


def live_sources(paths: DataPaths, registered: list[str]) -> list[str]:
    return published_sources(paths, registered)


__all__ = ["example_files", "live_sources", "read_examples", "rejects_per_source"]
