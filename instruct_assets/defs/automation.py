"""Refreshes that run themselves: the automation condition, its sensor, the daily refresh.

* New or changed raw files: the source sensor (``ingest/sensors.py``) ingests that source.
* Everything downstream (quality, curation, splits, exports) carries ``REFRESH_DOWNSTREAM``:
  it is requested when any upstream asset was updated, or its own code version changed, and
  nothing upstream is still running. The automation sensor evaluating it runs by default.
* A scheduled full refresh (daily at 03:00 by default; cron from ``build_defs``) re-ingests
  every registered source; unchanged sources are recognised by fingerprint and cost little.
"""

import dagster as dg

from instruct_assets.defs.ingest.assets import NORMALIZED, STAGED
from instruct_assets.defs.partitions import SOURCES_PARTITION

DEFAULT_REFRESH_CRON = "0 3 * * *"

REFRESH_DOWNSTREAM = (
    dg.AutomationCondition.in_latest_time_window()
    & (
        dg.AutomationCondition.newly_missing()
        | dg.AutomationCondition.any_deps_updated()
        | dg.AutomationCondition.code_version_changed()
    ).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("refresh when upstream changes")

automation_sensor = dg.AutomationConditionSensorDefinition(
    "downstream_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refreshes quality, curation, splits and exports after their inputs change.",
)


def build_refresh_schedule(cron: str = DEFAULT_REFRESH_CRON) -> dg.ScheduleDefinition:
    """The full refresh: one run per registered source; downstream follows by automation."""

    @dg.schedule(
        name="full_refresh",
        cron_schedule=cron,
        target=dg.AssetSelection.assets(STAGED, NORMALIZED),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Re-ingests every source ({cron}); downstream assets follow.",
    )
    def full_refresh(context: dg.ScheduleEvaluationContext):
        sources = sorted(context.instance.get_dynamic_partitions(SOURCES_PARTITION))
        if not sources:
            return dg.SkipReason("no sources registered yet (the source sensor adds them)")
        try:
            tick = context.scheduled_execution_time.isoformat()
        except Exception:
            tick = "manual"
        return [dg.RunRequest(run_key=f"{s}:{tick}", partition_key=s,
                              tags={"instruct_assets/trigger": "schedule"}) for s in sources]

    return full_refresh
