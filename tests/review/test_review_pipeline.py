"""Human verdicts through the whole pipeline: curation, splits and exports honour them.

Needs the review assets wired into ``build_defs`` and ``apply_verdicts`` into
``curated_examples``.
"""

from __future__ import annotations

import json

import polars as pl

from instruct_assets.definitions import build_defs
from instruct_assets.lib.review.layout import ReviewPaths
from tests.review.tool_exports import Answer, label_studio_json
from tests.support import make_data_dir, real, run_all

KEY = ["source", "example_id"]


def test_verdicts_reach_the_curated_set_the_splits_and_the_exports(tmp_path, instance):
    paths = make_data_dir(tmp_path, {
        "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")],
        "identity": [real("hiyouga__LLaMA-Factory/identity.json")]})
    wired = {k.to_user_string() for k in
             build_defs(paths.root).resolve_asset_graph().get_all_asset_keys()}
    assert {"review_queue", "annotations", "synthetic_variations"} <= wired
    first = run_all(paths, instance)
    assert first.downstream_ok, first.downstream_failures
    layout = ReviewPaths(paths)
    tasks = json.loads(layout.label_studio_tasks.read_text())
    curation = pl.read_parquet(paths.curation / "curation.parquet")
    by_key = {f"{r['source']}:{r['example_id']}": r for r in curation.iter_rows(named=True)}
    quality_only = [t for t in tasks if not by_key[t["data"]["review_key"]]["kept"]
                    and all(r.startswith("flag:") or r == "below_quality_threshold"
                            for r in by_key[t["data"]["review_key"]]["all_reasons"])]
    kept = [t for t in tasks if by_key[t["data"]["review_key"]]["kept"]]
    assert quality_only and len(kept) >= 2
    rejected, edited, overridden = kept[0], kept[1], quality_only[0]
    new_text = "A reviewed and corrected answer."
    layout.inbox.mkdir()
    (layout.inbox / "export.json").write_text(json.dumps(label_studio_json(
        [rejected, edited, overridden],
        [Answer(rejected["data"]["review_key"], "reject", reason="wrong"),
         Answer(edited["data"]["review_key"], "edit", edited=new_text),
         Answer(overridden["data"]["review_key"], "accept")])))

    second = run_all(paths, instance)
    assert second.downstream_ok, second.downstream_failures
    curation = pl.read_parquet(paths.curation / "curation.parquet")
    row = {f"{r['source']}:{r['example_id']}": r for r in curation.iter_rows(named=True)}
    assert row[rejected["data"]["review_key"]]["exclusion_reason"] == "human_rejected"
    assert row[overridden["data"]["review_key"]]["kept"]
    assert row[overridden["data"]["review_key"]]["human_override"]
    [new] = curation.filter(pl.col("original_example_id") == edited["data"]["example_id"]
                            ).to_dicts()
    assert new["kept"] and new["example_id"] != edited["data"]["example_id"]
    assert edited["data"]["review_key"] not in row

    splits = pl.read_parquet(paths.splits / "assignments.parquet")
    in_splits = set(splits.select(KEY).iter_rows())
    assert (new["source"], new["example_id"]) in in_splits
    assert (rejected["data"]["source"], rejected["data"]["example_id"]) not in in_splits
    assert (overridden["data"]["source"], overridden["data"]["example_id"]) in in_splits
    exported = "".join(p.read_text() for p in (paths.exports / "openai").glob("*.jsonl"))
    assert json.dumps(new_text) in exported
