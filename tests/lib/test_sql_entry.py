"""The read-only SQL entry point: what a user may run, what is refused, and locking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from _frames import alpaca_conversations, frame_from_conversations

from instruct_assets.lib.sql_entry import (
    QueryFailed,
    QueryRefused,
    QueryTimeout,
    WarehouseLocked,
    WarehouseMissing,
    _lock_down,
    check_query,
    run_query,
    write_result,
)

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"


# --------------------------------------------------------------------------- fixtures


def _build_warehouse(data_dir: Path, frame: pl.DataFrame, source: str = "s1") -> Path:
    """A warehouse like the pipeline's: a view over normalized Parquet plus a small table."""
    part = data_dir / "normalized" / f"source={source}"
    part.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(part / "examples.parquet")
    warehouse = data_dir / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))
    try:
        con.execute(
            "CREATE VIEW examples AS SELECT * FROM "
            f"read_parquet('{data_dir}/normalized/*/*.parquet', hive_partitioning = false)"
        )
        con.execute("CREATE TABLE scores AS SELECT 'a' AS example_id, 0.5 AS score")
        con.execute("CREATE MACRO top_scores(n) AS TABLE SELECT * FROM scores LIMIT n")
    finally:
        con.close()
    return warehouse


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    frame = frame_from_conversations(
        [
            [("user", "hi"), ("assistant", 'hello, "friend"')],
            [("system", "be brief"), ("user", "2+2?"), ("assistant", "4")],
        ]
    )
    _build_warehouse(data, frame)
    # Things outside the data dir that a query must never reach.
    frame.write_parquet(tmp_path / "outside.parquet")
    (tmp_path / "secret.csv").write_text("token\nhunter2\n")
    return data


def _state(data_dir: Path) -> tuple[bytes, list[str]]:
    """Warehouse bytes plus every file under the tmp folder: 'changes nothing' means equal."""
    files = sorted(str(p.relative_to(data_dir.parent)) for p in data_dir.parent.rglob("*"))
    return (data_dir / "warehouse.duckdb").read_bytes(), files


# --------------------------------------------------------------------------- allowed


def test_a_select_on_the_examples_view_returns_rows_from_parquet(data_dir: Path) -> None:
    out = run_query(data_dir, "SELECT source, len(messages) AS turns FROM examples ORDER BY turns")
    assert out.to_dicts() == [{"source": "test", "turns": 2}, {"source": "test", "turns": 3}]


def test_tables_and_joins_with_views_work(data_dir: Path) -> None:
    out = run_query(data_dir, "SELECT count(*) AS n, max(score) AS s FROM scores, examples")
    assert out.row(0) == (2, 0.5)


@pytest.mark.parametrize(
    "query",
    [
        "WITH t AS (SELECT * FROM examples) SELECT count(*) FROM t",
        "FROM examples LIMIT 1",
        "VALUES (1, 'a')",
        "SHOW TABLES",
        "DESCRIBE examples",
        "SUMMARIZE scores",
        "EXPLAIN SELECT * FROM examples",
        "EXPLAIN ANALYZE SELECT count(*) FROM examples",
        "PRAGMA table_info('examples')",
        "PRAGMA show_tables",
        "CALL pragma_table_info('scores')",
        "SELECT * FROM duckdb_views() WHERE NOT internal",
        "SELECT * FROM top_scores(1)",
        "-- a comment first\nSELECT 1;",
        "SELECT * FROM examples PIVOT (count(*) FOR origin IN ('human'))",
    ],
)
def test_read_only_statements_a_user_needs_are_allowed(data_dir: Path, query: str) -> None:
    before = _state(data_dir)
    assert run_query(data_dir, query).height >= 1
    assert _state(data_dir) == before


def test_strings_that_look_like_paths_are_only_refused_when_they_are_read(data_dir: Path) -> None:
    out = run_query(
        data_dir,
        "SELECT '/etc/passwd' AS p, 'read_text' AS f FROM examples "
        "WHERE source_file NOT LIKE '%/etc/%' LIMIT 1",
    )
    assert out.row(0) == ("/etc/passwd", "read_text")


def test_files_inside_the_data_dir_can_be_read_directly(data_dir: Path) -> None:
    part = data_dir / "normalized" / "source=s1" / "examples.parquet"
    for query in (
        f"SELECT count(*) FROM read_parquet('{part}')",
        f"SELECT count(*) FROM read_parquet(['{part}', '{part}'])",
        f"SELECT count(*) FROM read_parquet('{data_dir}/normalized/*/*.parquet')",
        f"SELECT count(*) FROM '{part}'",
        f"SELECT count(*) FROM glob('{data_dir}/normalized/*/*')",
    ):
        assert run_query(data_dir, query).item() >= 1, query


# --------------------------------------------------------------------------- refused

REFUSALS = [
    ("INSERT INTO scores VALUES ('b', 1.0)", "INSERT"),
    ("UPDATE scores SET score = 1", "UPDATE"),
    ("DELETE FROM scores", "DELETE"),
    ("DROP VIEW examples", "DROP"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("CREATE TEMP TABLE t AS SELECT 1", "CREATE"),
    ("ALTER TABLE scores RENAME TO s2", "ALTER"),
    ("COPY examples TO '/tmp/x.csv'", "COPY"),
    ("COPY (select 1) TO 'x.parquet'", "COPY"),
    ("COPY scores FROM '{tmp}/secret.csv'", "COPY"),
    ("ATTACH '{tmp}/other.duckdb' AS other", "ATTACH"),
    ("DETACH other", "DETACH"),
    ("INSTALL httpfs", "LOAD"),
    ("LOAD httpfs", "LOAD"),
    ("SET enable_external_access=true", "SET"),
    ("RESET allowed_directories", "SET"),
    ("PRAGMA enable_profiling", "PRAGMA enable_profiling"),
    ("EXPORT DATABASE '{tmp}/dump'", "EXPORT"),
    ("IMPORT DATABASE '{tmp}/dump'", "IMPORT DATABASE"),
    ("CALL checkpoint()", "checkpoint()"),
    ("CHECKPOINT", "CALL"),
    ("BEGIN TRANSACTION", "TRANSACTION"),
    ("PIVOT scores ON example_id", "MULTI"),
    ("EXPLAIN ANALYZE INSERT INTO scores VALUES ('b', 1.0)", "EXPLAIN"),
    ("SELECT 1; DROP VIEW examples", "2 statements"),
    ("SELECT * FROM read_csv('/etc/passwd')", "outside the data dir"),
    ("SELECT * FROM '/etc/passwd'", "outside the data dir"),
    ("DESCRIBE '/etc/passwd'", "outside the data dir"),
    ("SELECT * FROM read_text('/etc/hostname')", "read_text"),
    ("SELECT * FROM read_blob('{data}/warehouse.duckdb')", "read_blob"),
    ("SELECT * FROM read_parquet('{data}/../outside.parquet')", "'..'"),
    ("SELECT * FROM read_parquet('{data}/normalized/../../outside.parquet')", "'..'"),
    ("SELECT * FROM read_parquet('{tmp}/outside.parquet')", "outside the data dir"),
    ("SELECT * FROM read_parquet('{tmp}/*.parquet')", "outside the data dir"),
    ("SELECT * FROM read_parquet('{data}_evil/x.parquet')", "outside the data dir"),
    ("SELECT * FROM read_parquet('../outside.parquet')", "relative paths"),
    ("SELECT * FROM 'x.parquet'", "relative paths"),
    ("SELECT * FROM glob('/etc/*')", "outside the data dir"),
    ("SELECT * FROM read_csv('https://example.com/x.csv')", "remote"),
    ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", "remote"),
    ("SELECT * FROM read_csv('~/.bashrc')", "outside the data dir"),
    ("SELECT * FROM read_csv('{data}' || '/../secret.csv')", "string literals"),
    ("SELECT * FROM query('SELECT 1')", "query()"),
    ("SELECT * FROM read_duckdb('{data}/warehouse.duckdb')", "read_duckdb"),
    ("SELECT (SELECT count(*) FROM read_text('/etc/hostname'))", "read_text"),
    ("WITH t AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM t", "outside"),
    ("SELECT * FROM no_such_function()", "not a known read-only table function"),
    ("", "empty query"),
]


@pytest.mark.parametrize(("query", "expected"), REFUSALS, ids=[q for q, _ in REFUSALS])
def test_writes_and_escapes_are_refused_and_change_nothing(
    data_dir: Path, query: str, expected: str
) -> None:
    tmp = data_dir.parent
    sql = query.replace("{tmp}", str(tmp)).replace("{data}", str(data_dir))
    before = _state(data_dir)
    x_csv_existed = Path("/tmp/x.csv").exists()
    with pytest.raises(QueryRefused) as err:
        run_query(data_dir, sql)
    assert expected in str(err.value)
    assert err.value.reason  # says why, not only what
    assert _state(data_dir) == before
    assert Path("/tmp/x.csv").exists() == x_csv_existed


def test_a_symlink_inside_the_data_dir_cannot_lead_out_of_it(data_dir: Path) -> None:
    (data_dir / "link").symlink_to(data_dir.parent)
    with pytest.raises(QueryRefused, match="symlink"):
        run_query(data_dir, f"SELECT * FROM read_csv('{data_dir}/link/secret.csv')")


def test_refusals_happen_before_the_warehouse_is_opened(tmp_path: Path) -> None:
    # No warehouse at all: a refused query still says "refused", not "missing".
    with pytest.raises(QueryRefused):
        check_query(tmp_path, "DROP TABLE x")
    with pytest.raises(QueryRefused):
        run_query(tmp_path, "SELECT * FROM read_csv('/etc/passwd')")


def test_the_engine_itself_refuses_files_outside_even_when_a_view_points_there(
    data_dir: Path,
) -> None:
    """Layer 2 alone: a view the parse check cannot see into still cannot leak a file."""
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"))
    con.execute(f"CREATE VIEW leak AS SELECT * FROM read_csv('{data_dir.parent}/secret.csv')")
    con.close()
    with pytest.raises(QueryRefused, match="engine refused"):
        run_query(data_dir, "SELECT * FROM leak")


def test_the_engine_lock_down_holds_without_the_parse_check(data_dir: Path) -> None:
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        _lock_down(con, data_dir)
        assert con.execute("SELECT count(*) FROM examples").fetchone() == (2,)
        for sql in (
            "SELECT * FROM read_csv('/etc/passwd')",
            f"SELECT * FROM read_parquet('{data_dir}/../outside.parquet')",
            f"SELECT * FROM read_parquet('{data_dir.parent}/outside.parquet')",
            f"COPY (SELECT 1) TO '{data_dir.parent}/x.csv'",
            "SET enable_external_access = true",
            "SET allowed_directories = ['/']",
            "SET lock_configuration = false",
            "LOAD httpfs",
        ):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        assert not (data_dir.parent / "x.csv").exists()
    finally:
        con.close()


def test_bad_sql_is_a_query_failure_not_a_refusal(data_dir: Path) -> None:
    with pytest.raises(QueryFailed, match="syntax error"):
        run_query(data_dir, "SELEC 1")
    with pytest.raises(QueryFailed, match="no_such_table"):
        run_query(data_dir, "SELECT * FROM no_such_table")


# --------------------------------------------------------------------------- file lifecycle


def test_a_missing_warehouse_tells_the_user_to_run_the_pipeline(tmp_path: Path) -> None:
    with pytest.raises(WarehouseMissing, match="run the pipeline first"):
        run_query(tmp_path / "data", "SELECT 1")


def test_the_file_is_released_right_after_the_query(data_dir: Path) -> None:
    run_query(data_dir, "SELECT count(*) FROM examples")
    writer = duckdb.connect(str(data_dir / "warehouse.duckdb"))  # read-write, same process
    writer.execute("CREATE TABLE after_query AS SELECT 1")
    writer.close()


def test_a_long_query_is_interrupted_at_the_timeout_and_releases_the_file(
    data_dir: Path,
) -> None:
    start = time.monotonic()
    with pytest.raises(QueryTimeout):
        run_query(data_dir, "SELECT sum(hash(i)) FROM range(100000000000) t(i)", timeout_s=1)
    assert time.monotonic() - start < 5
    duckdb.connect(str(data_dir / "warehouse.duckdb")).close()


def _start_writer(data_dir: Path, hold_s: float) -> subprocess.Popen[str]:
    """Another process holding a read-write connection, as a pipeline run would."""
    script = textwrap.dedent(
        f"""
        import time, duckdb
        con = duckdb.connect({str(data_dir / "warehouse.duckdb")!r})
        print("ready", flush=True)
        time.sleep({hold_s})
        con.close()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_query_waits_for_a_writer_then_succeeds(data_dir: Path) -> None:
    proc = _start_writer(data_dir, hold_s=2)
    try:
        start = time.monotonic()
        out = run_query(data_dir, "SELECT count(*) AS n FROM examples", timeout_s=30)
        waited = time.monotonic() - start
    finally:
        proc.wait(timeout=30)
    assert out.item() == 2
    assert waited > 1.0


def test_a_writer_holding_past_the_timeout_raises_locked_naming_file_and_pid(
    data_dir: Path,
) -> None:
    proc = _start_writer(data_dir, hold_s=30)
    try:
        start = time.monotonic()
        with pytest.raises(WarehouseLocked) as err:
            run_query(data_dir, "SELECT 1", timeout_s=0.5)
        assert time.monotonic() - start < 5
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert str(data_dir / "warehouse.duckdb") in str(err.value)
    assert err.value.pid == proc.pid
    assert f"process {proc.pid}" in str(err.value)


# --------------------------------------------------------------------------- write_result


@pytest.fixture
def result(data_dir: Path) -> pl.DataFrame:
    return run_query(data_dir, "SELECT example_id, messages, source_row FROM examples ORDER BY 3")


def test_csv_output_keeps_nested_messages_as_json_text(tmp_path: Path, result: pl.DataFrame):
    path = write_result(result, tmp_path / "out" / "r.csv", "csv")
    back = pl.read_csv(path)
    assert back["example_id"].to_list() == result["example_id"].to_list()
    assert [json.loads(m) for m in back["messages"]] == result["messages"].to_list()


def test_json_output_is_an_array_of_row_objects(tmp_path: Path, result: pl.DataFrame) -> None:
    path = write_result(result, tmp_path / "r.json", "json")
    rows = json.loads(path.read_text())
    assert rows == result.to_dicts()


def test_parquet_output_round_trips_exactly(tmp_path: Path, result: pl.DataFrame) -> None:
    path = write_result(result, tmp_path / "r.parquet", "parquet")
    assert pl.read_parquet(path).equals(result)


def test_a_failed_write_leaves_the_old_file_and_no_temp_files(
    tmp_path: Path, result: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    path = out_dir / "r.parquet"
    path.write_bytes(b"old result")

    def broken(self: pl.DataFrame, file: object, *args: object, **kwargs: object) -> None:
        file.write(b"half a file")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        write_result(result, path, "parquet")
    assert path.read_bytes() == b"old result"
    assert os.listdir(out_dir) == ["r.parquet"]


def test_an_unknown_format_is_rejected(tmp_path: Path, result: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown format"):
        write_result(result, tmp_path / "r.xlsx", "xlsx")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- real rows


def test_real_alpaca_demo_rows_can_be_queried_and_exported(tmp_path: Path) -> None:
    convs = alpaca_conversations(str(REAL / "hiyouga__LLaMA-Factory" / "alpaca_en_demo.json"))
    frame = frame_from_conversations(convs, source="alpaca_en_demo", source_format="alpaca")
    data_dir = tmp_path / "data"
    _build_warehouse(data_dir, frame, source="alpaca_en_demo")

    out = run_query(
        data_dir,
        "SELECT count(*) AS n, count(DISTINCT messages[2].content) AS distinct_answers, "
        "max(length(messages[2].content)) AS longest FROM examples",
    )
    n, distinct_answers, longest = out.row(0)
    assert n == 999
    assert distinct_answers < n  # the file has exact duplicates
    assert longest == max(len(c[1][1]) for c in convs)

    html = run_query(
        data_dir,
        "SELECT example_id, messages FROM examples "
        "WHERE messages[1].content LIKE '%<%>%' ORDER BY source_row",
    )
    path = write_result(html, tmp_path / "html.csv", "csv")
    back = pl.read_csv(path)
    assert back.height == html.height
    assert [json.loads(m) for m in back["messages"]] == html["messages"].to_list()
