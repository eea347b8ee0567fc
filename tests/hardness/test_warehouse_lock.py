"""A user's DuckDB session holding ``warehouse.duckdb`` read-write while a run wants to write
its views: the run must say at once who holds the lock, give up after a bounded wait with
that process named in the run summary, and recover on the next run once the session ends.

Today (DuckDBResource) each DuckDB-writing asset retries about 100 s and then fails with an
error the summary shows only as "Error occurred while executing op ...": a run took 322 s
here and never named the lock holder. The bounded wait is the ``lock_timeout_s`` field
of the warehouse resource; until it exists this test is an expected failure.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from instruct_assets.definitions import build_defs
from instruct_assets.pipeline import run_pipeline
from tests.support import make_data_dir, real

HOLD = """
import duckdb, sys
con = duckdb.connect(sys.argv[1])  # read-write, like `duckdb data/warehouse.duckdb`
con.execute("SELECT count(*) FROM examples").fetchall()
print("holding", flush=True)
sys.stdin.read()
"""


@contextmanager
def user_session(warehouse: Path) -> Iterator[int]:
    """Another process with the warehouse open read-write until the block ends; its pid."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(warehouse)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_a_user_session_on_the_warehouse_fails_the_run_naming_its_pid(tmp_path):
    paths = make_data_dir(tmp_path, {"alpaca": [real("hiyouga__LLaMA-Factory/identity.json")]})
    defs = build_defs(paths.root)
    warehouse = defs.resources["duckdb"]
    assert "lock_timeout_s" in type(warehouse).model_fields, (
        f"{type(warehouse).__name__} has no bounded wait for the warehouse lock")
    defs = dg.Definitions(assets=defs.assets, resources={
        **defs.resources, "duckdb": type(warehouse)(database=str(paths.warehouse),
                                                    lock_timeout_s=2.0)})
    with dg.instance_for_test() as instance:
        assert run_pipeline(defs, paths, instance).downstream_ok
        with user_session(paths.warehouse) as pid:
            blocked = run_pipeline(defs, paths, instance)
        assert blocked.downstream_ok is False
        assert [s.source for s in blocked.sources if s.published] == ["alpaca"]
        assert any(f"PID {pid}" in f for f in blocked.downstream_failures), (
            blocked.downstream_failures)
        warnings = [rec.user_message for run in instance.get_runs()
                    for rec in instance.all_logs(run.run_id)
                    if rec.level == logging.WARNING and f"PID {pid}" in rec.user_message]
        assert warnings, "no log line named the process holding the warehouse"

        # the session ends: the next run writes the views again
        again = run_pipeline(defs, paths, instance)
        assert again.downstream_ok, again.downstream_failures
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM examples").fetchone()[0] > 0
    finally:
        con.close()
