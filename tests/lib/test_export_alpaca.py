"""Alpaca JSON: single-turn rows only, every other row listed, never silently dropped."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from _frames import alpaca_conversations, frame_from_conversations

from instruct_assets.lib.export.validate import canonical_from_export, validate_export
from instruct_assets.lib.export.writers import export_split

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"


def _export(tmp_path, conversations, tools=None):
    frame = frame_from_conversations(conversations, tools=tools).with_columns(split=pl.lit("train"))
    result = export_split(frame, tmp_path, "train", formats=["alpaca"])
    return frame, result["formats"]["alpaca"]


def test_a_single_turn_row_becomes_instruction_empty_input_and_output(tmp_path):
    _, entry = _export(tmp_path, [[("user", "Translate «chat»"), ("assistant", "cat")]])
    assert (tmp_path / "alpaca" / "train.json").read_bytes() == (
        '[\n{"instruction":"Translate «chat»","input":"","output":"cat"}\n]\n'.encode()
    )
    assert entry["rows"] == 1
    assert entry["not_exportable"] == {"reason": "not_single_turn", "count": 0, "ids": []}


def test_a_leading_system_turn_goes_to_the_system_key(tmp_path):
    _export(tmp_path, [[("system", "You are a poet."), ("user", "Rhyme"), ("assistant", "Time")]])
    records = json.loads((tmp_path / "alpaca" / "train.json").read_text())
    assert records == [
        {"instruction": "Rhyme", "input": "", "output": "Time", "system": "You are a poet."}
    ]


def test_multi_turn_and_tool_rows_are_listed_by_key_not_dropped(tmp_path):
    convs = [
        [("user", "one"), ("assistant", "1")],
        [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")],
        [
            ("user", "w?"),
            ("assistant", '{"name":"f","arguments":{}}'),
            ("tool", "x"),
            ("assistant", "y"),
        ],
        [("system", "s"), ("user", "two"), ("assistant", "2")],
    ]
    frame, entry = _export(tmp_path, convs)
    multi_ids = sorted(frame["example_id"][1:3].to_list())
    skipped = entry["not_exportable"]
    assert skipped["count"] == 2
    assert sorted(k["example_id"] for k in skipped["ids"]) == multi_ids
    assert all(k["source"] == "test" for k in skipped["ids"])
    assert entry["rows"] + skipped["count"] == len(convs)
    records = json.loads((tmp_path / "alpaca" / "train.json").read_text())
    assert sorted(r["instruction"] for r in records) == ["one", "two"]


def test_rows_with_tools_keep_them_as_a_json_string(tmp_path):
    tools = '[{"name": "f", "parameters": {}}]'
    _export(tmp_path, [[("user", "u"), ("assistant", "a")]], tools=[tools])
    (record,) = json.loads((tmp_path / "alpaca" / "train.json").read_text())
    assert json.loads(record["tools"]) == json.loads(tools)


def test_real_alpaca_demo_round_trips_to_the_same_conversations(tmp_path):
    convs = alpaca_conversations(str(REAL / "hiyouga__LLaMA-Factory" / "alpaca_en_demo.json"))
    frame = frame_from_conversations(convs, source="alpaca_demo", source_format="alpaca")
    frame = frame.with_columns(split=pl.lit("train"))
    result = export_split(frame, tmp_path, "train", formats=["alpaca"])
    path = tmp_path / "alpaca" / "train.json"
    assert result["formats"]["alpaca"]["rows"] == len(convs) == 999
    assert validate_export(path, "alpaca")["valid"]
    expected = frame.sort("source", "example_id")["messages"].to_list()
    assert canonical_from_export(path, "alpaca") == expected
