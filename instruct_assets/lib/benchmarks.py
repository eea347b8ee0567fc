"""Benchmark items for decontamination, read from ``<data dir>/benchmarks/<name>/``.

Any supported container and format works: each benchmark folder goes through the same
normalization as a source, and an item's text is all its turns joined (question and answer),
so a training example that copies either part is found.
"""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.normalize import normalize_source
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.sources import SourceSpec

BENCHMARK_ITEMS_SCHEMA = pl.Schema(
    {"benchmark": pl.String, "item_id": pl.String, "text": pl.String, "source_file": pl.String})


def benchmark_names(paths: DataPaths) -> list[str]:
    if not paths.benchmarks.is_dir():
        return []
    return sorted(p.name for p in paths.benchmarks.iterdir()
                  if p.is_dir() and not p.name.startswith("."))


def load_benchmarks(paths: DataPaths) -> tuple[pl.DataFrame, dict[str, int]]:
    """(items, rejects per benchmark): every readable item of every benchmark folder."""
    frames, rejects = [], {}
    for name in benchmark_names(paths):
        folder = paths.benchmarks / name
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(folder).parts))
        result = normalize_source(paths, SourceSpec(name=name), files)
        rejects[name] = result.rejects.height
        frames.append(result.examples.select(
            pl.lit(name).alias("benchmark"),
            pl.col("example_id").alias("item_id"),
            pl.col("messages").list.eval(pl.element().struct.field("content"))
            .list.join("\n").alias("text"),
            "source_file",
        ))
    if not frames:
        return pl.DataFrame(schema=BENCHMARK_ITEMS_SCHEMA), rejects
    return pl.concat(frames).sort("benchmark", "item_id"), rejects
