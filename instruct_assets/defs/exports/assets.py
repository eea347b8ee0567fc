"""Exports stage: every split in the formats the trainers load, with a dataset card.

Thin wiring around ``lib.export.stage.run_exports`` (shared with the bench). Its checks
re-read what was written: every file parses in its one format, row counts on disk equal the
split's, and exporting then ingesting the OpenAI JSONL gives back the same example ids.
Which formats and chat templates are written is ``ExportSettings``.
"""

import json
from datetime import timedelta

import dagster as dg

from instruct_assets.defs.automation import REFRESH_DOWNSTREAM
from instruct_assets.defs.metadata import markdown_table
from instruct_assets.defs.quality.assets import registered_sources
from instruct_assets.defs.resources import DataDir, MemorySettings
from instruct_assets.defs.settings import CurationSettings, ExportSettings, QualitySettings
from instruct_assets.defs.splits.assets import SPLITS
from instruct_assets.lib.export.stage import run_exports
from instruct_assets.lib.stage_io import live_sources

EXPORTS = dg.AssetKey("training_exports")

EXPORT_CHECKS = {
    "every_line_parses": ("every export file parses and holds one format", True),
    "row_counts_match_splits": ("each file holds its split's rows (single-turn formats: "
                                "rows + listed not-exportable rows)", True),
    "round_trip_same_ids": ("ingesting the OpenAI JSONL export gives the split's example "
                            "ids", True),
}


@dg.asset(
    key=EXPORTS, deps=[SPLITS], group_name="exports", kinds={"json", "parquet"},
    automation_condition=REFRESH_DOWNSTREAM, code_version="exports-2",
    # The daily refresh runs at 03:00: exports older than a day and a half are late.
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=36),
                                                    warn_window=timedelta(hours=26)),
    description=(
        "Each split under <data dir>/exports/: OpenAI/TRL conversational JSONL (+ Parquet and "
        "an Axolotl datasets block), ShareGPT JSON with a LLaMA-Factory dataset_info.json, "
        "Alpaca JSON for single-turn rows (others listed, never dropped silently), rendered "
        "training text with the chat templates of ExportSettings (ChatML by default; Llama 3 "
        "and the Alpaca prompt on request), and a dataset card (README.md)."),
    check_specs=[dg.AssetCheckSpec(n, asset=EXPORTS, description=d, blocking=b)
                 for n, (d, b) in EXPORT_CHECKS.items()],
)
def training_exports(context: dg.AssetExecutionContext, data_dir: DataDir,
                     quality_settings: QualitySettings, curation_settings: CurationSettings,
                     export_settings: ExportSettings, memory_settings: MemorySettings
                     ) -> dg.MaterializeResult:
    paths = data_dir.paths
    kinds = export_settings.kinds()
    outcome = run_exports(
        paths, live_sources(paths, registered_sources(context)), kinds,
        {"quality": quality_settings.model_dump(), "curation": curation_settings.model_dump(),
         "exports": export_settings.model_dump()}, chunk_rows=memory_settings.chunk_rows)
    bad = outcome.invalid
    # The round trip ingests the OpenAI JSONL: without that export there is nothing to trip.
    trip_metadata = ({s: json.dumps({k: (v if isinstance(v, int) else v[:5])
                                     for k, v in t.items()}) for s, t in outcome.trip.items()}
                     if "openai" in kinds else {"skipped": "the openai export is not configured"})
    checks = [
        dg.AssetCheckResult(check_name="every_line_parses", asset_key=EXPORTS, passed=not bad,
                            metadata={"files_checked": len(outcome.validations),
                                      "invalid_files": [f"{v['path']}: {v['errors'][:3]}"
                                                        for v in bad]}),
        dg.AssetCheckResult(check_name="row_counts_match_splits", asset_key=EXPORTS,
                            passed=not outcome.count_errors,
                            metadata={"mismatches": outcome.count_errors}),
        dg.AssetCheckResult(check_name="round_trip_same_ids", asset_key=EXPORTS,
                            passed=not outcome.trip_failures, metadata=trip_metadata),
    ]
    frames, files = outcome.frames, outcome.files
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(f.height for f in frames.values()),
            **{f"{s}_rows": f.height for s, f in frames.items()},
            "total_bytes": int(files["bytes"].sum()),
            "files": dg.MetadataValue.md(markdown_table(files, limit=50, width=90)),
            "dataset_card": dg.MetadataValue.path(str(outcome.card)),
            "export_dir": dg.MetadataValue.path(str(paths.exports)),
        },
        check_results=checks,
    )
