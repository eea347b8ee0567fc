"""Exports stage: every split in the formats the trainers load, with a dataset card.

Thin wiring around ``lib.export``. Its checks re-read what was written: every file parses
in its one format, row counts equal the split's, and exporting then ingesting the OpenAI
JSONL gives back the same example ids.
"""

import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from instruct_assets.defs.automation import REFRESH_DOWNSTREAM
from instruct_assets.defs.metadata import markdown_table
from instruct_assets.defs.quality.assets import registered_sources
from instruct_assets.defs.resources import DataDir
from instruct_assets.defs.settings import CurationSettings, QualitySettings
from instruct_assets.defs.splits.assets import SPLITS
from instruct_assets.lib.export.card import write_card
from instruct_assets.lib.export.writers import KIND_PATHS, export_split
from instruct_assets.lib.export_stats import card_stats, check_export, round_trip_ids
from instruct_assets.lib.split_sets import SPLIT_NAMES
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
    automation_condition=REFRESH_DOWNSTREAM, code_version="exports-1",
    # The daily refresh runs at 03:00: exports older than a day and a half are late.
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=36),
                                                    warn_window=timedelta(hours=26)),
    description=(
        "Each split under <data dir>/exports/: OpenAI/TRL conversational JSONL (+ Parquet and "
        "an Axolotl datasets block), ShareGPT JSON with a LLaMA-Factory dataset_info.json, "
        "Alpaca JSON for single-turn rows (others listed, never dropped silently), rendered "
        "ChatML / Llama 3 / Alpaca-prompt text, and a dataset card (README.md)."),
    check_specs=[dg.AssetCheckSpec(n, asset=EXPORTS, description=d, blocking=b)
                 for n, (d, b) in EXPORT_CHECKS.items()],
)
def training_exports(context: dg.AssetExecutionContext, data_dir: DataDir,
                     quality_settings: QualitySettings, curation_settings: CurationSettings
                     ) -> dg.MaterializeResult:
    paths = data_dir.paths
    results = {}
    frames = {}
    for split in SPLIT_NAMES:
        frames[split] = pl.read_parquet(paths.splits / f"{split}.parquet")
        results[split] = export_split(frames[split], paths.exports, split)
    sources = live_sources(paths, registered_sources(context))
    stats = card_stats(paths, sources, frames, results, {
        "quality": quality_settings.model_dump(), "curation": curation_settings.model_dump()})
    card = write_card(paths.exports / "README.md", stats)

    validations = [check_export(Path(info["path"]), kind, info["rows"]) | {"split": split}
                   for split, res in results.items() for kind, info in res["formats"].items()]
    bad = [v for v in validations if not v["valid"]]
    count_errors = []
    for split, res in results.items():
        for kind, info in res["formats"].items():
            dropped = info.get("not_exportable", {}).get("count", 0)
            if info["rows"] + dropped != frames[split].height:
                count_errors.append(f"{kind}/{split}: {info['rows']} + {dropped} != "
                                    f"{frames[split].height}")
    trip = {split: round_trip_ids(paths, paths.exports / KIND_PATHS["openai"].format(
        split=split), frames[split]) for split in SPLIT_NAMES}
    trip_bad = {s: t for s, t in trip.items() if t["missing"] or t["unexpected"]}
    files = pl.DataFrame([
        {"split": split, "kind": kind, "path": str(info["path"]), "rows": info["rows"],
         "bytes": info["bytes"], "not_exportable": info.get("not_exportable", {}).get("count", 0)}
        for split, res in results.items() for kind, info in res["formats"].items()])
    checks = [
        dg.AssetCheckResult(check_name="every_line_parses", asset_key=EXPORTS, passed=not bad,
                            metadata={"files_checked": len(validations),
                                      "invalid_files": [f"{v['path']}: {v['errors'][:3]}"
                                                        for v in bad]}),
        dg.AssetCheckResult(check_name="row_counts_match_splits", asset_key=EXPORTS,
                            passed=not count_errors, metadata={"mismatches": count_errors}),
        dg.AssetCheckResult(check_name="round_trip_same_ids", asset_key=EXPORTS,
                            passed=not trip_bad,
                            metadata={s: json.dumps({k: (v if isinstance(v, int) else v[:5])
                                                     for k, v in t.items()})
                                      for s, t in trip.items()}),
    ]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(f.height for f in frames.values()),
            **{f"{s}_rows": f.height for s, f in frames.items()},
            "total_bytes": int(files["bytes"].sum()),
            "files": dg.MetadataValue.md(markdown_table(files, limit=50, width=90)),
            "dataset_card": dg.MetadataValue.path(str(card)),
            "export_dir": dg.MetadataValue.path(str(paths.exports)),
        },
        check_results=checks,
    )
