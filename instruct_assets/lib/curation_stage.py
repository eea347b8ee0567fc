"""The curation stages' data work, shared by the assets in ``defs/curation`` and ``bench/``.

Why one function per stage: the benchmark must time exactly what the asset does, so the
asset keeps only Dagster wiring (views under its DuckDB resource, checks, metadata) and
both call :func:`publish_complexity`, :func:`publish_contamination` or
:func:`publish_curation`. Each reads its inputs, computes, writes its Parquet files
atomically and returns the frames plus the warehouse ``views`` to (re)create.

Memory: conversations are read ``chunk_rows`` at a time (``lib.chunks``) and only narrow
per-example rows are kept across chunks (about 120 bytes per row for complexity, 140 for
curation, a few per contaminated pair for decontamination); the frames returned are those
narrow tables, so the assets' metadata never needs a conversation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import polars as pl

from instruct_assets.lib.benchmarks import load_benchmarks
from instruct_assets.lib.chunks import DEFAULT_CHUNK_ROWS, iter_parquet_chunks
from instruct_assets.lib.complexity import ComplexityConfig, score_complexity
from instruct_assets.lib.curation import CurationConfig, curate
from instruct_assets.lib.decontaminate import (
    BenchmarkIndex,
    DecontamConfig,
    build_benchmark_index,
    find_contamination,
    hit_table,
)
from instruct_assets.lib.keys import KEY, key_sorted
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
from instruct_assets.lib.stage_io import example_files
from instruct_assets.lib.warehouse import view_over

#: What the three stages read of the normalized examples.
EXAMPLE_COLUMNS = ["source", "example_id", "messages"]
QUALITY_INPUT_COLUMNS = [
    "source", "example_id", "quality_score", "quality_flags", "dup_cluster_id",
    "is_dup_representative",
]


def example_chunks(paths: DataPaths, sources: list[str],
                   chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pl.DataFrame]:
    """:data:`EXAMPLE_COLUMNS` of every published example, ``chunk_rows`` rows at a time,
    in ``read_examples`` order (one chunk is exactly ``read_examples``)."""
    yield from iter_parquet_chunks(example_files(paths, sources), EXAMPLE_COLUMNS, chunk_rows,
                                   NORMALIZED_SCHEMA)


def _concat(parts: list[pl.DataFrame]) -> pl.DataFrame:
    return parts[0] if len(parts) == 1 else pl.concat(parts)


@dataclass
class ComplexityStage:
    scored: pl.DataFrame
    views: dict[str, str]
    path: str


def publish_complexity(paths: DataPaths, sources: list[str], cfg: ComplexityConfig, *,
                       chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ComplexityStage:
    """Score every published example of ``sources``; ``curation/complexity.parquet``
    sorted by (source, example_id), ``complexity_tier`` as text.

    Every score reads its own row only (no quantile or corpus statistic), so the
    conversations are scored ``chunk_rows`` at a time and only the scored (narrow) rows
    are kept; their one sort by key is global.
    """
    parts = []
    for chunk in example_chunks(paths, sources, chunk_rows):
        parts.append(score_complexity(chunk, cfg).with_columns(
            pl.col("complexity_tier").cast(pl.String)))
        del chunk
    scored = _concat(parts).sort(KEY)
    del parts
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


def publish_contamination(paths: DataPaths, sources: list[str], cfg: DecontamConfig, *,
                          chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ContaminationStage:
    """Benchmark items of ``<data dir>/benchmarks`` against every published example;
    ``curation/contamination.parquet`` and ``contamination_hits.parquet``.

    A pair depends on one example and the (small) index only, so examples are checked
    ``chunk_rows`` at a time; the found pairs (a few per contaminated row) are sorted
    once at the end, as :func:`find_contamination` sorts them.
    """
    items, bench_rejects = load_benchmarks(paths)
    index = build_benchmark_index(items, cfg)
    parts, rows = [], 0
    for chunk in example_chunks(paths, sources, chunk_rows):
        rows += chunk.height
        parts.append(find_contamination(chunk, index, cfg))
        del chunk
    found = parts[0] if len(parts) == 1 else pl.concat(parts).sort(
        "source", "example_id", "benchmark", "item_id")
    del parts
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
                     quality_cfg: QualityThresholds, *,
                     chunk_rows: int = DEFAULT_CHUNK_ROWS) -> CurationStage:
    """Curate the quality table with contamination and human verdicts;
    ``curation/curation.parquet`` (sorted by key) and ``edited_examples.parquet``.

    Every input is narrow; what bounds memory is holding as few copies of the curated
    rows as possible: the rules are row-local (contamination is a small keyed lookup),
    so the quality table is curated ``chunk_rows`` at a time and only the curated rows
    are kept; verdicts touch their rows in place; the sort by key is skipped when the
    rows are already in key order (the quality table is published sorted).
    """
    contamination = pl.read_parquet(paths.curation / "contamination.parquet")
    parts = []
    for chunk in iter_parquet_chunks([paths.quality / "quality.parquet"],
                                     QUALITY_INPUT_COLUMNS, chunk_rows):
        parts.append(curate(chunk, cfg, contamination))
        del chunk
    curated = _concat(parts)
    del parts
    human = read_parquet_or_empty(ReviewPaths(paths).annotations, ANNOTATIONS_SCHEMA)
    # no annotation: nothing to read (the lazy scan would still read every file)
    examples = (examples_for(paths, sources, human.select(KEY)) if human.height
                else pl.DataFrame(schema=NORMALIZED_SCHEMA))
    verdicts = apply_verdicts(curated, human, examples, cfg=cfg, quality_cfg=quality_cfg)
    del curated
    # edited rows carry their new ids: publish in key order (ties keep their order)
    curated = verdicts.curated
    if not key_sorted(curated, strict=False):
        curated = curated.sort(KEY, maintain_order=True)
        verdicts = replace(verdicts, curated=curated)  # not two copies of every row
    target = write_parquet(curated, paths.curation / "curation.parquet")
    edited = write_parquet(verdicts.edited_examples, paths.curation / "edited_examples.parquet",
                           EDITED_SCHEMA)
    return CurationStage(curated, verdicts, {
        "curation": view_over([target], curated.schema),
        "edited_examples": view_over([edited], EDITED_SCHEMA)})


__all__ = [
    "ComplexityStage", "ContaminationStage", "CurationStage", "example_chunks",
    "publish_complexity", "publish_contamination", "publish_curation",
]
