"""Format mapping: each instruction format and its real-world variants, small written cases."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from instruct_assets.lib.normalize import normalize_source
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.sources import SourceSpec


def ingest(tmp_path: Path, records: list | str, name: str = "f.jsonl", **spec):
    folder = tmp_path / "raw" / "s"
    folder.mkdir(parents=True, exist_ok=True)
    body = records if isinstance(records, str) else "\n".join(
        json.dumps(r, ensure_ascii=False) for r in records) + "\n"
    (folder / name).write_text(body, encoding="utf-8")
    return normalize_source(DataPaths.at(tmp_path), SourceSpec(name="s", **spec))


def msgs(result, i=0):
    return [(m["role"], m["content"]) for m in result.examples["messages"][i]]


def test_alpaca_input_joins_the_instruction_after_a_blank_line(tmp_path):
    r = ingest(tmp_path, [{"instruction": "Summarize.", "input": "Long text.", "output": "Short."},
                          {"instruction": "Hi", "input": "  ", "output": "Hello"}])
    assert msgs(r, 0) == [("user", "Summarize.\n\nLong text."), ("assistant", "Short.")]
    assert msgs(r, 1) == [("user", "Hi"), ("assistant", "Hello")]


def test_alpaca_variants_response_context_and_both_present(tmp_path):
    r = ingest(tmp_path, [
        {"instruction": "Q1", "context": "ctx", "response": "R1", "category": "qa"},
        {"instruction": "Q2", "output": "O2", "response": "R2"},
    ])
    assert msgs(r, 0) == [("user", "Q1\n\nctx"), ("assistant", "R1")]
    assert json.loads(r.examples["extra"][0]) == {"category": "qa"}
    assert msgs(r, 1) == [("user", "Q2"), ("assistant", "O2")]
    assert json.loads(r.examples["extra"][1]) == {"response": "R2"}


def test_alpaca_wrong_types_and_missing_fields_are_precise_rejects(tmp_path):
    r = ingest(tmp_path, [
        {"instruction": 5, "output": "x"},
        {"instruction": "ok"},
        {"instruction": "ok", "output": None},
        {"instruction": ["a"], "output": "x"},
        {"instruction": "fine", "output": "yes"},
    ])
    assert r.examples.height == 1
    got = r.rejects.select("source_row", "reason_code", "detail").rows()
    assert got[0] == (0, "wrong_type", "field 'instruction' is ubigint, expected text")
    assert got[1][1] == "prompt_completion" or got[1][1] in ("missing_field", "unknown_format")
    assert got[2] == (2, "missing_field", "field 'output' is missing or null")
    assert got[3] == (3, "wrong_type", "field 'instruction' is array, expected text")


def test_openai_content_parts_keep_text_and_count_the_rest(tmp_path):
    r = ingest(tmp_path, [{"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                     {"type": "image_url", "image_url": {"url": "x"}},
                                     {"type": "text", "text": "what is it?"}]},
        {"role": "assistant", "content": "A cat."}]}])
    assert msgs(r) == [("user", "Look:\nwhat is it?"), ("assistant", "A cat.")]
    assert json.loads(r.examples["extra"][0]) == {"non_text_parts": 1}


def test_openai_tool_calls_become_call_turns_then_tool_turns(tmp_path):
    call = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    r = ingest(tmp_path, [{"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": call},
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."}],
        "tools": [{"type": "function", "function": {"name": "f"}}]}])
    roles = [m[0] for m in msgs(r)]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert json.loads(msgs(r)[1][1])[0]["function"]["name"] == "f"
    assert json.loads(r.examples["tools"][0])[0]["function"]["name"] == "f"


def test_sharegpt_speakers_system_and_hybrid_role_content(tmp_path):
    r = ingest(tmp_path, [
        {"conversations": [{"from": "system", "value": "Be brief."},
                           {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hey"}]},
        {"conversations": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
         "system": "Sys"},
    ])
    assert msgs(r, 0) == [("system", "Be brief."), ("user", "Hi"), ("assistant", "Hey")]
    assert msgs(r, 1) == [("system", "Sys"), ("user", "Q"), ("assistant", "A")]
    assert set(r.examples["source_format"]) == {"sharegpt"}


def test_turn_contract_violations_name_the_turn(tmp_path):
    r = ingest(tmp_path, [
        {"conversations": [{"from": "gpt", "value": "I start"}, {"from": "human", "value": "?"}]},
        {"conversations": [{"from": "human", "value": "a"}, {"from": "narrator", "value": "b"}]},
        {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"},
                           {"from": "gpt", "value": "c"}]},
        {"conversations": [{"from": "human", "value": "a"}]},
        {"conversations": []},
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": 3}]},
    ])
    got = r.rejects.select("source_row", "reason_code", "detail").rows()
    assert got == [
        (0, "bad_turn_order", "turn 0 (gpt) opens the conversation; the first non-system "
                              "turn must be the user's"),
        (1, "bad_role", "turn 1: speaker 'narrator' is not a known role (map it under roles: "
                        "in sources.yaml)"),
        (2, "bad_turn_order", "turn 1 (human): a user turn cannot follow a user turn"),
        (3, "bad_turn_order", "conversation ends with turn 0 (human); the last turn must be "
                              "the assistant's"),
        (4, "empty_content", "the conversation has no turns"),
        (5, "wrong_type", "turn 1 (gpt) content is ubigint, expected text"),
    ]


def test_role_tags_and_roles_mapping_from_sources_config(tmp_path):
    r = ingest(tmp_path, [{"dialog": [{"speaker": "client", "text": "Hi"},
                                      {"speaker": "agent", "text": "Hello"}]}],
               format="sharegpt", columns={"messages": "dialog"},
               tags={"role_tag": "speaker", "content_tag": "text", "user_tag": "client"},
               roles={"agent": "assistant"})
    assert msgs(r) == [("user", "Hi"), ("assistant", "Hello")]


def test_merged_prompt_template_and_source_system_prompt(tmp_path):
    r = ingest(tmp_path, [{"instruction": "Translate", "input": "Hallo", "output": "Hello"}],
               merged_prompt="### Instruction:\n{instruction}\n\n### Input:\n{input}",
               system_prompt="You translate German.")
    assert msgs(r) == [("system", "You translate German."),
                       ("user", "### Instruction:\nTranslate\n\n### Input:\nHallo"),
                       ("assistant", "Hello")]


def test_prompt_completion_and_question_answer_pairs(tmp_path):
    r = ingest(tmp_path, [{"prompt": "2+2?", "completion": "4"}])
    assert (msgs(r), r.examples["source_format"][0]) == (
        [("user", "2+2?"), ("assistant", "4")], "prompt_completion")
    r = ingest(tmp_path / "b", [{"question": "Capital of France?", "answer": "Paris"}])
    assert msgs(r) == [("user", "Capital of France?"), ("assistant", "Paris")]


def test_human_assistant_markers_in_text_rows(tmp_path):
    r = ingest(tmp_path, [{"text": "### Human: Hi there\n### Assistant: Hello!\n"
                                   "### Human: Bye\n### Assistant: Goodbye."}])
    assert msgs(r) == [("user", "Hi there"), ("assistant", "Hello!"), ("user", "Bye"),
                       ("assistant", "Goodbye.")]


def test_text_without_markers_and_unknown_keys_are_unknown_format(tmp_path):
    r = ingest(tmp_path, [{"text": "just prose"}, {"foo": 1, "bar": 2}])
    assert r.rejects["reason_code"].to_list() == ["unknown_format", "unknown_format"]
    assert "set format/columns" in r.rejects["detail"][1]


def test_mixed_formats_in_one_file_are_parsed_and_counted(tmp_path):
    r = ingest(tmp_path, [{"instruction": "a", "output": "b"},
                          {"messages": [{"role": "user", "content": "c"},
                                        {"role": "assistant", "content": "d"}]}])
    assert r.formats() == {"alpaca": 1, "openai": 1}
    assert r.files[0].format_share == 0.5


def test_fast_and_careful_paths_give_identical_examples(tmp_path):
    """The native-table fast path (clean JSONL) equals the general DuckDB path."""
    rows = [{"instruction": f"Task {i}\r\nnow", "input": "" if i % 2 else f"in {i}",
             "output": f"out {i}"} for i in range(50)]
    rows[7]["output"] = "   "  # not obviously valid: goes to the general path
    fast = ingest(tmp_path / "fast", rows)
    careful = ingest(tmp_path / "slow", json.dumps(rows), name="f.json")
    cols = ["example_id", "source_row", "source_format", "messages", "tools", "extra"]
    assert fast.examples.select(cols).equals(careful.examples.select(cols))
    assert fast.rejects.select("source_row", "reason_code", "detail").equals(
        careful.rejects.select("source_row", "reason_code", "detail"))
    assert "\r" not in fast.examples["messages"][0][0]["content"]


def test_ids_are_content_hashes_and_repeat_ids_are_numbered(tmp_path):
    same = {"instruction": "x", "output": "y"}
    r = ingest(tmp_path, [same, {"instruction": "z", "output": "w"}, same])
    ids = r.examples["example_id"].to_list()
    assert ids[2] == ids[0] + "-1" and len(ids[0]) == 16
    again = ingest(tmp_path / "again", [same])
    assert again.examples["example_id"][0] == ids[0]
    assert pl.Series(ids).n_unique() == 3
