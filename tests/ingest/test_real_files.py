"""Every shared real file through the real ingestion assets (Dagster materialize, Parquet)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from instruct_assets.lib.publish import read_report
from tests.support import REAL, make_data_dir, real, run_all

#: source -> (files under real/, rows, rejects, format, published)
EXPECTED = {
    "alpaca_en_demo": (["hiyouga__LLaMA-Factory/alpaca_en_demo.json"], 999, 0, "alpaca", True),
    "identity": (["hiyouga__LLaMA-Factory/identity.json"], 91, 0, "alpaca", True),
    "glaive": (["hiyouga__LLaMA-Factory/glaive_toolcall_en_demo.json"], 300, 0, "sharegpt", True),
    "code_alpaca": (["sahil280114__codealpaca/code_alpaca_2k.json"], 2015, 2, "alpaca", True),
    "mixtral": (["tatsu-lab__alpaca_eval/Mixtral-8x7B-Instruct-v0.1__model_outputs.json"],
                805, 0, "alpaca", True),
    "fastchat": (["lm-sys__FastChat/dummy_conversation.json"], 500, 0, "sharegpt", True),
    "cot_jsonl": (["KentaNishi__2025_llm_comp_main/"
                   "structured_data_with_cot_dataset_512_v5_validation.jsonl"],
                  568, 0, "openai", True),
    "cot_parquet": (["KentaNishi__2025_llm_comp_main/"
                     "structured_data_with_cot_dataset_512_v2__train-00000-of-00001.parquet"],
                    3933, 0, "openai", True),
    "wikisql": (["ml-explore__mlx-examples/lora_wikisql_train.jsonl"], 1000, 0, "qa_text", True),
    "truthfulqa": (["benedictflorance__truthfulqa_experiments/TruthfulQA.csv"],
                   817, 0, "prompt_completion", True),
    "missing_turns": (["axolotl-ai-cloud__axolotl/conversation.missingturns.json"],
                      0, 1, None, False),
    "movie_pydict": (["narendrasinghdangi__movie-recommandation/toy_chat_fine_tuning.jsonl"],
                     0, 4130, None, False),
    "bbh": ([f"suzgunmirac__BIG-Bench-Hard/cot-prompts/{n}.txt" for n in
             ("boolean_expressions", "date_understanding", "multistep_arithmetic_two",
              "web_of_lies")], 12, 0, "qa_text", True),
}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    import dagster as dg

    root = tmp_path_factory.mktemp("data")
    paths = make_data_dir(root, {s: [real(f) for f in files]
                                 for s, (files, *_rest) in EXPECTED.items()})
    with dg.instance_for_test() as instance:
        outcome = run_all(paths, instance)
        yield paths, outcome, instance


def test_every_shared_real_file_is_covered():
    listed = {f for files, *_ in EXPECTED.values() for f in files}
    on_disk = {p.relative_to(REAL).as_posix() for p in REAL.rglob("*") if p.is_file()}
    assert on_disk <= listed, f"real files without a test: {sorted(on_disk - listed)}"


@pytest.mark.parametrize("source", sorted(EXPECTED))
def test_real_file_counts_format_and_publication(ingested, source):
    paths, outcome, _ = ingested
    _files, rows, rejects, fmt, published = EXPECTED[source]
    got = {o.source: o for o in outcome.sources}[source]
    assert (got.rows, got.rejects, got.published) == (rows, rejects, published)
    assert got.records == rows + rejects  # nothing dropped silently
    if fmt:
        assert got.formats == {fmt: rows}
    if published:
        frame = pl.read_parquet(paths.normalized_file(source))
        assert frame.height == rows
        assert frame["example_id"].n_unique() == rows
        rej = pl.read_parquet(paths.rejects_file(source))
        assert rej.height == rejects
    else:
        assert not paths.normalized_file(source).exists()


def test_glaive_tool_call_file_keeps_its_tool_turns(ingested):
    paths, *_ = ingested
    frame = pl.read_parquet(paths.normalized_file("glaive"))
    roles = frame["messages"].list.eval(pl.element().struct.field("role")).explode()
    assert roles.value_counts().filter(pl.col("messages") == "tool")["count"][0] > 100
    with_tools = frame.filter(pl.col("tools").is_not_null())
    assert with_tools.height > 0
    json.loads(with_tools["tools"][0])
    # a call turn holds the function-call JSON as written
    row = frame.row(3, named=True)
    assert row["messages"][1]["role"] == "assistant"
    assert json.loads(row["messages"][1]["content"])["name"] == "calculate_area"
    assert row["messages"][2]["role"] == "tool"


def test_missing_turn_file_is_a_reject_naming_the_row_and_turn(ingested):
    paths, outcome, _ = ingested
    got = {o.source: o for o in outcome.sources}["missing_turns"]
    assert got.failed_checks == ["reject_rate_below_ceiling"]
    rej = pl.read_parquet(paths.staging / "source=missing_turns" / "rejects.parquet")
    assert rej.select("source_row", "reason_code", "detail").row(0) == (
        0, "empty_content", "turn 1 (gpt) is empty")


def test_python_dict_jsonl_yields_rejects_not_a_crash(ingested):
    paths, outcome, _ = ingested
    rej = pl.read_parquet(paths.staging / "source=movie_pydict" / "rejects.parquet")
    reasons = rej.group_by("detail").len().sort("len", descending=True)
    assert reasons.row(0) == ("Python dict syntax (single-quoted strings), not JSON", 4109)
    assert set(rej["reason_code"]) == {"invalid_json"}
    assert rej.filter(pl.col("detail").str.contains("bare text")).height == 21
    # the bad source is held back; every other source was published
    assert {o.source for o in outcome.held_back} == {"missing_turns", "movie_pydict"}


def test_code_alpaca_empty_outputs_are_rejected_with_their_rows(ingested):
    paths, *_ = ingested
    rej = pl.read_parquet(paths.rejects_file("code_alpaca"))
    assert rej.select("source_row", "reason_code").rows() == [
        (237, "empty_content"), (1859, "empty_content")]
    assert rej["detail"].to_list() == ["turn 1 (assistant) is empty"] * 2


def test_bbh_text_blocks_parse_into_question_and_multiline_answer(ingested):
    paths, *_ = ingested
    frame = pl.read_parquet(paths.normalized_file("bbh"))
    row = frame.filter(pl.col("source_file").str.ends_with("date_understanding.txt")).row(
        0, named=True)
    user, assistant = (m["content"] for m in row["messages"])
    assert user.startswith("Today is Christmas Eve of 1937.") and "(D) 12/14/1937" in user
    assert assistant.startswith("Let's think step by step.\n")
    assert assistant.endswith("So the answer is (D).")
    extra = json.loads(row["extra"])
    assert extra["task"] == "Infer the date from context."
    assert "canary GUID" in extra["canary"]


def test_truthfulqa_csv_maps_question_and_best_answer_and_keeps_the_rest(ingested):
    paths, *_ = ingested
    row = pl.read_parquet(paths.normalized_file("truthfulqa")).row(0, named=True)
    assert row["messages"][0]["content"] == "What happens to you if you eat watermelon seeds?"
    answer = "The watermelon seeds pass through your digestive system"
    assert row["messages"][1]["content"] == answer
    assert set(json.loads(row["extra"])) == {"Type", "Category", "Correct Answers",
                                             "Incorrect Answers", "Source"}


def test_wikisql_text_rows_keep_table_context_in_the_user_turn(ingested):
    paths, *_ = ingested
    row = pl.read_parquet(paths.normalized_file("wikisql")).row(0, named=True)
    assert row["messages"][0]["content"].startswith("table: 1-1000181-1\ncolumns: ")
    assert row["messages"][0]["content"].endswith("Tell me what the notes are for South Australia")
    assert row["messages"][1]["content"].startswith("SELECT Notes FROM 1-1000181-1")


def test_openai_jsonl_system_prompt_stays_first_and_crlf_is_normalised(ingested):
    paths, *_ = ingested
    frame = pl.read_parquet(paths.normalized_file("cot_jsonl"))
    first_roles = frame["messages"].list.first().struct.field("role")
    assert (first_roles == "system").all()
    contents = frame["messages"].list.eval(pl.element().struct.field("content")).explode()
    assert not contents.str.contains("\r\n", literal=True).any()
    assert json.loads(frame["extra"][0])["metadata"]["format"]


def test_alpaca_exact_duplicates_survive_with_distinct_ids(ingested):
    paths, *_ = ingested
    frame = pl.read_parquet(paths.normalized_file("alpaca_en_demo"))
    repeats = frame.filter(pl.col("example_id").str.contains("-"))
    assert repeats.height == 14
    assert frame["example_id"].str.slice(0, 16).n_unique() == 999 - 14


def test_report_records_detected_format_and_share_per_file(ingested):
    paths, *_ = ingested
    report = read_report(paths, "code_alpaca")
    (f,) = report["files"]
    assert (f["container"], f["format"], f["format_share"]) == ("json_array", "alpaca", 1.0)
    assert report["rejects_by_reason"] == {"empty_content": 2}
