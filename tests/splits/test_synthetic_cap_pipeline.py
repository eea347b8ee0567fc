"""The synthetic share cap, configured in settings.yaml and enforced by the real pipeline."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from instruct_assets.cli import main
from instruct_assets.lib.sql_entry import run_query
from tests.support import make_data_dir, real, run_all_ok

CAP = 0.3
SOURCES = {
    # 999 human rows; the synthetic_* folder defaults to origin synthetic (2015 rows)
    "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")],
    "synthetic_code": [real("sahil280114__codealpaca/code_alpaca_2k.json")],
}


def check(instance: dg.DagsterInstance, name: str):
    key = dg.AssetCheckKey(dg.AssetKey("split_assignments"), name)
    return instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [key])[key].evaluation


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    root = tmp_path_factory.mktemp("cap")
    paths = make_data_dir(root, SOURCES)
    paths.settings_file.write_text(
        f"curation:\n  max_synthetic_share: {CAP}\n  enforce_synthetic_cap: true\n",
        encoding="utf-8")
    with dg.instance_for_test() as instance:
        run_all_ok(paths, instance)
        yield paths, instance


def test_every_split_holds_at_most_the_configured_synthetic_share(capped):
    paths, instance = capped
    shares = run_query(paths.root, "SELECT split, avg((origin = 'synthetic')::INT) share, "
                                   "count(*) n FROM splits GROUP BY split ORDER BY split")
    assert shares["split"].to_list() == ["eval", "train"]
    assert all(s <= CAP for s in shares["share"].to_list()), shares
    # the fewest rows were dropped: one more synthetic row would break the cap
    human = run_query(paths.root, "SELECT split, count(*) h FROM splits WHERE origin <> "
                                  "'synthetic' GROUP BY split ORDER BY split")["h"].to_list()
    synth = [round(s * n) for s, n in zip(shares["share"], shares["n"], strict=True)]
    assert all((k + 1) / (h + k + 1) > CAP for h, k in zip(human, synth, strict=True))
    assert check(instance, "synthetic_share_within_cap").passed
    # before the cap the synthetic share was far above it: the WARN check says so
    assert not check(instance, "synthetic_share_below_cap").passed


def test_capped_rows_are_listed_with_their_reason_and_not_exported(capped):
    paths, _ = capped
    dropped = run_query(paths.root, "SELECT * FROM synthetic_capped")
    assert dropped.height > 1000
    assert set(dropped["exclusion_reason"]) == {"synthetic_cap"}
    assert set(dropped["origin"]) == {"synthetic"}
    leaked = run_query(paths.root, "SELECT count(*) n FROM synthetic_capped JOIN splits "
                                   "USING (source, example_id)")["n"][0]
    assert leaked == 0
    exported = sum(pl.read_ndjson(paths.exports / "openai" / f"{s}.jsonl").height
                   for s in ("train", "eval"))
    assert exported == run_query(paths.root, "SELECT count(*) n FROM splits")["n"][0]


def test_a_bad_settings_file_stops_the_cli_with_a_message_naming_it(tmp_path, capsys):
    paths = make_data_dir(tmp_path, {"alpaca": SOURCES["alpaca"]})
    paths.settings_file.write_text("curation:\n  min_quality_scor: 0.4\nexport: {}\n",
                                   encoding="utf-8")
    assert main(["run", "--data-dir", str(paths.root)]) == 2
    err = capsys.readouterr().err
    assert "settings.yaml" in err and "unknown section(s) ['export']" in err
    paths.settings_file.write_text("curation:\n  max_synthetic_share: lots\n", encoding="utf-8")
    assert main(["run", "--data-dir", str(paths.root)]) == 2
    err = capsys.readouterr().err
    assert "settings.yaml" in err and "max_synthetic_share" in err
