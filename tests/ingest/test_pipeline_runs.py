"""The whole ingestion through Dagster: determinism, idempotence, held-back sources, CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import dagster as dg
import polars as pl

from instruct_assets.definitions import build_defs
from tests.support import REPO, make_data_dir, real, run_all

FILES = {
    "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")],
    "glaive": [real("hiyouga__LLaMA-Factory/glaive_toolcall_en_demo.json")],
    "wikisql": [real("ml-explore__mlx-examples/lora_wikisql_train.jsonl")],
}


def digests(root):
    """Every output file (Parquet, JSON, JSONL, YAML, card), not the raw links or the DB."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()
            and p.parts[len(root.parts)] not in ("staging", "raw")
            and p.suffix != ".duckdb" and ".duckdb" not in p.name}


def test_definitions_load():
    defs = build_defs("/nonexistent/data")
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"staged_examples", "normalized_examples"} <= keys


def test_running_twice_gives_byte_identical_outputs(tmp_path):
    one = make_data_dir(tmp_path / "one", FILES)
    two = make_data_dir(tmp_path / "two", FILES)
    with dg.instance_for_test() as a, dg.instance_for_test() as b:
        run_all(one, a)
        first = digests(one.root)
        run_all(two, b)
        run_all(one, a)  # re-materializing changes nothing
    assert first == digests(two.root) == digests(one.root)
    assert {"normalized/source=alpaca/examples.parquet", "quality/quality.parquet",
            "splits/train.parquet", "exports/openai/train.jsonl", "exports/README.md"} <= set(first)


def test_a_failing_source_keeps_its_last_good_output(tmp_path):
    paths = make_data_dir(tmp_path, FILES)
    with dg.instance_for_test() as instance:
        run_all(paths, instance)
        before = paths.normalized_file("wikisql").read_bytes()
        # the source turns to garbage: held back, previous output untouched
        for f in (paths.raw / "wikisql").iterdir():
            f.unlink()
        (paths.raw / "wikisql" / "broken.jsonl").write_text("not json\n" * 10)
        outcome = run_all(paths, instance)
        got = {o.source: o for o in outcome.sources}
        assert not got["wikisql"].published
        assert got["wikisql"].failed_checks == ["reject_rate_below_ceiling"]
        assert got["alpaca"].published and got["glaive"].published
        assert paths.normalized_file("wikisql").read_bytes() == before
        failed = instance.get_latest_materialization_event(
            dg.AssetKey("staged_examples"))  # staged was still recorded with metadata
        assert failed is not None


def test_cli_run_on_a_folder_of_real_files(tmp_path):
    paths = make_data_dir(tmp_path / "data", {**FILES, "pydict": [
        real("narendrasinghdangi__movie-recommandation/toy_chat_fine_tuning.jsonl")]})
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "instruct_assets.cli", "run", "--data-dir", str(paths.root)],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "3 of 4 sources published" in proc.stdout
    assert "held back: pydict (reject_rate_below_ceiling)" in proc.stdout
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "instruct_assets.cli", *args,
                               "--data-dir", str(paths.root)],
                              capture_output=True, text=True, env=env, timeout=300)

    before = {p: p.stat().st_mtime_ns for p in paths.root.rglob("*") if p.is_file()}
    listing = cli("sources")
    assert listing.returncode == 0, listing.stderr
    lines = {ln.split()[0]: ln for ln in listing.stdout.splitlines()[2:]}
    assert "published" in lines["alpaca"] and " 999 " in lines["alpaca"]
    assert "held back (reject_rate_below_ceiling)" in lines["pydict"]
    status = cli("status")
    assert status.returncode == 1  # a blocking check failed (pydict)
    assert "reject_rate_below_ceiling" in status.stdout and "pydict" in status.stdout
    assert "one_quality_row_per_example" in status.stdout
    # both commands only read
    assert {p: p.stat().st_mtime_ns for p in paths.root.rglob("*") if p.is_file()} == before
    total = sum(pl.read_parquet(paths.normalized_file(s)).height for s in FILES)
    rejects = sum(pl.read_parquet(paths.rejects_file(s)).height for s in FILES)
    assert (total, rejects) == (999 + 300 + 1000, 0)


def test_cli_errors_are_clear(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    proc = subprocess.run(
        [sys.executable, "-m", "instruct_assets.cli", "run", "--data-dir", str(tmp_path / "no")],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    (tmp_path / "raw").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "instruct_assets.cli", "run", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "DAGSTER_HOME is not set" in proc.stderr
