"""Curation stage: complexity tiers, benchmark decontamination and the curated set.

Thin wiring around ``lib.curation_stage`` (shared with ``bench/stages.py``): each asset
calls its stage function, which writes Parquet under ``curation/``, then registers the
returned warehouse views and builds checks and metadata. Conversations are read
``MemorySettings.chunk_rows`` at a time; the frames returned (and the metadata built from
them) are the narrow per-example tables only.
"""

import dagster as dg
from dagster_duckdb import DuckDBResource

from instruct_assets.defs.automation import REFRESH_DOWNSTREAM
from instruct_assets.defs.ingest.assets import NORMALIZED
from instruct_assets.defs.metadata import column_schema, counts_markdown, markdown_table
from instruct_assets.defs.quality.assets import QUALITY, registered_sources
from instruct_assets.defs.resources import DataDir, MemorySettings
from instruct_assets.defs.settings import CurationSettings, QualitySettings
from instruct_assets.lib.complexity import tier_summary
from instruct_assets.lib.curation import rule_counts
from instruct_assets.lib.curation_stage import (
    publish_complexity,
    publish_contamination,
    publish_curation,
)
from instruct_assets.lib.stage_io import live_sources
from instruct_assets.lib.warehouse import replace_views

COMPLEXITY = dg.AssetKey("complexity_scores")
CONTAMINATION = dg.AssetKey("benchmark_contamination")
CURATED = dg.AssetKey("curated_examples")
ANNOTATIONS = dg.AssetKey("annotations")  # defs.review.assets (imports this module)


@dg.asset(
    key=COMPLEXITY, deps=[NORMALIZED], group_name="curation", kinds={"polars", "parquet"},
    pool="duckdb_write", automation_condition=REFRESH_DOWNSTREAM,
    code_version="complexity-1",
    description=(
        "Explainable complexity features per example (directives, reasoning demands, output "
        "constraints, turns and multi_turn_pattern, code/math in the prompt, answer length "
        "and structure), complexity_score and complexity_tier (simple/medium/complex, from "
        "configurable thresholds). Warehouse relation: complexity."),
)
def complexity_scores(context: dg.AssetExecutionContext, data_dir: DataDir,
                      curation_settings: CurationSettings, duckdb: DuckDBResource,
                      memory_settings: MemorySettings) -> dg.MaterializeResult:
    paths = data_dir.paths
    stage = publish_complexity(paths, live_sources(paths, registered_sources(context)),
                               curation_settings.complexity_config(),
                               chunk_rows=memory_settings.chunk_rows)
    scored = stage.scored
    with duckdb.get_connection() as con:
        replace_views(con, stage.views)
    tiers = dict(scored.group_by("complexity_tier").len().sort("complexity_tier").iter_rows())
    patterns = dict(scored.group_by("multi_turn_pattern").len().sort("multi_turn_pattern")
                    .iter_rows())
    return dg.MaterializeResult(metadata={
        "dagster/row_count": scored.height,
        "dagster/column_schema": column_schema(scored.schema),
        **{f"tier_{t}": int(n) for t, n in tiers.items()},
        "tiers": dg.MetadataValue.md(counts_markdown(tiers, "complexity_tier")),
        "multi_turn_patterns": dg.MetadataValue.md(counts_markdown(patterns, "pattern")),
        "tiers_by_source": dg.MetadataValue.md(markdown_table(tier_summary(scored), limit=60)),
        "path": dg.MetadataValue.path(stage.path),
    })


@dg.asset(
    key=CONTAMINATION, deps=[NORMALIZED], group_name="curation", kinds={"polars", "parquet"},
    pool="duckdb_write", automation_condition=REFRESH_DOWNSTREAM,
    code_version="decontam-1",
    description=(
        "Benchmark files under <data dir>/benchmarks/<name>/ (any supported format) indexed "
        "by word 13-grams (NeMo Curator style); every example sharing enough 13-grams with a "
        "benchmark item is listed, with the verdict. Warehouse relations: contamination, "
        "contamination_hits (per benchmark)."),
)
def benchmark_contamination(context: dg.AssetExecutionContext, data_dir: DataDir,
                            curation_settings: CurationSettings, duckdb: DuckDBResource,
                            memory_settings: MemorySettings) -> dg.MaterializeResult:
    paths = data_dir.paths
    stage = publish_contamination(paths, live_sources(paths, registered_sources(context)),
                                  curation_settings.decontam_config(),
                                  chunk_rows=memory_settings.chunk_rows)
    found, hits, items, bench_rejects = stage.found, stage.hits, stage.items, stage.bench_rejects
    with duckdb.get_connection() as con:
        replace_views(con, stage.views)
    contaminated = found.filter("contaminated")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": found.height,
        "dagster/column_schema": column_schema(found.schema),
        "benchmarks": len(bench_rejects),
        "benchmark_items": items.height,
        "benchmark_rejects": sum(bench_rejects.values()),
        "contaminated_examples": contaminated.select("source", "example_id").unique().height,
        "hits": dg.MetadataValue.md(markdown_table(hits, limit=50)),
    })


@dg.asset(
    key=CURATED, deps=[QUALITY, CONTAMINATION, ANNOTATIONS], group_name="curation",
    kinds={"polars", "parquet"}, pool="duckdb_write", automation_condition=REFRESH_DOWNSTREAM,
    code_version="curation-3",
    description=(
        "One row per example with exclusion_reason (null when kept): human_rejected, "
        "contaminated:<benchmark>, flag:<flag>, below_quality_threshold or "
        "duplicate_of:<cluster>, the first that applies; thresholds are CurationSettings. "
        "Human verdicts (annotations) apply: reject excludes, accept overrides quality "
        "exclusions (human_override), edit replaces the response (new example_id, "
        "original_example_id kept; the edited rows in curation/edited_examples.parquet) and "
        "is re-scored: its quality columns are the edited text's, and a quality reason the "
        "edit introduced excludes it. "
        "Warehouse relations: curation, edited_examples."),
    check_specs=[dg.AssetCheckSpec(
        "no_conflicting_human_verdicts", asset=CURATED, blocking=False,
        description="no example has disagreeing human verdicts (resolved: latest time "
                    "wins, ties -> reject) (WARN)")],
)
def curated_examples(context: dg.AssetExecutionContext, data_dir: DataDir,
                     curation_settings: CurationSettings, quality_settings: QualitySettings,
                     duckdb: DuckDBResource, memory_settings: MemorySettings
                     ) -> dg.MaterializeResult:
    paths = data_dir.paths
    stage = publish_curation(paths, live_sources(paths, registered_sources(context)),
                             curation_settings.curation_config(),
                             quality_settings.quality_config(),
                             chunk_rows=memory_settings.chunk_rows)
    curated, verdicts = stage.curated, stage.verdicts
    with duckdb.get_connection() as con:
        replace_views(con, stage.views)
    conflicts = verdicts.conflicts
    rules = rule_counts(curated)
    removed = {r["rule"]: int(r["removed"]) for r in rules.iter_rows(named=True)}
    return dg.MaterializeResult(metadata={
        "dagster/row_count": curated.height,
        "dagster/column_schema": column_schema(curated.schema),
        "kept": int(curated["kept"].sum()),
        "excluded": int((~curated["kept"]).sum()),
        **{f"removed_{k}": v for k, v in removed.items() if k != "kept"},
        "removed_by_rule": dg.MetadataValue.md(markdown_table(rules, limit=20)),
        **{f"human_{k}": v for k, v in verdicts.counts.items()},
    }, check_results=[dg.AssetCheckResult(
        check_name="no_conflicting_human_verdicts", asset_key=CURATED,
        passed=conflicts.height == 0, severity=dg.AssetCheckSeverity.WARN,
        metadata={"conflicts": conflicts.height,
                  "examples": dg.MetadataValue.md(markdown_table(conflicts, limit=20))})])
