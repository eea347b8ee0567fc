"""The readers' limits, fast: the record-size ceiling in every container (set low here), and
the JSON-array scanner that steps over one damaged item without inventing records."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from instruct_assets.lib.readers import read_file

ROW = {"instruction": "Say hi.", "input": "", "output": "Hi."}
BIG = {"instruction": "Repeat.", "input": "", "output": "y" * 500}
CEILING = 200


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.json", "rows.csv", "rows.parquet"])
def test_a_record_over_the_ceiling_is_too_large_in_every_container(tmp_path, name):
    rows = [ROW, BIG, ROW]
    if name.endswith(".jsonl"):
        path = write(tmp_path, name, jsonl(rows))
    elif name.endswith(".json"):
        path = write(tmp_path, name, json.dumps(rows).encode())
    elif name.endswith(".csv"):
        path = tmp_path / name
        pl.DataFrame(rows).write_csv(path)
    else:
        path = tmp_path / name
        pl.DataFrame(rows).write_parquet(path)
    batch = read_file(path, max_record_bytes=CEILING)
    assert batch.table is None  # the native fast path never swallows an oversized line
    assert batch.records["source_row"].to_list() == [0, 2]
    (row, code, detail, raw) = batch.rejects.row(0)
    assert raw.startswith("{") and len(raw) <= 2000
    assert (row, code) == (1, "too_large")
    assert f"over the {CEILING:,}-byte ceiling; largest field 'output' (500 characters)" in detail
    assert batch.units == 3


def test_under_the_ceiling_jsonl_keeps_the_fast_path(tmp_path):
    batch = read_file(write(tmp_path, "rows.jsonl", jsonl([ROW, ROW])), max_record_bytes=CEILING)
    assert batch.table is not None and batch.units == 2


def test_a_damaged_item_is_skipped_only_when_its_end_is_certain(tmp_path):
    good = json.dumps(ROW)
    # a Python-dict item holding brackets and a double quote inside single quotes
    text = f'[{good}, {{\'instruction\': \'a ]}} "b\', \'output\': \'x\'}}, {good}]'
    batch = read_file(write(tmp_path, "a.json", text.encode()))
    assert batch.records["source_row"].to_list() == [0, 2]
    assert batch.rejects.select("source_row", "reason_code").rows() == [(1, "invalid_json")]
    # stray text whose end cannot be known: the rest is one unit, nothing is invented
    text = f'[{good}, oops it\'s {{"instruction": "inner", "output": "y"}}, {good}]'
    batch = read_file(write(tmp_path, "b.json", text.encode()))
    assert batch.records["source_row"].to_list() == [0]
    (row, code, detail, _raw) = batch.rejects.row(0)
    assert (row, code) == (1, "invalid_json") and detail.startswith("array damaged after 1 ")
    assert batch.units == 2
