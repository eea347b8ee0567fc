"""Review stage: the queue people work through, and what they decided.

Thin wiring around ``lib.review``. ``annotations`` parses every tool export dropped into
``<data dir>/annotations/`` (the ``annotations_sensor`` notices new files);
``review_queue`` picks the next examples to review and writes them for Label Studio,
Argilla and Prodigy under ``<data dir>/review/``. Curation applies the verdicts
(``lib.review.verdicts.apply_verdicts``).
"""

import json

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from instruct_assets.defs.automation import REFRESH_DOWNSTREAM
from instruct_assets.defs.curation.assets import COMPLEXITY
from instruct_assets.defs.ingest.assets import NORMALIZED
from instruct_assets.defs.metadata import column_schema, counts_markdown, markdown_table
from instruct_assets.defs.quality.assets import QUALITY, registered_sources
from instruct_assets.defs.resources import DataDir, MemorySettings
from instruct_assets.defs.settings import CurationSettings
from instruct_assets.lib.parquet_io import write_parquet
from instruct_assets.lib.review.annotations import (
    ANNOTATION_REJECTS_SCHEMA,
    ANNOTATIONS_SCHEMA,
    PARSER_VERSION,
    ParsedAnnotations,
    finalize,
    inbox_fingerprint,
    read_annotation_files,
)
from instruct_assets.lib.review.io import examples_for
from instruct_assets.lib.review.layout import ReviewPaths
from instruct_assets.lib.review.queue import (
    QUEUE_SCHEMA,
    QueueConfig,
    queue_from_files,
    queue_summary,
)
from instruct_assets.lib.review.tools import review_frame, write_tool_files
from instruct_assets.lib.review.verdicts import verdict_conflicts
from instruct_assets.lib.stage_io import live_sources
from instruct_assets.lib.warehouse import replace_views, view_over

ANNOTATIONS = dg.AssetKey("annotations")
REVIEW_QUEUE = dg.AssetKey("review_queue")

#: Reject reasons that mean a file or record is broken (the others are normal: nobody
#: annotated it yet, it was skipped, or it was seen before).
BROKEN = ("unreadable_file", "empty_file", "invalid_json", "unknown_format", "missing_key",
          "bad_verdict", "empty_edit", "unknown_example")

ANNOTATION_CHECKS = {
    "no_conflicting_verdicts": ("no example has annotations that disagree (conflicts are "
                                "resolved: latest time wins, ties -> reject) (WARN)", False),
    "annotation_files_parse": ("every dropped record is a usable annotation, or unannotated/"
                               "skipped/repeated (WARN)", False),
}


@dg.asset(
    key=ANNOTATIONS, deps=[NORMALIZED], group_name="review", kinds={"polars", "parquet",
                                                                   "duckdb"},
    pool="duckdb_write", automation_condition=REFRESH_DOWNSTREAM, code_version=PARSER_VERSION,
    description=(
        "Every Label Studio (JSON, JSON-MIN, CSV), Argilla (records JSON/JSONL, nested or "
        "flat, and to_datasets()/Hub Parquet) and Prodigy (db-out JSONL) export under "
        "<data dir>/annotations/, parsed to one "
        "row per annotation: source, example_id, verdict (accept/reject/edit), "
        "edited_content, reason, annotator, annotated_at, tool. Unusable records are kept "
        "with a reason_code. Warehouse relations: annotations, annotation_rejects."),
    check_specs=[dg.AssetCheckSpec(n, asset=ANNOTATIONS, description=d, blocking=b)
                 for n, (d, b) in ANNOTATION_CHECKS.items()],
)
def human_annotations(context: dg.AssetExecutionContext, data_dir: DataDir,
                      duckdb: DuckDBResource) -> dg.MaterializeResult:
    paths = data_dir.paths
    layout = ReviewPaths(paths)
    annotated, rejected, files = read_annotation_files(paths)
    examples = examples_for(paths, live_sources(paths, registered_sources(context)),
                            annotated.select("source", "example_id"))
    rows, rejects, unchanged = finalize(annotated, rejected, examples)
    parsed = ParsedAnnotations(rows, rejects, files, unchanged)
    write_parquet(rows, layout.annotations, ANNOTATIONS_SCHEMA)
    write_parquet(rejects, layout.annotation_rejects, ANNOTATION_REJECTS_SCHEMA)
    with duckdb.get_connection() as con:
        replace_views(con, {
            "annotations": view_over([layout.annotations], ANNOTATIONS_SCHEMA),
            "annotation_rejects": view_over([layout.annotation_rejects],
                                            ANNOTATION_REJECTS_SCHEMA),
        })
    conflicts = verdict_conflicts(rows)
    by_reason = parsed.rejects_by_reason()
    broken = rejects.filter(pl.col("reason_code").is_in(BROKEN))
    verdicts = dict(rows.group_by("verdict").len().sort("verdict").iter_rows())
    tools = dict(rows.group_by("tool").len().sort("tool").iter_rows())
    records = sum(f["records"] for f in parsed.files.values())
    files = pl.DataFrame([{"file": k, **v} for k, v in parsed.files.items()],
                         schema={"file": pl.String, "records": pl.Int64,
                                 "annotations": pl.Int64, "rejects": pl.Int64})
    checks = [
        dg.AssetCheckResult(
            check_name="no_conflicting_verdicts", asset_key=ANNOTATIONS,
            passed=conflicts.height == 0, severity=dg.AssetCheckSeverity.WARN,
            description=(f"{conflicts.height} example(s) with disagreeing annotations"
                         if conflicts.height else "no disagreement"),
            metadata={"conflicts": conflicts.height,
                      "examples": dg.MetadataValue.md(markdown_table(conflicts, limit=20))}),
        dg.AssetCheckResult(
            check_name="annotation_files_parse", asset_key=ANNOTATIONS,
            passed=broken.height == 0, severity=dg.AssetCheckSeverity.WARN,
            metadata={"broken_records": broken.height,
                      "by_reason": {k: v for k, v in by_reason.items() if k in BROKEN},
                      "sample": dg.MetadataValue.md(markdown_table(
                          broken.select("file", "record", "reason_code", "detail"),
                          limit=10))}),
    ]
    if not parsed.files:
        context.log.info(f"no annotation files under {layout.inbox}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows.height,
            "dagster/column_schema": column_schema(rows.schema),
            "files": len(parsed.files),
            "records": records,
            "annotations": rows.height,
            "rejects": rejects.height,
            "examples_annotated": rows.select("source", "example_id").unique().height,
            "edits_unchanged_counted_as_accept": parsed.edits_unchanged,
            "conflicts": conflicts.height,
            **{f"verdict_{k}": int(v) for k, v in verdicts.items()},
            "rejects_by_reason": dg.MetadataValue.md(counts_markdown(by_reason, "reason_code")),
            "by_tool": dg.MetadataValue.md(counts_markdown(tools, "tool")),
            "by_file": dg.MetadataValue.md(markdown_table(files, limit=50)),
            "inbox": dg.MetadataValue.path(str(layout.inbox)),
            "inbox_fingerprint": inbox_fingerprint(paths),
        },
        check_results=checks,
    )


class ReviewQueueConfig(dg.Config):
    """Queue sizes (see ``lib.review.queue.QueueConfig``); the borderline band is centred
    on ``CurationSettings.min_quality_score``."""

    flagged_per_source: int = 25
    borderline_per_source: int = 15
    borderline_margin: float = 0.1
    sample_per_stratum: int = 5
    seed: str = "instruct-assets-review-v1"
    #: Leave out examples that already have a verdict (each refresh brings new work).
    exclude_reviewed: bool = True


@dg.asset(
    key=REVIEW_QUEUE, deps=[QUALITY, COMPLEXITY, ANNOTATIONS], group_name="review",
    kinds={"polars", "json", "parquet"}, pool="duckdb_write",
    automation_condition=REFRESH_DOWNSTREAM, code_version="review-queue-1",
    description=(
        "The next examples for human review: flagged rows, scores near the quality "
        "threshold, and a random sample per source and complexity tier (seeded md5 ranks: "
        "deterministic, never row-order based), minus examples already reviewed. Written to "
        "<data dir>/review/ as Label Studio tasks + labeling config, Argilla records and "
        "Prodigy tasks. Warehouse relation: review_queue."),
)
def review_queue(context: dg.AssetExecutionContext, config: ReviewQueueConfig,
                 data_dir: DataDir, curation_settings: CurationSettings,
                 duckdb: DuckDBResource, memory_settings: MemorySettings
                 ) -> dg.MaterializeResult:
    paths = data_dir.paths
    layout = ReviewPaths(paths)
    reviewed = (pl.read_parquet(layout.annotations, columns=["source", "example_id"])
                if config.exclude_reviewed and layout.annotations.exists() else None)
    cfg = QueueConfig(flagged_per_source=config.flagged_per_source,
                      borderline_per_source=config.borderline_per_source,
                      borderline_center=curation_settings.min_quality_score,
                      borderline_margin=config.borderline_margin,
                      sample_per_stratum=config.sample_per_stratum, seed=config.seed)
    queue = queue_from_files(paths.quality / "quality.parquet",
                             paths.curation / "complexity.parquet", cfg, reviewed,
                             chunk_rows=memory_settings.chunk_rows)
    examples = examples_for(paths, live_sources(paths, registered_sources(context)), queue)
    frame = review_frame(queue, examples, curation_settings.min_quality_score,
                         tuple(curation_settings.exclude_flags))
    gone = queue.join(frame.select("source", "example_id"), on=["source", "example_id"],
                      how="anti")
    if gone.height:
        context.log.warning(f"{gone.height} queued example(s) are no longer published; "
                            "left out of the tool files")
    queue = queue.join(frame.select("source", "example_id"), on=["source", "example_id"],
                       how="semi").sort("queue_position")
    write_parquet(queue, layout.queue, QUEUE_SCHEMA)
    files = write_tool_files(layout, frame)
    with duckdb.get_connection() as con:
        replace_views(con, {"review_queue": view_over([layout.queue], QUEUE_SCHEMA)})
    kinds = dict(queue.group_by("queue_reason").len().sort("queue_reason").iter_rows())
    suggested = dict(frame.group_by("suggested_verdict").len().sort("suggested_verdict")
                     .iter_rows())
    return dg.MaterializeResult(metadata={
        "dagster/row_count": queue.height,
        "dagster/column_schema": column_schema(queue.schema),
        **{f"queued_{k}": int(v) for k, v in kinds.items()},
        **{f"suggested_{k}": int(v) for k, v in suggested.items()},
        "already_reviewed": 0 if reviewed is None else
        reviewed.select("source", "example_id").unique().height,
        "no_longer_published": gone.height,
        "by_source": dg.MetadataValue.md(markdown_table(queue_summary(queue), limit=100)),
        **{name: dg.MetadataValue.path(str(path)) for name, path in files.items()},
    })


@dg.sensor(
    name="annotations_sensor", minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING, asset_selection=[ANNOTATIONS],
    description="Parses the annotations folder whenever its files change.",
)
def annotations_sensor(context: dg.SensorEvaluationContext, data_dir: DataDir
                       ) -> dg.SensorResult:
    """Requests ``annotations`` keyed by the inbox fingerprint (unchanged inbox: no run)."""
    paths = data_dir.paths
    layout = ReviewPaths(paths)
    cursor = json.loads(context.cursor) if context.cursor else {}
    if not layout.inbox.is_dir() and not cursor.get("fingerprint"):
        return dg.SensorResult(skip_reason=f"no annotations folder at {layout.inbox}")
    cache = cursor.get("files", {})
    fingerprint = inbox_fingerprint(paths, cache)
    live = {paths.relative(p) for p in (layout.inbox.rglob("*") if layout.inbox.is_dir()
                                         else [])}
    new_cursor = json.dumps({"fingerprint": fingerprint,
                             "files": {k: v for k, v in sorted(cache.items()) if k in live}})
    if fingerprint == cursor.get("fingerprint"):
        return dg.SensorResult(skip_reason="annotations unchanged", cursor=new_cursor)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"annotations:{fingerprint}",
                                    tags={"instruct_assets/trigger": "annotations"})],
        cursor=new_cursor)
