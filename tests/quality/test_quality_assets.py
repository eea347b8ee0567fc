"""The quality stage on real files through the real assets, answered in SQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import polars as pl
import pytest

from instruct_assets.lib.sql_entry import run_query
from tests.support import QUALITY_SOURCES, REPO, make_data_dir, real, run_all_ok

SOURCES = QUALITY_SOURCES


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    paths = make_data_dir(tmp_path_factory.mktemp("q"), SOURCES)
    with dg.instance_for_test() as instance:
        run_all_ok(paths, instance)
        yield paths, instance


def sql(paths, query: str) -> pl.DataFrame:
    return run_query(paths.root, query)


def test_documented_relations_exist(warehouse):
    paths, _ = warehouse
    names = set(sql(paths, "SELECT table_name FROM information_schema.tables")["table_name"])
    assert {"examples", "rejects", "quality", "source_summary", "flag_counts",
            "system_prompts", "complexity", "curation", "splits", "train", "eval"} <= names


def test_one_quality_row_per_example_and_scores_in_range(warehouse):
    paths, instance = warehouse
    counts = sql(paths, "SELECT (SELECT count(*) FROM examples) e, (SELECT count(*) FROM "
                        "quality) q, (SELECT count(*) FROM quality WHERE quality_score NOT "
                        "BETWEEN 0 AND 1 OR quality_score IS NULL) bad")
    assert counts.row(0) == (counts["e"][0], counts["e"][0], 0)
    assert counts["e"][0] == 999 + 91 + 2015 + 300 + 568
    for check in ("one_quality_row_per_example", "scores_in_range"):
        key = dg.AssetCheckKey(dg.AssetKey("quality_scores"), check)
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert record.evaluation.passed


def test_code_alpaca_empty_outputs_are_found_in_rejects(warehouse):
    paths, _ = warehouse
    got = sql(paths, "SELECT source_row, reason_code FROM rejects WHERE source = 'code_alpaca' "
                     "ORDER BY source_row")
    assert got.rows() == [(237, "empty_content"), (1859, "empty_content")]


def test_identity_placeholders_are_flagged_exactly(warehouse):
    paths, _ = warehouse
    records = json.loads(real("hiyouga__LLaMA-Factory/identity.json").read_text())
    with_braces = sum("{{" in r["output"] for r in records)
    got = sql(paths, "SELECT count(*) n FROM quality WHERE source = 'identity' AND "
                     "list_contains(quality_flags, 'template_placeholder')")["n"][0]
    assert got == with_braces > 80
    worst = sql(paths, "SELECT placeholder FROM quality WHERE source = 'identity' AND "
                       "template_placeholder LIMIT 1")["placeholder"][0]
    assert worst in ("{{name}}", "{{author}}")


def test_alpaca_demo_fourteen_exact_duplicates(warehouse):
    paths, _ = warehouse
    got = sql(paths, "SELECT count(*) FILTER (WHERE is_exact_duplicate) members, "
                     "count(*) FILTER (WHERE list_contains(quality_flags, 'exact_duplicate')) "
                     "extra_copies FROM quality WHERE source = 'alpaca'")
    assert got.row(0) == (27, 14)


def test_glaive_duplicates_are_clustered(warehouse):
    paths, _ = warehouse
    # extra copies = members of exact groups minus one per group (the README's 35)
    extra = sql(paths, "SELECT count(*) - count(DISTINCT exact_key) n FROM quality "
                       "WHERE source = 'glaive' AND is_exact_duplicate")["n"][0]
    assert extra == 35
    # every non-representative exact member is flagged (36: one exact pair sits in a
    # cluster whose representative is a near copy, so both of its members are flagged)
    flagged = sql(paths, "SELECT count(*) n FROM quality WHERE source = 'glaive' AND "
                         "list_contains(quality_flags, 'exact_duplicate')")["n"][0]
    assert flagged == sql(paths, "SELECT count(*) n FROM quality WHERE source = 'glaive' AND "
                                 "is_exact_duplicate AND NOT is_dup_representative")["n"][0]
    reps = sql(paths, "SELECT dup_cluster_id, count(*) FILTER (WHERE is_dup_representative) r "
                      "FROM quality GROUP BY ALL HAVING r <> 1")
    assert reps.height == 0  # exactly one representative per cluster


def test_source_summary_explains_each_source(warehouse):
    paths, _ = warehouse
    summary = sql(paths, "SELECT * FROM source_summary ORDER BY source")
    assert summary["source"].to_list() == sorted(SOURCES)
    row = summary.filter(pl.col("source") == "code_alpaca").row(0, named=True)
    assert (row["rows"], row["rejects"]) == (2015, 2)
    assert json.loads(summary.filter(pl.col("source") == "identity")["flags_by_kind"][0])[
        "template_placeholder"] > 80
    prompts = sql(paths, "SELECT count, sources FROM system_prompts ORDER BY count DESC LIMIT 1")
    assert prompts["sources"][0].to_list() == ["cot"]


def test_quality_metadata_has_worst_examples_and_histogram(warehouse):
    _paths, instance = warehouse
    event = instance.get_latest_materialization_event(dg.AssetKey("quality_scores"))
    meta = event.asset_materialization.metadata
    assert "identity" in meta["worst_examples"].value
    assert meta["share_flagged"].value > 0
    assert "0.9-1.0" in meta["score_histogram"].value


@pytest.mark.parametrize("query", [
    "INSERT INTO quality SELECT * FROM quality",
    "DROP VIEW quality",
    "COPY (SELECT * FROM quality) TO 'out.csv'",
    "ATTACH '/tmp/other.duckdb' AS o",
    "SELECT * FROM read_csv('/etc/passwd')",
])
def test_sql_command_refuses_writes_and_escapes(warehouse, query):
    paths, _ = warehouse
    before = paths.warehouse.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "instruct_assets.cli", "sql", query,
                           "--data-dir", str(paths.root)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout
    assert "refused" in proc.stderr
    assert paths.warehouse.read_bytes() == before


def test_sql_command_prints_and_writes_results(warehouse, tmp_path):
    paths, _ = warehouse
    out = tmp_path / "worst.csv"
    proc = subprocess.run([sys.executable, "-m", "instruct_assets.cli", "sql",
                           "SELECT source, example_id, quality_score FROM quality ORDER BY "
                           "quality_score, example_id LIMIT 5", "--data-dir", str(paths.root),
                           "--format", "csv", "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert pl.read_csv(out).height == 5
