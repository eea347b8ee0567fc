"""A user's DuckDB session holding the warehouse: the run waits, then names the holder."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb
import pytest

from instruct_assets.lib.warehouse import WarehouseLockedError, connect_for_write

HOLD = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
        " time.sleep(float(sys.argv[2]))")


def hold(path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_writer_waits_for_a_reader_to_leave_then_succeeds(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(db)).execute("CREATE VIEW v AS SELECT 1 AS x").close()
    holder = hold(db, 2.0)
    said: list[str] = []
    try:
        started = time.monotonic()
        con = connect_for_write(db, 60, said.append)
        waited = time.monotonic() - started
        con.execute("CREATE OR REPLACE VIEW v AS SELECT 2 AS x")
        assert con.execute("SELECT x FROM v").fetchone() == (2,)
        con.close()
    finally:
        holder.wait(timeout=30)
    assert waited >= 0.5
    assert len(said) == 1 and f"PID {holder.pid}" in said[0]


def test_writer_gives_up_after_the_bounded_wait_naming_the_lock(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(db)).execute("CREATE VIEW v AS SELECT 1 AS x").close()
    before = db.read_bytes()
    holder = hold(db, 30.0)
    try:
        with pytest.raises(WarehouseLockedError, match=rf"PID {holder.pid}.*waited 1s"):
            connect_for_write(db, 1.0, lambda _m: None)
    finally:
        holder.kill()
        holder.wait()
    assert db.read_bytes() == before
    assert duckdb.connect(str(db), read_only=True).execute("SELECT x FROM v").fetchone() == (1,)
