"""The published quality table: signals + duplicate clusters, and the per-source summaries.

Composes ``signals.scores_and_order`` (per-example signals), ``dedup.find_clusters`` and
``dedup.pick_representatives`` (clusters), ``signals.apply_duplicate_penalty`` (flags and the
combined score), and derives ``source_summary``, ``flag_counts`` and ``system_prompts``.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from instruct_assets.lib.keys import KEY, key_sorted
from instruct_assets.lib.quality.config import FLAG_ORDER, QualityThresholds
from instruct_assets.lib.quality.consistency import shape_distribution
from instruct_assets.lib.quality.dedup import (
    DedupConfig,
    duplicates_frame,
    find_clusters,
    pick_representatives,
)
from instruct_assets.lib.quality.signals import (
    align_by_key,
    apply_duplicate_penalty,
    scores_and_order,
    sort_by_key,
)


def build_quality(
    examples: pl.DataFrame, cfg: QualityThresholds, dedup: DedupConfig
) -> pl.DataFrame:
    """One row per example: every signal, the duplicate columns, flags and quality_score.

    Duplicate clusters are found in a background thread while the signals are scored: both
    are CPU bound with serial stretches (flattening messages, clustering; template groups,
    flags), so side by side they keep both cores busy. Neither result depends on it.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        found = pool.submit(find_clusters, examples, dedup)
        scores, order = scores_and_order(examples, cfg)
        clusters = found.result()
    keys = scores.select(KEY)
    if not key_sorted(keys, strict=True):  # repeated or null keys: rows must be matched by joins
        dups = pick_representatives(duplicates_frame(examples, clusters),
                                    scores.select(*KEY, "quality_score"))
        return combine_duplicates(scores, dups, cfg)
    # Unique keys: score row i is example ``order[i]``, so the duplicate rows are gathered in
    # the same order, and only members of shared clusters are ranked (no join of every key).
    dups = duplicates_frame(keys, clusters, order.to_numpy())
    rep = np.ones(dups.height, dtype=bool)
    shared = np.flatnonzero(dups["dup_cluster_size"].to_numpy() > 1)
    if shared.size:
        picked = pick_representatives(dups[shared], scores[shared].select(*KEY, "quality_score"))
        rep[shared] = picked["is_dup_representative"].to_numpy()
    return combine_duplicates(scores, dups.with_columns(is_dup_representative=pl.Series(rep)),
                              cfg)


def combine_duplicates(scores: pl.DataFrame, dups: pl.DataFrame,
                       cfg: QualityThresholds) -> pl.DataFrame:
    """The quality rows of ``scores`` (``score_examples`` columns) with the duplicate columns
    of ``dups`` (``find_duplicates`` + ``is_dup_representative``, same keys) folded in: the
    duplicate flags, the final score and the cluster facts, sorted by key."""
    # In key order, like the scores: both alignments below then compare keys, not join them.
    dups = sort_by_key(dups)
    quality = apply_duplicate_penalty(scores, dups, cfg)
    extra = dups.select(*KEY, "exact_key", "near_dup_jaccard", "dup_cluster_size")
    aligned = align_by_key(quality, extra)
    if aligned.height != quality.height:  # duplicate keys in ``dups``: rows multiply
        return quality.join(extra, on=KEY, how="left").sort(KEY)
    return sort_by_key(quality.hstack(aligned))


def flag_counts(quality: pl.DataFrame) -> pl.DataFrame:
    """(source, flag, rows): how many rows of each source raised each flag."""
    return (
        quality.select("source", pl.col("quality_flags").alias("flag"))
        .explode("flag")
        .drop_nulls("flag")
        .group_by("source", "flag")
        .agg(pl.len().cast(pl.Int64).alias("rows"))
        .sort("source", "flag")
    )


def narrow_columns(quality: pl.DataFrame) -> pl.DataFrame:
    """The per-row columns the summaries, checks and metadata read: what a chunked stage
    keeps of each quality row once it is written (source, quality_score, flagged = any
    flag raised, the duplicate flags, output_shape)."""
    return quality.select(
        "source",
        "quality_score",
        (pl.col("quality_flags").list.len() > 0).alias("flagged"),
        "is_exact_duplicate",
        "is_near_duplicate",
        "output_shape",
    )


def merge_flag_counts(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """:func:`flag_counts` of several chunks' rows from each chunk's table."""
    if len(parts) == 1:
        return parts[0]
    return (
        pl.concat(parts)
        .group_by("source", "flag")
        .agg(pl.col("rows").sum().cast(pl.Int64))
        .sort("source", "flag")
    )


def source_summary(
    narrow: pl.DataFrame,
    flags: pl.DataFrame,
    prompts: pl.DataFrame,
    rejects_per_source: dict[str, int],
    cfg: QualityThresholds,
) -> pl.DataFrame:
    """Per source: rows, rejects, flags by kind, mean score, output shapes, system prompts.

    Reads :func:`narrow_columns` of every quality row (in key order), ``flag_counts`` and
    the ``system_prompt_table`` of the examples, never the wide rows.
    """
    shapes = shape_distribution(narrow, cfg) if narrow.height else None
    rows = []
    sources = sorted(set(narrow["source"].unique().to_list()) | set(rejects_per_source))
    for source in sources:
        part = narrow.filter(pl.col("source") == source)
        by_flag = {f: int(n) for _s, f, n in flags.filter(pl.col("source") == source).rows()}
        by_flag = {
            f: by_flag[f]
            for f in [*FLAG_ORDER, "exact_duplicate", "near_duplicate"]
            if f in by_flag
        }
        shape = (
            {}
            if shapes is None
            else {
                r["shape"]: int(r["count"])
                for r in shapes.filter(pl.col("source") == source).iter_rows(named=True)
            }
        )
        n_prompts = prompts.filter(pl.col("sources").list.contains(source)).height
        n = part.height
        rows.append(
            {
                "source": source,
                "rows": n,
                "rejects": int(rejects_per_source.get(source, 0)),
                "mean_quality_score": float(part["quality_score"].mean()) if n else None,
                "flagged_rows": int(part["flagged"].sum()) if n else 0,
                "flagged_share": float(part["flagged"].mean()) if n else 0.0,
                "exact_duplicates": int(part["is_exact_duplicate"].sum()) if n else 0,
                "near_duplicates": int(part["is_near_duplicate"].sum()) if n else 0,
                "flags_by_kind": json.dumps(by_flag),
                "output_shapes": json.dumps(dict(sorted(shape.items()))),
                "distinct_system_prompts": n_prompts,
            }
        )
    schema = {
        "source": pl.String,
        "rows": pl.Int64,
        "rejects": pl.Int64,
        "mean_quality_score": pl.Float64,
        "flagged_rows": pl.Int64,
        "flagged_share": pl.Float64,
        "exact_duplicates": pl.Int64,
        "near_duplicates": pl.Int64,
        "flags_by_kind": pl.String,
        "output_shapes": pl.String,
        "distinct_system_prompts": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)


def worst_candidates(quality: pl.DataFrame, per_source: int = 5) -> pl.DataFrame:
    """The rows :func:`worst_examples` can pick from ``quality`` (its ``per_source`` lowest
    per source, with their flags): the worst of several chunks are the worst of their
    candidates (the order is total)."""
    return (
        quality.filter(pl.col("quality_flags").list.len() > 0)
        .sort("source", "quality_score", "example_id")
        .group_by("source", maintain_order=True)
        .head(per_source)
        .select("source", "example_id", "quality_score", "quality_flags")
    )


def worst_examples(quality: pl.DataFrame, per_source: int = 5) -> pl.DataFrame:
    """The lowest-scoring examples of each source with their flags (ties: example_id)."""
    return (
        quality.filter(pl.col("quality_flags").list.len() > 0)
        .sort("source", "quality_score", "example_id")
        .group_by("source", maintain_order=True)
        .head(per_source)
        .select(
            "source",
            "example_id",
            "quality_score",
            pl.col("quality_flags").list.join(", ").alias("reasons"),
        )
    )


def score_histogram(quality: pl.DataFrame, bins: int = 10) -> dict[str, int]:
    """Counts of quality_score in ``bins`` equal bins over [0, 1]."""
    idx = (pl.col("quality_score") * bins).floor().clip(0, bins - 1).cast(pl.Int64)
    counts = dict(quality.select(idx.alias("b")).group_by("b").len().iter_rows())
    return {f"{b / bins:.1f}-{(b + 1) / bins:.1f}": int(counts.get(b, 0)) for b in range(bins)}
