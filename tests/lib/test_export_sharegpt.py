"""ShareGPT JSON for LLaMA-Factory, with function_call/observation turns and dataset_info."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from _frames import frame_from_conversations

from instruct_assets.lib.export.sharegpt import SHAREGPT_TAGS
from instruct_assets.lib.export.writers import export_split

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
GLAIVE = REAL / "hiyouga__LLaMA-Factory" / "glaive_toolcall_en_demo.json"
CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
TOOLS = '[{"name": "get_weather", "parameters": {"type": "object"}}]'


def _export(tmp_path, conversations, tools=None, split="train"):
    frame = frame_from_conversations(conversations, tools=tools).with_columns(split=pl.lit(split))
    result = export_split(frame, tmp_path, split, formats=["sharegpt"])
    records = json.loads((tmp_path / "sharegpt" / f"{split}.json").read_text(encoding="utf-8"))
    return result, records


def _speakers(record):
    return [t["from"] for t in record["conversations"]]


def test_system_moves_to_its_key_and_roles_become_human_and_gpt(tmp_path):
    _, records = _export(
        tmp_path, [[("system", "Be terse."), ("user", "Hi ü"), ("assistant", "Yo")]]
    )
    assert (tmp_path / "sharegpt" / "train.json").read_bytes() == (
        '[\n{"conversations":[{"from":"human","value":"Hi ü"},{"from":"gpt","value":"Yo"}],'
        '"system":"Be terse."}\n]\n'
    ).encode()
    assert records == [
        {
            "conversations": [{"from": "human", "value": "Hi ü"}, {"from": "gpt", "value": "Yo"}],
            "system": "Be terse.",
        }
    ]


def test_a_json_tool_call_before_a_tool_turn_becomes_function_call_then_observation(tmp_path):
    conv = [("user", "Weather?"), ("assistant", CALL), ("tool", '{"t": 21}'), ("assistant", "21.")]
    _, records = _export(tmp_path, [conv], tools=[TOOLS])
    assert _speakers(records[0]) == ["human", "function_call", "observation", "gpt"]
    assert records[0]["conversations"][1]["value"] == CALL  # the call JSON as written
    assert json.loads(records[0]["tools"]) == json.loads(TOOLS)  # tools stay a JSON string
    assert "system" not in records[0]


def test_assistant_turns_that_are_not_calls_before_a_tool_stay_gpt(tmp_path):
    before_tool = [
        "I will look it up.",  # prose
        '{"name": "get_weather"}',  # no arguments
        '{"name": "f", "arguments": {}} and then',  # trailing text: not one JSON object
        '["get_weather", {"city": "Paris"}]',  # a list, not an object
    ]
    convs = [
        [("user", "q"), ("assistant", c), ("tool", "r"), ("assistant", "a")] for c in before_tool
    ]
    _, records = _export(tmp_path, convs)
    assert [_speakers(r) for r in records] == [["human", "gpt", "observation", "gpt"]] * 4


def test_a_call_shaped_final_answer_not_followed_by_a_tool_turn_stays_gpt(tmp_path):
    _, records = _export(tmp_path, [[("user", "Give me JSON"), ("assistant", CALL)]])
    assert _speakers(records[0]) == ["human", "gpt"]


def test_rows_without_tools_or_system_carry_neither_key(tmp_path):
    _, records = _export(tmp_path, [[("user", "a"), ("assistant", "b")]], tools=["[]"])
    assert records == [
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}
    ]


def test_dataset_info_keeps_an_entry_per_split_with_the_llamafactory_tags(tmp_path):
    convs = [[("system", "s"), ("user", "a"), ("assistant", "b")]]
    _export(tmp_path, convs, tools=[TOOLS], split="train")
    result, _ = _export(tmp_path, [[("user", "a"), ("assistant", "b")]], split="eval")
    info = json.loads((tmp_path / "sharegpt" / "dataset_info.json").read_text())
    assert result["formats"]["sharegpt"]["dataset_name"] == "instruct_assets_eval"
    assert sorted(info) == ["instruct_assets_eval", "instruct_assets_train"]
    assert info["instruct_assets_train"] == {
        "file_name": "train.json",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "tools": "tools"},
        "tags": {
            "role_tag": "from",
            "content_tag": "value",
            "user_tag": "human",
            "assistant_tag": "gpt",
            "observation_tag": "observation",
            "function_tag": "function_call",
            "system_tag": "system",
        },
    }
    # eval has no system and no tools: declaring those columns would break LLaMA-Factory.
    assert info["instruct_assets_eval"]["columns"] == {"messages": "conversations"}
    assert info["instruct_assets_eval"]["tags"] == SHAREGPT_TAGS


def test_the_sharegpt_file_loads_with_datasets_and_has_the_declared_columns(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    conv = [("user", "Weather?"), ("assistant", CALL), ("tool", "21"), ("assistant", "21.")]
    _export(
        tmp_path, [conv, [("system", "s"), ("user", "a"), ("assistant", "b")]], tools=[TOOLS, None]
    )
    ds = datasets.load_dataset(
        "json",
        data_files=str(tmp_path / "sharegpt" / "train.json"),
        split="train",
        cache_dir=str(tmp_path / "cache"),
    )
    entry = json.loads((tmp_path / "sharegpt" / "dataset_info.json").read_text())[
        "instruct_assets_train"
    ]
    assert set(entry["columns"].values()) <= set(ds.column_names)
    assert ds.num_rows == 2
    turns = [t for row in ds["conversations"] for t in row]
    assert {t["from"] for t in turns} == {"human", "gpt", "function_call", "observation"}


def test_real_glaive_toolcall_file_comes_back_turn_for_turn(tmp_path):
    records = json.loads(GLAIVE.read_text(encoding="utf-8"))
    role = {
        "human": "user",
        "gpt": "assistant",
        "function_call": "assistant",
        "observation": "tool",
    }
    convs = [[(role[t["from"]], t["value"]) for t in r["conversations"]] for r in records]
    frame = frame_from_conversations(convs, source="glaive", tools=[r["tools"] for r in records])
    frame = frame.with_columns(split=pl.lit("train"))
    result = export_split(frame, tmp_path, "train", formats=["sharegpt"])
    exported = json.loads((tmp_path / "sharegpt" / "train.json").read_text(encoding="utf-8"))
    assert result["formats"]["sharegpt"]["rows"] == len(records) == len(exported) == 300

    # Export order is by example_id; map back through the id of each source row.
    order = frame.with_row_index("i").sort("source", "example_id")["i"].to_list()
    for position, i in enumerate(order):
        original, out = records[i], exported[position]
        assert out["conversations"] == original["conversations"]
        if original["tools"] in ("", "[]"):
            assert "tools" not in out
        else:
            assert json.loads(out["tools"]) == json.loads(original["tools"])
    calls = sum(t["from"] == "function_call" for r in exported for t in r["conversations"])
    assert calls == 211


def test_concurrent_split_exports_do_not_lose_each_others_dataset_info_entry(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from instruct_assets.lib.export.sharegpt import dataset_info_entry, update_dataset_info

    path = tmp_path / "sharegpt" / "dataset_info.json"
    names = [f"mix_{i}" for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(lambda n: update_dataset_info(path, n, dataset_info_entry(f"{n}.json")), names)
        )
    assert sorted(json.loads(path.read_text())) == sorted(names)
    assert [p.name for p in path.parent.iterdir()] == ["dataset_info.json"]  # no lock file left
