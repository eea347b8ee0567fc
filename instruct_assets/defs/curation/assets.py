"""Curation stage: complexity tiers, benchmark decontamination and the curated set.

Thin wiring around ``lib.complexity``, ``lib.decontaminate`` and ``lib.curation``; each
asset writes Parquet under ``curation/`` and registers its warehouse view.
"""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from instruct_assets.defs.automation import REFRESH_DOWNSTREAM
from instruct_assets.defs.ingest.assets import NORMALIZED
from instruct_assets.defs.metadata import column_schema, counts_markdown, markdown_table
from instruct_assets.defs.quality.assets import QUALITY, registered_sources
from instruct_assets.defs.resources import DataDir
from instruct_assets.defs.settings import CurationSettings
from instruct_assets.lib.benchmarks import load_benchmarks
from instruct_assets.lib.complexity import score_complexity, tier_summary
from instruct_assets.lib.curation import curate, rule_counts
from instruct_assets.lib.decontaminate import build_benchmark_index, find_contamination, hit_table
from instruct_assets.lib.parquet_io import read_parquet_or_empty, write_parquet
from instruct_assets.lib.review.annotations import ANNOTATIONS_SCHEMA
from instruct_assets.lib.review.io import examples_for
from instruct_assets.lib.review.layout import ReviewPaths
from instruct_assets.lib.review.verdicts import EDITED_SCHEMA, apply_verdicts
from instruct_assets.lib.stage_io import live_sources, read_examples
from instruct_assets.lib.warehouse import replace_views, view_over

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
                      curation_settings: CurationSettings, duckdb: DuckDBResource
                      ) -> dg.MaterializeResult:
    paths = data_dir.paths
    examples = read_examples(paths, live_sources(paths, registered_sources(context)))
    scored = score_complexity(examples, curation_settings.complexity_config()).with_columns(
        pl.col("complexity_tier").cast(pl.String)).sort("source", "example_id")
    target = write_parquet(scored, paths.curation / "complexity.parquet")
    with duckdb.get_connection() as con:
        replace_views(con, {"complexity": view_over([target], scored.schema)})
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
        "path": dg.MetadataValue.path(str(target)),
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
                            curation_settings: CurationSettings, duckdb: DuckDBResource
                            ) -> dg.MaterializeResult:
    paths = data_dir.paths
    examples = read_examples(paths, live_sources(paths, registered_sources(context)))
    items, bench_rejects = load_benchmarks(paths)
    cfg = curation_settings.decontam_config()
    index = build_benchmark_index(items, cfg)
    found = find_contamination(examples, index, cfg)
    hits = hit_table(found, index)
    target = write_parquet(found, paths.curation / "contamination.parquet")
    hits_target = write_parquet(hits, paths.curation / "contamination_hits.parquet")
    with duckdb.get_connection() as con:
        replace_views(con, {"contamination": view_over([target], found.schema),
                            "contamination_hits": view_over([hits_target], hits.schema)})
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
    code_version="curation-2",
    description=(
        "One row per example with exclusion_reason (null when kept): human_rejected, "
        "contaminated:<benchmark>, flag:<flag>, below_quality_threshold or "
        "duplicate_of:<cluster>, the first that applies; thresholds are CurationSettings. "
        "Human verdicts (annotations) apply: reject excludes, accept overrides quality "
        "exclusions (human_override), edit replaces the response (new example_id, "
        "original_example_id kept; the edited rows in curation/edited_examples.parquet). "
        "Warehouse relations: curation, edited_examples."),
    check_specs=[dg.AssetCheckSpec(
        "no_conflicting_human_verdicts", asset=CURATED, blocking=False,
        description="no example has disagreeing human verdicts (resolved: latest time "
                    "wins, ties -> reject) (WARN)")],
)
def curated_examples(context: dg.AssetExecutionContext, data_dir: DataDir,
                     curation_settings: CurationSettings, duckdb: DuckDBResource
                     ) -> dg.MaterializeResult:
    paths = data_dir.paths
    quality = pl.read_parquet(paths.quality / "quality.parquet", columns=[
        "source", "example_id", "quality_score", "quality_flags", "dup_cluster_id",
        "is_dup_representative"])
    contamination = pl.read_parquet(paths.curation / "contamination.parquet")
    curated = curate(quality, curation_settings.curation_config(), contamination)
    human = read_parquet_or_empty(ReviewPaths(paths).annotations, ANNOTATIONS_SCHEMA)
    examples = examples_for(paths, live_sources(paths, registered_sources(context)),
                            human.select("source", "example_id"))
    verdicts = apply_verdicts(curated, human, examples)
    curated = verdicts.curated.sort("source", "example_id")
    target = write_parquet(curated, paths.curation / "curation.parquet")
    edited = write_parquet(verdicts.edited_examples, paths.curation / "edited_examples.parquet",
                           EDITED_SCHEMA)
    with duckdb.get_connection() as con:
        replace_views(con, {"curation": view_over([target], curated.schema),
                            "edited_examples": view_over([edited], EDITED_SCHEMA)})
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
