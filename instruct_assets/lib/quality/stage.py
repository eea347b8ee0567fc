"""The quality stage's data work, shared by the ``quality_scores`` asset and ``bench/``.

Why one function: the benchmark must time exactly what the asset does, so the asset keeps
only Dagster wiring (views under its DuckDB resource, check results, metadata) and both call
:func:`publish_quality`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import polars as pl

from instruct_assets.lib.parquet_io import write_parquet
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.consistency import system_prompt_table
from instruct_assets.lib.quality.dedup import DedupConfig
from instruct_assets.lib.quality.table import build_quality, flag_counts, source_summary
from instruct_assets.lib.schema import NORMALIZED_SCHEMA, REJECTS_SCHEMA
from instruct_assets.lib.stage_io import read_examples, rejects_per_source
from instruct_assets.lib.warehouse import view_over

KEY = ["source", "example_id"]


@dataclass
class QualityStage:
    """What the stage wrote, the views to (re)create, and the figures its checks read."""

    sources: list[str]
    examples_rows: int
    quality: pl.DataFrame
    summary: pl.DataFrame
    flags: pl.DataFrame
    prompts: pl.DataFrame
    views: dict[str, str]
    #: published examples without a quality row (sample of ids) and their count
    missing: pl.DataFrame
    #: quality rows whose key appears more than once
    duplicated: int
    #: rows whose score is null or outside [0, 1]
    out_of_range: pl.DataFrame
    #: seconds spent reading examples and scoring them (not writing)
    seconds: float


def publish_quality(paths: DataPaths, sources: list[str], cfg: QualityThresholds,
                    dedup: DedupConfig) -> QualityStage:
    """Score every published example of ``sources`` and write ``quality/*.parquet``
    atomically; the caller creates the returned views in the warehouse."""
    started = time.perf_counter()
    examples = read_examples(paths, sources)
    quality = build_quality(examples, cfg, dedup)
    seconds = time.perf_counter() - started
    summary = source_summary(quality, examples, rejects_per_source(paths, sources), cfg)
    flags = flag_counts(quality)
    prompts = system_prompt_table(examples)
    out = paths.quality
    tables = {"quality": quality, "source_summary": summary, "flag_counts": flags,
              "system_prompts": prompts}
    views = {
        "examples": view_over([paths.normalized_file(s) for s in sources], NORMALIZED_SCHEMA),
        "rejects": view_over([paths.rejects_file(s) for s in sources], REJECTS_SCHEMA),
    }
    for name, frame in tables.items():
        views[name] = view_over([write_parquet(frame, out / f"{name}.parquet")], frame.schema)
    q_keys = quality.select(KEY)
    return QualityStage(
        sources=sources,
        examples_rows=examples.height,
        quality=quality,
        summary=summary,
        flags=flags,
        prompts=prompts,
        views=views,
        missing=examples.select(KEY).join(q_keys, on=KEY, how="anti"),
        duplicated=q_keys.filter(pl.struct(KEY).is_duplicated()).height,
        out_of_range=quality.filter(pl.col("quality_score").is_null()
                                    | ~pl.col("quality_score").is_between(0.0, 1.0)),
        seconds=seconds,
    )
