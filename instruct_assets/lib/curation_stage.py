"""The curation stages' data work, shared by the assets in ``defs/curation`` and ``bench/``.

Why one function per stage: the benchmark must time exactly what the asset does, so the
asset keeps only Dagster wiring (views under its DuckDB resource, checks, metadata) and
both call :func:`publish_complexity`, :func:`publish_contamination` or
:func:`publish_curation`. Each reads its inputs, computes, writes its Parquet files
atomically and returns the frames plus the warehouse ``views`` to (re)create.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from instruct_assets.lib.benchmarks import load_benchmarks
from instruct_assets.lib.complexity import ComplexityConfig, score_complexity
from instruct_assets.lib.curation import CurationConfig, curate
from instruct_assets.lib.decontaminate import (
    BenchmarkIndex,
    DecontamConfig,
    build_benchmark_index,
    find_contamination,
    hit_table,
)
from instruct_assets.lib.parquet_io import read_parquet_or_empty, write_parquet
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.review.annotations import ANNOTATIONS_SCHEMA
from instruct_assets.lib.review.io import examples_for
from instruct_assets.lib.review.layout import ReviewPaths
from instruct_assets.lib.review.verdicts import (
    EDITED_SCHEMA,
    VerdictOutcome,
    apply_verdicts,
)
from instruct_assets.lib.schema import NORMALIZED_SCHEMA
from instruct_assets.lib.stage_io import read_examples
from instruct_assets.lib.warehouse import view_over

KEY = ["source", "example_id"]
#: What the three stages read of the normalized examples.
EXAMPLE_COLUMNS = ["source", "example_id", "messages"]
QUALITY_INPUT_COLUMNS = [
    "source", "example_id", "quality_score", "quality_flags", "dup_cluster_id",
    "is_dup_representative",
]


@dataclass
class ComplexityStage:
    scored: pl.DataFrame
    views: dict[str, str]
    path: str


def publish_complexity(paths: DataPaths, sources: list[str],
                       cfg: ComplexityConfig) -> ComplexityStage:
    """Score every published example of ``sources``; ``curation/complexity.parquet``
    sorted by (source, example_id), ``complexity_tier`` as text."""
    examples = read_examples(paths, sources, columns=EXAMPLE_COLUMNS)
    scored = score_complexity(examples, cfg).with_columns(
        pl.col("complexity_tier").cast(pl.String)).sort(KEY)
    del examples
    target = write_parquet(scored, paths.curation / "complexity.parquet")
    return ComplexityStage(scored, {"complexity": view_over([target], scored.schema)},
                           str(target))


@dataclass
class ContaminationStage:
    found: pl.DataFrame
    hits: pl.DataFrame
    items: pl.DataFrame
    bench_rejects: dict[str, int]
    index: BenchmarkIndex
    examples_rows: int
    views: dict[str, str]


def publish_contamination(paths: DataPaths, sources: list[str],
                          cfg: DecontamConfig) -> ContaminationStage:
    """Benchmark items of ``<data dir>/benchmarks`` against every published example;
    ``curation/contamination.parquet`` and ``contamination_hits.parquet``."""
    examples = read_examples(paths, sources, columns=EXAMPLE_COLUMNS)
    items, bench_rejects = load_benchmarks(paths)
    index = build_benchmark_index(items, cfg)
    found = find_contamination(examples, index, cfg)
    rows = examples.height
    del examples
    hits = hit_table(found, index)
    target = write_parquet(found, paths.curation / "contamination.parquet")
    hits_target = write_parquet(hits, paths.curation / "contamination_hits.parquet")
    return ContaminationStage(
        found, hits, items, bench_rejects, index, rows,
        {"contamination": view_over([target], found.schema),
         "contamination_hits": view_over([hits_target], hits.schema)})


@dataclass
class CurationStage:
    curated: pl.DataFrame
    verdicts: VerdictOutcome
    views: dict[str, str]


def publish_curation(paths: DataPaths, sources: list[str], cfg: CurationConfig,
                     quality_cfg: QualityThresholds) -> CurationStage:
    """Curate the quality table with contamination and human verdicts;
    ``curation/curation.parquet`` (sorted by key) and ``edited_examples.parquet``."""
    quality = pl.read_parquet(paths.quality / "quality.parquet", columns=QUALITY_INPUT_COLUMNS)
    contamination = pl.read_parquet(paths.curation / "contamination.parquet")
    curated = curate(quality, cfg, contamination)
    human = read_parquet_or_empty(ReviewPaths(paths).annotations, ANNOTATIONS_SCHEMA)
    # no annotation: nothing to read (the lazy scan would still read every file)
    examples = (examples_for(paths, sources, human.select(KEY)) if human.height
                else pl.DataFrame(schema=NORMALIZED_SCHEMA))
    verdicts = apply_verdicts(curated, human, examples, cfg=cfg, quality_cfg=quality_cfg)
    # edited rows carry their new ids: publish in key order (ties keep their order)
    curated = verdicts.curated.sort(KEY, maintain_order=True)
    target = write_parquet(curated, paths.curation / "curation.parquet")
    edited = write_parquet(verdicts.edited_examples, paths.curation / "edited_examples.parquet",
                           EDITED_SCHEMA)
    return CurationStage(curated, verdicts, {
        "curation": view_over([target], curated.schema),
        "edited_examples": view_over([edited], EDITED_SCHEMA)})


__all__ = [
    "ComplexityStage", "ContaminationStage", "CurationStage",
    "publish_complexity", "publish_contamination", "publish_curation",
]
