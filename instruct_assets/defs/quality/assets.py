"""Quality stage: every published example scored, every flag explained, all in DuckDB.

Thin wiring around ``lib.quality.table``: reads the published sources, writes
``quality/*.parquet`` atomically, then (re)creates the warehouse views in one short
transaction under the ``duckdb_write`` pool.
"""

import time

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from instruct_assets.defs.automation import REFRESH_DOWNSTREAM
from instruct_assets.defs.ingest.assets import NORMALIZED
from instruct_assets.defs.metadata import column_schema, counts_markdown, markdown_table
from instruct_assets.defs.partitions import SOURCES_PARTITION
from instruct_assets.defs.resources import DataDir
from instruct_assets.defs.settings import QualitySettings
from instruct_assets.lib.parquet_io import write_parquet
from instruct_assets.lib.quality.consistency import system_prompt_table
from instruct_assets.lib.quality.signals import QUALITY_COLUMNS
from instruct_assets.lib.quality.table import (
    build_quality,
    flag_counts,
    score_histogram,
    source_summary,
    worst_examples,
)
from instruct_assets.lib.schema import NORMALIZED_SCHEMA, REJECTS_SCHEMA
from instruct_assets.lib.stage_io import live_sources, read_examples, rejects_per_source
from instruct_assets.lib.warehouse import replace_views, view_over

QUALITY = dg.AssetKey("quality_scores")
CODE_VERSION = "quality-1"

QUALITY_CHECKS = {
    "one_quality_row_per_example": ("every published example has exactly one quality row", True),
    "scores_in_range": ("quality_score is within [0, 1] and never null", True),
    "flagged_share_below_ceiling": ("per source, the share of flagged rows is below the "
                                    "configured ceiling (WARN)", False),
}


def registered_sources(context: dg.AssetExecutionContext) -> list[str]:
    return sorted(context.instance.get_dynamic_partitions(SOURCES_PARTITION))


@dg.asset(
    key=QUALITY,
    deps=[NORMALIZED],
    group_name="quality",
    kinds={"polars", "duckdb", "parquet"},
    pool="duckdb_write",
    automation_condition=REFRESH_DOWNSTREAM, code_version=CODE_VERSION,
    description=(
        "One row per published example with every quality signal as its own column (vague "
        "or missing-context instructions, output misalignment, empty/truncated answers, "
        "repetition, placeholders, special tokens, refusals, noise, lengths, context-window "
        "fit, trainable content, shape outliers), exact and near-duplicate clusters, "
        "quality_flags and a combined quality_score. Published as quality/quality.parquet and "
        "as the warehouse relations quality, source_summary, flag_counts, system_prompts, "
        "examples and rejects."
    ),
    check_specs=[dg.AssetCheckSpec(name, asset=QUALITY, description=desc, blocking=blocking)
                 for name, (desc, blocking) in QUALITY_CHECKS.items()],
)
def quality_scores(context: dg.AssetExecutionContext, data_dir: DataDir,
                   quality_settings: QualitySettings, duckdb: DuckDBResource
                   ) -> dg.MaterializeResult:
    paths = data_dir.paths
    sources = live_sources(paths, registered_sources(context))
    t0 = time.perf_counter()
    examples = read_examples(paths, sources)
    cfg = quality_settings.quality_config()
    quality = build_quality(examples, cfg, quality_settings.dedup_config())
    seconds = time.perf_counter() - t0
    rejects = rejects_per_source(paths, sources)
    summary = source_summary(quality, examples, rejects, cfg)
    flags = flag_counts(quality)
    prompts = system_prompt_table(examples)
    out = paths.quality
    write_parquet(quality, out / "quality.parquet")
    write_parquet(summary, out / "source_summary.parquet")
    write_parquet(flags, out / "flag_counts.parquet")
    write_parquet(prompts, out / "system_prompts.parquet")
    views = {
        "examples": view_over([paths.normalized_file(s) for s in sources], NORMALIZED_SCHEMA),
        "rejects": view_over([paths.rejects_file(s) for s in sources], REJECTS_SCHEMA),
        "quality": view_over([out / "quality.parquet"], quality.schema),
        "source_summary": view_over([out / "source_summary.parquet"], summary.schema),
        "flag_counts": view_over([out / "flag_counts.parquet"], flags.schema),
        "system_prompts": view_over([out / "system_prompts.parquet"], prompts.schema),
    }
    with duckdb.get_connection() as con:
        replace_views(con, views)

    keys = examples.select("source", "example_id")
    q_keys = quality.select("source", "example_id")
    missing = keys.join(q_keys, on=["source", "example_id"], how="anti")
    dup_rows = q_keys.filter(pl.struct("source", "example_id").is_duplicated())
    out_of_range = quality.filter(pl.col("quality_score").is_null()
                                  | ~pl.col("quality_score").is_between(0.0, 1.0))
    over = summary.filter(pl.col("flagged_share") > quality_settings.max_flagged_share)
    checks = [
        dg.AssetCheckResult(
            check_name="one_quality_row_per_example", asset_key=QUALITY,
            passed=missing.height == 0 and dup_rows.height == 0 and
            quality.height == examples.height,
            metadata={"examples": examples.height, "quality_rows": quality.height,
                      "missing": missing.height, "duplicated": dup_rows.height,
                      "sample_missing_ids": missing["example_id"].head(5).to_list()}),
        dg.AssetCheckResult(
            check_name="scores_in_range", asset_key=QUALITY, passed=out_of_range.height == 0,
            metadata={"failing_rows": out_of_range.height,
                      "sample_example_ids": out_of_range["example_id"].head(5).to_list()}),
        dg.AssetCheckResult(
            check_name="flagged_share_below_ceiling", asset_key=QUALITY,
            passed=over.height == 0, severity=dg.AssetCheckSeverity.WARN,
            description=(f"{over.height} source(s) above {quality_settings.max_flagged_share:.0%}"
                         " flagged" if over.height else "every source below the ceiling"),
            metadata={"sources_over": over["source"].to_list(),
                      "top_flags": dg.MetadataValue.md(markdown_table(
                          over.select("source", "flagged_share", "flags_by_kind"), limit=20))}),
    ]
    n = max(quality.height, 1)
    flagged = int((quality["quality_flags"].list.len() > 0).sum()) if quality.height else 0
    totals = dict(flags.group_by("flag").agg(pl.col("rows").sum()).sort("rows", descending=True)
                  .iter_rows())
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": quality.height,
            "dagster/column_schema": column_schema(quality.schema, QUALITY_COLUMNS),
            "sources": len(sources),
            "flagged_rows": flagged,
            "share_flagged": round(flagged / n, 4),
            "mean_score": round(float(quality["quality_score"].mean() or 0.0), 4),
            "exact_duplicates": int(quality["is_exact_duplicate"].sum() or 0),
            "near_duplicates": int(quality["is_near_duplicate"].sum() or 0),
            "flags_by_kind": dg.MetadataValue.md(counts_markdown(totals, "flag")),
            "score_histogram": dg.MetadataValue.md(counts_markdown(
                score_histogram(quality), "quality_score", "rows")),
            "worst_examples": dg.MetadataValue.md(markdown_table(
                worst_examples(quality), limit=5 * max(len(sources), 1), width=100)),
            "source_summary": dg.MetadataValue.md(markdown_table(
                summary.drop("output_shapes"), limit=50, width=120)),
            "warehouse": dg.MetadataValue.path(str(paths.warehouse)),
            "seconds": round(seconds, 3),
        },
        check_results=checks,
    )
