"""Complexity, decontamination, curation and the review queue in chunks: the same outputs as
in one piece, on real files (through the lib functions and the Dagster assets) and on a
written case whose global steps (a benchmark copy, an edit colliding with a row of another
chunk, the per-source picks of the queue) span chunks."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import polars as pl
import pytest

from instruct_assets.definitions import build_defs
from instruct_assets.lib.complexity import ComplexityConfig
from instruct_assets.lib.curation import CurationConfig
from instruct_assets.lib.curation_stage import (
    publish_complexity,
    publish_contamination,
    publish_curation,
)
from instruct_assets.lib.decontaminate import DecontamConfig
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.publish import scan_published
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.dedup import DedupConfig
from instruct_assets.lib.quality.table import build_quality
from instruct_assets.lib.review.annotations import ANNOTATIONS_SCHEMA
from instruct_assets.lib.review.io import examples_for
from instruct_assets.lib.review.layout import ReviewPaths
from instruct_assets.lib.review.queue import QueueConfig, queue_from_files
from instruct_assets.lib.review.verdicts import edited_conversations
from instruct_assets.lib.schema import NORMALIZED_SCHEMA
from tests.lib._frames import frame_from_conversations
from tests.support import make_data_dir, real, run_all

BBH = [real(f"suzgunmirac__BIG-Bench-Hard/cot-prompts/{n}.txt") for n in (
    "boolean_expressions", "date_understanding", "web_of_lies")]
SOURCES = {
    "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")],
    "identity": [real("hiyouga__LLaMA-Factory/identity.json")],
    "glaive": [real("hiyouga__LLaMA-Factory/glaive_toolcall_en_demo.json")],
    "fastchat": [real("lm-sys__FastChat/dummy_conversation.json")],
    "bbh": BBH,
}
KEY = ["source", "example_id"]
OUTPUTS = ("complexity", "contamination", "contamination_hits", "curation", "edited_examples")
QUEUE_CFG = QueueConfig(flagged_per_source=4, borderline_per_source=3, sample_per_stratum=2)
ONE = 10**9


def _at(hour: int) -> datetime:
    return datetime(2025, 1, 1, hour, tzinfo=UTC)


def _ann(source: str, example_id: str, verdict: str, edited: str | None = None) -> dict:
    return {"source": source, "example_id": example_id, "verdict": verdict,
            "edited_content": edited, "reason": None, "annotator": "a", "annotated_at": _at(1),
            "tool": "label_studio", "tool_format": "label_studio_json",
            "annotation_ref": f"{example_id}:{verdict}", "file": "annotations/x.json",
            "record": 0}


def _run(paths: DataPaths, sources: list[str], chunk_rows: int) -> dict[str, pl.DataFrame]:
    """The three stages with ``chunk_rows``; their tables, returned frames and the queue."""
    cx = publish_complexity(paths, sources, ComplexityConfig(), chunk_rows=chunk_rows)
    dc = publish_contamination(paths, sources, DecontamConfig(), chunk_rows=chunk_rows)
    cu = publish_curation(paths, sources, CurationConfig(exclude_flags=("template_placeholder",)),
                          QualityThresholds(), chunk_rows=chunk_rows)
    out = {n: pl.read_parquet(paths.curation / f"{n}.parquet") for n in OUTPUTS}
    assert out["complexity"].equals(cx.scored) and out["curation"].equals(cu.curated)
    assert out["contamination"].equals(dc.found) and out["contamination_hits"].equals(dc.hits)
    assert dc.examples_rows == cx.scored.height
    out["edited_returned"] = cu.verdicts.edited_examples
    out["conflicts"] = cu.verdicts.conflicts
    out["queue"] = queue_from_files(paths.quality / "quality.parquet",
                                    paths.curation / "complexity.parquet", QUEUE_CFG,
                                    chunk_rows=chunk_rows)
    return out


def _assert_same(one: dict[str, pl.DataFrame], many: dict[str, pl.DataFrame]) -> None:
    assert one.keys() == many.keys()
    for name, frame in one.items():
        assert frame.equals(many[name]), name


@pytest.fixture(scope="module")
def real_data(tmp_path_factory):
    paths = make_data_dir(tmp_path_factory.mktemp("chunked_cur"), SOURCES)
    (paths.benchmarks / "bbh").mkdir(parents=True)
    for f in BBH:
        (paths.benchmarks / "bbh" / f.name).symlink_to(f)
    with dg.instance_for_test() as instance:
        run_all(paths, instance)
        assert all(paths.normalized_file(s).exists() for s in SOURCES)
        yield paths, instance


def _write_annotations(paths: DataPaths) -> pl.DataFrame:
    """A reject, an accept and two edits spread over the sources (edits give new ids, so
    the published order must be restored by the sort)."""
    quality = pl.read_parquet(paths.quality / "quality.parquet").sort(KEY)
    rows = [quality.filter(pl.col("source") == s).row(i, named=True)
            for s, i in (("alpaca", 3), ("identity", 5), ("glaive", 7), ("alpaca", 40))]
    annotations = pl.DataFrame([
        _ann(rows[0]["source"], rows[0]["example_id"], "reject"),
        _ann(rows[1]["source"], rows[1]["example_id"], "accept"),
        _ann(rows[2]["source"], rows[2]["example_id"], "edit", "A better answer."),
        _ann(rows[3]["source"], rows[3]["example_id"], "edit", "zzz Another answer, longer."),
    ], schema=ANNOTATIONS_SCHEMA)
    target = ReviewPaths(paths).annotations
    target.parent.mkdir(parents=True, exist_ok=True)
    annotations.write_parquet(target)
    return annotations


def test_real_files_in_chunks_equal_one_piece(real_data):
    paths, _ = real_data
    sources = sorted(SOURCES)
    annotations = _write_annotations(paths)
    try:
        one = _run(paths, sources, ONE)
        for rows in (97, 1000):  # several chunks, some spanning source files
            _assert_same(one, _run(paths, sources, rows))
    finally:
        ReviewPaths(paths).annotations.unlink()
    assert one["contamination"]["contaminated"].any()
    assert one["edited_returned"].height == 2 and one["edited_examples"].height == 2
    cur = one["curation"]
    assert cur.select(KEY).equals(cur.select(KEY).sort(KEY))
    assert cur["human_verdict"].drop_nulls().len() == annotations.height
    assert one["queue"]["queue_reason"].n_unique() == 3
    # the review rows read row group by row group are the rows a plain scan finds
    wanted = one["queue"].select(KEY)
    plain = scan_published(paths, sources).join(wanted.lazy(), on=KEY, how="semi") \
        .collect().sort(KEY)
    assert examples_for(paths, sources, wanted).equals(plain)
    assert examples_for(paths, sources, wanted.clear()).equals(
        pl.DataFrame(schema=NORMALIZED_SCHEMA))


def test_the_assets_with_small_chunks_write_the_one_piece_tables(real_data):
    paths, instance = real_data
    sources = sorted(SOURCES)
    one = _run(paths, sources, ONE)
    keys = [dg.AssetKey(k) for k in ("complexity_scores", "benchmark_contamination",
                                     "curated_examples", "review_queue")]
    paths.settings_file.write_text("memory:\n  chunk_rows: 150\n", encoding="utf-8")
    try:
        defs = build_defs(paths.root)
        result = dg.materialize(list(defs.assets), selection=keys, instance=instance,
                                resources=defs.resources)
    finally:
        paths.settings_file.unlink()
    assert result.success
    for name in ("complexity", "contamination", "contamination_hits"):
        assert pl.read_parquet(paths.curation / f"{name}.parquet").equals(one[name]), name
    # curation and the queue use the assets' settings: compare with their one-piece run
    queue = pl.read_parquet(ReviewPaths(paths).queue)
    assert queue.height > 0
    meta = instance.get_latest_materialization_event(keys[0]).asset_materialization.metadata
    assert meta["dagster/row_count"].value == one["complexity"].height
    curated = pl.read_parquet(paths.curation / "curation.parquet")
    defs_cfg = build_defs(paths.root)
    expected = dg.materialize(list(defs_cfg.assets), selection=keys[2:], instance=instance,
                              resources=defs_cfg.resources)
    assert expected.success
    assert pl.read_parquet(paths.curation / "curation.parquet").equals(curated)
    assert pl.read_parquet(ReviewPaths(paths).queue).equals(queue)


def _qa(q: str, a: str) -> list[tuple[str, str]]:
    return [("user", q), ("assistant", a)]


BENCH_ITEM = ("Which planet in the solar system has the largest number of known moons "
              "orbiting it as of the latest survey by astronomers")


def test_global_steps_across_chunks(tmp_path):
    """Chunks of 2 and 3 rows: the benchmark copy, the row an edit collides with and the
    queue's picks of one source are in other chunks than the rows they decide about."""
    a = [_qa(f"Question {i} about tides?", f"Answer {i}: the moon pulls the sea.")
         for i in range(7)]
    a.insert(5, _qa(f"Copy this: {BENCH_ITEM}", "Saturn."))
    b = [_qa(f"Explain step {i} and why, briefly.", f"Step {i} because.") for i in range(5)]
    b[0], b[4] = _qa("Same question?", "Answer X."), _qa("Same question?", "Answer Y.")
    paths = DataPaths.at(tmp_path)
    frames = {name: frame_from_conversations(convs, source=name).select(
        NORMALIZED_SCHEMA.names()) for name, convs in (("a", a), ("b", b))}
    # b's last row has the id ingestion gives its conversation: editing b's first answer
    # into it collides with a row four rows (two or more chunks) away
    x = frames["b"].row(0, named=True)
    collide = _ann("b", x["example_id"], "edit", "Answer Y.")
    taken_id = edited_conversations(pl.DataFrame([collide]).select(
        *KEY, "edited_content"), frames["b"])["new_id"][0]
    frames["b"] = frames["b"].with_columns(example_id=pl.when(pl.int_range(pl.len()) == 4)
                                           .then(pl.lit(taken_id)).otherwise("example_id"))
    for name, frame in frames.items():
        f = paths.normalized_file(name)
        f.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(f)
    examples = pl.concat(frames.values())
    paths.quality.mkdir(parents=True)
    build_quality(examples, QualityThresholds(), DedupConfig()).sort(KEY).write_parquet(
        paths.quality / "quality.parquet")
    (paths.benchmarks / "quiz").mkdir(parents=True)
    (paths.benchmarks / "quiz" / "items.jsonl").write_text(
        f'{{"instruction": "{BENCH_ITEM}", "output": "Saturn"}}\n', encoding="utf-8")
    same_q = frames["a"].row(1, named=True)
    edit = _ann("a", same_q["example_id"], "edit", "Answer 1: the moon pulls the sea!")
    target = ReviewPaths(paths).annotations
    target.parent.mkdir(parents=True)
    pl.DataFrame([edit, collide], schema=ANNOTATIONS_SCHEMA).write_parquet(target)

    one = _run(paths, ["a", "b"], ONE)
    for rows in (2, 3):
        _assert_same(one, _run(paths, ["a", "b"], rows))
    reasons = dict(one["curation"].select("example_id", "exclusion_reason").iter_rows())
    [copied] = one["contamination"].filter("contaminated")["example_id"].to_list()
    assert reasons[copied] == "contaminated:quiz"
    edited = one["curation"].filter(pl.col("human_verdict") == "edit")
    assert set(edited["original_example_id"]) == {x["example_id"], same_q["example_id"]}
    clash = edited.filter(pl.col("original_example_id") == x["example_id"]).row(0, named=True)
    assert clash["example_id"] == f"{taken_id}-edit-{x['example_id']}"
    assert clash["exclusion_reason"] == f"duplicate_of:{taken_id}"
    assert one["queue"]["source"].n_unique() == 2
    assert one["complexity"].select(KEY).equals(one["complexity"].select(KEY).sort(KEY))
