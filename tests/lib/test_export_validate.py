"""validate_export and the export -> canonical round trip."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _frames import frame_from_conversations

from instruct_assets.lib.export import validate
from instruct_assets.lib.export.validate import (
    canonical_frame_from_export,
    canonical_from_export,
    native_check,
    validate_export,
)
from instruct_assets.lib.export.writers import KINDS, export_path, export_split

TOOLS = '[{"name": "lookup", "parameters": {"type": "object"}}]'
CONVS = [
    [("user", "  padded question  "), ("assistant", "Ünïcode ✓")],
    [("system", "Be brief."), ("user", "Why?"), ("assistant", "Because.")],
    [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")],
    [
        ("user", "Find it"),
        ("assistant", '{"name": "lookup", "arguments": {"q": "it"}}'),
        ("tool", '{"found": true}'),
        ("assistant", "Found."),
    ],
]


@pytest.fixture
def exported(tmp_path):
    frame = frame_from_conversations(CONVS, tools=[None, None, None, TOOLS])
    export_split(frame.with_columns(split=pl.lit("train")), tmp_path, "train")
    return frame.sort("source", "example_id"), tmp_path


def test_every_exported_kind_validates_with_its_row_count(exported):
    _, out = exported
    expected_rows = {"alpaca": 2, "text_alpaca": 2}
    for kind in KINDS:
        report = validate_export(export_path(out, kind, "train"), kind)
        assert report["valid"], (kind, report["errors"])
        assert report["rows"] == expected_rows.get(kind, 4), kind
        assert report["error_count"] == 0
        assert report["bytes"] == export_path(out, kind, "train").stat().st_size


def test_export_then_read_back_gives_the_same_conversations(exported):
    frame, out = exported
    original = frame["messages"].to_list()
    single = [m for m in original if len(m) - (m[0]["role"] == "system") == 2]
    for kind in ("openai", "openai_parquet", "sharegpt", "text_chatml"):
        assert canonical_from_export(export_path(out, kind, "train"), kind) == original, kind
    for kind in ("alpaca", "text_alpaca"):
        assert canonical_from_export(export_path(out, kind, "train"), kind) == single, kind
    # Llama 3 trims content, as Meta's template does.
    trimmed = [[{**m, "content": m["content"].strip()} for m in conv] for conv in original]
    assert canonical_from_export(export_path(out, "text_llama3", "train"), "text_llama3") == trimmed
    back = canonical_frame_from_export(export_path(out, "sharegpt", "train"), "sharegpt")
    assert back.equals(frame.select("messages"))


def _rewrite_line(path, number, new_line):
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[number - 1] = new_line
    path.write_text("\n".join(lines), encoding="utf-8")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"messages":[{"role":"user","content":"x"', "not valid JSON"),
        ('{"text":"<|im_start|>user\\nx<|im_end|>\\n"}', "are not messages"),
        ('{"messages":[{"role":"narrator","content":"x"}]}', "unknown role 'narrator'"),
        ('{"messages":[{"role":"user","content":""}]}', "empty or non-string content"),
        ('{"messages":[{"role":"user","content":"x"}],"id":7}', "are not messages"),
        ('{"messages":[{"role":"user","content":"x"}],"tools":[]}', "tools"),
        ('{"messages":[{"role":"user","content":3}]}', "non-string content"),
        ('{"messages":[]}', "non-empty list"),
    ],
)
def test_a_bad_openai_line_is_reported_with_its_record_number(exported, line, message):
    _, out = exported
    path = export_path(out, "openai", "train")
    _rewrite_line(path, 3, line)
    report = validate_export(path, "openai")
    assert not report["valid"]
    assert report["rows"] == 4
    assert report["error_count"] == 1, report["errors"]
    assert report["errors"][0].startswith("record 3")
    assert message in report["errors"][0]


def test_a_sharegpt_element_with_an_unknown_speaker_or_empty_system_is_reported(exported):
    _, out = exported
    path = export_path(out, "sharegpt", "train")
    text = path.read_text(encoding="utf-8").replace('"from":"gpt"', '"from":"bot"', 1)
    text = text.replace('"system":"Be brief."', '"system":""')
    path.write_text(text, encoding="utf-8")
    report = validate_export(path, "sharegpt")
    assert not report["valid"]
    assert report["error_count"] == 2, report["errors"]


def test_an_alpaca_record_missing_input_is_reported(exported):
    _, out = exported
    path = export_path(out, "alpaca", "train")
    path.write_text(
        path.read_text(encoding="utf-8").replace('"input":"",', "", 1), encoding="utf-8"
    )
    report = validate_export(path, "alpaca")
    assert report["error_count"] == 1


def test_a_file_without_a_final_newline_is_flagged(exported):
    _, out = exported
    path = export_path(out, "text_chatml", "train")
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    report = validate_export(path, "text_chatml")
    assert report["errors"] == ["file does not end with a newline"]


def test_a_foreign_pretty_printed_sharegpt_file_is_checked_by_the_reference_parser(tmp_path):
    path = tmp_path / "pretty.json"
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    path.write_text(json.dumps([good, good], indent=2) + "\n", encoding="utf-8")
    assert validate_export(path, "sharegpt")["valid"]
    assert validate_export(path, "sharegpt")["rows"] == 2
    assert (
        canonical_from_export(path, "sharegpt")
        == [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]] * 2
    )
    bad = {"conversations": [{"from": "human", "value": "q"}], "id": 1}
    path.write_text(json.dumps([good, bad], indent=2) + "\n", encoding="utf-8")
    report = validate_export(path, "sharegpt")
    assert report["errors"] == [
        "record 2: keys ['conversations', 'id'] are not conversations[, system, tools]"
    ]


def test_an_openai_file_is_not_a_valid_text_file_one_format_per_file(exported):
    _, out = exported
    report = validate_export(export_path(out, "openai", "train"), "text_chatml")
    assert not report["valid"]
    assert report["error_count"] == 4


def test_a_parquet_copy_with_another_schema_is_refused(tmp_path):
    path = tmp_path / "x.parquet"
    pl.DataFrame({"text": ["a"]}).write_parquet(path)
    report = validate_export(path, "openai_parquet")
    assert not report["valid"]
    assert "schema" in report["errors"][0]


def test_unknown_kinds_are_refused(exported):
    _, out = exported
    with pytest.raises(ValueError, match="unknown export kind"):
        validate_export(export_path(out, "openai", "train"), "csv")


def test_a_file_that_is_not_utf8_is_reported_not_raised(exported):
    _, out = exported
    path = export_path(out, "text_llama3", "train")
    path.write_bytes(path.read_bytes().replace(b"Because.", b"Bec\xffuse."))
    report = validate_export(path, "text_llama3")
    assert not report["valid"]
    assert report["errors"][0].startswith("not UTF-8")


def test_a_parquet_copy_with_an_empty_turn_is_reported_by_record(exported):
    _, out = exported
    path = export_path(out, "openai_parquet", "train")
    table = pq.read_table(path)
    messages = table.column("messages").to_pylist()
    messages[1][0]["content"] = ""
    table = table.set_column(0, "messages", pa.array(messages, type=table.schema.field(0).type))
    pq.write_table(table, path)
    report = validate_export(path, "openai_parquet")
    assert report["errors"] == ["record 2 message 0: empty or non-string content"]


# ----------------------------------------------------------------------------- native check

TRICKY = [
    [
        ("system", 'Quote " backslash \\ slash / tab \t nl \n ctl \x1b\x0b end'),
        ("user", 'looks like JSON: "},{"role":"assistant","content":"x'),
        ("assistant", "emoji 😀, U+2028 \u2028, é"),
    ],
]


@pytest.fixture
def tricky_export(tmp_path):
    frame = frame_from_conversations(CONVS + TRICKY, tools=[None, None, None, TOOLS, TOOLS])
    export_split(frame.with_columns(split=pl.lit("train")), tmp_path, "train")
    return tmp_path


def test_the_native_check_accepts_every_written_json_kind_and_counts_its_records(tricky_export):
    expected_rows = {"alpaca": 3, "text_alpaca": 3}  # TRICKY is single-turn
    for kind in KINDS:
        if kind == "openai_parquet":
            continue
        assert native_check(export_path(tricky_export, kind, "train"), kind) == (
            expected_rows.get(kind, 5)
        ), kind


def test_valid_files_never_reach_the_per_record_path(tricky_export, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("the detailed path ran on a valid file")

    monkeypatch.setattr(validate, "_fast_validate", refuse)
    monkeypatch.setattr(validate, "_python_records", refuse)
    monkeypatch.setattr(validate, "check_record", refuse)
    monkeypatch.setattr(validate, "_bad_rows", refuse)  # the Parquet copy's detailed path
    for kind in KINDS:
        assert validate_export(export_path(tricky_export, kind, "train"), kind)["valid"], kind


@pytest.mark.parametrize(
    ("kind", "old", "new", "valid"),
    [
        ("openai", '{"messages":[{"role":"user","content":"a"}', '{"id":1,"messages":[{"role"'
         ':"user","content":"a"}', False),
        # whitespace: valid JSON with the same values, but not the writer's bytes: the
        # detailed path decides (and accepts it)
        ("openai", '"content":"b"', '"content": "b"', True),
        ("text_chatml", '{"text":"', '{"text":"", "text2":"', False),
        ("sharegpt", '"from":"gpt","value":"b"', '"from":"gpt","value":"b","x":1', False),
        ("alpaca", '"input":""', '"input":"","extra":""', False),
    ],
)
def test_the_native_check_declines_records_with_other_bytes(tmp_path, kind, old, new, valid):
    frame = frame_from_conversations(CONVS)
    export_split(frame.with_columns(split=pl.lit("train")), tmp_path, "train", formats=[kind])
    path = export_path(tmp_path, kind, "train")
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    assert native_check(path, kind) is None
    assert validate_export(path, kind)["valid"] is valid


def test_a_number_where_text_belongs_is_declined_natively(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"messages":[{"role":"user","content":3}]}\n', encoding="utf-8")
    assert native_check(path, "openai") is None
    assert validate_export(path, "openai")["errors"] == [
        "record 1 message 0: empty or non-string content"
    ]
