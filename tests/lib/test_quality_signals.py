"""score_examples end to end: columns, flags, score, order, duplicates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl

from instruct_assets.lib.quality.config import FLAG_ORDER, QualityThresholds
from instruct_assets.lib.quality.signals import (
    DUP_COLUMNS,
    FLAG_DESCRIPTIONS,
    QUALITY_COLUMNS,
    apply_duplicate_penalty,
    score_examples,
)
from tests.lib._frames import alpaca_conversations, frame_from_conversations

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
CFG = QualityThresholds()

CONVERSATIONS = [
    [("user", "What is the capital of France?"), ("assistant", "Paris is the capital of France.")],
    [("user", "Write a poem about cats."), ("assistant", "")],
    [("user", "Say hi."), ("assistant", "Hello! I am {{name}}.<|endoftext|>")],
    [("user", "Make this better"), ("assistant", "As an AI language model, I cannot do that.")],
]


def test_every_documented_column_is_present_in_order_and_sorted_by_key():
    out = score_examples(frame_from_conversations(CONVERSATIONS), CFG)
    assert out.columns == list(QUALITY_COLUMNS)
    assert out.height == len(CONVERSATIONS)
    assert out.sort("source", "example_id").equals(out)
    assert set(FLAG_ORDER) <= set(out.columns)
    assert set(FLAG_ORDER) <= set(FLAG_DESCRIPTIONS)


def test_users_see_which_rows_are_bad_and_why():
    frame = frame_from_conversations(CONVERSATIONS)
    out = score_examples(frame, CFG).join(frame.select("example_id", "source_row"), on="example_id")
    by_row = {r["source_row"]: r for r in out.iter_rows(named=True)}
    assert by_row[0]["quality_flags"] == [] and by_row[0]["quality_score"] == 1.0
    assert by_row[1]["quality_flags"] == ["no_trainable_content", "empty_or_trivial_response"]
    assert by_row[1]["quality_score"] == 0.0 and by_row[1]["has_severe_flag"]
    assert by_row[2]["quality_flags"] == ["special_token_leak", "template_placeholder"]
    assert by_row[2]["special_token"] == "<|endoftext|>" and by_row[2]["placeholder"] == "{{name}}"
    assert by_row[3]["quality_flags"] == ["refusal_boilerplate", "vague_instruction"]
    assert abs(by_row[3]["quality_score"] - (1 - 0.4 - 0.2)) < 1e-9
    assert not by_row[3]["has_severe_flag"]


def test_flag_lists_follow_the_fixed_order_and_match_the_boolean_columns():
    out = score_examples(frame_from_conversations(CONVERSATIONS), CFG)
    for row in out.iter_rows(named=True):
        assert row["quality_flags"] == [f for f in FLAG_ORDER if row[f]]


def test_weights_come_from_the_config():
    cfg = replace(
        CFG, weights={**CFG.weights, "vague_instruction": 0.0, "refusal_boilerplate": 0.1}
    )
    out = score_examples(frame_from_conversations(CONVERSATIONS[3:]), cfg)
    assert abs(out["quality_score"].item() - 0.9) < 1e-9


def test_scoring_is_deterministic_and_independent_of_input_order():
    frame = frame_from_conversations(CONVERSATIONS * 5)
    a = score_examples(frame, CFG)
    b = score_examples(frame.reverse(), CFG)
    assert a.equals(b)


def test_duplicates_penalise_every_copy_but_the_representative():
    frame = frame_from_conversations(CONVERSATIONS)
    scores = score_examples(frame, CFG)
    ids = scores["example_id"].to_list()
    dups = pl.DataFrame(
        {
            "source": ["test"] * 3,
            "example_id": [ids[0], ids[1], ids[2]],
            "dup_cluster_id": ["c1", "c1", "c2"],
            "is_exact_duplicate": [True, True, False],
            "is_near_duplicate": [False, False, True],
            "is_dup_representative": [True, False, False],
        }
    )
    out = apply_duplicate_penalty(scores, dups, CFG)
    rows = {r["example_id"]: r for r in out.iter_rows(named=True)}
    assert rows[ids[0]]["quality_flags"] == scores.row(0, named=True)["quality_flags"]
    assert rows[ids[1]]["quality_flags"][-1] == "exact_duplicate"
    assert rows[ids[2]]["quality_flags"][-1] == "near_duplicate"
    assert rows[ids[3]]["is_dup_representative"] and rows[ids[3]]["dup_cluster_id"] is None
    assert set(DUP_COLUMNS) <= set(out.columns)
    # idempotent
    assert apply_duplicate_penalty(out, dups, CFG).equals(out)


def test_alpaca_demo_flag_rates_are_sane():
    frame = frame_from_conversations(
        alpaca_conversations(str(REAL / "hiyouga__LLaMA-Factory" / "alpaca_en_demo.json")),
        source="alpaca_en_demo",
    )
    out = score_examples(frame, CFG)
    assert out.height == 999
    assert out["vague_instruction"].mean() < 0.05
    assert out["special_token_leak"].sum() == 0
    assert out["no_trainable_content"].sum() == 0
    assert out["too_long_for_context"].sum() == 0
    assert out["quality_score"].is_between(0, 1).all()
    # most rows are clean
    assert (out["quality_flags"].list.len() == 0).mean() > 0.9


def test_identity_placeholders_make_the_rows_severe():
    frame = frame_from_conversations(
        alpaca_conversations(str(REAL / "hiyouga__LLaMA-Factory" / "identity.json")),
        source="identity",
    )
    out = score_examples(frame, CFG)
    assert out["template_placeholder"].sum() == 85
    assert out.filter(pl.col("template_placeholder"))["has_severe_flag"].all()


def test_key_order_and_sort_by_key_match_a_string_sort():
    from instruct_assets.lib.keys import key_order
    from instruct_assets.lib.quality.signals import sort_by_key

    ids = ["b", "a", "ab", "a\0", "0003d4211ad9bce8-1", "0003d4211ad9bce8", "é", "", "z" * 17]
    frame = pl.DataFrame(
        {"source": ["s2", "s1"] * 9, "example_id": [f"{i}{j}" for i in ids for j in ("", "x")]}
    ).with_row_index("i")
    expected = frame.sort("source", "example_id")
    assert frame[key_order(frame)].equals(expected)
    assert sort_by_key(frame).equals(expected)
    one = frame.with_columns(pl.lit("s").alias("source"))
    assert one[key_order(one)].equals(one.sort("source", "example_id"))
    # rows with duplicate or null keys take the plain sort
    dup = pl.concat([frame, frame.head(2)])
    assert sort_by_key(dup)["example_id"].equals(dup.sort("source", "example_id")["example_id"])


def test_align_by_key_is_a_left_join_on_the_key():
    from instruct_assets.lib.quality.signals import align_by_key

    left = pl.DataFrame({"source": ["a", "a", "b"], "example_id": ["1", "2", "1"]})
    right = pl.DataFrame(
        {"source": ["b", "a", "a"], "example_id": ["1", "2", "1"], "v": [3, 2, 1]}
    )
    assert align_by_key(left, right)["v"].to_list() == [1, 2, 3]
    partial = right.head(2)
    assert align_by_key(left, partial)["v"].to_list() == [None, 2, 3]
