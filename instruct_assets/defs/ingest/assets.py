"""Ingestion assets: one source's raw files -> staged examples (checked) -> published.

Thin wiring around ``lib.normalize`` (the transform), ``lib.contract`` (the checks) and
``lib.publish`` (staging and promotion). Blocking checks on ``staged_examples`` stop
``normalized_examples`` from running, so a source that breaks the contract is never
published; its previous published version stays in place.
"""


import time
from collections.abc import Iterator

import dagster as dg
import polars as pl

from instruct_assets.defs.metadata import (
    column_schema,
    conversation_preview,
    counts_markdown,
    markdown_table,
)
from instruct_assets.defs.partitions import source_partitions
from instruct_assets.defs.resources import DataDir, IngestSettings, MemorySettings
from instruct_assets.lib import contract
from instruct_assets.lib.fingerprint import source_fingerprint
from instruct_assets.lib.publish import (
    clear_staging,
    promote,
    read_report,
    stage_source,
    unchanged_since_publication,
)
from instruct_assets.lib.schema import NORMALIZED_SCHEMA
from instruct_assets.lib.sources import discover_sources

STAGED = dg.AssetKey("staged_examples")
NORMALIZED = dg.AssetKey("normalized_examples")

#: Check name -> (what it guards, blocking?)
INGEST_CHECKS: dict[str, tuple[str, bool]] = {
    "schema_matches_contract": ("columns and types equal the canonical schema", True),
    "roles_valid": ("roles are only system/user/assistant/tool", True),
    "system_only_first": ("a system turn appears only as the first turn", True),
    "first_turn_is_user": ("the first non-system turn is the user's", True),
    "turns_alternate": ("user/assistant alternate; tool turns only around tool calls", True),
    "ends_with_assistant": ("every conversation ends with an assistant turn", True),
    "no_empty_content": ("no turn has empty content", True),
    "example_id_unique": ("example_id is unique within the source", True),
    "one_format_per_source": ("the source holds one instruction format", True),
    "row_accounting": ("records read = rows written + rows rejected", True),
    "reject_rate_below_ceiling": ("the share of rejected records is below the ceiling", True),
}

CODE_VERSION = "ingest-2"


@dg.asset(
    key=STAGED,
    partitions_def=source_partitions,
    group_name="ingest",
    kinds={"parquet", "polars", "duckdb"},
    code_version=CODE_VERSION,
    description=(
        "One source's raw files (data/raw/<source>/ or listed in sources.yaml), read in any "
        "supported container and instruction format, mapped to the canonical conversation "
        "schema and written to staging with its rejects. Every record read is either a row "
        "or a reject with a reason; the checks below decide whether the source is published."
    ),
    check_specs=[
        dg.AssetCheckSpec(name, asset=STAGED, description=desc, blocking=blocking)
        for name, (desc, blocking) in INGEST_CHECKS.items()
    ],
)
def staged_examples(
    context: dg.AssetExecutionContext, data_dir: DataDir, ingest_settings: IngestSettings,
    memory_settings: MemorySettings,
) -> dg.MaterializeResult:
    source = context.partition_key
    paths = data_dir.paths
    specs = discover_sources(paths)
    if source not in specs:
        raise dg.Failure(
            f"source {source!r} has no folder under {paths.raw} and no entry in "
            f"{paths.sources_file}; the source sensor removes stale partitions")
    spec = specs[source]
    fingerprint = source_fingerprint(paths, spec, {}, CODE_VERSION)
    unchanged = unchanged_since_publication(paths, source, fingerprint)
    if unchanged is not None:
        clear_staging(paths, source)
        context.log.info(f"source {source!r} is unchanged since its last publication "
                         f"(fingerprint {fingerprint}): nothing to redo")
        return _unchanged_result(unchanged, fingerprint)
    started = time.perf_counter()
    staged = stage_source(paths, spec, fingerprint, ingest_settings.max_reject_rate,
                          chunk_rows=memory_settings.chunk_rows)
    seconds = time.perf_counter() - started
    outcomes = staged.outcomes
    checks = [_check_result(name, o) for name, o in outcomes.items()]
    failed = [name for name, o in outcomes.items() if not o.passed and INGEST_CHECKS[name][1]]
    if failed:
        context.log.warning(f"source {source!r} is held back: blocking checks failed: {failed}")
    files = pl.DataFrame([
        {"file": f.file, "container": f.container, "format": f.format,
         "format_share": f.format_share, "records": f.records_read, "rows": f.rows,
         "rejects": f.rejects}
        for f in staged.files
    ])
    reject_sample = staged.rejects.select("source_file", "source_row", "reason_code", "detail")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": staged.rows,
            "dagster/column_schema": column_schema(NORMALIZED_SCHEMA),
            "records_read": staged.records_read,
            "rows_written": staged.rows,
            "rejects": staged.rejects.height,
            "reject_rate": round(staged.rejects.height / max(staged.records_read, 1), 4),
            "rejects_by_reason": dg.MetadataValue.md(
                counts_markdown(staged.rejects_by_reason(), "reason_code")),
            "formats_detected": dg.MetadataValue.md(counts_markdown(staged.formats, "format")),
            "files": dg.MetadataValue.md(markdown_table(files, limit=50)),
            "preview": dg.MetadataValue.md(conversation_preview(staged.head)),
            "reject_sample": dg.MetadataValue.md(markdown_table(reject_sample)),
            "held_back_by": ", ".join(failed) if failed else "none",
            "unchanged": False,
            "fingerprint": fingerprint,
            "seconds": round(seconds, 3),
        },
        check_results=checks,
        data_version=dg.DataVersion(fingerprint),
    )


def _check_result(name: str, o: contract.CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name, passed=o.passed, asset_key=STAGED, description=o.description,
        metadata={"failing_rows": o.failing, "sample_source_rows": o.sample_rows,
                  "sample_example_ids": o.sample_ids,
                  **({"counts": o.details} if o.details else {})},
    )


def _unchanged_result(report: dict, fingerprint: str) -> dg.MaterializeResult:
    """Re-report a source whose inputs, settings and code are those of its publication."""
    outcomes = {name: contract.CheckOutcome(**o) for name, o in report["checks"].items()}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report["rows"],
            "dagster/column_schema": column_schema(NORMALIZED_SCHEMA),
            "records_read": report["records_read"],
            "rows_written": report["rows"],
            "rejects": report["rejects"],
            "reject_rate": round(report["rejects"] / max(report["records_read"], 1), 4),
            "rejects_by_reason": dg.MetadataValue.md(
                counts_markdown(report["rejects_by_reason"], "reason_code")),
            "formats_detected": dg.MetadataValue.md(counts_markdown(report["formats"], "format")),
            "held_back_by": "none",
            "unchanged": True,
            "fingerprint": fingerprint,
        },
        check_results=[_check_result(name, o) for name, o in outcomes.items()],
        data_version=dg.DataVersion(fingerprint),
    )


@dg.asset(
    key=NORMALIZED,
    deps=[STAGED],
    partitions_def=source_partitions,
    group_name="ingest",
    kinds={"parquet"},
    code_version=CODE_VERSION,
    output_required=False,
    description=(
        "The published canonical examples of one source: data/normalized/source=<source>/"
        "examples.parquet (zstd, sorted by file and row) and its rejects under data/rejects/. "
        "Runs only when every blocking check of staged_examples passed; the move from "
        "staging is an atomic rename, so readers never see a half-written file."
    ),
)
def normalized_examples(context: dg.AssetExecutionContext, data_dir: DataDir
                        ) -> Iterator[dg.MaterializeResult]:
    source = context.partition_key
    paths = data_dir.paths
    if read_report(paths, source, staged=True) is None:
        # staged_examples found the source unchanged since its publication: nothing is
        # moved and no new materialization is recorded, so nothing downstream re-runs.
        context.log.info(f"source {source!r} unchanged: its publication stays as it is")
        return
    targets = promote(paths, source)
    report = read_report(paths, source) or {}
    preview = pl.read_parquet(targets["examples.parquet"], n_rows=5)
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": report.get("rows", 0),
        "dagster/column_schema": column_schema(NORMALIZED_SCHEMA),
        "path": dg.MetadataValue.path(str(targets["examples.parquet"])),
        "rejects_path": dg.MetadataValue.path(str(targets["rejects.parquet"])),
        "rejects": report.get("rejects", 0),
        "formats_detected": dg.MetadataValue.md(counts_markdown(report.get("formats", {}),
                                                                "format")),
        "preview": dg.MetadataValue.md(conversation_preview(preview)),
        "unchanged": False,
    }, data_version=dg.DataVersion(report.get("fingerprint") or "unknown"))
