"""Readers: every container and storage oddity, one written case each."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl

from instruct_assets.lib.readers import read_file


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


ALPACA = {"instruction": "Say hi", "input": "", "output": "Hi!"}


def test_jsonl_with_bom_crlf_and_no_final_newline(tmp_path):
    body = "\r\n".join(json.dumps(ALPACA) for _ in range(3))
    batch = read_file(write(tmp_path, "a.jsonl", b"\xef\xbb\xbf" + body.encode()))
    assert batch.units == 3 and batch.rejects.height == 0
    assert batch.records["source_row"].to_list() == [0, 1, 2]
    assert all(json.loads(r) == ALPACA for r in batch.records["raw"])


def test_gzip_is_transparent_for_json_and_jsonl(tmp_path):
    arr = gzip.compress(json.dumps([ALPACA, ALPACA]).encode())
    lines = gzip.compress((json.dumps(ALPACA) + "\n").encode())
    assert read_file(write(tmp_path, "a.json.gz", arr)).records.height == 2
    assert read_file(write(tmp_path, "b.jsonl.gz", lines)).records.height == 1


def test_empty_file_is_one_reject(tmp_path):
    batch = read_file(write(tmp_path, "e.jsonl", b""))
    assert batch.units == 1
    assert batch.rejects.row(0)[:2] == (0, "empty_file")


def test_single_object_and_object_keyed_by_id(tmp_path):
    one = read_file(write(tmp_path, "one.json", json.dumps(ALPACA).encode()))
    assert (one.container, one.records.height) == ("json_object", 1)
    keyed = read_file(write(tmp_path, "k.json", json.dumps({"a1": ALPACA, "b2": ALPACA}).encode()))
    assert keyed.container == "json_keyed_object"
    assert [json.loads(r)["id"] for r in keyed.records["raw"]] == ["a1", "b2"]


def test_json_file_that_is_really_jsonl(tmp_path):
    body = "\n".join(json.dumps(ALPACA) for _ in range(4)) + "\n"
    batch = read_file(write(tmp_path, "really_lines.json", body.encode()))
    assert (batch.container, batch.records.height) == ("jsonl", 4)


def test_truncated_json_array_keeps_the_good_prefix_and_rejects_the_rest(tmp_path):
    text = json.dumps([ALPACA, ALPACA, ALPACA], indent=1)[:-40]
    batch = read_file(write(tmp_path, "t.json", text.encode()))
    assert batch.records.height == 2
    (row, code, detail, _raw) = batch.rejects.row(0)
    assert (row, code) == (2, "invalid_json") and "damaged after 2 records" in detail
    assert batch.units == 3


def test_invalid_utf8_and_nul_lines_are_rejected_alone(tmp_path):
    good = json.dumps(ALPACA).encode()
    data = b"\n".join([good, b'{"instruction": "\xff\xfe"}', good, b'{"a": "x\x00y"}', good])
    batch = read_file(write(tmp_path, "mixed.jsonl", data))
    assert batch.rejects.row(0)[:2] == (1, "invalid_encoding")
    assert batch.records.height == 4  # the NUL line is a record until JSON validation
    assert batch.units == 5


def test_binary_file_with_a_jsonl_name_is_one_reject(tmp_path):
    batch = read_file(write(tmp_path, "bin.jsonl", bytes(range(256)) * 40))
    assert batch.units == 1
    assert batch.rejects.row(0)[1] == "invalid_encoding"


def test_csv_ragged_rows_are_rejected_with_counts(tmp_path):
    data = b"instruction,output\nq1,a1\nq2,a2,extra\nq3\n\"multi\nline\",a4\n"
    batch = read_file(write(tmp_path, "r.csv", data))
    assert batch.records["source_row"].to_list() == [0, 3]
    assert batch.rejects.select("source_row", "reason_code").rows() == [
        (1, "invalid_csv"), (2, "invalid_csv")]
    assert json.loads(batch.records["raw"][1]) == {"instruction": "multi\nline", "output": "a4"}


def test_parquet_nested_messages_become_json_records(tmp_path):
    path = tmp_path / "m.parquet"
    pl.DataFrame({"messages": [[{"role": "user", "content": "q"},
                                {"role": "assistant", "content": "a"}]]}).write_parquet(path)
    batch = read_file(path)
    assert json.loads(batch.records["raw"][0])["messages"][1]["content"] == "a"


def test_twenty_megabyte_field_is_read_whole(tmp_path):
    big = "x" * (20 * 1024 * 1024)
    line = json.dumps({"instruction": "Repeat", "output": big})
    batch = read_file(write(tmp_path, "big.jsonl", line.encode()))
    assert batch.table is not None  # the fast path reads it as a table
    assert len(batch.table["output"][0]) == len(big)


def test_text_blocks_start_at_q_lines_and_keep_the_preamble(tmp_path):
    text = "canary GUID 123\n-----\nDo sums.\n\nQ: 1+1?\nA: 2\nbecause.\n\nQ: 2+2?\nA: 4\n"
    batch = read_file(write(tmp_path, "s.txt", text.encode()))
    assert batch.records["source_row"].to_list() == [4, 8]
    first = json.loads(batch.records["raw"][0])
    assert first == {"text": "Q: 1+1?\nA: 2\nbecause.", "canary": "canary GUID 123",
                     "task": "Do sums."}


def test_newline_scan_matches_a_plain_scan_across_block_boundaries():
    """The line scan runs in cache-sized blocks, in threads past a few blocks: newlines on
    both sides of every block boundary, and at the very start and end, must all be found."""
    import numpy as np

    from instruct_assets.lib.readers.json_records import _SCAN_BLOCK, newline_ends

    size = 6 * _SCAN_BLOCK + 3
    buf = np.frombuffer(np.random.default_rng(0).bytes(size), dtype=np.uint8).copy()
    buf[buf == 10] = 11
    edges = [0, size - 1] + [k * _SCAN_BLOCK + d for k in range(1, 7) for d in (-1, 0)
                             if k * _SCAN_BLOCK + d < size]
    random_spots = np.random.default_rng(1).integers(0, size, 5000)
    buf[np.concatenate([edges, random_spots])] = 10
    data = buf.tobytes()
    expected = np.flatnonzero(buf == 10).astype(np.int64) + 1
    for view in (data, memoryview(data)[1:], data[: 3 * _SCAN_BLOCK]):
        want = expected if view is data else (
            np.flatnonzero(np.frombuffer(view, np.uint8) == 10).astype(np.int64) + 1)
        got = newline_ends(view)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)
    assert newline_ends(b"").size == 0
