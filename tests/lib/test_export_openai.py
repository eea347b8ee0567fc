"""OpenAI/TRL conversational JSONL, its Parquet copy and the Axolotl block."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml
from _frames import frame_from_conversations

from instruct_assets.lib.export.openai_jsonl import axolotl_yaml
from instruct_assets.lib.export.writers import export_split

WEATHER_TOOL = (
    '[{"name": "get_weather", "description": "Weather now",'
    ' "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]'
)
TOOL_CONV = [
    ("user", "Weather in Paris?"),
    ("assistant", '{"name": "get_weather", "arguments": {"city": "Paris"}}'),
    ("tool", '{"temp_c": 21}'),
    ("assistant", "It is 21 °C."),
]


def _split(conversations, tools=None, split="train"):
    return frame_from_conversations(conversations, tools=tools).with_columns(
        split=pl.lit(split), complexity_tier=pl.lit("easy")
    )


def _lines(path):
    # split on "\n" only: str.splitlines() also splits at U+2028, which JSON keeps raw.
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def test_each_example_is_one_messages_line_with_non_ascii_kept(tmp_path):
    frame = _split(
        [[("system", "Sois bref."), ("user", "Qu'est-ce que «λ» ?"), ("assistant", "中文 ✓")]]
    )
    result = export_split(frame, tmp_path, "train", formats=["openai"])
    path = tmp_path / "openai" / "train.jsonl"
    assert result["formats"]["openai"]["path"] == str(path)
    assert (
        path.read_bytes()
        == (
            '{"messages":[{"role":"system","content":"Sois bref."},'
            '{"role":"user","content":"Qu\'est-ce que «λ» ?"},'
            '{"role":"assistant","content":"中文 ✓"}]}\n'
        ).encode()
    )


def test_lines_equal_pythons_json_dumps_for_awkward_strings(tmp_path):
    awkward = ['tab\tquote"back\\slash', "ctrl\x00\x01\x1f del\x7f", "sep\u2028\u2029 😀", "</s>"]
    frame = _split([[("user", text), ("assistant", "ok")] for text in awkward])
    export_split(frame, tmp_path, "train", formats=["openai"])
    by_user = {
        json.loads(line)["messages"][0]["content"]: line
        for line in _lines(tmp_path / "openai" / "train.jsonl")
    }
    for text in awkward:
        expected = {
            "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]
        }
        assert by_user[text] == json.dumps(expected, ensure_ascii=False, separators=(",", ":"))


def test_tools_are_a_parsed_list_only_where_the_example_has_tools(tmp_path):
    plain = [("user", "hi"), ("assistant", "hello")]
    single_tool = '{"name": "f", "parameters": {}}'
    frame = _split(
        [TOOL_CONV, plain, plain, plain, plain], tools=[WEATHER_TOOL, None, "[]", "", single_tool]
    )
    result = export_split(frame, tmp_path, "train", formats=["openai"])
    records = [json.loads(line) for line in _lines(tmp_path / "openai" / "train.jsonl")]
    with_tools = [r for r in records if "tools" in r]
    assert len(records) == 5
    assert len(with_tools) == 2  # "[]", "" and null mean no tools
    assert json.loads(WEATHER_TOOL) in [r["tools"] for r in with_tools]
    assert [{"name": "f", "parameters": {}}] in [
        r["tools"] for r in with_tools
    ]  # lone object -> list
    tool_record = next(r for r in with_tools if r["tools"] == json.loads(WEATHER_TOOL))
    assert [m["role"] for m in tool_record["messages"]] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert result["invalid_tools"] == []


def test_unparseable_tools_are_reported_by_key_and_the_row_kept_without_tools(tmp_path):
    frame = _split(
        [[("user", q), ("assistant", "a")] for q in ("py", "none", "strings", "number")],
        tools=["[{'name': 'py'}]", None, '["not an object"]', "42"],
    )
    result = export_split(frame, tmp_path, "train", formats=["openai"])
    bad = frame.filter(pl.col("tools").is_not_null()).sort("example_id")
    assert result["invalid_tools"] == [
        {"source": "test", "example_id": i} for i in bad["example_id"].to_list()
    ]
    records = [json.loads(line) for line in _lines(tmp_path / "openai" / "train.jsonl")]
    assert len(records) == 4
    assert all("tools" not in r for r in records)


@pytest.fixture
def offline_hf(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    return datasets


def test_trl_style_loading_sees_messages_as_role_content_dicts_in_jsonl_and_parquet(
    offline_hf, tmp_path
):
    datasets = offline_hf
    plain = [("system", "S"), ("user", "Q é"), ("assistant", "A")]
    frame = _split([TOOL_CONV, plain], tools=[WEATHER_TOOL, None])
    export_split(frame, tmp_path / "out", "train", formats=["openai", "openai_parquet"])
    cache = str(tmp_path / "cache")
    loaded = {
        "json": datasets.load_dataset(
            "json",
            data_files=str(tmp_path / "out" / "openai" / "train.jsonl"),
            split="train",
            cache_dir=cache,
        ),
        "parquet": datasets.load_dataset(
            "parquet",
            data_files=str(tmp_path / "out" / "openai" / "train.parquet"),
            split="train",
            cache_dir=cache,
        ),
    }
    for name, ds in loaded.items():
        assert ds.num_rows == 2, name
        assert set(ds.column_names) == {"messages", "tools"}, name
        rows = ds.to_list()
        for row in rows:
            assert all(set(m) == {"role", "content"} for m in row["messages"]), name
        by_first = {row["messages"][0]["content"]: row for row in rows}
        assert by_first["S"]["messages"] == [dict(role=r, content=c) for r, c in plain]
        assert by_first["S"]["tools"] is None
        assert by_first["Weather in Paris?"]["tools"] == json.loads(WEATHER_TOOL), name
    assert loaded["json"].to_list() == loaded["parquet"].to_list()


def test_the_parquet_copy_holds_the_same_rows_in_the_same_order(tmp_path):
    frame = _split([[("user", f"q{i}"), ("assistant", f"a{i}")] for i in range(30)])
    export_split(frame, tmp_path, "train", formats=["openai", "openai_parquet"])
    parquet = pl.read_parquet(tmp_path / "openai" / "train.parquet")
    jsonl = [json.loads(line)["messages"] for line in _lines(tmp_path / "openai" / "train.jsonl")]
    assert parquet["messages"].to_list() == jsonl


def test_axolotl_block_reads_the_jsonl_with_the_chat_template_type(tmp_path):
    result = export_split(
        _split([[("user", "a"), ("assistant", "b")]]), tmp_path, "train", formats=["openai"]
    )
    text = (tmp_path / "openai" / "axolotl.train.yaml").read_text()
    assert result["formats"]["openai"]["axolotl_yaml"] == str(
        tmp_path / "openai" / "axolotl.train.yaml"
    )
    assert text == axolotl_yaml("openai/train.jsonl", "train")
    assert yaml.safe_load(text) == {
        "datasets": [
            {
                "path": "openai/train.jsonl",
                "ds_type": "json",
                "data_files": ["openai/train.jsonl"],
                "split": "train",
                "type": "chat_template",
                "field_messages": "messages",
                "message_property_mappings": {"role": "role", "content": "content"},
            }
        ]
    }


def test_the_eval_split_goes_under_test_datasets_not_datasets():
    parsed = yaml.safe_load(axolotl_yaml("openai/eval.jsonl", "eval"))
    assert list(parsed) == ["test_datasets"]
    assert parsed["test_datasets"][0]["path"] == "openai/eval.jsonl"
