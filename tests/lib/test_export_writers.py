"""export_split: one split, every format, sorted, deterministic, with an honest result."""

from __future__ import annotations

import json

import polars as pl
import pytest
from _frames import frame_from_conversations

from instruct_assets.lib.export.writers import KINDS, export_path, export_split
from instruct_assets.lib.schema import NORMALIZED_SCHEMA

TOOLS = '[{"name": "get_weather", "parameters": {"type": "object"}}]'


def _mixed_frame() -> pl.DataFrame:
    """Two sources, both splits, single- and multi-turn, system, tools, non-ASCII."""
    convs = [
        [("user", "Wie spät ist es?"), ("assistant", "Zwölf Uhr.")],
        [("system", "Réponds en français."), ("user", "Bonjour"), ("assistant", "Salut !")],
        [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")],
        [
            ("user", "Weather?"),
            ("assistant", '{"name": "get_weather", "arguments": {"city": "Oslo"}}'),
            ("tool", '{"t": -3}'),
            ("assistant", "−3 °C"),
        ],
        [("user", "中文问题"), ("assistant", "中文回答")],
        [("user", "eval only"), ("assistant", "yes")],
    ]
    tools = [None, None, None, TOOLS, None, None]
    a = frame_from_conversations(convs[:3], source="src_b", tools=tools[:3])
    b = frame_from_conversations(convs[3:], source="src_a", tools=tools[3:])
    return pl.concat([a, b]).with_columns(
        split=pl.Series(["train", "train", "train", "train", "train", "eval"]),
        complexity_tier=pl.lit("medium"),
    )


def _all_bytes(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_two_exports_of_the_same_split_are_byte_identical_even_if_rows_arrive_shuffled(tmp_path):
    frame = _mixed_frame()
    export_split(frame, tmp_path / "one", "train")
    export_split(frame, tmp_path / "one", "train")  # rewrite in place
    export_split(frame.sample(fraction=1.0, shuffle=True, seed=7), tmp_path / "two", "train")
    export_split(frame.reverse().lazy(), tmp_path / "three", "train")
    one = _all_bytes(tmp_path / "one")
    assert len(one) == len(KINDS) + 2  # plus axolotl.train.yaml and dataset_info.json
    assert one == _all_bytes(tmp_path / "two") == _all_bytes(tmp_path / "three")


def test_rows_are_sorted_by_source_then_example_id_in_every_format(tmp_path):
    frame = _mixed_frame()
    export_split(frame, tmp_path, "train", formats=["openai"])
    lines = (tmp_path / "openai" / "train.jsonl").read_text(encoding="utf-8").split("\n")[:-1]
    firsts = [json.loads(line)["messages"][0]["content"] for line in lines]
    train = frame.filter(pl.col("split") == "train").sort("source", "example_id")
    assert firsts == [m[0]["content"] for m in train["messages"].to_list()]
    assert train["source"].to_list()[:2] == ["src_a", "src_a"]  # source first, then id


def test_only_the_requested_split_is_written(tmp_path):
    result = export_split(_mixed_frame(), tmp_path, "eval", formats=["openai"])
    assert result["rows"] == 1
    text = (tmp_path / "openai" / "eval.jsonl").read_text()
    assert "eval only" in text and "Bonjour" not in text
    assert not (tmp_path / "openai" / "train.jsonl").exists()


def test_the_result_reports_paths_rows_and_bytes_that_match_the_files(tmp_path):
    result = export_split(_mixed_frame(), tmp_path, "train")
    assert result["split"] == "train" and result["rows"] == 5
    assert list(result["formats"]) == list(KINDS)
    for kind, entry in result["formats"].items():
        path = export_path(tmp_path, kind, "train")
        assert entry["path"] == str(path)
        assert entry["bytes"] == path.stat().st_size > 0
    rows = {kind: entry["rows"] for kind, entry in result["formats"].items()}
    assert rows == {
        "openai": 5,
        "openai_parquet": 5,
        "sharegpt": 5,
        "alpaca": 3,
        "text_chatml": 5,
        "text_llama3": 5,
        "text_alpaca": 3,
    }
    for kind in ("alpaca", "text_alpaca"):
        assert result["formats"][kind]["not_exportable"]["count"] == 2


def test_an_empty_split_writes_empty_but_valid_files(tmp_path):
    result = export_split(_mixed_frame(), tmp_path, "test")
    assert result["rows"] == 0
    assert (tmp_path / "openai" / "test.jsonl").read_bytes() == b""
    assert (tmp_path / "sharegpt" / "test.json").read_bytes() == b"[]\n"
    assert (tmp_path / "alpaca" / "test.json").read_bytes() == b"[]\n"
    assert pl.read_parquet(tmp_path / "openai" / "test.parquet").height == 0


def test_messages_structs_with_fields_in_another_order_are_read_by_name(tmp_path):
    frame = _mixed_frame().with_columns(
        pl.col("messages").list.eval(
            pl.struct(
                content=pl.element().struct.field("content"), role=pl.element().struct.field("role")
            )
        )
    )
    export_split(frame, tmp_path / "swapped", "train", formats=["openai"])
    export_split(_mixed_frame(), tmp_path / "plain", "train", formats=["openai"])
    assert _all_bytes(tmp_path / "swapped") == _all_bytes(tmp_path / "plain")


def test_a_frame_without_a_split_column_is_taken_as_the_split(tmp_path):
    frame = frame_from_conversations([[("user", "u"), ("assistant", "a")]])
    assert frame.columns == NORMALIZED_SCHEMA.names()
    assert export_split(frame, tmp_path, "train", formats=["openai"])["rows"] == 1


def test_duplicate_keys_missing_columns_bad_split_names_and_unknown_kinds_are_refused(tmp_path):
    frame = _mixed_frame()
    with pytest.raises(ValueError, match="not unique"):
        export_split(pl.concat([frame, frame.head(1)]), tmp_path, "train")
    with pytest.raises(ValueError, match="lacks columns"):
        export_split(frame.drop("tools"), tmp_path, "train")
    for bad in ("../train", "", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="safe file name"):
            export_split(frame, tmp_path, bad)
    with pytest.raises(ValueError, match="unknown export kinds"):
        export_split(frame, tmp_path, "train", formats=["openai", "csv"])
    assert not any(tmp_path.iterdir())  # nothing written by refused calls


def test_the_same_example_id_in_two_sources_is_not_a_duplicate(tmp_path):
    frame = _mixed_frame()
    clash = frame.head(1).with_columns(source=pl.lit("src_z"))
    result = export_split(pl.concat([frame, clash]), tmp_path, "train", formats=["openai"])
    assert result["rows"] == 6


def test_shared_chunks_give_each_concurrent_reader_every_encoded_chunk_once(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from instruct_assets.lib.export import common, writers
    from instruct_assets.lib.export.derive import with_messages_json

    monkeypatch.setattr(writers, "row_chunks", lambda rows: common.row_chunks(rows, 2))
    rows = writers.prepare_rows(_mixed_frame(), "train")  # 5 rows: chunks of 2, 2, 1
    expected = [with_messages_json(rows.slice(o, 2)) for o in range(0, rows.height, 2)]
    shared = writers.SharedChunks(rows, consumers=2)
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda _: list(shared), range(2)))
    for chunks in got:
        assert len(chunks) == len(expected)
        for chunk, want in zip(chunks, expected, strict=True):
            assert chunk.equals(want)
    assert got[0][0] is got[1][0]  # encoded once, shared
    assert shared.slots == {}  # every chunk dropped once both readers took it


def test_writing_with_shared_chunks_gives_the_same_bytes(tmp_path):
    from instruct_assets.lib.export import writers

    rows = writers.prepare_rows(_mixed_frame(), "train")
    groups = [["openai", "text_chatml"], ["sharegpt", "alpaca"]]
    for group in groups:
        writers.write_kinds(rows, tmp_path / "alone", "train", group)
    shared = writers.SharedChunks(rows, consumers=2)
    for group in groups:
        writers.write_kinds(rows, tmp_path / "shared", "train", group, chunks=shared)
    assert _all_bytes(tmp_path / "alone") == _all_bytes(tmp_path / "shared")
