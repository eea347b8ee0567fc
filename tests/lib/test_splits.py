"""Train/eval splits: no leakage through clusters or prompts, reproducible, tier-stratified."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import polars as pl
import pytest

from instruct_assets.lib.splits import (
    SplitConfig,
    assign_splits,
    check_split_integrity,
    prompt_key_expr,
    split_report,
)
from tests.lib._frames import frame_from_conversations

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
STRUCTURED = (
    REAL
    / "KentaNishi__2025_llm_comp_main"
    / "structured_data_with_cot_dataset_512_v2__train-00000-of-00001.parquet"
)


def synthetic(n: int, *, sources: int = 3, seed: int = 0) -> pl.DataFrame:
    """n kept rows: every 7th row in a duplicate cluster of ~5, every 11th sharing a prompt
    with a row 3 positions on (links clusters transitively), tiers 70/25/5, 10% synthetic."""
    i = pl.int_range(n, dtype=pl.Int64)
    return (
        pl.select(i.alias("i"))
        .with_columns(
            source=pl.format("src{}", pl.col("i") % sources),
            example_id=pl.format("ex{}", pl.col("i")),
            complexity_tier=pl.when(pl.col("i") % 20 == 0)
            .then(pl.lit("complex"))
            .when(pl.col("i") % 4 == 1)
            .then(pl.lit("medium"))
            .otherwise(pl.lit("simple")),
            dup_cluster_id=pl.when(pl.col("i") % 7 == 0).then(
                pl.format("c{}", (pl.col("i") // 35) + seed)
            ),
            prompt_key=pl.when(pl.col("i") % 11 == 0)
            .then(pl.format("shared prompt {}", pl.col("i") // 11))
            .when(pl.col("i") % 11 == 3)
            .then(pl.format("shared prompt {}", (pl.col("i") - 3) // 11))
            .otherwise(pl.format("prompt {}", pl.col("i"))),
            origin=pl.when(pl.col("i") % 10 == 0)
            .then(pl.lit("synthetic"))
            .otherwise(pl.lit("human")),
        )
        .drop("i")
    )


def by_key(splits: pl.DataFrame) -> pl.DataFrame:
    return splits.sort("source", "example_id")


def test_prompt_key_lowercases_and_collapses_whitespace_of_the_first_user_turn():
    frame = frame_from_conversations(
        [
            [("system", "Be nice"), ("user", "  Hello\tWORLD \n\n again "), ("assistant", "hi")],
            [
                ("user", "hello world again"),
                ("assistant", "x"),
                ("user", "other"),
                ("assistant", "y"),
            ],
        ]
    )
    keys = frame.select(prompt_key_expr())["prompt_key"].to_list()
    assert keys == ["hello world again", "hello world again"]


def test_no_cluster_no_prompt_and_no_example_straddles_the_splits():
    splits = assign_splits(synthetic(20_000))
    report = check_split_integrity(splits)
    assert report["examples_in_both"] == 0
    assert report["clusters_across_splits"] == 0
    assert report["prompts_across_splits"] == 0
    assert report["ok"], report


def test_rows_linked_through_a_chain_of_clusters_and_prompts_share_one_group():
    # r1 -chain1- r2 -p1- r3 -chain2- r4 -p2- r5: one component, whatever the row order
    chain = pl.DataFrame(
        {
            "source": ["s"] * 5,
            "example_id": ["r1", "r2", "r3", "r4", "r5"],
            "complexity_tier": ["simple"] * 5,
            "dup_cluster_id": ["chain1", "chain1", "chain2", "chain2", None],
            "prompt_key": ["a", "p1", "p1", "p2", "p2"],
            "origin": ["human"] * 5,
        }
    )
    filler = synthetic(200).with_columns(source=pl.lit("s"))
    splits = assign_splits(pl.concat([chain, filler]))
    chained = splits.filter(pl.col("example_id").str.starts_with("r"))
    assert chained["split_group"].n_unique() == 1
    assert chained["split"].n_unique() == 1


def test_shuffling_the_rows_does_not_change_any_assignment():
    frame = synthetic(5_000)
    a = by_key(assign_splits(frame))
    b = by_key(assign_splits(frame.sample(fraction=1.0, shuffle=True, seed=42)))
    assert a.equals(b)


def test_rows_keep_their_input_order_and_columns():
    frame = synthetic(300).with_columns(extra=pl.lit(1))
    splits = assign_splits(frame)
    assert splits.columns == [*frame.columns, "split_group", "split"]
    assert splits["example_id"].to_list() == frame["example_id"].to_list()


def test_the_seed_changes_the_assignment_and_the_same_seed_repeats_it():
    frame = synthetic(5_000)
    a = assign_splits(frame, SplitConfig(seed="one"))
    again = assign_splits(frame, SplitConfig(seed="one"))
    other = assign_splits(frame, SplitConfig(seed="two"))
    assert a.equals(again)
    changed = (a["split"] != other["split"]).sum()
    assert changed > 100
    assert check_split_integrity(other)["ok"]


def test_group_rank_is_the_documented_md5_of_seed_and_group_key():
    # a 2-row stratum has an eval target of round(0.2) = 0 rows, so it takes its smallest
    # group; both have one row, so the tie goes to the smaller md5(seed + "\x1f" + key)
    frame = pl.DataFrame(
        {
            "source": ["s", "s"],
            "example_id": ["a", "b"],
            "complexity_tier": ["simple", "simple"],
            "dup_cluster_id": ["ka", "kb"],
            "prompt_key": ["x", "y"],
            "origin": ["human", "human"],
        }
    )
    seed = "abc"

    def md5_64(key: str) -> int:
        return int(hashlib.md5(f"{seed}\x1f{key}".encode()).hexdigest()[:16], 16)

    expected_eval = min(["ka", "kb"], key=md5_64)
    splits = assign_splits(frame, SplitConfig(seed=seed))
    assert splits.filter(pl.col("split") == "eval")["dup_cluster_id"].to_list() == [expected_eval]


def test_every_tier_is_in_eval_even_a_tiny_one():
    frame = synthetic(2_000).with_columns(complexity_tier=pl.lit("simple"))
    rare = pl.DataFrame(
        {
            "source": ["src0", "src1", "src2"],
            "example_id": ["rare1", "rare2", "rare3"],
            "complexity_tier": ["complex"] * 3,
            "dup_cluster_id": [None, None, None],
            "prompt_key": ["rare a", "rare b", "rare c"],
            "origin": ["human"] * 3,
        }
    )
    splits = assign_splits(pl.concat([frame, rare]))
    eval_tiers = set(splits.filter(pl.col("split") == "eval")["complexity_tier"])
    assert eval_tiers == {"simple", "complex"}
    assert splits.filter(pl.col("complexity_tier") == "complex", pl.col("split") == "train").height
    assert check_split_integrity(splits)["tiers_missing_in_eval"] == []


def test_eval_share_and_tier_mix_match_the_config():
    splits = assign_splits(synthetic(30_000), SplitConfig(eval_fraction=0.2, min_source_rows=100))
    report = check_split_integrity(splits)
    assert report["eval_share"] == pytest.approx(0.2, abs=0.01)
    assert report["max_tier_share_gap"] < 0.01
    # per source, too (each source is its own stratum)
    per_source = splits.group_by("source").agg((pl.col("split") == "eval").mean().alias("share"))
    assert per_source["share"].min() > 0.18
    assert per_source["share"].max() < 0.22


def test_one_huge_cluster_does_not_swallow_the_eval_set():
    frame = synthetic(1_000, sources=1).with_columns(
        dup_cluster_id=pl.when(pl.int_range(pl.len()) < 400)
        .then(pl.lit("giant"))
        .otherwise(pl.col("dup_cluster_id")),
        complexity_tier=pl.lit("simple"),
    )
    splits = assign_splits(frame, SplitConfig(min_source_rows=1))
    assert splits.filter(pl.col("dup_cluster_id") == "giant")["split"].unique().to_list() == [
        "train"
    ]
    assert 80 <= splits.filter(pl.col("split") == "eval").height <= 120


def test_small_sources_are_pooled_and_big_ones_stratified_on_their_own():
    big = synthetic(4_000, sources=1).with_columns(source=pl.lit("big"))
    small = synthetic(40, sources=4).with_columns(example_id=pl.format("s{}", pl.col("example_id")))
    splits = assign_splits(pl.concat([big, small]), SplitConfig(min_source_rows=500))
    big_share = splits.filter(pl.col("source") == "big")["split"].eq("eval").mean()
    assert big_share == pytest.approx(0.1, abs=0.01)
    assert check_split_integrity(splits)["ok"]


def test_integrity_check_catches_a_cluster_and_a_prompt_across_splits():
    frame = pl.DataFrame(
        {
            "source": ["s"] * 4,
            "example_id": ["a", "b", "c", "d"],
            "complexity_tier": ["simple"] * 4,
            "dup_cluster_id": ["k", "k", None, None],
            "prompt_key": ["p1", "p2", "same", "same"],
            "origin": ["human", "synthetic", "human", "human"],
            "split": ["train", "eval", "train", "eval"],
        }
    )
    report = check_split_integrity(frame)
    assert report["clusters_across_splits"] == 1
    assert report["prompts_across_splits"] == 1
    assert report["synthetic_share"] == {"train": 0.0, "eval": 0.5}
    assert not report["ok"]


def test_split_report_counts_every_row_once():
    splits = assign_splits(synthetic(3_000))
    report = split_report(splits)
    assert report.columns == ["split", "complexity_tier", "source", "origin", "rows"]
    assert report["rows"].sum() == 3_000
    assert set(report["split"]) == {"train", "eval"}


def test_empty_and_missing_inputs():
    empty = synthetic(0)
    assert assign_splits(empty).columns == [*empty.columns, "split_group", "split"]
    with pytest.raises(ValueError, match="prompt_key"):
        assign_splits(synthetic(10).drop("prompt_key"))
    with pytest.raises(ValueError):
        SplitConfig(eval_fraction=1.5)


def test_structured_data_with_repeated_prompts_never_leaks_a_prompt():
    raw = pl.read_parquet(STRUCTURED)
    convs = [[(m["role"], m["content"]) for m in msgs] for msgs in raw["messages"].to_list()]
    frame = frame_from_conversations(convs, source="structured").with_columns(
        prompt_key_expr(),
        complexity_tier=pl.lit("medium"),
        dup_cluster_id=pl.lit(None, pl.String),
    )
    assert frame["prompt_key"].n_unique() < frame.height  # the file repeats prompts
    splits = assign_splits(
        frame.select(
            "source", "example_id", "complexity_tier", "dup_cluster_id", "prompt_key", "origin"
        )
    )
    report = check_split_integrity(splits)
    assert report["prompts_across_splits"] == 0
    assert 0.05 < report["eval_share"] < 0.15


def test_one_million_rows_split_in_seconds():
    frame = synthetic(1_000_000, sources=7)
    start = time.perf_counter()
    splits = assign_splits(frame)
    elapsed = time.perf_counter() - start
    print(f"\nassign_splits on 1,000,000 rows: {elapsed:.2f}s")
    report = check_split_integrity(splits)
    assert report["ok"], report
    assert elapsed < 60  # ~2-4 s on 2 cores; generous for a loaded CI machine


def test_split_keys_fast_path_equals_the_joins() -> None:
    from instruct_assets.lib.split_sets import split_keys

    convs = [[("user", f"Question {i % 40}?"), ("assistant", f"Answer {i}.")] for i in range(300)]
    examples = frame_from_conversations(convs, source="s").sample(fraction=1.0, shuffle=True,
                                                                  seed=1)
    keys = examples.select("source", "example_id").sort("source", "example_id")
    curated = keys.with_columns(
        dup_cluster_id=pl.format("c{}", pl.int_range(pl.len()) // 3),
        kept=pl.int_range(pl.len()) % 5 != 0,
    )
    complexity = keys.with_columns(complexity_tier=pl.lit("simple"))
    fast = split_keys(examples, curated, complexity)  # aligned tables: no join
    joined = split_keys(examples, curated.reverse(), complexity.reverse())  # joins
    assert fast.equals(joined)
    assert fast.height == curated["kept"].sum()
    assert fast.select("source", "example_id").equals(
        fast.select("source", "example_id").sort("source", "example_id"))


def test_integrity_counts_each_straddling_key_once() -> None:
    frame = pl.DataFrame({
        "source": ["s"] * 6,
        "example_id": ["a", "b", "c", "d", "e", "a"],
        "complexity_tier": ["simple"] * 6,
        "dup_cluster_id": ["c1", "c1", "c2", "c2", None, None],
        "prompt_key": ["p", "p", "q", "", "", "r"],
        "origin": ["human"] * 6,
        "split": ["train", "eval", "train", "train", "eval", "eval"],
    })
    report = check_split_integrity(frame)
    assert report["examples_in_both"] == 1  # ("s", "a")
    assert report["clusters_across_splits"] == 1  # c1; nulls are not a cluster
    assert report["prompts_across_splits"] == 1  # p; empty prompts are not a prompt
