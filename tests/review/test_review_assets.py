"""review_queue, annotations and the annotations sensor through Dagster, on real files."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import polars as pl

from instruct_assets.defs.curation.assets import complexity_scores
from instruct_assets.defs.ingest.assets import (
    NORMALIZED,
    STAGED,
    normalized_examples,
    staged_examples,
)
from instruct_assets.defs.quality.assets import quality_scores
from instruct_assets.defs.resources import (
    DataDir,
    IngestSettings,
    MemorySettings,
    warehouse_resource,
)
from instruct_assets.defs.review.assets import (
    annotations_sensor,
    human_annotations,
    review_queue,
)
from instruct_assets.defs.settings import CurationSettings, QualitySettings
from instruct_assets.lib.curation import curate
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.review.layout import ReviewPaths
from instruct_assets.lib.review.verdicts import apply_verdicts
from instruct_assets.lib.stage_io import read_examples
from instruct_assets.pipeline import sync_partitions
from tests.review.tool_exports import (
    Answer,
    argilla_flat,
    argilla_nested,
    argilla_parquet,
    label_studio_json,
)
from tests.support import make_data_dir, real

SOURCES = ["alpaca", "identity"]


def resources(paths: DataPaths) -> dict:
    return {"data_dir": DataDir(path=str(paths.root)), "ingest_settings": IngestSettings(),
            "quality_settings": QualitySettings(), "curation_settings": CurationSettings(),
            "memory_settings": MemorySettings(), "duckdb": warehouse_resource(paths)}


def setup(tmp_path, instance) -> DataPaths:
    paths = make_data_dir(tmp_path, {
        "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")],
        "identity": [real("hiyouga__LLaMA-Factory/identity.json")]})
    sync_partitions(instance, SOURCES)
    for source in SOURCES:
        assert dg.materialize([staged_examples, normalized_examples],
                              selection=[STAGED, NORMALIZED], partition_key=source,
                              instance=instance, resources=resources(paths)).success
    assert dg.materialize([quality_scores, complexity_scores], instance=instance,
                          resources=resources(paths)).success
    return paths


def run(paths, instance, assets):
    result = dg.materialize(assets, instance=instance, resources=resources(paths))
    assert result.success
    return result


def meta(result, node: str) -> dict:
    mat = result.asset_materializations_for_node(node)[0]
    return {k: v.value for k, v in mat.metadata.items()}


def test_queue_files_then_annotations_back_into_the_warehouse(tmp_path, instance):
    paths = setup(tmp_path, instance)
    layout = ReviewPaths(paths)
    first = run(paths, instance, [human_annotations, review_queue])
    queued = meta(first, "review_queue")
    assert meta(first, "annotations")["annotations"] == 0
    queue = pl.read_parquet(layout.queue)
    assert queued["dagster/row_count"] == queue.height > 0
    assert {"queued_flagged", "queued_sample"} <= set(queued)
    tasks = json.loads(layout.label_studio_tasks.read_text())
    assert len(tasks) == queue.height

    # reviewers answer in Label Studio and Argilla; they disagree on one example
    keys = [t["data"]["review_key"] for t in tasks]
    layout.inbox.mkdir()
    (layout.inbox / "ls.json").write_text(json.dumps(label_studio_json(tasks[:3], [
        Answer(keys[0], "reject", reason="wrong"), Answer(keys[1], "accept"),
        Answer(keys[2], "edit", edited="A corrected answer.")])))
    records = [json.loads(x) for x in layout.argilla_records.read_text().splitlines()]
    (layout.inbox / "argilla.json").write_text(json.dumps(argilla_nested(
        [r for r in records if r["id"] == keys[1]], [Answer(keys[1], "reject", user=7)])))
    (layout.inbox / "junk.jsonl").write_text('{"not": "an export"}\n')

    second = run(paths, instance, [human_annotations, review_queue])
    got = meta(second, "annotations")
    assert (got["files"], got["records"], got["annotations"], got["rejects"]) == (3, 5, 4, 1)
    assert (got["verdict_accept"], got["verdict_reject"], got["verdict_edit"]) == (1, 2, 1)
    assert got["conflicts"] == 1
    checks = {e.check_name: e for e in second.get_asset_check_evaluations()}
    assert not checks["no_conflicting_verdicts"].passed
    assert checks["no_conflicting_verdicts"].severity == dg.AssetCheckSeverity.WARN
    assert not checks["annotation_files_parse"].passed  # the junk record

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        rows = con.sql("SELECT verdict, count(*) AS n FROM annotations GROUP BY verdict "
                       "ORDER BY verdict").fetchall()
        junk = con.sql("SELECT reason_code FROM annotation_rejects").fetchall()
        [(in_queue,)] = con.sql("SELECT count(*) FROM review_queue").fetchall()
    finally:
        con.close()
    assert rows == [("accept", 1), ("edit", 1), ("reject", 2)]
    assert junk == [("unknown_format",)]
    # reviewed examples leave the queue; the next ones take their place
    queue2 = pl.read_parquet(layout.queue)
    assert in_queue == queue2.height
    reviewed = {tuple(k.split(":", 1)) for k in keys[:3]}
    assert not reviewed & set(queue2.select("source", "example_id").iter_rows())

    # what curation will do with them (the lead wires this into curated_examples)
    quality = pl.read_parquet(paths.quality / "quality.parquet")
    curated = curate(quality, CurationSettings().curation_config())
    out = apply_verdicts(curated, pl.read_parquet(layout.annotations),
                         read_examples(paths, SOURCES))
    # the disagreement: Label Studio's dated accept beats Argilla's undated reject
    assert (out.counts["rejected"], out.counts["accepted"], out.counts["edited"]) == (1, 1, 1)
    assert out.edited_examples["messages"][0][-1]["content"] == "A corrected answer."


def test_an_argilla_parquet_export_reaches_the_warehouse(tmp_path, instance):
    paths = setup(tmp_path, instance)
    layout = ReviewPaths(paths)
    run(paths, instance, [human_annotations, review_queue])
    records = [json.loads(x) for x in layout.argilla_records.read_text().splitlines()]
    keys = [r["id"] for r in records]
    # what dataset.to_hub pushes: to_datasets() as data/train-00000-of-00001.parquet
    argilla_parquet(argilla_flat(argilla_nested(records[:3], [
        Answer(keys[0], "reject", reason="wrong", user=2),
        Answer(keys[1], "edit", edited="A corrected answer.", user=2),
        Answer(keys[2], "accept", user=2, cancelled=True)], with_status=True)),
        layout.inbox / "argilla-hub" / "data" / "train-00000-of-00001.parquet")
    (layout.inbox / "broken.parquet").write_bytes(b"PAR1 not really")

    result = run(paths, instance, [human_annotations])
    got = meta(result, "annotations")
    assert (got["files"], got["records"], got["annotations"], got["rejects"]) == (2, 3, 2, 2)
    assert (got["verdict_reject"], got["verdict_edit"]) == (1, 1)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["annotation_files_parse"].passed  # the broken file
    assert checks["annotation_files_parse"].metadata["by_reason"].value == {
        "unreadable_file": 1}

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        rows = con.sql("SELECT source || ':' || example_id, verdict, edited_content, reason, "
                       "tool, tool_format FROM annotations ORDER BY verdict").fetchall()
        rejects = con.sql("SELECT file, reason_code FROM annotation_rejects "
                          "ORDER BY file").fetchall()
    finally:
        con.close()
    assert rows == [(keys[1], "edit", "A corrected answer.", None, "argilla", "argilla_parquet"),
                    (keys[0], "reject", None, "wrong", "argilla", "argilla_parquet")]
    assert rejects == [("annotations/argilla-hub/data/train-00000-of-00001.parquet", "skipped"),
                       ("annotations/broken.parquet", "unreadable_file")]


def test_the_sensor_runs_once_per_change_of_the_inbox(tmp_path, instance):
    paths = make_data_dir(tmp_path, {})
    layout = ReviewPaths(paths)
    res = {"data_dir": DataDir(path=str(paths.root))}

    def tick(cursor=None):
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=res)
        return annotations_sensor(ctx)

    assert tick().skip_reason is not None  # no folder yet
    layout.inbox.mkdir()
    (layout.inbox / "a.jsonl").write_text("{}\n")
    first = tick()
    [request] = first.run_requests
    assert request.run_key.startswith("annotations:")
    assert tick(first.cursor).run_requests == []
    (layout.inbox / "b.jsonl").write_text("{}\n")
    changed = tick(first.cursor)
    assert changed.run_requests[0].run_key != request.run_key
    assert set(json.loads(changed.cursor)["files"]) == {"annotations/a.jsonl",
                                                          "annotations/b.jsonl"}
