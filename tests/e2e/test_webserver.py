"""The UI's server end to end: what the sensors did, seen through the same GraphQL API the UI
reads, checked against the files on disk; and a Materialize launched over GraphQL."""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.paths import DataPaths

from .scenario import AUTOMATION_SENSOR, BAD, DOWNSTREAM, GOOD, INGEST, SOURCES, Pipeline


def rows_on_disk(paths: DataPaths, source: str) -> int:
    return pl.read_parquet(paths.normalized_file(source)).height


def test_source_sensor_registers_and_ingests_every_source(pipeline: Pipeline) -> None:
    server, paths = pipeline.server, DataPaths.at(pipeline.data_dir)
    assert sorted(server.partition_keys("normalized_examples")) == sorted(SOURCES)
    status = {source: run["status"] for source, run in pipeline.ingest_runs.items()}
    assert status == {**dict.fromkeys(GOOD, "SUCCESS"), BAD: "FAILURE"}
    for source in GOOD:
        run_id = pipeline.ingest_runs[source]["runId"]
        events = server.materializations("normalized_examples", source)
        assert [e["runId"] for e in events] == [run_id]
        metadata = events[0]["metadata"]
        assert metadata["dagster/row_count"] == rows_on_disk(paths, source) > 0
        assert metadata["path"] == str(paths.normalized_file(source))
        check = server.check_in_run("staged_examples", "reject_rate_below_ceiling", run_id)
        assert check["status"] == "SUCCEEDED"


def test_bad_source_is_held_back_by_its_failed_check(pipeline: Pipeline) -> None:
    server, paths = pipeline.server, DataPaths.at(pipeline.data_dir)
    run_id = pipeline.ingest_runs[BAD]["runId"]
    check = server.check_in_run("staged_examples", "reject_rate_below_ceiling", run_id)
    assert check["status"] == "FAILED"
    assert check["evaluation"]["success"] is False
    assert check["evaluation"]["severity"] == "ERROR"
    # staged (with its metadata) is recorded; nothing is published for the source
    [staged] = [e for e in server.materializations("staged_examples", BAD)
                if e["runId"] == run_id]
    assert staged["metadata"]["held_back_by"] == "reject_rate_below_ceiling"
    assert staged["metadata"]["rejects"] == staged["metadata"]["records_read"] > 0
    assert server.materializations("normalized_examples", BAD) == []
    assert not paths.normalized_file(BAD).exists()


def test_automation_refreshes_downstream_with_metadata_and_checks(pipeline: Pipeline) -> None:
    server, paths = pipeline.server, DataPaths.at(pipeline.data_dir)
    run = pipeline.downstream_run
    assert run["tags"]["dagster/sensor_name"] == AUTOMATION_SENSOR
    assert run["assets"] == DOWNSTREAM
    [event] = server.materializations("quality_scores", limit=1)
    assert event["runId"] == run["runId"]
    published = sum(rows_on_disk(paths, source) for source in GOOD)
    metadata = event["metadata"]
    assert metadata["dagster/row_count"] == published
    assert pl.read_parquet(paths.quality / "quality.parquet").height == published
    assert metadata["sources"] == len(GOOD)
    assert metadata["flags_by_kind"].startswith("| flag")
    assert metadata["worst_examples"].startswith("| source | example_id |")
    assert all(f"| {source} |" in metadata["source_summary"] for source in GOOD)
    assert BAD not in metadata["source_summary"]
    check = server.check_in_run("quality_scores", "one_quality_row_per_example", run["runId"])
    assert check["status"] == "SUCCEEDED"
    counts = {e["label"]: e.get("intValue") for e in check["evaluation"]["metadataEntries"]}
    assert counts["examples"] == counts["quality_rows"] == published
    for asset in DOWNSTREAM:
        assert [e["runId"] for e in server.materializations(asset, limit=1)] == [run["runId"]]


def test_materialize_a_partition_over_graphql(pipeline: Pipeline) -> None:
    """What the UI's Materialize button sends: the run is queued, dequeued by the daemon,
    executed, and its check result is attributed to that run and partition."""
    server = pipeline.server
    run_id = server.launch_assets(INGEST, partition=BAD)
    run = server.wait_for_run(run_id)
    assert run["status"] == "FAILURE"
    assert run["tags"]["dagster/partition"] == BAD
    check = server.check_in_run("staged_examples", "reject_rate_below_ceiling", run_id)
    assert check["status"] == "FAILED"
    assert server.materializations("staged_examples", BAD, limit=1)[0]["runId"] == run_id
    assert server.materializations("normalized_examples", BAD) == []
