"""Refreshes that run themselves: automation conditions, the schedule, cheap re-runs."""

from __future__ import annotations

import dagster as dg
import polars as pl

from instruct_assets.definitions import build_defs
from instruct_assets.defs.ingest.assets import NORMALIZED, STAGED
from tests.support import make_data_dir, real, run_all

DOWNSTREAM = {"quality_scores", "complexity_scores", "benchmark_contamination",
              "curated_examples", "split_assignments", "training_exports", "annotations",
              "review_queue"}


def requested(result) -> set[str]:
    return {k.to_user_string() for k in result.get_requested_asset_keys()} if hasattr(
        result, "get_requested_asset_keys") else {
        r.key.to_user_string() for r in result.results if r.true_subset.size > 0}


def test_a_changed_source_requests_the_downstream_chain(tmp_path, instance):
    paths = make_data_dir(tmp_path, {"alpaca": [real("hiyouga__LLaMA-Factory/identity.json")]})
    defs = build_defs(paths.root)
    run_all(paths, instance)  # everything materialized once
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    settled = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                                cursor=first.cursor)
    assert requested(settled) == set()
    # re-ingesting an unchanged source publishes nothing new: nothing downstream is due
    dg.materialize(list(defs.assets), selection=[STAGED, NORMALIZED], partition_key="alpaca",
                   instance=instance, resources=defs.resources)
    quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                              cursor=settled.cursor)
    assert requested(quiet) == set()
    # the sensor's run for a changed source: only that partition re-materializes
    (paths.raw / "alpaca" / "more.jsonl").write_text(
        '{"instruction": "Say hi", "output": "Hi!"}\n')
    dg.materialize(list(defs.assets), selection=[STAGED, NORMALIZED], partition_key="alpaca",
                   instance=instance, resources=defs.resources)
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                              cursor=quiet.cursor)
    got = requested(after)
    assert "quality_scores" in got and got <= DOWNSTREAM
    assert not {"staged_examples", "normalized_examples"} & got


def test_the_daily_refresh_requests_one_run_per_registered_source(instance):
    instance.add_dynamic_partitions("sources", ["b", "a"])
    defs = build_defs("/nonexistent")
    schedule = defs.get_schedule_def("full_refresh")
    ctx = dg.build_schedule_context(instance=instance,
                                    repository_def=defs.get_repository_def())
    requests = schedule.evaluate_tick(ctx).run_requests
    assert [r.partition_key for r in requests] == ["a", "b"]
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_sensors_and_schedule_run_by_default():
    defs = build_defs("/nonexistent", refresh_cron="15 2 * * *")
    assert {s.name: s.default_status for s in defs.sensors} == {
        "source_sensor": dg.DefaultSensorStatus.RUNNING,
        "downstream_automation": dg.DefaultSensorStatus.RUNNING,
        "annotations_sensor": dg.DefaultSensorStatus.RUNNING}
    (schedule,) = defs.schedules
    assert schedule.cron_schedule == "15 2 * * *"


def test_rematerializing_an_unchanged_source_is_cheap_and_changes_nothing(tmp_path, instance):
    paths = make_data_dir(tmp_path, {"wiki": [real("ml-explore__mlx-examples/"
                                                    "lora_wikisql_train.jsonl")]})
    run_all(paths, instance)
    target = paths.normalized_file("wiki")
    before = (target.read_bytes(), target.stat().st_mtime_ns)
    defs = build_defs(paths.root)
    dg.materialize(list(defs.assets), selection=[STAGED, NORMALIZED], partition_key="wiki",
                   instance=instance, resources=defs.resources)
    assert (target.read_bytes(), target.stat().st_mtime_ns) == before
    event = instance.get_latest_materialization_event(STAGED)
    meta = event.asset_materialization.metadata
    assert meta["unchanged"].value is True
    # every check still reported, from the publication's stored outcomes
    evals = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(STAGED, "row_accounting")])
    assert evals
    # the data version is the content fingerprint, the same as before
    assert event.asset_materialization.tags["dagster/data_version"] == meta["fingerprint"].value
    # the unchanged source recorded no new publication (nothing for automation to follow)
    assert not any(o.changed for o in run_all(paths, instance).sources)
    # and a real change is noticed
    (paths.raw / "wiki" / "more.jsonl").write_text('{"text": "Q: 1+1?\\nA: 2"}\n')
    outcome = run_all(paths, instance)
    assert {o.source: o.rows for o in outcome.sources}["wiki"] == 1001
    assert pl.read_parquet(target).height == 1001
