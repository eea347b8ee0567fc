"""Queue selection: kinds, caps, strata, determinism independent of row order."""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.review.queue import QueueConfig, select_queue

KEY = ["source", "example_id"]


def frames(n_per_source: int = 60) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Quality and complexity of two sources: every 5th row flagged, a band of scores."""
    rows, tiers = [], []
    for source in ("a", "b"):
        for i in range(n_per_source):
            rows.append({"source": source, "example_id": f"{source}{i:03d}",
                         "quality_score": (i % 20) / 19,
                         "quality_flags": ["vague_instruction"] if i % 5 == 0 else []})
            tiers.append({"source": source, "example_id": f"{source}{i:03d}",
                          "complexity_tier": ("simple", "medium", "complex")[i % 3]})
    return pl.DataFrame(rows), pl.DataFrame(tiers)


CFG = QueueConfig(flagged_per_source=4, borderline_per_source=3, borderline_center=0.5,
                  borderline_margin=0.1, sample_per_stratum=2)


def test_each_kind_is_capped_per_source_and_stratum():
    quality, complexity = frames()
    queue = select_queue(quality, complexity, CFG)
    counts = {(s, r): n for s, r, n in queue.group_by("source", "queue_reason").len().rows()}
    assert counts == {(s, r): n for s in ("a", "b")
                      for r, n in (("flagged", 4), ("borderline", 3), ("sample", 6))}
    joined = queue.join(quality, on=KEY)
    flagged = joined.filter(pl.col("queue_reason") == "flagged")
    assert (flagged["quality_flags_right"].list.len() > 0).all()
    border = joined.filter(pl.col("queue_reason") == "borderline")
    assert ((border["quality_score_right"] - 0.5).abs() <= 0.1).all()
    sample = queue.filter(pl.col("queue_reason") == "sample")
    per_tier = sample.group_by("source", "complexity_tier").len()["len"]
    assert per_tier.to_list() == [2] * 6
    assert queue.select(KEY).is_unique().all()
    assert queue["queue_position"].to_list() == list(range(queue.height))


def test_the_queue_does_not_depend_on_row_order():
    quality, complexity = frames()
    one = select_queue(quality, complexity, CFG)
    two = select_queue(quality.sample(fraction=1.0, shuffle=True, seed=1),
                       complexity.sample(fraction=1.0, shuffle=True, seed=2), CFG)
    assert one.equals(two)


def test_more_rows_in_one_source_leave_the_other_sources_queue_alone():
    quality, complexity = frames()
    extra_q = pl.DataFrame([{"source": "a", "example_id": f"new{i}", "quality_score": 0.5,
                             "quality_flags": ["vague_instruction"]} for i in range(30)])
    extra_c = extra_q.select(KEY, complexity_tier=pl.lit("simple"))
    before = select_queue(quality, complexity, CFG).filter(pl.col("source") == "b")
    after = select_queue(pl.concat([quality, extra_q]), pl.concat([complexity, extra_c]), CFG)
    assert after.filter(pl.col("source") == "b").drop("queue_position").equals(
        before.drop("queue_position"))


def test_reviewed_examples_leave_the_queue_and_the_seed_draws_another_queue():
    quality, complexity = frames()
    first = select_queue(quality, complexity, CFG)
    reviewed = first.head(10).select(KEY)
    second = select_queue(quality, complexity, CFG, reviewed=reviewed)
    assert second.join(reviewed, on=KEY, how="semi").height == 0
    assert second.height == first.height  # enough candidates remain to refill every kind
    other = select_queue(quality, complexity, QueueConfig(**{**CFG.__dict__, "seed": "x"}))
    assert set(other["example_id"]) != set(first["example_id"])


def test_no_complexity_and_empty_inputs():
    quality, _ = frames(10)
    queue = select_queue(quality, None, CFG)
    assert queue["complexity_tier"].null_count() == queue.height and queue.height > 0
    empty = select_queue(quality.clear(), None, CFG)
    assert empty.height == 0 and empty.columns == queue.columns


def test_duplicate_copies_are_not_queued():
    quality, complexity = frames()
    copies = pl.col("example_id").str.ends_with("5")
    marked = quality.with_columns(is_dup_representative=~copies)
    queue = select_queue(marked, complexity, CFG)
    assert queue.filter(pl.col("example_id").str.ends_with("5")).height == 0
    assert select_queue(quality, complexity, CFG).filter(
        pl.col("example_id").str.ends_with("5")).height > 0
