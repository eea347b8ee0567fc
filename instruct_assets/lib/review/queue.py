"""Which examples go to a human: flagged rows, borderline scores and a stratified sample.

Why three kinds: flagged rows check that the automatic flags are right (a wrong flag
silently removes good data), borderline rows are where the quality threshold is least
sure, and a random sample per source and complexity tier measures what nothing flagged.

Every choice is deterministic and independent of row order: candidates are ranked by
``md5(seed + U+001F + source + U+001F + example_id)`` (DuckDB, vectorised), so the same
data gives the same queue on any machine, and adding rows to one source never reshuffles
another. An example is queued once, under the first kind that picks it
(``flagged`` > ``borderline`` > ``sample``). Examples that already carry a human verdict
are left out, so each refresh brings new work, and so are duplicate copies that are not
their cluster's representative (curation drops those whatever a reviewer says).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from instruct_assets.lib.chunks import DEFAULT_CHUNK_ROWS, parquet_rows
from instruct_assets.lib.keys import KEY

#: Queue kinds in priority order (the ``queue_reason`` values).
REASONS: tuple[str, ...] = ("flagged", "borderline", "sample")

QUEUE_SCHEMA = pl.Schema({
    "queue_position": pl.Int64,
    "source": pl.String,
    "example_id": pl.String,
    "queue_reason": pl.String,
    "quality_score": pl.Float64,
    "quality_flags": pl.List(pl.String),
    "complexity_tier": pl.String,
    "review_rank": pl.String,
})


@dataclass(frozen=True)
class QueueConfig:
    """How many examples of each kind, and what "borderline" means."""

    #: Flagged rows per source (a sample of them when there are more).
    flagged_per_source: int = 25
    #: Rows per source whose score lies within ``borderline_margin`` of the center.
    borderline_per_source: int = 15
    #: The quality threshold curation applies (``CurationSettings.min_quality_score``).
    borderline_center: float = 0.5
    #: Half-width of the borderline band (0.1: scores 0.4-0.6 around a 0.5 threshold,
    #: i.e. one severe-ish penalty either way).
    borderline_margin: float = 0.1
    #: Random rows per (source, complexity tier), whatever their flags.
    sample_per_stratum: int = 5
    #: Part of the hashed text: changing it draws another (equally valid) queue.
    seed: str = "instruct-assets-review-v1"


def hash_rank(frame: pl.DataFrame, seed: str) -> pl.Series:
    """``md5(seed, source, example_id)`` as hex per row (sorting by it is a seeded shuffle)."""
    keys = frame.select(KEY)  # noqa: F841 - read by DuckDB by name
    con = duckdb.connect()
    try:
        hashed = con.sql("SELECT md5($seed || chr(31) || source || chr(31) || example_id) AS h "
                         "FROM keys", params={"seed": seed}).pl()
    finally:
        con.close()
    return hashed["h"].alias("review_rank")


def _take(candidates: pl.DataFrame, n: int, by: list[str]) -> pl.DataFrame:
    """The first ``n`` candidates of each ``by`` group in rank order."""
    if n <= 0 or candidates.height == 0:
        return candidates.clear()
    # a selection of the n smallest per group, not a sort of every candidate (1M rows)
    others = [c for c in candidates.columns if c not in by]
    return (candidates.group_by(by)
            .agg(pl.col(others).bottom_k_by(["review_rank", "example_id"], n))
            .explode(others)
            .select(candidates.columns)
            .sort(*by, "review_rank", "example_id", nulls_last=True))


def select_queue(
    quality: pl.DataFrame,
    complexity: pl.DataFrame | None,
    cfg: QueueConfig,
    reviewed: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The review queue (``QUEUE_SCHEMA``), ordered by kind, then source, then rank.

    ``quality`` needs ``source``, ``example_id``, ``quality_score``, ``quality_flags``;
    with ``is_dup_representative``, copies that are not their duplicate cluster's
    representative are left out (curation drops them whatever a reviewer says, so
    reviewing them is wasted work). ``complexity`` (optional): ``source``,
    ``example_id``, ``complexity_tier``; ``reviewed`` (optional): the
    ``source``/``example_id`` pairs that already have a verdict.
    """
    base = _ranked(quality, complexity, cfg, reviewed)
    if base.height == 0:
        return pl.DataFrame(schema=QUEUE_SCHEMA)
    return _pick(base, cfg)


def _ranked(quality: pl.DataFrame, complexity: pl.DataFrame | None, cfg: QueueConfig,
            reviewed: pl.DataFrame | None) -> pl.DataFrame:
    """The rows that can be queued, with their tier and ``review_rank``."""
    base = quality
    if "is_dup_representative" in quality.columns:
        base = base.filter(pl.col("is_dup_representative").fill_null(True))
    base = base.select(*KEY, pl.col("quality_score").cast(pl.Float64),
                       pl.col("quality_flags").cast(pl.List(pl.String)))
    if complexity is not None and complexity.height:
        tiers = complexity.select(*KEY, pl.col("complexity_tier").cast(pl.String))
        base = base.join(tiers, on=KEY, how="left")
    else:
        base = base.with_columns(complexity_tier=pl.lit(None, dtype=pl.String))
    if reviewed is not None and reviewed.height:
        base = base.join(reviewed.select(KEY).unique(), on=KEY, how="anti")
    if base.height == 0:
        return base
    return base.with_columns(hash_rank(base, cfg.seed))


def _near(cfg: QueueConfig) -> pl.Expr:
    score = pl.col("quality_score").fill_nan(None)
    return (score - cfg.borderline_center).abs() <= cfg.borderline_margin


def _pick(base: pl.DataFrame, cfg: QueueConfig) -> pl.DataFrame:
    """The queue of ranked rows (:func:`_ranked`)."""
    flagged = _take(base.filter(pl.col("quality_flags").list.len() > 0),
                    cfg.flagged_per_source, ["source"])
    rest = base.join(flagged.select(KEY), on=KEY, how="anti")
    borderline = _take(rest.filter(_near(cfg)), cfg.borderline_per_source, ["source"])
    rest = rest.join(borderline.select(KEY), on=KEY, how="anti")
    sample = _take(rest, cfg.sample_per_stratum, ["source", "complexity_tier"])

    parts = [part.with_columns(queue_reason=pl.lit(reason))
             for reason, part in zip(REASONS, (flagged, borderline, sample), strict=True)]
    priority = pl.col("queue_reason").replace_strict(
        {r: i for i, r in enumerate(REASONS)}, return_dtype=pl.Int32)
    queue = (pl.concat(parts).sort(priority, "source", "review_rank", "example_id")
             .with_columns(queue_position=pl.int_range(pl.len(), dtype=pl.Int64)))
    return queue.select(QUEUE_SCHEMA.names()).cast(dict(QUEUE_SCHEMA))


def _candidates(base: pl.DataFrame, cfg: QueueConfig) -> pl.DataFrame:
    """The rows of a part of the ranked rows that can be in the whole queue.

    A flagged pick is among the ``flagged`` first flagged rows of its source in any part
    holding it; a borderline pick has fewer than ``borderline`` rows of its source ahead
    of it that are near and not flagged picks, and at most ``flagged`` picks, so it is
    among the ``flagged + borderline`` first near rows of its part; a sample pick likewise
    among the ``flagged + borderline + sample`` first of its (source, tier). The whole
    queue picked from the union of the parts' candidates is therefore the same queue.
    """
    f, b, s = cfg.flagged_per_source, cfg.borderline_per_source, cfg.sample_per_stratum
    kept = [
        _take(base.filter(pl.col("quality_flags").list.len() > 0), f, ["source"]),
        _take(base.filter(_near(cfg)), f + b, ["source"]),
        _take(base, f + b + s, ["source", "complexity_tier"]),
    ]
    return pl.concat(kept).unique(KEY, keep="first")


#: The columns of ``quality.parquet`` and ``complexity.parquet`` the queue reads.
QUALITY_COLUMNS = ["source", "example_id", "quality_score", "quality_flags",
                   "is_dup_representative"]
COMPLEXITY_COLUMNS = ["source", "example_id", "complexity_tier"]


def queue_from_files(quality_file: Path, complexity_file: Path | None, cfg: QueueConfig,
                     reviewed: pl.DataFrame | None = None, *,
                     chunk_rows: int = DEFAULT_CHUNK_ROWS) -> pl.DataFrame:
    """:func:`select_queue` over the published quality (and complexity) tables.

    Up to ``chunk_rows`` rows: one read and :func:`select_queue`, as ever. Above it, a
    row's tier is joined by key, and a join of each row chunk to the whole complexity
    table cost more than the chunk itself; so the rows are split instead into parts by a
    hash of their key (the same split of both tables, each read with a filter), each
    part keeps only its :func:`_candidates` and the queue is picked from those: the same
    queue, with one part's rows in memory at a time.
    """
    has_tiers = complexity_file is not None and complexity_file.exists()
    total = parquet_rows([quality_file])
    if total <= chunk_rows:
        quality = pl.read_parquet(quality_file, columns=QUALITY_COLUMNS)
        complexity = (pl.read_parquet(complexity_file, columns=COMPLEXITY_COLUMNS)
                      if has_tiers else None)
        return select_queue(quality, complexity, cfg, reviewed)
    parts = -(-total // chunk_rows)
    candidates = []
    for part in range(parts):
        mine = (pl.col("example_id").hash(seed=0) % parts) == part
        quality = pl.scan_parquet(quality_file).select(QUALITY_COLUMNS).filter(mine).collect()
        complexity = (pl.scan_parquet(complexity_file).select(COMPLEXITY_COLUMNS)
                      .filter(mine).collect() if complexity_file and has_tiers else None)
        base = _ranked(quality, complexity, cfg, reviewed)
        del quality, complexity
        if base.height:
            candidates.append(_candidates(base, cfg))
    if not candidates:
        return pl.DataFrame(schema=QUEUE_SCHEMA)
    return _pick(pl.concat(candidates), cfg)


def queue_summary(queue: pl.DataFrame) -> pl.DataFrame:
    """(source, queue_reason, rows): how much of each kind each source contributes."""
    return (queue.group_by("source", "queue_reason").agg(rows=pl.len().cast(pl.Int64))
            .sort("source", "queue_reason"))
