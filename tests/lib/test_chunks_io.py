"""The shared Parquet reader and writer: parallel row-group reads give the rows of a plain
read, and a compacted frame's bytes depend on its rows alone, not on its chunking."""

import json

import polars as pl
import pytest

from instruct_assets.lib import chunks, parquet_io
from instruct_assets.lib.chunks import iter_parquet_chunks, read_rows, row_group_starts
from tests.support import real

MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


def _real_conversations() -> pl.DataFrame:
    """alpaca_en_demo (999 real rows) as id + messages, three times: 2,997 rows."""
    rows = json.loads(real("hiyouga__LLaMA-Factory/alpaca_en_demo.json").read_text("utf-8"))
    frame = pl.DataFrame({
        "example_id": [f"{i:05d}" for i in range(len(rows))],
        "messages": [[{"role": "user", "content": r["instruction"] + "\n" + r["input"]},
                      {"role": "assistant", "content": r["output"]}] for r in rows],
    }, schema={"example_id": pl.String, "messages": MESSAGES})
    return pl.concat([frame, frame, frame]).with_columns(
        pl.format("{}-{}", pl.int_range(pl.len()) // len(rows), "example_id").alias("example_id"))


@pytest.fixture()
def small_groups(monkeypatch):
    """Row groups of 256 rows and parallel reads from 300 rows, so a few thousand rows
    exercise every path."""
    monkeypatch.setattr(parquet_io, "ROW_GROUP_ROWS", 256)
    monkeypatch.setattr(chunks, "PARALLEL_READ_ROWS", 300)


def test_parallel_reads_give_the_rows_of_a_plain_read(tmp_path, small_groups):
    frame = _real_conversations()
    files = []
    for i, (start, n) in enumerate([(0, 1000), (1000, 77), (1077, 1920)]):
        files.append(tmp_path / f"part{i}.parquet")
        parquet_io.write_parquet(frame.slice(start, n), files[-1])
    whole = pl.read_parquet(files)
    assert whole.equals(frame)
    starts = row_group_starts(files)
    assert starts[-1] == frame.height == 2997 and len(starts) > 10
    assert read_rows(files).equals(whole)
    for offset, length in [(0, 2997), (5, 7), (255, 2), (900, 400), (999, 1001), (1500, 1497),
                           (2996, 1), (0, 0)]:
        got = read_rows(files, ["example_id", "messages"], offset, length)
        assert got.equals(whole.slice(offset, length)), (offset, length)
    for chunk_rows in (7, 299, 1000, 2997, 10**6):
        got = list(iter_parquet_chunks(files, ["messages"], chunk_rows))
        assert max(g.height for g in got) <= chunk_rows
        assert pl.concat(got).equals(whole.select("messages")), chunk_rows


def test_compacted_frames_give_bytes_that_depend_on_the_rows_alone(tmp_path, small_groups):
    frame = _real_conversations()
    layouts = {
        "one chunk": frame.rechunk(),
        "a slice of a larger frame": pl.concat([frame, frame]).rechunk().slice(0, frame.height),
        "odd parts": pl.concat([frame.slice(0, 1001), frame.slice(1001, 5), frame.slice(1006)],
                               rechunk=False),
        "reversed twice": frame.reverse().rechunk().reverse(),
    }
    written = {}
    for name, layout in layouts.items():
        target = tmp_path / f"{name}.parquet"
        compact = parquet_io.compact_row_groups(layout)
        assert compact.equals(frame) and compact.n_chunks() == 12, name
        parquet_io.write_parquet(compact, target)
        written[name] = target.read_bytes()
        assert pl.read_parquet(target).equals(frame), name
    assert len(set(written.values())) == 1, {k: len(v) for k, v in written.items()}
    groups = pl.read_parquet_schema(tmp_path / "one chunk.parquet")  # readable footer
    assert groups["messages"] == MESSAGES
    assert row_group_starts([tmp_path / "one chunk.parquet"])[:3] == [0, 256, 512]


def test_an_empty_file_reads_as_an_empty_frame(tmp_path):
    target = tmp_path / "empty.parquet"
    parquet_io.write_parquet(pl.DataFrame(schema={"messages": MESSAGES}), target)
    assert read_rows([target]).schema == pl.Schema({"messages": MESSAGES})
    assert [f.height for f in iter_parquet_chunks([target], ["messages"], 10)] == [0]


def test_a_failed_chunked_write_leaves_the_previous_file(tmp_path, small_groups):
    frame = _real_conversations()
    target = tmp_path / "out.parquet"
    parquet_io.write_parquet(frame.head(10), target)
    before = target.read_bytes()
    with pytest.raises(KeyError), chunks.ChunkedParquetWriter(target, frame.schema) as writer:
        for start in range(0, 2000, 500):
            writer.write(frame.slice(start, 500))
        raise KeyError("the stage failed midway")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]  # no temp file left


def test_chunked_writes_of_empty_frames_keep_the_schema(tmp_path):
    schema = pl.Schema({"example_id": pl.String, "messages": MESSAGES})
    target = tmp_path / "empty.parquet"
    with chunks.ChunkedParquetWriter(target, schema) as writer:
        writer.write(pl.DataFrame(schema=schema))
        writer.write(pl.DataFrame(schema=schema))
    assert pl.read_parquet(target).schema == schema and writer.rows == 0
