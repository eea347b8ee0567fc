"""Curation: one verdict per example, the first reason in the documented order, and counts."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from instruct_assets.lib.curation import RULES, CurationConfig, curate, rule_counts
from tests.lib._frames import alpaca_conversations, frame_from_conversations

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"


def quality(rows: list[dict]) -> pl.DataFrame:
    """A quality frame; unspecified fields default to a clean, unique, good example."""
    base = {
        "source": "s",
        "quality_score": 0.9,
        "quality_flags": [],
        "dup_cluster_id": None,
        "is_dup_representative": True,
        "origin": "human",
    }
    return pl.DataFrame(
        [{**base, "example_id": str(i), **row} for i, row in enumerate(rows)],
        schema={
            "source": pl.String,
            "example_id": pl.String,
            "quality_score": pl.Float64,
            "quality_flags": pl.List(pl.String),
            "dup_cluster_id": pl.String,
            "is_dup_representative": pl.Boolean,
            "origin": pl.String,
        },
    )


def reasons(curated: pl.DataFrame) -> list[str | None]:
    return curated["exclusion_reason"].to_list()


def contamination(*pairs: tuple[str, str, bool]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source": ["s"] * len(pairs),
            "example_id": [p[0] for p in pairs],
            "benchmark": [p[1] for p in pairs],
            "contaminated": [p[2] for p in pairs],
        }
    )


def test_a_clean_example_is_kept_with_no_reason():
    out = curate(quality([{}]))
    assert out["kept"].to_list() == [True]
    assert reasons(out) == [None]
    assert out["all_reasons"].to_list() == [[]]


def test_the_first_reason_follows_the_documented_order():
    everything = {
        "quality_score": 0.1,
        "quality_flags": ["pii"],
        "dup_cluster_id": "k",
        "is_dup_representative": False,
    }
    rows = quality([everything] * 4)
    cfg = CurationConfig(exclude_flags=("pii",))
    hit = contamination(("0", "mmlu", True))
    out = curate(rows, cfg, hit)
    assert reasons(out) == ["contaminated:mmlu", "flag:pii", "flag:pii", "flag:pii"]
    assert out["all_reasons"][0].to_list() == [
        "contaminated:mmlu",
        "flag:pii",
        "below_quality_threshold",
        "duplicate_of:k",
    ]
    # peel the rules off one at a time
    no_flag = curate(rows, CurationConfig(), hit)
    assert reasons(no_flag)[1] == "below_quality_threshold"
    good = rows.with_columns(quality_score=pl.lit(0.9))
    assert reasons(curate(good, CurationConfig(), hit))[1] == "duplicate_of:k"
    assert RULES == ("contaminated", "flag", "below_quality_threshold", "duplicate")


def test_only_configured_flags_exclude_and_in_config_order():
    rows = quality([{"quality_flags": ["short", "pii"]}, {"quality_flags": ["short"]}])
    assert reasons(curate(rows)) == [None, None]  # flags alone exclude nothing by default
    out = curate(rows, CurationConfig(exclude_flags=("pii", "short")))
    assert reasons(out) == ["flag:pii", "flag:short"]
    out = curate(rows, CurationConfig(exclude_flags=("short", "pii")))
    assert reasons(out) == ["flag:short", "flag:short"]


def test_quality_threshold_is_inclusive_and_a_missing_score_fails_it():
    rows = quality([{"quality_score": 0.5}, {"quality_score": 0.4999}, {"quality_score": None}])
    rows = pl.concat([rows, quality([{"quality_score": float("nan")}])])
    out = curate(rows, CurationConfig(min_quality_score=0.5))
    assert reasons(out) == [
        None,
        "below_quality_threshold",
        "below_quality_threshold",
        "below_quality_threshold",
    ]


def test_duplicates_keep_only_the_representative_unless_configured_otherwise():
    rows = quality(
        [
            {"dup_cluster_id": "k1", "is_dup_representative": True},
            {"dup_cluster_id": "k1", "is_dup_representative": False},
            {"dup_cluster_id": None, "is_dup_representative": False},
            {"dup_cluster_id": None, "is_dup_representative": None},
        ]
    )
    assert reasons(curate(rows)) == [None, "duplicate_of:k1", "duplicate", None]
    keep_all = curate(rows, CurationConfig(keep_only_representatives=False))
    assert keep_all["kept"].all()


def test_contamination_below_threshold_is_ignored_and_benchmarks_resolve_by_name():
    rows = quality([{}, {}, {}])
    hits = contamination(
        ("0", "mmlu", False),
        ("1", "mmlu", True),
        ("1", "bbh", True),
        ("2", "gsm8k", True),
    )
    assert reasons(curate(rows, contamination=hits)) == [
        None,
        "contaminated:bbh",
        "contaminated:gsm8k",
    ]
    off = curate(rows, CurationConfig(drop_contaminated=False), hits)
    assert off["kept"].all()


def test_contamination_of_another_source_with_the_same_id_does_not_leak_over():
    rows = quality([{}])
    other = contamination(("0", "mmlu", True)).with_columns(source=pl.lit("other"))
    assert reasons(curate(rows, contamination=other)) == [None]


def test_output_keeps_every_row_in_order_with_its_columns():
    rows = quality([{"quality_score": s / 10} for s in range(10)])
    out = curate(rows)
    assert out.height == rows.height
    assert out["example_id"].to_list() == rows["example_id"].to_list()
    assert out.columns == [*rows.columns, "kept", "exclusion_reason", "all_reasons"]


def test_missing_columns_are_reported():
    with pytest.raises(ValueError, match="quality_flags"):
        curate(quality([{}]).drop("quality_flags"))


def test_rule_counts_say_how_many_rows_each_rule_removed_and_matched():
    rows = quality(
        [
            {"quality_score": 0.1, "quality_flags": ["pii"]},
            {"quality_score": 0.1},
            {"dup_cluster_id": "k", "is_dup_representative": False, "quality_score": 0.1},
            {"dup_cluster_id": "k2", "is_dup_representative": False},
            {},
        ]
    )
    curated = curate(
        rows, CurationConfig(exclude_flags=("pii",)), contamination(("4", "bbh", True))
    )
    table = rule_counts(curated)
    got = {r["rule"]: (r["removed"], r["matched"]) for r in table.iter_rows(named=True)}
    assert got == {
        "contaminated:bbh": (1, 1),
        "flag:pii": (1, 1),
        "below_quality_threshold": (2, 3),
        "duplicate": (1, 2),
        "kept": (0, 0),
    }
    assert table["rule"].to_list()[-1] == "kept"
    assert table["removed"].sum() == (~curated["kept"]).sum()
    assert table["removed_share"].sum() == pytest.approx(1.0)


def test_alpaca_demo_exact_duplicates_are_removed_as_duplicates():
    convs = alpaca_conversations(str(REAL / "hiyouga__LLaMA-Factory" / "alpaca_en_demo.json"))
    frame = frame_from_conversations(convs, source="alpaca")
    # a stand-in for dedup: cluster = the exact conversation, representative = first example
    text = pl.col("messages").list.eval(pl.element().struct.field("content")).list.join("\x1f")
    rows = frame.select(
        "source",
        "example_id",
        "origin",
        quality_score=pl.lit(0.9),
        quality_flags=pl.lit([], dtype=pl.List(pl.String)),
        dup_cluster_id=text.rank("dense").cast(pl.String),
        is_dup_representative=pl.int_range(pl.len()).rank("ordinal").over(text) == 1,
    )
    curated = curate(rows)
    counts = {r["rule"]: r["removed"] for r in rule_counts(curated).iter_rows(named=True)}
    assert counts["duplicate"] == 14  # the file's documented exact duplicates
    assert curated["kept"].sum() == 999 - 14


def test_verdicts_applied_to_the_touched_rows_only_equal_apply_verdicts_on_all_rows():
    """``apply_verdicts`` runs the verdict rules on the rows a verdict can touch; the result
    equals running them on every row (``_apply_verdicts_all``), in the same order:
    reject, accept, edit, an edit whose text collides with an unannotated row, a no-op
    edit and a verdict for an unknown example."""
    from datetime import UTC, datetime

    from instruct_assets.lib.review.annotations import ANNOTATIONS_SCHEMA
    from instruct_assets.lib.review.verdicts import (
        _apply_verdicts_all,
        apply_verdicts,
        edited_conversations,
    )

    convs = [[("user", f"Question {i}?"), ("assistant", f"Answer {i}.")] for i in range(12)]
    examples = frame_from_conversations(convs, source="s")
    ids = examples["example_id"].to_list()
    rows = quality([{"example_id": i, "quality_score": 0.2 if n % 4 == 0 else 0.9}
                    for n, i in enumerate(ids)])
    cfg = CurationConfig()
    curated = curate(rows, cfg)

    # row 9 (never annotated) becomes exactly what row 5's edit produces, under the id
    # ingestion gives it: the edit must be found to collide with it
    clash_edit = pl.DataFrame({"source": ["s"], "example_id": [ids[5]],
                               "edited_content": ["Answer 9."]})
    target = edited_conversations(clash_edit, examples)["new_id"][0]
    examples = examples.with_columns(
        example_id=pl.when(pl.col("example_id") == ids[9]).then(pl.lit(target))
        .otherwise(pl.col("example_id")),
        messages=pl.when(pl.col("example_id") == ids[9])
        .then(examples.filter(pl.col("example_id") == ids[5])["messages"].list.eval(
            pl.when(pl.element().struct.field("role") == "assistant")
            .then(pl.struct(role=pl.lit("assistant"), content=pl.lit("Answer 9.")))
            .otherwise(pl.element())).first())
        .otherwise(pl.col("messages")),
    )
    rows = rows.with_columns(example_id=pl.when(pl.col("example_id") == ids[9])
                             .then(pl.lit(target)).otherwise(pl.col("example_id")))
    curated = curate(rows, cfg)

    def ann(example_id: str, verdict: str, edited: str | None = None) -> dict:
        return {"source": "s", "example_id": example_id, "verdict": verdict,
                "edited_content": edited, "reason": None, "annotator": "a",
                "annotated_at": datetime(2024, 5, 2, 1, tzinfo=UTC), "tool": "t",
                "tool_format": "f", "annotation_ref": f"{example_id}:{verdict}",
                "file": "x.json", "record": 0}

    annotations = pl.DataFrame([
        ann(ids[0], "accept"), ann(ids[1], "reject"), ann(ids[2], "edit", "Better answer."),
        ann(ids[3], "edit", "Answer 3."), ann(ids[5], "edit", "Answer 9."),
        ann("unknown", "reject"),
    ], schema=ANNOTATIONS_SCHEMA)
    full = _apply_verdicts_all(curated, annotations, examples, cfg=cfg)
    fast = apply_verdicts(curated, annotations, examples, cfg=cfg)
    assert fast.curated.equals(full.curated)
    assert fast.edited_examples.equals(full.edited_examples)
    assert fast.conflicts.equals(full.conflicts)
    assert fast.counts == full.counts
    assert full.counts["edit_duplicates"] == 1 and full.counts["orphan_verdicts"] == 1
    # and without any annotation every row passes through
    none = apply_verdicts(curated, annotations.head(0), examples.head(0), cfg=cfg)
    ref = _apply_verdicts_all(curated, annotations.head(0), examples.head(0), cfg=cfg)
    assert none.curated.equals(ref.curated)
