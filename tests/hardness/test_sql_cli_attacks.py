"""``instruct-assets sql`` from a shell: every query that would write, escape the data dir or
loosen the engine's settings is refused with exit code 2 before anything runs, and the
warehouse file keeps its bytes. (``tests/lib/test_sql_entry.py`` covers the library; this
proves the command-line path a user actually types, so it keeps to the main attack kinds:
each query is a fresh process, about 2 s of imports even on a quiet machine.)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from instruct_assets.lib.paths import DataPaths
from tests.support import make_data_dir, real, run_all


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DataPaths:
    """A data dir with a warehouse built by a real run."""
    root = tmp_path_factory.mktemp("sql_cli")
    paths = make_data_dir(root, {"alpaca": [real("hiyouga__LLaMA-Factory/identity.json")]})
    with dg.instance_for_test() as instance:
        assert run_all(paths, instance).downstream_ok
    return paths


def sql(paths: DataPaths, query: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # sql needs none
    return subprocess.run(
        [sys.executable, "-m", "instruct_assets.cli", "sql", query, "--data-dir",
         str(paths.root), "--timeout", "10"],
        capture_output=True, text=True, env=env, timeout=120)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_plain_select_works_from_the_shell(data: DataPaths):
    proc = sql(data, "SELECT count(*) AS n FROM examples")
    assert proc.returncode == 0, proc.stderr
    assert "91" in proc.stdout  # identity.json holds 91 records


ATTACKS = {
    "copy_out": "COPY examples TO '{tmp}/stolen.csv'",
    "copy_into_data_dir": "COPY (SELECT 1 AS x) TO '{root}/planted.csv'",
    "attach": "ATTACH '{tmp}/other.duckdb' AS other",
    "install": "INSTALL httpfs",
    "read_etc_passwd": "SELECT * FROM read_csv('/etc/passwd')",
    "file_as_table": "SELECT * FROM '/etc/passwd'",
    "reenable_external_access": "SET enable_external_access = true",
    "widen_allowed_directories": "SET allowed_directories = ['/']",
    "two_statements": "SELECT 1; DROP VIEW examples",
    "parquet_up_the_tree": "SELECT * FROM read_parquet('../..')",
    "parquet_escape_by_dots": "SELECT * FROM read_parquet('{root}/../../etc/x.parquet')",
    "drop_view": "DROP VIEW examples",
    "export_database": "EXPORT DATABASE '{tmp}/dump'",
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_an_attack_query_is_refused_and_changes_nothing(data: DataPaths, tmp_path: Path,
                                                        name: str):
    before = digest(data.warehouse)
    query = ATTACKS[name].format(tmp=tmp_path, root=data.root)
    proc = sql(data, query)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "query refused" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert digest(data.warehouse) == before
    assert list(tmp_path.iterdir()) == []  # nothing written beside the test either
    assert not (data.root / "planted.csv").exists()
