"""Curation, splits and exports on real files through the real assets."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
import pytest

from instruct_assets.lib.sql_entry import run_query
from tests.support import make_data_dir, real, run_all_ok

BBH = [real(f"suzgunmirac__BIG-Bench-Hard/cot-prompts/{n}.txt") for n in (
    "boolean_expressions", "date_understanding", "multistep_arithmetic_two", "web_of_lies")]
SOURCES = {
    "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")],
    "glaive": [real("hiyouga__LLaMA-Factory/glaive_toolcall_en_demo.json")],
    "fastchat": [real("lm-sys__FastChat/dummy_conversation.json")],
    "cot_parquet": [real("KentaNishi__2025_llm_comp_main/"
                         "structured_data_with_cot_dataset_512_v2__train-00000-of-00001.parquet")],
    "bbh": BBH,
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("s")
    paths = make_data_dir(root, SOURCES)
    (paths.benchmarks / "bbh").mkdir(parents=True)
    for f in BBH:
        (paths.benchmarks / "bbh" / f.name).symlink_to(f)
    with dg.instance_for_test() as instance:
        run_all_ok(paths, instance)
        yield paths, instance


def sql(paths, q):
    return run_query(paths.root, q)


def check_passed(instance, asset: str, check: str) -> bool:
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    return instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [key])[key].evaluation.passed


def test_benchmark_copies_are_excluded_as_contaminated(built):
    paths, _ = built
    got = sql(paths, "SELECT exclusion_reason, count(*) n FROM curation WHERE source = 'bbh' "
                     "GROUP BY ALL")
    assert got.rows() == [("contaminated:bbh", 12)]
    hits = sql(paths, "SELECT benchmark, items_hit FROM contamination_hits")
    assert hits.rows() == [("bbh", 12)]


def test_every_exclusion_has_a_reason_and_no_excluded_row_is_split(built):
    paths, instance = built
    leaked = sql(paths, "SELECT count(*) n FROM splits JOIN curation USING (source, example_id)"
                        " WHERE NOT kept")["n"][0]
    assert leaked == 0
    counts = sql(paths, "SELECT (SELECT count(*) FROM curation WHERE kept) k, "
                        "(SELECT count(*) FROM splits) s")
    assert counts["k"][0] == counts["s"][0]
    for check in ("no_example_in_both_splits", "no_cluster_across_splits",
                  "tier_proportions_within_tolerance", "no_excluded_row_in_split"):
        assert check_passed(instance, "split_assignments", check), check


def test_no_duplicate_cluster_or_prompt_straddles_train_and_eval(built):
    paths, _ = built
    straddle = sql(paths, "SELECT count(*) n FROM (SELECT prompt_key FROM splits "
                          "GROUP BY prompt_key HAVING count(DISTINCT split) > 1)")["n"][0]
    assert straddle == 0
    # the Parquet set holds many answers per prompt: they must all sit in one split
    many = sql(paths, "SELECT prompt_key, count(*) n FROM splits WHERE source = 'cot_parquet' "
                      "GROUP BY ALL HAVING n > 1")
    assert many.height > 10


def test_every_tier_is_in_eval_with_similar_shares(built):
    paths, _ = built
    share = sql(paths, "SELECT split, complexity_tier, n * 1.0 / sum(n) OVER (PARTITION BY "
                       "split) s FROM (SELECT split, complexity_tier, count(*) n FROM splits "
                       "GROUP BY split, complexity_tier)")
    tiers = set(share["complexity_tier"])
    assert tiers == {"simple", "medium", "complex"}
    for tier in tiers:
        by_split = dict(share.filter(pl.col("complexity_tier") == tier)
                        .select("split", "s").iter_rows())
        assert abs(by_split["train"] - by_split["eval"]) <= 0.05


def test_exports_load_in_hugging_face_datasets(built, monkeypatch):
    paths, instance = built
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    train = datasets.load_dataset("json", data_files=str(paths.exports / "openai/train.jsonl"),
                                  split="train")
    rows = pl.read_parquet(paths.splits / "train.parquet").height
    assert train.num_rows == rows
    first = train[0]["messages"]
    assert set(first[0]) >= {"role", "content"}
    pq = datasets.load_dataset("parquet", data_files=str(paths.exports / "openai/train.parquet"),
                               split="train")
    assert pq.num_rows == rows and "messages" in pq.column_names
    info = json.loads((paths.exports / "sharegpt/dataset_info.json").read_text())
    entry = info["instruct_assets_train"]
    assert entry["formatting"] == "sharegpt"
    share = json.loads((paths.exports / entry["file_name"].replace("../", "")).read_text()) \
        if (paths.exports / entry["file_name"]).exists() else json.loads(
            (paths.exports / "sharegpt" / entry["file_name"]).read_text())
    assert len(share) == rows
    for check in ("every_line_parses", "row_counts_match_splits", "round_trip_same_ids"):
        assert check_passed(instance, "training_exports", check), check


def test_multi_turn_rows_are_listed_not_dropped_from_alpaca(built):
    paths, instance = built
    alpaca = json.loads((paths.exports / "alpaca/train.json").read_text())
    train = pl.read_parquet(paths.splits / "train.parquet")
    single = train.filter(pl.col("messages").list.eval(
        pl.element().struct.field("role") == "user").list.sum() == 1)
    assert len(alpaca) < train.height
    event = instance.get_latest_materialization_event(dg.AssetKey("training_exports"))
    files = event.asset_materialization.metadata["files"].value
    assert "not_exportable" in files
    assert len(alpaca) <= single.height


def test_dataset_card_reports_sources_splits_and_removals(built):
    paths, _ = built
    card = (paths.exports / "README.md").read_text()
    for needle in ("## Splits", "contaminated:bbh", "glaive", "## Complexity tiers"):
        assert needle in card
