"""Concurrent runs never fail on the DuckDB lock and never corrupt the warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from instruct_assets.lib.sql_entry import run_query
from tests.support import REPO, make_data_dir, real, run_all


def test_two_concurrent_multiprocess_runs_share_the_warehouse(tmp_path):
    paths = make_data_dir(tmp_path / "data", {
        "alpaca": [real("hiyouga__LLaMA-Factory/identity.json")],
        "wiki": [real("ml-explore__mlx-examples/lora_wikisql_train.jsonl")]})
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "INSTRUCT_ASSETS_DATA": str(paths.root),
           "PYTHONPATH": str(REPO)}
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            run_all(paths, instance)  # publish the sources once
    finally:
        os.environ.pop("DAGSTER_HOME", None)

    def launch(_i: int) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dagster", "job", "execute", "-m",
             "tests.automation.jobs_for_tests", "-a", "get_job"],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=900)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(launch, range(2)))
    for r in results:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "RUN_SUCCESS" in r.stdout + r.stderr
    got = run_query(paths.root, "SELECT count(*) n FROM quality")
    assert got["n"][0] == 91 + 1000
    assert run_query(paths.root, "SELECT count(*) n FROM splits")["n"][0] > 0
