"""Quality stage: every published example scored, every flag explained, all in DuckDB.

Thin wiring around ``lib.quality.stage.publish_quality`` (which reads the published sources
and writes ``quality/*.parquet`` atomically): (re)creates the warehouse views in one short
transaction under the ``duckdb_write`` pool, reports checks and metadata.
"""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from instruct_assets.defs.automation import REFRESH_DOWNSTREAM
from instruct_assets.defs.ingest.assets import NORMALIZED
from instruct_assets.defs.metadata import column_schema, counts_markdown, markdown_table
from instruct_assets.defs.partitions import SOURCES_PARTITION
from instruct_assets.defs.resources import DataDir, MemorySettings
from instruct_assets.defs.settings import QualitySettings
from instruct_assets.lib.quality.signals import QUALITY_COLUMNS
from instruct_assets.lib.quality.stage import publish_quality
from instruct_assets.lib.quality.table import score_histogram, worst_examples
from instruct_assets.lib.stage_io import live_sources
from instruct_assets.lib.warehouse import replace_views

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
                   quality_settings: QualitySettings, duckdb: DuckDBResource,
                   memory_settings: MemorySettings) -> dg.MaterializeResult:
    paths = data_dir.paths
    stage = publish_quality(paths, live_sources(paths, registered_sources(context)),
                            quality_settings.quality_config(), quality_settings.dedup_config(),
                            chunk_rows=memory_settings.chunk_rows)
    with duckdb.get_connection() as con:
        replace_views(con, stage.views)
    # Checks and metadata read narrow per-row columns only (the quality rows are on disk).
    sources, narrow, summary, flags = stage.sources, stage.narrow, stage.summary, stage.flags
    missing, out_of_range = stage.missing, stage.out_of_range
    over = summary.filter(pl.col("flagged_share") > quality_settings.max_flagged_share)
    checks = [
        dg.AssetCheckResult(
            check_name="one_quality_row_per_example", asset_key=QUALITY,
            passed=missing.height == 0 and stage.duplicated == 0 and
            stage.rows == stage.examples_rows,
            metadata={"examples": stage.examples_rows, "quality_rows": stage.rows,
                      "missing": missing.height, "duplicated": stage.duplicated,
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
    n = max(stage.rows, 1)
    flagged = int(narrow["flagged"].sum()) if narrow.height else 0
    totals = dict(flags.group_by("flag").agg(pl.col("rows").sum()).sort("rows", descending=True)
                  .iter_rows())
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stage.rows,
            "dagster/column_schema": column_schema(stage.schema, QUALITY_COLUMNS),
            "sources": len(sources),
            "flagged_rows": flagged,
            "share_flagged": round(flagged / n, 4),
            "mean_score": round(float(narrow["quality_score"].mean() or 0.0), 4),
            "exact_duplicates": int(narrow["is_exact_duplicate"].sum() or 0),
            "near_duplicates": int(narrow["is_near_duplicate"].sum() or 0),
            "flags_by_kind": dg.MetadataValue.md(counts_markdown(totals, "flag")),
            "score_histogram": dg.MetadataValue.md(counts_markdown(
                score_histogram(narrow), "quality_score", "rows")),
            "worst_examples": dg.MetadataValue.md(markdown_table(
                worst_examples(stage.worst), limit=5 * max(len(sources), 1), width=100)),
            "source_summary": dg.MetadataValue.md(markdown_table(
                summary.drop("output_shapes"), limit=50, width=120)),
            "warehouse": dg.MetadataValue.path(str(paths.warehouse)),
            "seconds": round(stage.seconds, 3),
            "chunks": stage.chunks,
        },
        check_results=checks,
    )
