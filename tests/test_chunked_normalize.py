"""Ingestion in chunks: the same examples, rejects, reports and check outcomes as in one
piece, on real files (JSON Lines cut into pieces, JSON read whole) and on written cases whose
duplicates, blank lines, rejects and key sets span chunks."""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from instruct_assets.defs.ingest.assets import STAGED, staged_examples
from instruct_assets.defs.partitions import source_partitions
from instruct_assets.defs.resources import DataDir, IngestSettings, MemorySettings
from instruct_assets.lib import contract
from instruct_assets.lib.normalize import MAX_KEYSETS, normalize_source
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.publish import EXAMPLES_FILE, REJECTS_FILE, stage_source, staging_dir
from instruct_assets.lib.readers import chunked
from instruct_assets.lib.sources import SourceSpec
from tests.support import make_data_dir, real

SOURCES = {
    "wikisql": [real("ml-explore__mlx-examples/lora_wikisql_train.jsonl")],
    "toy_chat": [real("narendrasinghdangi__movie-recommandation/toy_chat_fine_tuning.jsonl")],
    "cot": [real("KentaNishi__2025_llm_comp_main/"
                 "structured_data_with_cot_dataset_512_v5_validation.jsonl")],
    "mixed": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json"),
              real("ml-explore__mlx-examples/lora_wikisql_train.jsonl")],
}


def _outputs(paths: DataPaths, name: str, chunk_rows: int) -> tuple:
    result = normalize_source(paths, SourceSpec(name=name), chunk_rows=chunk_rows)
    checks = contract.source_checks(result.examples, result.records_read,
                                    result.rejects.height, 0.5)
    return result, {k: asdict(v) for k, v in checks.items()}


def _assert_same(one: tuple, many: tuple) -> None:
    (r1, c1), (r2, c2) = one, many
    assert r1.examples.equals(r2.examples)
    assert r1.rejects.equals(r2.rejects)
    assert [asdict(f) for f in r1.files] == [asdict(f) for f in r2.files]
    assert c1 == c2


@pytest.fixture(scope="module")
def real_paths(tmp_path_factory) -> DataPaths:
    return make_data_dir(tmp_path_factory.mktemp("chunked_norm"), SOURCES)


@pytest.mark.parametrize("name", list(SOURCES))
def test_real_sources_in_chunks_equal_one_chunk(real_paths, name):
    one = _outputs(real_paths, name, 1_000_000)
    for chunk_rows in (7, 300):
        _assert_same(one, _outputs(real_paths, name, chunk_rows))


def _staged(paths: DataPaths, name: str, chunk_rows: int) -> tuple:
    staged = stage_source(paths, SourceSpec(name=name), "fp", 0.5, chunk_rows=chunk_rows)
    folder = staging_dir(paths, name)
    report = json.loads((folder / "report.json").read_text())
    return (pl.read_parquet(folder / EXAMPLES_FILE), pl.read_parquet(folder / REJECTS_FILE),
            report, {k: asdict(v) for k, v in staged.outcomes.items()}, staged.head)


def test_staging_streams_the_same_files_and_checks(real_paths):
    whole = normalize_source(real_paths, SourceSpec(name="toy_chat"))
    one = _staged(real_paths, "toy_chat", 1_000_000)
    many = _staged(real_paths, "toy_chat", 500)
    assert one[0].equals(whole.examples) and one[1].equals(whole.rejects)
    for a, b in zip(one, many, strict=True):
        assert a.equals(b) if isinstance(a, pl.DataFrame) else a == b
    assert one[2]["rows"] + one[2]["rejects"] == one[2]["records_read"]


def test_the_asset_reads_chunk_rows_from_memory_settings(real_paths):
    expected = _staged(real_paths, "wikisql", 1_000_000)
    resources = {"data_dir": DataDir(path=str(real_paths.root)),
                 "ingest_settings": IngestSettings(),
                 "memory_settings": MemorySettings(chunk_rows=64)}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(source_partitions.name, ["wikisql"])
        result = dg.materialize([staged_examples], instance=instance, resources=resources,
                                partition_key="wikisql", selection=[STAGED])
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    got = _staged_files(real_paths, "wikisql")
    assert got[0].equals(expected[0]) and got[1].equals(expected[1])


def _staged_files(paths: DataPaths, name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    folder = staging_dir(paths, name)
    return pl.read_parquet(folder / EXAMPLES_FILE), pl.read_parquet(folder / REJECTS_FILE)


def _line(instruction: str, output: str, **extra: str) -> str:
    return json.dumps({"instruction": instruction, "output": output, **extra})


def _written(tmp_path: Path, lines: list[str], name: str = "data.jsonl",
             gz: bool = False) -> DataPaths:
    folder = tmp_path / "raw" / "s"
    folder.mkdir(parents=True)
    data = ("\n".join(lines) + "\n").encode()
    (folder / name).write_bytes(gzip.compress(data) if gz else data)
    return DataPaths.at(tmp_path)


#: Duplicates whose copies land in different chunks of 3 lines, a blank line, invalid JSON,
#: a non-object, a record with a blank answer and a CRLF line.
CASE = [
    _line("Say hi", "hi"), _line("Add 2 and 2", "4"), _line("Say hi", "hi"),
    "", _line("Name a colour", "red"), "{not json", _line("Say hi", "hi"),
    "[1, 2]", _line("Blank answer", "  "), _line("Add 2 and 2", "4") + "\r",
    _line("Say hi", "hi"), _line("Last", "one"),
]


@pytest.mark.parametrize("gz", [False, True])
def test_duplicates_and_rejects_across_chunks(tmp_path, gz):
    paths = _written(tmp_path, CASE, "data.jsonl.gz" if gz else "data.jsonl", gz)
    one = _outputs(paths, "s", 1_000_000)
    ids = one[0].examples.filter(pl.col("messages").list.get(0).struct.field("content")
                                 == "Say hi")["example_id"].to_list()
    assert [i.partition("-")[2] for i in ids] == ["", "1", "2", "3"]
    assert one[0].rejects["source_row"].to_list() == [5, 7, 8]
    assert one[0].files[0].blank_lines == 1
    for chunk_rows in (1, 2, 3, 5):
        _assert_same(one, _outputs(paths, "s", chunk_rows))


def test_stream_pieces_keep_line_numbers(tmp_path, monkeypatch):
    """A file larger than the in-memory bound is read block by block; pieces still cut at
    line ends and number lines as the whole file does."""
    paths = _written(tmp_path, CASE)
    one = _outputs(paths, "s", 1_000_000)
    monkeypatch.setattr(chunked, "WHOLE_BYTES_PER_ROW", 0)
    monkeypatch.setattr(chunked, "BLOCK", 16)
    for chunk_rows in (1, 4):
        _assert_same(one, _outputs(paths, "s", chunk_rows))


def test_too_many_key_sets_are_ranked_over_the_whole_file(tmp_path):
    """More than MAX_KEYSETS key sets in a cut file: the rarest are unknown_format exactly as
    in one piece (the pass that finds it is redone after ranking over the whole file)."""
    lines = [_line("q", f"a{i}", **{f"k{i}": "x"}) for i in range(MAX_KEYSETS + 20)]
    lines += [_line("q", f"b{i}", k0="y") for i in range(5)]
    paths = _written(tmp_path, lines)
    one = _outputs(paths, "s", 1_000_000)
    assert one[0].rejects.height == 20
    _assert_same(one, _outputs(paths, "s", 40))


def test_all_blank_cut_file_is_one_empty_file_reject(tmp_path):
    paths = _written(tmp_path, ["", "  ", "", ""])
    one = _outputs(paths, "s", 1_000_000)
    assert one[0].rejects["reason_code"].to_list() == ["empty_file"]
    _assert_same(one, _outputs(paths, "s", 2))


def test_a_source_of_two_real_files_gets_ids(tmp_path):
    """The Parquet and JSONL files of one real project as one source: multi-chunk columns
    made polars 2.1 panic in the repeat-number window; ids stay unique and stable."""
    base = "KentaNishi__2025_llm_comp_main/"
    paths = make_data_dir(tmp_path, {"kenta": [
        real(base + "structured_data_with_cot_dataset_512_v2__train-00000-of-00001.parquet"),
        real(base + "structured_data_with_cot_dataset_512_v5_validation.jsonl")]})
    one = normalize_source(paths, SourceSpec(name="kenta"))
    assert one.examples.height + one.rejects.height == one.records_read > 4000
    assert one.examples["example_id"].is_unique().all()
    repeats = one.examples.filter(pl.col("example_id").str.contains("-"))
    assert repeats.height > 0  # the two files share conversations
    many = normalize_source(paths, SourceSpec(name="kenta"), chunk_rows=700)
    assert many.examples.equals(one.examples)
