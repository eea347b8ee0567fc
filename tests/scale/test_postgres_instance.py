"""The whole pipeline on a Dagster instance stored in a real PostgreSQL server.

What changes when one machine is not enough is where Dagster keeps its records, not what the
pipeline writes: ``instruct-assets run`` with ``dagster_home/dagster.postgres.yaml`` must
record every run, materialization and check in Postgres (so other processes and hosts see
them) and write byte-for-byte the files the single-process SQLite setup writes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from instruct_assets.defs.ingest.assets import INGEST_CHECKS, NORMALIZED, STAGED
from tests.scale.reference import SOURCES, digests
from tests.scale.servers import REPO, Postgres, write_home
from tests.support import make_data_dir

pytestmark = pytest.mark.slow


def test_cli_run_on_a_postgres_instance(tmp_path, postgres: Postgres, reference, monkeypatch):
    db = "pipeline"
    postgres.create_database(db)
    home = write_home(tmp_path / "home")
    paths = make_data_dir(tmp_path / "data", SOURCES)
    env = {**os.environ, **postgres.env(db), "DAGSTER_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "instruct_assets.cli", "run", "--data-dir", str(paths.root),
         "--strict"], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 sources published" in proc.stdout, proc.stdout

    # the same files as the single-process SQLite run, byte for byte
    got = digests(paths.root)
    assert got == reference
    assert {"normalized/source=alpaca/examples.parquet", "quality/quality.parquet",
            "splits/train.parquet", "exports/openai/train.parquet"} <= set(got)

    # the records are in Postgres: read straight from its tables ...
    runs = postgres.query(db, "SELECT status, count(*) FROM runs GROUP BY status")
    assert runs == [("SUCCESS", 3)]  # one run per source, one downstream run
    materialized = set(postgres.query(db, """
        SELECT asset_key, partition FROM event_logs
        WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"""))
    for source in SOURCES:
        for key in (STAGED, NORMALIZED):
            assert (key.to_string(), source) in materialized
    assert ('["training_exports"]', None) in materialized
    checks = postgres.query(db, """
        SELECT c.asset_key, r.partition, c.check_name, c.execution_status
        FROM asset_check_executions c JOIN runs r ON r.run_id = c.run_id
        WHERE c.asset_key = '["staged_examples"]'""")
    assert sorted(checks) == sorted(
        ('["staged_examples"]', source, name, "SUCCEEDED")
        for source in SOURCES for name in INGEST_CHECKS)

    # ... and through the instance API, as the webserver or another host would open it
    for k, v in postgres.env(db).items():
        monkeypatch.setenv(k, v)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert sorted(instance.get_dynamic_partitions("sources")) == sorted(SOURCES)
        assert instance.get_materialized_partitions(NORMALIZED) == set(SOURCES)
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=NORMALIZED, asset_partitions=["glaive"]), limit=1
        ).records
        meta = records[0].asset_materialization.metadata
        assert meta["dagster/row_count"].value == 300
        assert meta["path"].value == str(paths.normalized_file("glaive"))
