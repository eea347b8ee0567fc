"""Splits stage: leakage-free, tier-stratified train/eval over the curated examples.

Thin wiring around ``lib.split_sets.run_splits`` (the stage's data work, shared with the
bench). Writes ``splits/assignments.parquet`` and one Parquet per
split (canonical columns + ``split`` + ``complexity_tier``), and the warehouse relations
``splits``, ``train`` and ``eval``. Its blocking checks keep leaked or unbalanced splits from
reaching the exports.
"""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from instruct_assets.defs.automation import REFRESH_DOWNSTREAM
from instruct_assets.defs.curation.assets import COMPLEXITY, CURATED
from instruct_assets.defs.metadata import column_schema, markdown_table
from instruct_assets.defs.quality.assets import registered_sources
from instruct_assets.defs.resources import DataDir, MemorySettings
from instruct_assets.defs.settings import CurationSettings
from instruct_assets.lib.split_sets import SET_SCHEMA, SPLIT_NAMES, run_splits
from instruct_assets.lib.splits import split_report
from instruct_assets.lib.stage_io import live_sources
from instruct_assets.lib.warehouse import replace_views, view_over

SPLITS = dg.AssetKey("split_assignments")

SPLIT_CHECKS = {
    "no_example_in_both_splits": ("no (source, example_id) is in train and in eval", True),
    "no_cluster_across_splits": ("every duplicate cluster and every shared user prompt lies "
                                 "in one split", True),
    "tier_proportions_within_tolerance": ("each tier's share in eval is within the tolerance "
                                          "of its share in train, and every tier is in eval",
                                          True),
    "no_excluded_row_in_split": ("no row excluded by curation appears in a split", True),
    "synthetic_share_below_cap": ("before any cap is enforced, synthetic rows are at most "
                                  "the configured share of each split (WARN)", False),
    "synthetic_share_within_cap": ("with the cap enforced, every published split holds at "
                                   "most the configured share of synthetic rows", True),
}


@dg.asset(
    key=SPLITS, deps=[CURATED, COMPLEXITY], group_name="splits", kinds={"polars", "parquet",
                                                                      "duckdb"},
    pool="duckdb_write", automation_condition=REFRESH_DOWNSTREAM,
    code_version="splits-2",
    description=(
        "Deterministic train/eval assignment of the kept examples: groups of rows linked by a "
        "duplicate cluster or a shared normalised user prompt move together; groups are "
        "ranked by a seeded md5 of their key and taken per stratum (complexity tier x source "
        "for large sources) until eval_fraction is reached. Warehouse relations: splits, "
        "train, eval."),
    check_specs=[dg.AssetCheckSpec(n, asset=SPLITS, description=d, blocking=b)
                 for n, (d, b) in SPLIT_CHECKS.items()],
)
def split_assignments(context: dg.AssetExecutionContext, data_dir: DataDir,
                      curation_settings: CurationSettings, duckdb: DuckDBResource,
                      memory_settings: MemorySettings) -> dg.MaterializeResult:
    paths = data_dir.paths
    cfg = curation_settings.split_config()
    cap = curation_settings.synthetic_cap_config()
    outcome = run_splits(paths, live_sources(paths, registered_sources(context)), cfg,
                         curation_settings.complexity_config(), synthetic_cap=cap,
                         chunk_rows=memory_settings.chunk_rows)
    assignments, integrity, excluded_in = (outcome.assignments, outcome.integrity,
                                           outcome.excluded_in)
    with duckdb.get_connection() as con:
        replace_views(con, {
            "splits": view_over([outcome.assignments_path], outcome.assignments_schema),
            **{name: view_over([outcome.files[name]], SET_SCHEMA) for name in SPLIT_NAMES},
            "synthetic_capped": view_over([outcome.capped_path], outcome.capped_schema),
        })
    before, after = outcome.synthetic_before, outcome.synthetic_after
    share_before = {s: round(v, 4) for s, v in zip(before["split"], before["synthetic_share"],
                                                   strict=True)}
    capped_by_split = dict(outcome.capped.group_by("split").len().sort("split").iter_rows())
    checks = [
        dg.AssetCheckResult(check_name="no_example_in_both_splits", asset_key=SPLITS,
                            passed=integrity["examples_in_both"] == 0,
                            metadata={"failing_rows": integrity["examples_in_both"]}),
        dg.AssetCheckResult(check_name="no_cluster_across_splits", asset_key=SPLITS,
                            passed=integrity["clusters_across_splits"] == 0
                            and integrity["prompts_across_splits"] == 0,
                            metadata={"clusters_across": integrity["clusters_across_splits"],
                                      "prompts_across": integrity["prompts_across_splits"]}),
        dg.AssetCheckResult(
            check_name="tier_proportions_within_tolerance", asset_key=SPLITS,
            passed=integrity["tiers_within_tolerance"]
            and not integrity["tiers_missing_in_eval"],
            description=f"largest tier-share gap {integrity['max_tier_share_gap']:.3f} "
                        f"(tolerance {cfg.tier_tolerance})",
            metadata={"max_gap": round(integrity["max_tier_share_gap"], 4),
                      "tiers_missing_in_eval": integrity["tiers_missing_in_eval"],
                      "tier_share": integrity["tier_share"]}),
        dg.AssetCheckResult(check_name="no_excluded_row_in_split", asset_key=SPLITS,
                            passed=excluded_in.height == 0,
                            metadata={"failing_rows": excluded_in.height,
                                      "sample_example_ids":
                                          excluded_in["example_id"].head(5).to_list()}),
        dg.AssetCheckResult(check_name="synthetic_share_below_cap", asset_key=SPLITS,
                            passed=bool(before["within_cap"].all()),
                            severity=dg.AssetCheckSeverity.WARN,
                            metadata={"synthetic_share": share_before,
                                      "cap": cap.max_synthetic_share,
                                      "enforced": cap.enforce}),
        dg.AssetCheckResult(
            check_name="synthetic_share_within_cap", asset_key=SPLITS,
            passed=after["passed"] if cap.enforce else True,
            description=("every split within the cap" if after["passed"] else
                         f"splits over the cap: {after['over_cap']}") if cap.enforce else
            "not enforced (report only: see synthetic_share_below_cap)",
            metadata={"synthetic_share": after["synthetic_share"], "cap": cap.max_synthetic_share,
                      "enforced": cap.enforce, "capped_rows": outcome.capped.height}),
    ]
    report = split_report(assignments)
    tiers_by_split = (assignments.group_by("split", "complexity_tier").len()
                      .sort("split", "complexity_tier"))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": assignments.height,
            "dagster/column_schema": column_schema(outcome.assignments_schema),
            "train_rows": integrity["train_rows"],
            "eval_rows": integrity["eval_rows"],
            "eval_share": round(integrity["eval_share"], 4),
            "synthetic_capped": outcome.capped.height,
            "synthetic_capped_by_split": {str(k): int(v) for k, v in capped_by_split.items()},
            "tiers_by_split": dg.MetadataValue.md(markdown_table(tiers_by_split, limit=20)),
            "origin_by_split": dg.MetadataValue.md(markdown_table(
                report.group_by("split", "origin").agg(pl.col("rows").sum())
                .sort("split", "origin"), limit=20)),
            "rows_by_split_tier_source": dg.MetadataValue.md(markdown_table(report, limit=100)),
            **{f"{n}_path": dg.MetadataValue.path(str(p)) for n, p in outcome.files.items()},
        },
        check_results=checks,
    )
