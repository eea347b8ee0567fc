"""Run the whole graph in-process: every source's ingestion, then the downstream stages.

Used by ``instruct-assets run`` and by tests, so both exercise exactly what a user runs.
Each source is its own Dagster run (a held-back source fails its run without stopping the
others); the unpartitioned downstream assets then run once over the published sources.
"""

from __future__ import annotations

import os
import socket
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
TRIGGER_TAG, PID_TAG, HOST_TAG = ("instruct_assets/trigger", "instruct_assets/pid",
                                  "instruct_assets/host")


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
    changed: bool = False


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


def _run_tags(**extra: str) -> dict[str, str]:
    """Tags of a CLI run: who runs it (pid, host), so a later run can tell it was killed."""
    return {TRIGGER_TAG: "cli", PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(),
            **extra}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def reclaim_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the CLI runs of this host whose process is gone, and free their slots.

    Why: a run killed outright (SIGKILL, the OOM killer, a power cut) stays STARTED in the
    instance and keeps its ``duckdb_write`` pool slot, so every later run would wait for that
    slot forever. Runs without our pid tag, of another host, or whose process lives are left
    alone.
    """
    host = socket.gethostname()
    runs = instance.get_runs(filters=dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED],
        tags={TRIGGER_TAG: "cli"}))
    reclaimed = []
    for run in runs:
        pid = run.tags.get(PID_TAG, "")
        if run.tags.get(HOST_TAG) != host or not pid.isdigit() or _alive(int(pid)):
            continue
        instance.report_run_failed(run, message=(
            f"instruct-assets: the process that ran this run (pid {pid}) is gone; marked "
            "failed and its concurrency slots freed by the next run"))
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reclaimed.append(run.run_id)
    return reclaimed


def run_pipeline(
    defs: dg.Definitions,
    paths: DataPaths,
    instance: dg.DagsterInstance,
    progress: Callable[[str], None] = lambda _msg: None,
    quiet: bool = True,
) -> PipelineOutcome:
    """Ingest every source, then always recompute the downstream stages.

    Downstream also depends on inputs outside the sources (annotations, benchmarks,
    settings) and must repair a run that was killed half-way, so the CLI never skips it;
    its outputs are deterministic, so an unchanged run rewrites the same bytes.
    """
    started = time.perf_counter()
    reclaimed = reclaim_orphaned_runs(instance)
    if reclaimed:
        progress(f"marked {len(reclaimed)} run(s) of a killed process as failed and freed "
                 f"their pool slots: {', '.join(r[:8] for r in reclaimed)}")
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
            tags=_run_tags(**{"instruct_assets/source": source}),
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
        outcome.changed = any(
            e.asset_key == NORMALIZED for e in result.get_asset_materialization_events())
        outcomes.append(outcome)
        progress(_progress_line(i, len(specs), outcome))
    downstream = [a for a in assets if a.partitions_def is None]
    downstream_ok, failures = None, []
    if downstream:
        progress("downstream: quality, curation, splits, exports ...")
        result = dg.materialize(
            assets, selection=dg.AssetSelection.assets(*downstream), instance=instance,
            resources=resources, raise_on_error=False, run_config=run_config,
            tags=_run_tags(),
        )
        downstream_ok = result.success
        failures = [f"{e.asset_key.to_user_string()}:{e.check_name}"
                    for e in result.get_asset_check_evaluations() if not e.passed]
        if not result.success:
            failures.append(_first_error(result) or "a step failed")
    return PipelineOutcome(outcomes, downstream_ok, failures, time.perf_counter() - started)


def _first_error(result: dg.ExecuteInProcessResult) -> str | None:
    """The innermost message of the first step failure (the user's error, not the wrapper)."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            return error.message.strip().splitlines()[0]
    return None


def _progress_line(i: int, n: int, o: SourceOutcome) -> str:
    fmt = ",".join(o.formats) or "-"
    status = "published" if o.published else (
        "HELD BACK: " + (", ".join(o.failed_checks) or o.error or "failed"))
    return (f"[{i}/{n}] {o.source:<24} {fmt:<18} {o.records:>8} read {o.rows:>8} rows "
            f"{o.rejects:>6} rejects  {status} ({o.seconds:.1f}s)")
