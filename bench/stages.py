"""Run one pipeline stage on a data dir, exactly as its asset body does, minus Dagster.

Each function below calls the same ``lib`` function as one asset body in
``instruct_assets/defs/*/assets.py`` (the stage's data work: files read and written, check
figures) and mirrors the rest of the body (checks are computed, not asserted; Dagster's
``MetadataValue`` wrappers are left out). Settings come from the same resources with their
defaults; the registered sources are every discovered source (what ``instruct-assets run``
registers).
``bench/run.py`` runs each stage in its own process so its peak RSS is the stage's own.

Only the Dagster wiring is a copy; the data work cannot drift from the assets.

Usage: ``python bench/stages.py --data-dir DIR --stage quality [--profile OUT_PREFIX]``;
Prints one JSON line last: ``stage``, ``seconds`` (the body, imports excluded),
``cpu_seconds`` (the body's CPU time, all threads: steadier than wall on a busy box), ``rows``,
``parts`` (seconds per step) and a few figures about the outputs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from instruct_assets.defs.metadata import (  # noqa: E402
    column_schema,
    conversation_preview,
    counts_markdown,
    markdown_table,
)
from instruct_assets.defs.resources import IngestSettings, warehouse_resource  # noqa: E402
from instruct_assets.defs.settings import CurationSettings, QualitySettings  # noqa: E402
from instruct_assets.lib.chunks import DEFAULT_CHUNK_ROWS  # noqa: E402
from instruct_assets.lib.paths import DataPaths  # noqa: E402
from instruct_assets.lib.sources import discover_sources  # noqa: E402

#: Rows per chunk every stage is given (``--chunk-rows``; the assets read MemorySettings).
CHUNK_ROWS = DEFAULT_CHUNK_ROWS

STAGES = ("normalize", "quality", "complexity", "decontamination", "curation", "splits",
          "exports")


class Parts:
    """Seconds per named step of a stage (so a slow stage says which step is slow)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0,
                                       3)


def _registered(paths: DataPaths) -> list[str]:
    """What ``pipeline.sync_partitions`` registers: every discovered source."""
    return sorted(discover_sources(paths))


def _live(paths: DataPaths) -> list[str]:
    from instruct_assets.lib.stage_io import live_sources

    return live_sources(paths, _registered(paths))


def _settings(paths: DataPaths, section: str, cls: type) -> Any:
    """The settings resource ``cls`` with its section of ``<data dir>/settings.yaml``, as
    ``definitions.build_defs`` builds it for the assets."""
    from instruct_assets.lib.settings_file import read_settings

    return cls(**read_settings(paths)[section])


def stage_normalize(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``staged_examples`` then, when its blocking checks pass, ``normalized_examples``.

    Always normalizes (no fingerprint shortcut), streaming each source in chunks of
    ``CHUNK_ROWS`` (normalize, checks and the staged write happen chunk by chunk)."""
    from instruct_assets.defs.ingest.assets import CODE_VERSION, INGEST_CHECKS
    from instruct_assets.lib.fingerprint import source_fingerprint
    from instruct_assets.lib.publish import promote, read_report, stage_source

    settings = _settings(paths, "ingest", IngestSettings)
    out: dict[str, Any] = {"rows": 0, "rejects": 0, "held_back": {}}
    for source, spec in discover_sources(paths).items():
        with part("fingerprint"):
            fingerprint = source_fingerprint(paths, spec, {}, CODE_VERSION)
        with part("stage_source"):
            staged = stage_source(paths, spec, fingerprint, settings.max_reject_rate,
                                  chunk_rows=CHUNK_ROWS)
        outcomes = staged.outcomes
        with part("metadata"):
            files = pl.DataFrame([
                {"file": f.file, "container": f.container, "format": f.format,
                 "format_share": f.format_share, "records": f.records_read, "rows": f.rows,
                 "rejects": f.rejects}
                for f in staged.files])
            reject_sample = staged.rejects.select("source_file", "source_row", "reason_code",
                                                  "detail")
            counts_markdown(staged.rejects_by_reason(), "reason_code")
            counts_markdown(staged.formats, "format")
            markdown_table(files, limit=50)
            conversation_preview(staged.head)
            markdown_table(reject_sample)
        failed = [n for n, o in outcomes.items() if not o.passed and INGEST_CHECKS[n][1]]
        out["rows"] += staged.rows
        out["rejects"] += staged.rejects.height
        if failed:
            out["held_back"][source] = failed
            continue
        with part("promote"):
            targets = promote(paths, source)
            read_report(paths, source)
            conversation_preview(pl.read_parquet(targets["examples.parquet"], n_rows=5))
    return out


def stage_quality(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``quality_scores``: the same ``publish_quality`` call, views, checks and metadata."""
    from instruct_assets.lib.quality.signals import QUALITY_COLUMNS
    from instruct_assets.lib.quality.stage import publish_quality
    from instruct_assets.lib.quality.table import score_histogram, worst_examples
    from instruct_assets.lib.warehouse import replace_views

    settings = _settings(paths, "quality", QualitySettings)
    sources = _live(paths)
    with part("publish_quality"):
        stage = publish_quality(paths, sources, settings.quality_config(),
                                settings.dedup_config(), chunk_rows=CHUNK_ROWS)
    with part("warehouse_views"), warehouse_resource(paths).get_connection() as con:
        replace_views(con, stage.views)
    narrow, summary, flags = stage.narrow, stage.summary, stage.flags
    with part("checks"):
        over = summary.filter(pl.col("flagged_share") > settings.max_flagged_share)
        stage.missing["example_id"].head(5).to_list()
        markdown_table(over.select("source", "flagged_share", "flags_by_kind"), limit=20)
    with part("metadata"):
        flagged = int(narrow["flagged"].sum()) if narrow.height else 0
        totals = dict(flags.group_by("flag").agg(pl.col("rows").sum())
                      .sort("rows", descending=True).iter_rows())
        column_schema(stage.schema, QUALITY_COLUMNS)
        float(narrow["quality_score"].mean() or 0.0)
        counts_markdown(totals, "flag")
        counts_markdown(score_histogram(narrow), "quality_score", "rows")
        markdown_table(worst_examples(stage.worst), limit=5 * max(len(sources), 1), width=100)
        markdown_table(summary.drop("output_shapes"), limit=50, width=120)
    return {
        "rows": stage.rows,
        "flagged_rows": flagged,
        "exact_duplicates": int(narrow["is_exact_duplicate"].sum() or 0),
        "near_duplicates": int(narrow["is_near_duplicate"].sum() or 0),
        "score_seconds": round(stage.seconds, 3),
        "checks_failed": [n for n, bad in (
            ("one_quality_row_per_example", stage.missing.height or stage.duplicated
             or stage.rows != stage.examples_rows),
            ("scores_in_range", stage.out_of_range.height)) if bad],
    }


def stage_complexity(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``complexity_scores``: the same ``publish_complexity`` call, views and metadata."""
    from instruct_assets.lib.complexity import tier_summary
    from instruct_assets.lib.curation_stage import publish_complexity
    from instruct_assets.lib.warehouse import replace_views

    settings = _settings(paths, "curation", CurationSettings)
    with part("publish_complexity"):
        stage = publish_complexity(paths, _live(paths), settings.complexity_config(),
                                   chunk_rows=CHUNK_ROWS)
    scored = stage.scored
    with part("warehouse_views"), warehouse_resource(paths).get_connection() as con:
        replace_views(con, stage.views)
    with part("metadata"):
        tiers = dict(scored.group_by("complexity_tier").len().sort("complexity_tier")
                     .iter_rows())
        patterns = dict(scored.group_by("multi_turn_pattern").len()
                        .sort("multi_turn_pattern").iter_rows())
        column_schema(scored.schema)
        counts_markdown(tiers, "complexity_tier")
        counts_markdown(patterns, "pattern")
        markdown_table(tier_summary(scored), limit=60)
    return {"rows": scored.height, "tiers": {str(k): int(v) for k, v in tiers.items()}}


def stage_decontamination(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``benchmark_contamination``: the same ``publish_contamination`` call."""
    from instruct_assets.lib.curation_stage import publish_contamination
    from instruct_assets.lib.warehouse import replace_views

    settings = _settings(paths, "curation", CurationSettings)
    with part("publish_contamination"):
        stage = publish_contamination(paths, _live(paths), settings.decontam_config(),
                                      chunk_rows=CHUNK_ROWS)
    found, hits = stage.found, stage.hits
    with part("warehouse_views"), warehouse_resource(paths).get_connection() as con:
        replace_views(con, stage.views)
    with part("metadata"):
        contaminated = found.filter("contaminated")
        n_contaminated = contaminated.select("source", "example_id").unique().height
        column_schema(found.schema)
        markdown_table(hits, limit=50)
    return {"rows": stage.examples_rows, "benchmark_items": stage.items.height,
            "benchmark_rejects": sum(stage.bench_rejects.values()),
            "contaminated_examples": n_contaminated}


def stage_curation(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``curated_examples``: the same ``publish_curation`` call (human verdicts included),
    views, check and metadata."""
    from instruct_assets.lib.curation import rule_counts
    from instruct_assets.lib.curation_stage import publish_curation
    from instruct_assets.lib.warehouse import replace_views

    settings = _settings(paths, "curation", CurationSettings)
    with part("publish_curation"):
        stage = publish_curation(paths, _live(paths), settings.curation_config(),
                                 _settings(paths, "quality", QualitySettings).quality_config(),
                                 chunk_rows=CHUNK_ROWS)
    curated, verdicts = stage.curated, stage.verdicts
    with part("warehouse_views"), warehouse_resource(paths).get_connection() as con:
        replace_views(con, stage.views)
    with part("metadata"):
        rules = rule_counts(curated)
        removed = {r["rule"]: int(r["removed"]) for r in rules.iter_rows(named=True)}
        kept = int(curated["kept"].sum())
        column_schema(curated.schema)
        markdown_table(rules, limit=20)
        markdown_table(verdicts.conflicts, limit=20)
    return {"rows": curated.height, "kept": kept, "removed": removed,
            "human": verdicts.counts}


def stage_splits(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``split_assignments``."""
    from instruct_assets.lib.split_sets import SET_SCHEMA, SPLIT_NAMES, run_splits
    from instruct_assets.lib.splits import split_report
    from instruct_assets.lib.warehouse import replace_views, view_over

    settings = _settings(paths, "curation", CurationSettings)
    cfg = settings.split_config()
    outcome = run_splits(paths, _live(paths), cfg, settings.complexity_config(), part,
                         synthetic_cap=settings.synthetic_cap_config(), chunk_rows=CHUNK_ROWS)
    assignments, integrity = outcome.assignments, outcome.integrity
    with part("warehouse_views"), warehouse_resource(paths).get_connection() as con:
        replace_views(con, {
            "splits": view_over([outcome.assignments_path], outcome.assignments_schema),
            **{name: view_over([outcome.files[name]], SET_SCHEMA) for name in SPLIT_NAMES},
            "synthetic_capped": view_over([outcome.capped_path], outcome.capped_schema),
        })
    with part("checks"):
        outcome.excluded_in["example_id"].head(5).to_list()
    with part("metadata"):
        report = split_report(assignments)
        tiers_by_split = (assignments.group_by("split", "complexity_tier").len()
                          .sort("split", "complexity_tier"))
        column_schema(outcome.assignments_schema)
        markdown_table(tiers_by_split, limit=20)
        markdown_table(report.group_by("split", "origin").agg(pl.col("rows").sum())
                       .sort("split", "origin"), limit=20)
        markdown_table(report, limit=100)
    failed = [n for n, bad in (
        ("no_example_in_both_splits", integrity["examples_in_both"]),
        ("no_cluster_across_splits", integrity["clusters_across_splits"]
         or integrity["prompts_across_splits"]),
        ("tier_proportions_within_tolerance", not integrity["tiers_within_tolerance"]
         or integrity["tiers_missing_in_eval"]),
        ("no_excluded_row_in_split", outcome.excluded_in.height)) if bad]
    return {"rows": assignments.height, "train_rows": integrity["train_rows"],
            "eval_rows": integrity["eval_rows"], "checks_failed": failed}


def stage_exports(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``training_exports``: the shared ``run_exports`` with the default settings, plus the
    asset's metadata table."""
    from instruct_assets.defs.settings import ExportSettings
    from instruct_assets.lib.export.stage import run_exports

    quality_settings = _settings(paths, "quality", QualitySettings)
    curation_settings = _settings(paths, "curation", CurationSettings)
    export_settings = _settings(paths, "exports", ExportSettings)
    outcome = run_exports(paths, _live(paths), export_settings.kinds(), {
        "quality": quality_settings.model_dump(), "curation": curation_settings.model_dump(),
        "exports": export_settings.model_dump()}, part=part, chunk_rows=CHUNK_ROWS)
    with part("metadata"):
        markdown_table(outcome.files, limit=50, width=90)
    kinds = {f"{split}/{kind}": info["seconds"] for split, res in outcome.results.items()
             for kind, info in res["formats"].items()}
    checks = {f"{v['split']}/{v['kind']}": v["seconds"] for v in outcome.validations}
    trip_ok = not outcome.trip_failures
    return {"rows": sum(f.height for f in outcome.frames.values()),
            "bytes": int(outcome.files["bytes"].sum()),
            "export_seconds_by_kind": kinds,
            "check_seconds_by_kind": checks,
            "round_trip_rows": {s: t["rows_checked"] for s, t in outcome.trip.items()},
            "checks_failed": [n for n, failed in (
                ("every_line_parses", outcome.invalid),
                ("row_counts_match_splits", outcome.count_errors),
                ("round_trip_same_ids", not trip_ok)) if failed]}


RUNNERS: dict[str, Callable[[DataPaths, Parts], dict[str, Any]]] = {
    "normalize": stage_normalize,
    "quality": stage_quality,
    "complexity": stage_complexity,
    "decontamination": stage_decontamination,
    "curation": stage_curation,
    "splits": stage_splits,
    "exports": stage_exports,
}


def _profile_report(prof: cProfile.Profile, prefix: Path, top: int = 30) -> None:
    """``<prefix>.prof`` for snakeviz/pstats, and ``<prefix>.txt``: the project's hot spots.

    polars and DuckDB do their work in native threads, so cProfile charges that time to the
    Python line that called them: the ``instruct_assets`` entries sorted by own time name the
    file:line of each expensive call.
    """
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(str(prefix.with_suffix(".prof")))
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime")
    buf.write("== own time, every function ==\n")
    stats.print_stats(top)
    buf.write("\n== cumulative time, instruct_assets only ==\n")
    stats.sort_stats("cumulative")
    stats.print_stats("instruct_assets", top)
    buf.write("\n== who calls the top native entry points (polars/duckdb) ==\n")
    stats.sort_stats("tottime")
    stats.print_callers(r"collect|join|sql|fetch|write_parquet|read_parquet|map_elements", 8)
    prefix.with_suffix(".txt").write_text(buf.getvalue(), encoding="utf-8")


def run(data_dir: Path, stage: str, profile: Path | None = None) -> dict[str, Any]:
    paths = DataPaths.at(data_dir)
    part = Parts()
    prof = cProfile.Profile() if profile else None
    t0, c0 = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    info = RUNNERS[stage](paths, part)
    if prof:
        prof.disable()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if prof and profile:
        _profile_report(prof, profile)
    return {"stage": stage, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), **info,
            "parts": part.seconds,
            "maxrss_mb_self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--stage", choices=STAGES, required=True)
    ap.add_argument("--profile", type=Path, help="write cProfile output to this prefix")
    ap.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS,
                    help="rows per chunk (MemorySettings.chunk_rows)")
    args = ap.parse_args()
    global CHUNK_ROWS
    CHUNK_ROWS = args.chunk_rows
    print(json.dumps(run(args.data_dir, args.stage, args.profile), default=str))


if __name__ == "__main__":
    main()
