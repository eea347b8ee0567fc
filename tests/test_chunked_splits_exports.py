"""Splits and exports walked in chunks give the one-chunk tables and files, on real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from instruct_assets.defs.exports.assets import training_exports
from instruct_assets.defs.resources import DataDir, MemorySettings, warehouse_resource
from instruct_assets.defs.settings import CurationSettings, ExportSettings, QualitySettings
from instruct_assets.defs.splits.assets import split_assignments
from instruct_assets.lib.chunks import SPILL_PREFIX
from instruct_assets.lib.export.stage import run_exports
from instruct_assets.lib.parquet_io import write_parquet
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.review.verdicts import EDITED_SCHEMA
from instruct_assets.lib.schema import NORMALIZED_SCHEMA, conform
from instruct_assets.lib.sources import discover_sources
from instruct_assets.lib.split_sets import OUTCOME_COLUMNS, run_splits
from instruct_assets.lib.splits import SplitConfig, check_split_integrity, prompt_hashes
from instruct_assets.lib.stage_io import live_sources
from instruct_assets.lib.synthetic_cap import SyntheticCapConfig
from tests.support import make_data_dir, real, run_all_ok

SOURCES = {
    "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")],
    "glaive": [real("hiyouga__LLaMA-Factory/glaive_toolcall_en_demo.json")],
    "fastchat": [real("lm-sys__FastChat/dummy_conversation.json")],
}
SPLIT_TABLES = ("assignments", "synthetic_capped", "train", "eval")


def _tables(paths: DataPaths) -> dict[str, pl.DataFrame]:
    return {n: pl.read_parquet(paths.splits / f"{n}.parquet") for n in SPLIT_TABLES}


def _export_bytes(paths: DataPaths) -> dict[str, bytes]:
    return {p.relative_to(paths.exports).as_posix(): p.read_bytes()
            for p in sorted(paths.exports.rglob("*")) if p.is_file()}


def _equal_tables(got: dict[str, pl.DataFrame], want: dict[str, pl.DataFrame]) -> None:
    for name, frame in want.items():
        assert got[name].equals(frame), name


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The real pipeline (one chunk: the default), and its split tables and export files."""
    paths = make_data_dir(tmp_path_factory.mktemp("chunked"), SOURCES)
    with dg.instance_for_test() as instance:
        run_all_ok(paths, instance)
        yield paths, instance, _tables(paths), _export_bytes(paths)


def _sources(paths: DataPaths) -> list[str]:
    return live_sources(paths, sorted(discover_sources(paths)))


def test_small_chunks_give_the_one_chunk_splits_and_exports(built):
    paths, _, tables, files = built
    rows = tables["assignments"].height
    assert rows > 1000 and tables["eval"].height > 20
    settings = CurationSettings()
    for chunk_rows in (97, rows + 1000):  # many chunks (some spanning sources), then one
        outcome = run_splits(paths, _sources(paths), settings.split_config(),
                             settings.complexity_config(),
                             synthetic_cap=settings.synthetic_cap_config(),
                             chunk_rows=chunk_rows)
        _equal_tables(_tables(paths), tables)
        assert outcome.assignments.equals(tables["assignments"].select(OUTCOME_COLUMNS))
        assert outcome.assignments_schema == tables["assignments"].schema
        assert outcome.integrity["ok"]
        assert not list(paths.splits.glob(f"{SPILL_PREFIX}*"))  # spill files are cleaned up
        exported = run_exports(paths, _sources(paths), ExportSettings().kinds(), {},
                               chunk_rows=chunk_rows)
        assert not exported.invalid and not exported.count_errors
        assert not exported.trip_failures
        got = _export_bytes(paths)
        assert got.keys() == files.keys()
        for name, data in files.items():
            if name != "README.md":  # the card lists the configuration: {} here
                assert got[name] == data, name
        assert exported.frames["train"].height == tables["train"].height


def test_the_assets_read_chunk_rows_from_memory_settings(built):
    paths, instance, tables, files = built
    resources = {
        "data_dir": DataDir(path=str(paths.root)), "quality_settings": QualitySettings(),
        "curation_settings": CurationSettings(), "export_settings": ExportSettings(),
        "memory_settings": MemorySettings(chunk_rows=50), "duckdb": warehouse_resource(paths)}
    for path in paths.splits.glob("*.parquet"):
        path.unlink()
    shutil.rmtree(paths.exports)
    result = dg.materialize([split_assignments, training_exports], instance=instance,
                            resources=resources)
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    _equal_tables(_tables(paths), tables)
    assert _export_bytes(paths) == files


def _example(source: str, i: int, prompt: str, answer: str) -> dict:
    return {"example_id": f"{source}-{i:03d}", "source": source, "source_file": "f.json",
            "source_row": i, "source_format": "alpaca", "origin": "human", "tools": None,
            "extra": None, "messages": [{"role": "user", "content": prompt},
                         {"role": "assistant", "content": answer}]}


def _hand_written(root: Path, synthetic: bool = False) -> DataPaths:
    """Two sources of 12 rows; the first and last rows of ``a`` ask the same prompt (spaced
    and cased differently), rows 1 and 10 share a duplicate cluster, and ``b``'s first row
    shares ``a``'s prompt: with chunks of 5 rows, every link spans chunks. ``synthetic``:
    two rows in three are synthetic."""
    paths = DataPaths.at(root)
    rows = []
    for source in ("a", "b"):
        for i in range(12):
            rows.append(_example(source, i, f"question {source}{i}?", f"answer {i}"))
            if synthetic and i % 3:
                rows[-1]["origin"] = "synthetic"
    rows[0]["messages"][0]["content"] = "What is  the CAPITAL of France?"
    rows[11]["messages"][0]["content"] = "what is the capital of france?\n"
    rows[12]["messages"][0]["content"] = "WHAT is the capital of France?"
    frame = pl.DataFrame(rows)
    for source in ("a", "b"):
        target = paths.normalized_file(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(conform(frame.filter(pl.col("source") == source), NORMALIZED_SCHEMA),
                      target)
    keys = frame.select("source", "example_id").sort("source", "example_id")
    cluster = pl.when(pl.col("example_id").is_in(["a-001", "a-010"])).then(pl.lit("dupA"))
    paths.curation.mkdir(parents=True, exist_ok=True)
    dropped = pl.col("example_id") == "b-005"
    write_parquet(keys.with_columns(kept=~dropped, dup_cluster_id=cluster,
                                    exclusion_reason=pl.when(dropped).then(pl.lit("quality"))),
                  paths.curation / "curation.parquet")
    tiers = pl.Series(["simple", "medium"] * 12)
    write_parquet(keys.with_columns(complexity_tier=tiers), paths.curation / "complexity.parquet")
    return paths


def test_groups_whose_rows_lie_in_different_chunks_stay_in_one_split(tmp_path):
    paths = _hand_written(tmp_path)
    cfg = SplitConfig(eval_fraction=0.3, min_source_rows=1)
    one = run_splits(paths, ["a", "b"], cfg, chunk_rows=100)
    want = _tables(paths)
    many = run_splits(paths, ["a", "b"], cfg, chunk_rows=5)
    _equal_tables(_tables(paths), want)
    assert many.assignments.equals(one.assignments)
    got = want["assignments"]
    assert got.height == 23 and "b-005" not in got["example_id"].to_list()
    linked = got.filter(pl.col("example_id").is_in(["a-000", "a-011", "b-000"]))
    assert linked["split_group"].n_unique() == 1 and linked["split"].n_unique() == 1
    dup = got.filter(pl.col("example_id").is_in(["a-001", "a-010"]))
    assert dup["split"].n_unique() == 1
    assert set(got["split"]) == {"train", "eval"}
    train = want["train"]
    assert train.select("source", "example_id").equals(
        train.select("source", "example_id").sort("source", "example_id"))
    # the exports stream the sets in chunks and give the one-chunk files
    run_exports(paths, ["a", "b"], ["openai", "openai_parquet", "sharegpt", "alpaca"], {})
    files = _export_bytes(paths)
    run_exports(paths, ["a", "b"], ["openai", "openai_parquet", "sharegpt", "alpaca"], {},
                chunk_rows=3)
    assert _export_bytes(paths) == files


def test_a_split_set_out_of_key_order_is_refused_when_exported_in_chunks(tmp_path):
    paths = _hand_written(tmp_path)
    run_splits(paths, ["a", "b"], SplitConfig(eval_fraction=0.3, min_source_rows=1))
    train = pl.read_parquet(paths.splits / "train.parquet")
    write_parquet(train.reverse(), paths.splits / "train.parquet")
    with pytest.raises(ValueError, match="not in \\(source, example_id\\) order"):
        run_exports(paths, ["a", "b"], ["openai", "sharegpt"], {}, chunk_rows=4)
    assert not (paths.exports / "openai" / "train.jsonl").exists()  # nothing published
    run_exports(paths, ["a", "b"], ["openai", "sharegpt"], {})  # one chunk: sorted in memory
    assert (paths.exports / "openai" / "train.jsonl").exists()


def test_an_enforced_synthetic_cap_gives_the_one_chunk_tables_in_chunks(tmp_path):
    """The capped rows (their prompt keys come back from spill files) and the capped
    assignments are the one-chunk tables, whatever the chunks."""
    paths = _hand_written(tmp_path, synthetic=True)
    cfg = SplitConfig(eval_fraction=0.3, min_source_rows=1)
    cap = SyntheticCapConfig(max_synthetic_share=0.3, enforce=True)
    one = run_splits(paths, ["a", "b"], cfg, synthetic_cap=cap, chunk_rows=100)
    want = _tables(paths)
    assert want["synthetic_capped"].height > 5
    assert want["synthetic_capped"]["prompt_key"].str.starts_with("question").all()
    assert one.synthetic_after["passed"] and one.capped.height == want["synthetic_capped"].height
    for chunk_rows in (5, 7, 23):
        many = run_splits(paths, ["a", "b"], cfg, synthetic_cap=cap, chunk_rows=chunk_rows)
        _equal_tables(_tables(paths), want)
        assert many.capped.equals(one.capped) and many.assignments.equals(one.assignments)
        assert many.capped_schema == want["synthetic_capped"].schema
        assert many.integrity == one.integrity and many.synthetic_after == one.synthetic_after


def test_the_prompt_check_on_hashes_counts_as_on_the_texts():
    """Without prompt texts, rows whose prompt hash lies in two splits get their texts from
    ``prompt_keys``; the counts equal the text check's (here: one straddling prompt)."""
    frame = pl.DataFrame({
        "source": ["s"] * 6,
        "example_id": ["a", "b", "c", "d", "e", "f"],
        "complexity_tier": ["simple"] * 6,
        "dup_cluster_id": ["c1", "c2", "c3", "c4", None, None],
        "prompt_key": ["p", "p", "q", "", "", "r"],
        "origin": ["human"] * 6,
        "split": ["train", "eval", "train", "train", "eval", "eval"],
    })
    asked = []

    def texts(rows: pl.DataFrame) -> pl.Series:
        asked.append(rows["example_id"].to_list())
        return frame.join(rows.select("example_id"), on="example_id", how="semi",
                          maintain_order="right")["prompt_key"]

    hashed = frame.with_columns(prompt_hashes(frame)).drop("prompt_key")
    want = check_split_integrity(frame)
    assert want["prompts_across_splits"] == 1
    assert check_split_integrity(hashed, prompt_keys=texts) == want
    assert asked == [["a", "b"]]  # only the rows of the straddling hash
    with pytest.raises(ValueError, match="prompt_keys"):
        check_split_integrity(hashed)


def test_human_edits_in_their_own_chunks_give_the_one_chunk_tables(tmp_path):
    """Edited conversations (new ids, tiered by the stage, read after the published rows)
    join the split as in one chunk; one of them asks a published row's prompt."""
    paths = _hand_written(tmp_path)
    edits = [_example("a", 100, "what is the capital of FRANCE?", "Paris."),
             _example("b", 100, "a fresh question?", "A fresh answer.")]
    write_parquet(conform(pl.DataFrame(edits).with_columns(
        original_example_id=pl.Series(["a-002", "b-002"])), EDITED_SCHEMA),
        paths.curation / "edited_examples.parquet")
    curated = pl.read_parquet(paths.curation / "curation.parquet")
    write_parquet(pl.concat([curated, pl.DataFrame(
        {"source": ["a", "b"], "example_id": ["a-100", "b-100"], "kept": [True, True]})],
        how="diagonal_relaxed").sort("source", "example_id"),
        paths.curation / "curation.parquet")
    cfg = SplitConfig(eval_fraction=0.3, min_source_rows=1)
    one = run_splits(paths, ["a", "b"], cfg, chunk_rows=100)
    want = _tables(paths)
    assert {"a-100", "b-100"} <= set(want["assignments"]["example_id"])
    linked = want["assignments"].filter(pl.col("example_id").is_in(["a-000", "a-100"]))
    assert linked["split_group"].n_unique() == 1
    for chunk_rows in (1, 5):
        many = run_splits(paths, ["a", "b"], cfg, chunk_rows=chunk_rows)
        _equal_tables(_tables(paths), want)
        assert many.assignments.equals(one.assignments) and many.integrity == one.integrity
