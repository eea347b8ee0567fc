"""Verdicts applied to real curation output: reject, override, edit, conflicts."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import polars as pl
import pytest

from instruct_assets.lib.curation import CurationConfig, curate
from instruct_assets.lib.normalize import normalize_source
from instruct_assets.lib.review.annotations import ANNOTATIONS_SCHEMA
from instruct_assets.lib.review.verdicts import (
    apply_verdicts,
    resolve_verdicts,
    verdict_conflicts,
)
from instruct_assets.lib.sources import SourceSpec

KEY = ["source", "example_id"]


def at(hour: int | None) -> datetime | None:
    return None if hour is None else datetime(2024, 5, 2, hour, tzinfo=UTC)


def ann(row: dict, verdict: str, hour: int | None = 1, edited: str | None = None,
        annotator: str = "a", ref: str | None = None) -> dict:
    return {"source": row["source"], "example_id": row["example_id"], "verdict": verdict,
            "edited_content": edited, "reason": None, "annotator": annotator,
            "annotated_at": at(hour), "tool": "label_studio", "tool_format": "label_studio_json",
            "annotation_ref": ref or f"{row['example_id']}:{annotator}:{verdict}",
            "file": "annotations/x.json", "record": 0}


@pytest.fixture
def curated(reviewed):
    """Real curation of the fixture's examples, with one example marked contaminated."""
    quality = reviewed.quality
    kept = quality.filter(pl.col("quality_flags").list.len() == 0).sort(KEY)
    contamination = kept.head(1).select(*KEY, benchmark=pl.lit("mmlu"),
                                        contaminated=pl.lit(True))
    cfg = CurationConfig(exclude_flags=reviewed.exclude_flags)
    return curate(quality, cfg, contamination).sort(KEY)


def pick(curated: pl.DataFrame, expr: pl.Expr, n: int = 1) -> list[dict]:
    rows = curated.filter(expr).sort(KEY).head(n).to_dicts()
    assert len(rows) == n, "the fixture data lacks a row for this case"
    return rows


def test_reject_accept_override_and_what_a_human_cannot_override(reviewed, curated):
    kept = pl.col("kept")
    quality_only = (~kept) & pl.col("all_reasons").list.eval(
        pl.element().str.contains(r"^(?:flag:|below_quality_threshold$)")).list.all()
    [a] = pick(curated, kept & ~pl.col("example_id").is_in(
        curated.filter(pl.col("exclusion_reason").is_not_null())["example_id"].implode()))
    [b] = pick(curated, quality_only)
    [c] = pick(curated, pl.col("exclusion_reason").str.starts_with("contaminated:"))
    dup_of = pl.col("all_reasons").list.eval(
        pl.element().filter(pl.element().str.starts_with("duplicate_of:"))).list.first()
    # a copy is scored low too, so its *first* reason is usually a quality one
    [d] = pick(curated, dup_of.is_not_null()
               & ~pl.col("exclusion_reason").str.starts_with("duplicate_of:"))
    annotations = pl.DataFrame([ann(a, "reject"), ann(b, "accept"), ann(c, "accept"),
                                ann(d, "accept")], schema=ANNOTATIONS_SCHEMA)
    out = apply_verdicts(curated, annotations, reviewed.examples)
    got = out.curated
    assert got.height == curated.height and got.select(KEY).equals(curated.select(KEY))
    row = {r["example_id"]: r for r in got.iter_rows(named=True)}
    assert row[a["example_id"]]["exclusion_reason"] == "human_rejected"
    assert row[a["example_id"]]["all_reasons"][0] == "human_rejected"
    assert not row[a["example_id"]]["kept"]
    assert row[b["example_id"]]["kept"] and row[b["example_id"]]["human_override"]
    assert row[b["example_id"]]["all_reasons"] == b["all_reasons"]  # the audit trail stays
    assert row[c["example_id"]]["exclusion_reason"] == "contaminated:mmlu"
    dup_reason = next(r for r in d["all_reasons"] if r.startswith("duplicate_of:"))
    assert row[d["example_id"]]["exclusion_reason"] == dup_reason  # accepted, still a copy
    assert not row[d["example_id"]]["kept"]
    assert not row[c["example_id"]]["human_override"]
    untouched = got.filter(pl.col("human_verdict").is_null())
    assert untouched.drop("human_verdict", "human_override", "original_example_id").equals(
        curated.join(annotations.select(KEY), on=KEY, how="anti"))
    assert out.counts["overrides"] == 1 and out.counts["rejected"] == 1


def test_an_edit_takes_the_id_ingestion_would_give_the_edited_conversation(reviewed, curated,
                                                                           tmp_path):
    alpaca = curated.filter((pl.col("source") == "alpaca") & pl.col("kept"))
    [e, g] = alpaca.sort(KEY).head(2).to_dicts()
    examples = reviewed.examples
    content = {r["example_id"]: r["messages"] for r in examples.iter_rows(named=True)}
    edited = "Paris is the capital of France."
    annotations = pl.DataFrame([
        ann(e, "edit", edited=edited),
        ann(g, "edit", edited=content[g["example_id"]][-1]["content"]),  # changes nothing
    ], schema=ANNOTATIONS_SCHEMA)
    out = apply_verdicts(curated, annotations, examples)
    [new] = out.edited_examples.to_dicts()
    assert new["original_example_id"] == e["example_id"]
    assert new["messages"][-1]["content"] == edited
    assert new["messages"][:-1] == content[e["example_id"]][:-1]
    row = out.curated.filter(pl.col("original_example_id") == e["example_id"]).to_dicts()[0]
    assert row["example_id"] == new["example_id"] != e["example_id"]
    assert row["kept"] and row["human_verdict"] == "edit"
    g_row = out.curated.filter(pl.col("example_id") == g["example_id"]).to_dicts()[0]
    assert g_row["human_verdict"] == "accept" and g_row["original_example_id"] is None

    # ingesting the edited conversation as a raw file gives the very same id
    folder = reviewed.paths.raw / "edited"
    folder.mkdir()
    (folder / "e.jsonl").write_text(json.dumps({"messages": new["messages"]}) + "\n")
    again = normalize_source(reviewed.paths, SourceSpec(name="edited")).examples
    assert again["example_id"].to_list() == [new["example_id"]]


def test_an_edit_that_copies_another_example_is_a_duplicate(reviewed, curated):
    examples = reviewed.examples
    e = curated.filter((pl.col("source") == "alpaca") & pl.col("kept")).sort(KEY).row(
        0, named=True)
    annotations = pl.DataFrame([ann(e, "edit", edited="Same text.")], schema=ANNOTATIONS_SCHEMA)
    first = apply_verdicts(curated, annotations, examples).edited_examples.row(0, named=True)
    # the source already holds exactly the edited conversation (another row of its file)
    existing = pl.DataFrame([{k: first[k] for k in examples.columns}], schema=examples.schema)
    out = apply_verdicts(curated, annotations, pl.concat([examples, existing]))
    row = out.curated.filter(pl.col("original_example_id") == e["example_id"]).to_dicts()[0]
    assert row["example_id"] == f"{first['example_id']}-edit-{e['example_id']}"
    assert not row["kept"] and not row["human_override"]
    assert row["exclusion_reason"] == f"duplicate_of:{first['example_id']}"
    assert out.counts["edit_duplicates"] == 1
    assert out.curated.select(KEY).is_unique().all()
    assert out.edited_examples["example_id"].to_list() == [row["example_id"]]


def test_conflicts_latest_wins_ties_and_unknown_times_resolve_to_reject(curated):
    rows = curated.sort(KEY).head(5).to_dicts()
    h, i, j, k, m = rows
    annotations = pl.DataFrame([
        ann(h, "reject", 1, annotator="a"), ann(h, "accept", 2, annotator="b"),
        ann(i, "accept", 1, annotator="a"), ann(i, "reject", 1, annotator="b"),
        ann(j, "accept", None, annotator="a"), ann(j, "reject", 1, annotator="b"),
        ann(k, "edit", 3, edited="x", annotator="a"), ann(k, "edit", 3, edited="y",
                                                          annotator="b"),
        ann(m, "accept", 1, annotator="a"), ann(m, "accept", 2, annotator="b"),
    ], schema=ANNOTATIONS_SCHEMA)
    resolved = {r["example_id"]: r for r in resolve_verdicts(annotations).iter_rows(named=True)}
    assert resolved[h["example_id"]]["verdict"] == "accept"
    assert resolved[i["example_id"]]["verdict"] == "reject"
    assert resolved[j["example_id"]]["verdict"] == "reject"
    assert resolved[k["example_id"]]["edited_content"] == "y"  # greatest annotator on a tie
    assert resolved[m["example_id"]]["n_annotations"] == 2
    shuffled = resolve_verdicts(annotations.sample(fraction=1.0, shuffle=True, seed=9))
    assert shuffled.equals(resolve_verdicts(annotations))
    conflicts = {r["example_id"]: r for r in verdict_conflicts(annotations).iter_rows(
        named=True)}
    assert set(conflicts) == {h["example_id"], i["example_id"], j["example_id"],
                              k["example_id"]}  # m agrees with itself
    assert conflicts[h["example_id"]]["resolution"] == "latest"
    assert conflicts[i["example_id"]]["resolution"] == "tie_most_conservative"
    assert conflicts[k["example_id"]]["resolution"] == "tie_most_conservative"
    assert conflicts[i["example_id"]]["verdicts"] == ["accept", "reject"]


def test_verdicts_for_unknown_examples_are_counted_not_applied(reviewed, curated):
    ghost = {"source": "alpaca", "example_id": "0000000000000000"}
    annotations = pl.DataFrame([ann(ghost, "reject")], schema=ANNOTATIONS_SCHEMA)
    out = apply_verdicts(curated, annotations, reviewed.examples)
    assert out.counts["orphan_verdicts"] == 1
    assert out.curated.drop("human_verdict", "human_override", "original_example_id"
                            ).equals(curated)


def _edit_row(out, original: dict) -> dict:
    [row] = out.curated.filter(pl.col("original_example_id") == original["example_id"]
                               ).to_dicts()
    return row


def test_edited_text_is_rescored_a_fix_clears_the_flag_a_break_raises_one(reviewed, curated):
    """Curation judges the edited text: an edit that fills a template placeholder is kept
    on its own merits, one that empties a good response is excluded for it."""
    cfg = CurationConfig(exclude_flags=reviewed.exclude_flags)
    messages = {r["example_id"]: r["messages"] for r in reviewed.examples.iter_rows(named=True)}
    flagged = pick(curated, (pl.col("exclusion_reason") == "flag:template_placeholder")
                   & (pl.col("quality_flags") == ["template_placeholder"]), n=2)
    fixed, still = flagged
    [good] = pick(curated, pl.col("kept") & (pl.col("source") == "alpaca")
                  & (pl.col("quality_flags").list.len() == 0))
    placeholder = r"\[[^\]\n]*\]|\{\{[^}]*\}\}"
    fix_text = re.sub(placeholder, "Ada", messages[fixed["example_id"]][-1]["content"])
    assert fix_text != messages[fixed["example_id"]][-1]["content"]
    keep_text = messages[still["example_id"]][-1]["content"] + " Happy to help!"
    annotations = pl.DataFrame([
        ann(fixed, "edit", edited=fix_text),
        ann(still, "edit", edited=keep_text),  # the placeholder is still there
        ann(good, "edit", edited="N/A"),  # empties a good response
    ], schema=ANNOTATIONS_SCHEMA)
    out = apply_verdicts(curated, annotations, reviewed.examples, cfg=cfg)

    row = _edit_row(out, fixed)
    assert row["quality_flags"] == [] and row["quality_score"] == 1.0
    assert row["kept"] and row["exclusion_reason"] is None and row["all_reasons"] == []
    assert not row["human_override"]  # kept because the edited text is clean
    assert row["chars_assistant"] == len(fix_text)  # every quality column is the new text's

    row = _edit_row(out, still)
    assert row["quality_flags"] == ["template_placeholder"]
    assert row["all_reasons"] == still["all_reasons"] == [
        "flag:template_placeholder", "below_quality_threshold"]
    assert row["kept"] and row["human_override"]  # the reviewer saw it and kept it

    row = _edit_row(out, good)
    assert "empty_or_trivial_response" in row["quality_flags"]
    assert row["exclusion_reason"] == "flag:empty_or_trivial_response"
    assert not row["kept"] and not row["human_override"]
    assert row["quality_score"] < good["quality_score"]

    assert out.counts["edits_rescored"] == 3
    assert out.counts["edits_clearing_flags"] == 1
    assert out.counts["edits_made_worse"] == 1
    assert out.counts["edits_flagged"] == 2
    assert out.counts["overrides"] == 1
    # rows without a verdict keep their own signals
    untouched = out.curated.filter(pl.col("human_verdict").is_null())
    assert untouched.drop("human_verdict", "human_override", "original_example_id").equals(
        curated.join(annotations.select(KEY), on=KEY, how="anti"))
    # without re-scoring the edited rows would carry the original's judgment: prove the
    # flags really come from the text, not from the verdict
    assert fixed["quality_flags"] == ["template_placeholder"]
    assert good["quality_flags"] == []


def test_an_edit_that_lowers_the_score_below_the_threshold_is_excluded(reviewed):
    """A non-excluding flag the edit brings counts through the score; a low score the
    original had too is overridden, as for accept."""
    cfg = CurationConfig(min_quality_score=0.7, exclude_flags=reviewed.exclude_flags)
    curated = curate(reviewed.quality, cfg).sort(KEY)
    [good] = pick(curated, pl.col("kept") & (pl.col("source") == "alpaca")
                  & (pl.col("quality_flags").list.len() == 0))
    [low] = pick(curated, pl.col("quality_flags").list.contains("refusal_boilerplate")
                 & (pl.col("exclusion_reason") == "below_quality_threshold"))
    refusal = "I'm sorry, but I cannot help with that request."
    messages = {r["example_id"]: r["messages"] for r in reviewed.examples.iter_rows(named=True)}
    annotations = pl.DataFrame([
        ann(good, "edit", edited=refusal),
        ann(low, "edit", edited=messages[low["example_id"]][-1]["content"] + "\n\nThanks."),
    ], schema=ANNOTATIONS_SCHEMA)
    out = apply_verdicts(curated, annotations, reviewed.examples, cfg=cfg)
    broke = _edit_row(out, good)
    assert "refusal_boilerplate" in broke["quality_flags"]
    assert broke["exclusion_reason"] == "below_quality_threshold" and not broke["kept"]
    same = _edit_row(out, low)
    assert same["quality_score"] < cfg.min_quality_score
    assert same["kept"] and same["human_override"]
    assert same["all_reasons"] == ["below_quality_threshold"]
