"""The quality stage in chunks: the same outputs as in one piece, on real files and on a
written case whose duplicates, template groups and system prompts span chunks."""

from __future__ import annotations

import shutil

import dagster as dg
import polars as pl
import pytest

from instruct_assets.definitions import build_defs
from instruct_assets.lib.chunks import SPILL_PREFIX
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.dedup import DedupConfig
from instruct_assets.lib.quality.stage import QualityStage, publish_quality
from instruct_assets.lib.quality.table import worst_examples
from instruct_assets.lib.schema import NORMALIZED_SCHEMA
from tests.lib._frames import frame_from_conversations
from tests.support import QUALITY_SOURCES, make_data_dir, run_all

SOURCES = QUALITY_SOURCES
TABLES = ("quality", "source_summary", "flag_counts", "system_prompts")
QUALITY = dg.AssetKey("quality_scores")


def _publish(paths: DataPaths, sources: list[str], chunk_rows: int,
             cfg: DedupConfig | None = None) -> tuple[QualityStage, dict[str, pl.DataFrame]]:
    stage = publish_quality(paths, sources, QualityThresholds(), cfg or DedupConfig(),
                            chunk_rows=chunk_rows)
    tables = {n: pl.read_parquet(paths.quality / f"{n}.parquet") for n in TABLES}
    return stage, tables


def _assert_same(one: tuple[QualityStage, dict], many: tuple[QualityStage, dict]) -> None:
    (s1, t1), (s2, t2) = one, many
    for name in TABLES:
        assert t1[name].equals(t2[name]), name
    assert s1.narrow.equals(s2.narrow)
    assert worst_examples(s1.worst).equals(worst_examples(s2.worst))
    assert (s1.rows, s1.schema, s1.duplicated) == (s2.rows, s2.schema, s2.duplicated)
    assert s1.missing.equals(s2.missing) and s1.out_of_range.equals(s2.out_of_range)
    assert s1.chunks == 1 and s2.chunks > 1
    assert set(s1.views) == set(s2.views)


@pytest.fixture(scope="module")
def real_data(tmp_path_factory):
    paths = make_data_dir(tmp_path_factory.mktemp("chunked_q"), SOURCES)
    with dg.instance_for_test() as instance:
        run_all(paths, instance)
        assert all(paths.normalized_file(s).exists() for s in SOURCES)
        yield paths, instance


def test_real_files_in_chunks_equal_one_piece(real_data):
    paths, _ = real_data
    sources = sorted(SOURCES)
    one = _publish(paths, sources, 10**9)
    many = _publish(paths, sources, 700)  # ~4k rows: six chunks, across source files
    _assert_same(one, many)
    assert one[1]["quality"]["is_exact_duplicate"].any()
    assert one[1]["system_prompts"].height > 0
    # no spill folder is left behind
    assert not [p for p in paths.quality.iterdir() if p.name.startswith(SPILL_PREFIX)]


def test_the_asset_with_small_chunks_writes_the_one_piece_table(real_data):
    paths, instance = real_data
    sources = sorted(SOURCES)
    _publish(paths, sources, 10**9)
    expected = pl.read_parquet(paths.quality / "quality.parquet")
    paths.settings_file.write_text("memory:\n  chunk_rows: 500\n", encoding="utf-8")
    try:
        defs = build_defs(paths.root)
        result = dg.materialize(list(defs.assets), selection=[QUALITY], instance=instance,
                                resources=defs.resources)
    finally:
        paths.settings_file.unlink()
    assert result.success
    assert pl.read_parquet(paths.quality / "quality.parquet").equals(expected)
    meta = instance.get_latest_materialization_event(QUALITY).asset_materialization.metadata
    assert meta["chunks"].value > 1 and meta["dagster/row_count"].value == expected.height
    checks = result.get_asset_check_evaluations()
    assert {c.check_name: c.passed for c in checks}["one_quality_row_per_example"]
    assert {c.check_name: c.passed for c in checks}["scores_in_range"]


def _qa(q: str, a: str, system: str | None = None) -> list[tuple[str, str]]:
    return ([("system", system)] if system else []) + [("user", q), ("assistant", a)]


LONG = " ".join(f"word{i} of the answer about lighthouses and ships" for i in range(40))


def test_duplicates_and_groups_across_chunks(tmp_path):
    """A written case in chunks of 3 and 10 rows: the two copies of an exact duplicate, a near
    duplicate, a template group and a system prompt each land in different chunks."""
    near = LONG.replace("word7 ", "wordseven ")
    a = [
        _qa("Explain the lighthouse.", LONG, system="You are terse."),
        *[_qa(f"Convert this to JSON: k{i}={i}", f'{{"k{i}": {i}}}') for i in range(24)],
        _qa("Convert this to JSON: k99=99", "Sure, k99 is ninety-nine."),
        _qa("Say hi", "Hi!"),
    ]
    b = [
        _qa("Tell me about cats", "Cats purr.", system="You are terse."),
        _qa("Explain the lighthouse.", LONG, system="You are terse."),  # exact copy of a[0]
        _qa("Explain the lighthouse please.", near),  # near copy
        _qa("Say hi", "Hi!"),  # exact copy of a[-1]
    ]
    paths = DataPaths.at(tmp_path)
    for name, convs in (("a", a), ("b", b)):
        f = paths.normalized_file(name)
        f.parent.mkdir(parents=True, exist_ok=True)
        frame = frame_from_conversations(convs, source=name).select(NORMALIZED_SCHEMA.names())
        frame.write_parquet(f)
    one = _publish(paths, ["a", "b"], 100)
    q = one[1]["quality"]
    assert q["is_exact_duplicate"].sum() == 4 and q["is_near_duplicate"].any()
    assert q.filter(pl.col("shape_outlier")).height == 1  # the prose answer among JSON
    assert one[1]["system_prompts"]["count"].to_list() == [3]
    for rows in (3, 10):
        many = _publish(paths, ["a", "b"], rows)
        _assert_same(one, many)
    shutil.rmtree(paths.quality)
