"""Run one pipeline stage on a data dir, exactly as its asset body does, minus Dagster.

Each function below mirrors one asset body in ``instruct_assets/defs/*/assets.py``: the same
library calls in the same order, the same files read and written, the same check and
metadata computations (checks are computed, not asserted; Dagster's ``MetadataValue``
wrappers are left out). Settings come from the same resources with their defaults, and the
registered sources are every discovered source (what ``instruct-assets run`` registers).
``bench/run.py`` runs each stage in its own process so its peak RSS is the stage's own.

Mirroring is a copy, so it can drift: the report in ``bench/README.md`` lists the asset-body
code worth extracting into ``lib`` so the bench and the assets share one definition.

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
from instruct_assets.lib import contract  # noqa: E402
from instruct_assets.lib.paths import DataPaths  # noqa: E402
from instruct_assets.lib.sources import discover_sources  # noqa: E402

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


def stage_normalize(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``staged_examples`` then, when its blocking checks pass, ``normalized_examples``."""
    from instruct_assets.defs.ingest.assets import INGEST_CHECKS
    from instruct_assets.lib.normalize import normalize_source
    from instruct_assets.lib.publish import promote, read_report, write_staging

    settings = IngestSettings()
    out: dict[str, Any] = {"rows": 0, "rejects": 0, "held_back": {}}
    for source, spec in discover_sources(paths).items():
        with part("normalize_source"):
            result = normalize_source(paths, spec)
        with part("write_staging"):
            write_staging(paths, source, result)
        with part("checks"):
            outcomes = {name: check(result.examples)
                        for name, check in contract.ROW_CHECKS.items()}
            outcomes["row_accounting"] = contract.row_accounting(
                result.records_read, result.examples.height, result.rejects.height)
            outcomes["reject_rate_below_ceiling"] = contract.reject_rate(
                result.records_read, result.rejects.height, settings.max_reject_rate)
        with part("metadata"):
            files = pl.DataFrame([
                {"file": f.file, "container": f.container, "format": f.format,
                 "format_share": f.format_share, "records": f.records_read, "rows": f.rows,
                 "rejects": f.rejects}
                for f in result.files])
            reject_sample = result.rejects.select("source_file", "source_row", "reason_code",
                                                  "detail")
            counts_markdown(result.rejects_by_reason(), "reason_code")
            counts_markdown(result.formats(), "format")
            markdown_table(files, limit=50)
            conversation_preview(result.examples)
            markdown_table(reject_sample)
        failed = [n for n, o in outcomes.items() if not o.passed and INGEST_CHECKS[n][1]]
        out["rows"] += result.examples.height
        out["rejects"] += result.rejects.height
        if failed:
            out["held_back"][source] = failed
            continue
        with part("promote"):
            targets = promote(paths, source)
            read_report(paths, source)
            conversation_preview(pl.read_parquet(targets["examples.parquet"], n_rows=5))
    return out


def stage_quality(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``quality_scores``."""
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
    from instruct_assets.lib.stage_io import read_examples, rejects_per_source
    from instruct_assets.lib.warehouse import replace_views, view_over

    settings = QualitySettings()
    sources = _live(paths)
    with part("read_examples"):
        examples = read_examples(paths, sources)
    with part("build_quality"):
        cfg = settings.quality_config()
        quality = build_quality(examples, cfg, settings.dedup_config())
    with part("summaries"):
        rejects = rejects_per_source(paths, sources)
        summary = source_summary(quality, examples, rejects, cfg)
        flags = flag_counts(quality)
        prompts = system_prompt_table(examples)
    with part("write_parquet"):
        out = paths.quality
        write_parquet(quality, out / "quality.parquet")
        write_parquet(summary, out / "source_summary.parquet")
        write_parquet(flags, out / "flag_counts.parquet")
        write_parquet(prompts, out / "system_prompts.parquet")
    with part("warehouse_views"):
        views = {
            "examples": view_over([paths.normalized_file(s) for s in sources],
                                  NORMALIZED_SCHEMA),
            "rejects": view_over([paths.rejects_file(s) for s in sources], REJECTS_SCHEMA),
            "quality": view_over([out / "quality.parquet"], quality.schema),
            "source_summary": view_over([out / "source_summary.parquet"], summary.schema),
            "flag_counts": view_over([out / "flag_counts.parquet"], flags.schema),
            "system_prompts": view_over([out / "system_prompts.parquet"], prompts.schema),
        }
        with warehouse_resource(paths).get_connection() as con:
            replace_views(con, views)
    with part("checks"):
        keys = examples.select("source", "example_id")
        q_keys = quality.select("source", "example_id")
        missing = keys.join(q_keys, on=["source", "example_id"], how="anti")
        dup_rows = q_keys.filter(pl.struct("source", "example_id").is_duplicated())
        out_of_range = quality.filter(pl.col("quality_score").is_null()
                                      | ~pl.col("quality_score").is_between(0.0, 1.0))
        over = summary.filter(pl.col("flagged_share") > settings.max_flagged_share)
        missing["example_id"].head(5).to_list()
        markdown_table(over.select("source", "flagged_share", "flags_by_kind"), limit=20)
    with part("metadata"):
        flagged = int((quality["quality_flags"].list.len() > 0).sum()) if quality.height else 0
        totals = dict(flags.group_by("flag").agg(pl.col("rows").sum())
                      .sort("rows", descending=True).iter_rows())
        column_schema(quality.schema, QUALITY_COLUMNS)
        float(quality["quality_score"].mean() or 0.0)
        counts_markdown(totals, "flag")
        counts_markdown(score_histogram(quality), "quality_score", "rows")
        markdown_table(worst_examples(quality), limit=5 * max(len(sources), 1), width=100)
        markdown_table(summary.drop("output_shapes"), limit=50, width=120)
    return {
        "rows": quality.height,
        "flagged_rows": flagged,
        "exact_duplicates": int(quality["is_exact_duplicate"].sum() or 0),
        "near_duplicates": int(quality["is_near_duplicate"].sum() or 0),
        "checks_failed": [n for n, bad in (
            ("one_quality_row_per_example", missing.height or dup_rows.height
             or quality.height != examples.height),
            ("scores_in_range", out_of_range.height)) if bad],
    }


def stage_complexity(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``complexity_scores``."""
    from instruct_assets.lib.complexity import score_complexity, tier_summary
    from instruct_assets.lib.parquet_io import write_parquet
    from instruct_assets.lib.stage_io import read_examples
    from instruct_assets.lib.warehouse import replace_views, view_over

    settings = CurationSettings()
    with part("read_examples"):
        examples = read_examples(paths, _live(paths))
    with part("score_complexity"):
        scored = score_complexity(examples, settings.complexity_config()).with_columns(
            pl.col("complexity_tier").cast(pl.String)).sort("source", "example_id")
    with part("write_parquet"):
        target = write_parquet(scored, paths.curation / "complexity.parquet")
    with part("warehouse_views"), warehouse_resource(paths).get_connection() as con:
        replace_views(con, {"complexity": view_over([target], scored.schema)})
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
    """``benchmark_contamination``."""
    from instruct_assets.lib.benchmarks import load_benchmarks
    from instruct_assets.lib.decontaminate import (
        build_benchmark_index,
        find_contamination,
        hit_table,
    )
    from instruct_assets.lib.parquet_io import write_parquet
    from instruct_assets.lib.stage_io import read_examples
    from instruct_assets.lib.warehouse import replace_views, view_over

    settings = CurationSettings()
    with part("read_examples"):
        examples = read_examples(paths, _live(paths))
    with part("load_benchmarks"):
        items, bench_rejects = load_benchmarks(paths)
    cfg = settings.decontam_config()
    with part("build_benchmark_index"):
        index = build_benchmark_index(items, cfg)
    with part("find_contamination"):
        found = find_contamination(examples, index, cfg)
    with part("hit_table"):
        hits = hit_table(found, index)
    with part("write_parquet"):
        target = write_parquet(found, paths.curation / "contamination.parquet")
        hits_target = write_parquet(hits, paths.curation / "contamination_hits.parquet")
    with part("warehouse_views"), warehouse_resource(paths).get_connection() as con:
        replace_views(con, {"contamination": view_over([target], found.schema),
                            "contamination_hits": view_over([hits_target], hits.schema)})
    with part("metadata"):
        contaminated = found.filter("contaminated")
        n_contaminated = contaminated.select("source", "example_id").unique().height
        column_schema(found.schema)
        markdown_table(hits, limit=50)
    return {"rows": examples.height, "benchmark_items": items.height,
            "benchmark_rejects": sum(bench_rejects.values()),
            "contaminated_examples": n_contaminated}


def stage_curation(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``curated_examples``."""
    from instruct_assets.lib.curation import curate, rule_counts
    from instruct_assets.lib.parquet_io import write_parquet
    from instruct_assets.lib.warehouse import replace_views, view_over

    settings = CurationSettings()
    with part("read_inputs"):
        quality = pl.read_parquet(paths.quality / "quality.parquet", columns=[
            "source", "example_id", "quality_score", "quality_flags", "dup_cluster_id",
            "is_dup_representative"])
        contamination = pl.read_parquet(paths.curation / "contamination.parquet")
    with part("curate"):
        curated = curate(quality, settings.curation_config(), contamination).sort(
            "source", "example_id")
    with part("write_parquet"):
        target = write_parquet(curated, paths.curation / "curation.parquet")
    with part("warehouse_views"), warehouse_resource(paths).get_connection() as con:
        replace_views(con, {"curation": view_over([target], curated.schema)})
    with part("metadata"):
        rules = rule_counts(curated)
        removed = {r["rule"]: int(r["removed"]) for r in rules.iter_rows(named=True)}
        kept = int(curated["kept"].sum())
        column_schema(curated.schema)
        markdown_table(rules, limit=20)
    return {"rows": curated.height, "kept": kept, "removed": removed}


def stage_splits(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``split_assignments``."""
    from instruct_assets.lib.parquet_io import write_parquet
    from instruct_assets.lib.split_sets import SPLIT_NAMES, build_splits
    from instruct_assets.lib.splits import check_split_integrity, split_report
    from instruct_assets.lib.stage_io import read_examples
    from instruct_assets.lib.warehouse import replace_views, view_over

    settings = CurationSettings()
    with part("read_inputs"):
        examples = read_examples(paths, _live(paths))
        curated = pl.read_parquet(paths.curation / "curation.parquet")
        complexity = pl.read_parquet(paths.curation / "complexity.parquet",
                                     columns=["source", "example_id", "complexity_tier"])
    cfg = settings.split_config()
    with part("build_splits"):
        assignments, sets = build_splits(examples, curated, complexity, cfg)
    with part("write_parquet"):
        target = write_parquet(assignments, paths.splits / "assignments.parquet")
        files = {name: write_parquet(frame, paths.splits / f"{name}.parquet")
                 for name, frame in sets.items()}
    with part("warehouse_views"), warehouse_resource(paths).get_connection() as con:
        replace_views(con, {
            "splits": view_over([target], assignments.schema),
            **{name: view_over([files[name]], sets[name].schema) for name in SPLIT_NAMES},
        })
    with part("checks"):
        integrity = check_split_integrity(assignments, cfg)
        excluded_in = assignments.join(
            curated.filter(~pl.col("kept")).select("source", "example_id"),
            on=["source", "example_id"], how="semi")
        excluded_in["example_id"].head(5).to_list()
    with part("metadata"):
        report = split_report(assignments)
        tiers_by_split = (assignments.group_by("split", "complexity_tier").len()
                          .sort("split", "complexity_tier"))
        column_schema(assignments.schema)
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
        ("no_excluded_row_in_split", excluded_in.height)) if bad]
    return {"rows": assignments.height, "train_rows": integrity["train_rows"],
            "eval_rows": integrity["eval_rows"], "checks_failed": failed}


def stage_exports(paths: DataPaths, part: Parts) -> dict[str, Any]:
    """``training_exports``: every split in every format, the card, and its checks."""
    from instruct_assets.lib.export.card import write_card
    from instruct_assets.lib.export.validate import validate_export
    from instruct_assets.lib.export.writers import KIND_PATHS, export_split
    from instruct_assets.lib.export_stats import card_stats, round_trip_ids
    from instruct_assets.lib.split_sets import SPLIT_NAMES

    quality_settings, curation_settings = QualitySettings(), CurationSettings()
    results, frames = {}, {}
    for split in SPLIT_NAMES:
        with part("read_split"):
            frames[split] = pl.read_parquet(paths.splits / f"{split}.parquet")
        with part("export_split"):
            results[split] = export_split(frames[split], paths.exports, split)
    with part("card"):
        stats = card_stats(paths, _live(paths), frames, results, {
            "quality": quality_settings.model_dump(),
            "curation": curation_settings.model_dump()})
        write_card(paths.exports / "README.md", stats)
    with part("validate_export"):
        validations = [validate_export(info["path"], kind) | {"split": split}
                       for split, res in results.items()
                       for kind, info in res["formats"].items()]
    bad = [v for v in validations if not v["valid"]]
    count_errors = []
    for split, res in results.items():
        for kind, info in res["formats"].items():
            dropped = info.get("not_exportable", {}).get("count", 0)
            if info["rows"] + dropped != frames[split].height:
                count_errors.append(f"{kind}/{split}")
    with part("round_trip_ids"):
        trip = {split: round_trip_ids(paths, paths.exports / KIND_PATHS["openai"].format(
            split=split), frames[split]) for split in SPLIT_NAMES}
    trip_bad = [s for s, t in trip.items() if t["missing"] or t["unexpected"]]
    with part("metadata"):
        files = pl.DataFrame([
            {"split": split, "kind": kind, "path": str(info["path"]), "rows": info["rows"],
             "bytes": info["bytes"],
             "not_exportable": info.get("not_exportable", {}).get("count", 0)}
            for split, res in results.items() for kind, info in res["formats"].items()])
        markdown_table(files, limit=50, width=90)
    kinds = {f"{split}/{kind}": info["seconds"] for split, res in results.items()
             for kind, info in res["formats"].items()}
    return {"rows": sum(f.height for f in frames.values()),
            "bytes": int(files["bytes"].sum()),
            "export_seconds_by_kind": kinds,
            "checks_failed": [n for n, bad_ in (("every_line_parses", bad),
                                                ("row_counts_match_splits", count_errors),
                                                ("round_trip_same_ids", trip_bad)) if bad_]}


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
    args = ap.parse_args()
    print(json.dumps(run(args.data_dir, args.stage, args.profile), default=str))


if __name__ == "__main__":
    main()
