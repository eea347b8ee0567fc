"""Run the whole graph in-process: every source's ingestion, then the downstream stages.

Used by ``instruct-assets run`` and by tests, so both exercise exactly what a user runs.
Each source is its own Dagster run (a held-back source fails its run without stopping the
others); the unpartitioned downstream assets then run once over the published sources.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from instruct_assets.defs.ingest.assets import NORMALIZED, STAGED
from instruct_assets.defs.partitions import SOURCES_PARTITION
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.publish import read_report
from instruct_assets.lib.sources import discover_sources

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class SourceOutcome:
    source: str
    published: bool
    seconds: float
    records: int = 0
    rows: int = 0
    rejects: int = 0
    formats: dict[str, int] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class PipelineOutcome:
    sources: list[SourceOutcome]
    downstream_ok: bool | None
    downstream_failures: list[str]
    seconds: float

    @property
    def held_back(self) -> list[SourceOutcome]:
        return [s for s in self.sources if not s.published]


def sync_partitions(instance: dg.DagsterInstance, sources: list[str]) -> tuple[list, list]:
    """Register partitions for ``sources`` and delete those of sources that are gone."""
    registered = set(instance.get_dynamic_partitions(SOURCES_PARTITION))
    added = sorted(set(sources) - registered)
    removed = sorted(registered - set(sources))
    if added:
        instance.add_dynamic_partitions(SOURCES_PARTITION, added)
    for name in removed:
        instance.delete_dynamic_partition(SOURCES_PARTITION, name)
    return added, removed


def run_pipeline(
    defs: dg.Definitions,
    paths: DataPaths,
    instance: dg.DagsterInstance,
    progress: Callable[[str], None] = lambda _msg: None,
    quiet: bool = True,
) -> PipelineOutcome:
    started = time.perf_counter()
    specs = discover_sources(paths)
    sync_partitions(instance, list(specs))
    assets = list(defs.assets or [])
    resources = defs.resources or {}
    run_config = QUIET if quiet else None
    outcomes = []
    for i, source in enumerate(specs, 1):
        t0 = time.perf_counter()
        result = dg.materialize(
            assets, selection=[STAGED, NORMALIZED], partition_key=source, instance=instance,
            resources=resources, raise_on_error=False, run_config=run_config,
            tags={"instruct_assets/source": source, "instruct_assets/trigger": "cli"},
        )
        failed = sorted(e.check_name for e in result.get_asset_check_evaluations()
                        if not e.passed)
        report = read_report(paths, source, staged=not result.success) or {}
        error = None
        if not result.success and not failed:
            error = _first_error(result)
        outcome = SourceOutcome(
            source=source, published=result.success, seconds=time.perf_counter() - t0,
            records=report.get("records_read", 0), rows=report.get("rows", 0),
            rejects=report.get("rejects", 0), formats=report.get("formats", {}),
            failed_checks=failed, error=error,
        )
        outcomes.append(outcome)
        progress(_progress_line(i, len(specs), outcome))
    downstream = [a for a in assets if a.partitions_def is None]
    downstream_ok, failures = None, []
    if downstream:
        progress("downstream: quality, curation, splits, exports ...")
        result = dg.materialize(
            assets, selection=dg.AssetSelection.assets(*downstream), instance=instance,
            resources=resources, raise_on_error=False, run_config=run_config,
            tags={"instruct_assets/trigger": "cli"},
        )
        downstream_ok = result.success
        failures = [f"{e.asset_key.to_user_string()}:{e.check_name}"
                    for e in result.get_asset_check_evaluations() if not e.passed]
        if not result.success:
            failures.append(_first_error(result) or "a step failed")
    return PipelineOutcome(outcomes, downstream_ok, failures, time.perf_counter() - started)


def _first_error(result: dg.ExecuteInProcessResult) -> str | None:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            return event.step_failure_data.error.message.strip().splitlines()[0]
    return None


def _progress_line(i: int, n: int, o: SourceOutcome) -> str:
    fmt = ",".join(o.formats) or "-"
    status = "published" if o.published else (
        "HELD BACK: " + (", ".join(o.failed_checks) or o.error or "failed"))
    return (f"[{i}/{n}] {o.source:<24} {fmt:<18} {o.records:>8} read {o.rows:>8} rows "
            f"{o.rejects:>6} rejects  {status} ({o.seconds:.1f}s)")
