"""The safe, read-only SQL entry point over ``<data dir>/warehouse.duckdb``.

Users type arbitrary SQL at ``instruct-assets sql``; the warehouse holds views over the
pipeline's Parquet files. Two independent layers keep such a query from writing anything or
reading anything outside the data dir, so one layer's blind spot is covered by the other:

1. **Parse check** (before the file is opened): DuckDB itself splits and classifies the text;
   exactly one SELECT-like statement passes (SELECT/WITH/VALUES/FROM, DESCRIBE/SHOW/SUMMARIZE,
   EXPLAIN of those, ``CALL``/``PRAGMA`` of read-only introspection functions). Its syntax
   tree (``json_serialize_sql``) is walked: file readers must name literal absolute paths
   inside the data dir, file paths used as table names likewise, and functions that read
   arbitrary files or run SQL built from strings (``read_text``, ``query``...) are refused.
2. **Engine lock-down** (before the query runs): the database is opened ``read_only`` with
   extension auto-install/auto-load off, then ``allowed_directories = [data dir]``,
   ``enable_external_access = false`` and ``lock_configuration = true``, so even a query the
   parser missed cannot touch other files, the network, extensions or the settings.
   Known limit of this layer (DuckDB 2.0.1 has no read-only file-system setting): a COPY TO a
   path *inside* the data dir would pass it, so write statements rest on layer 1, which
   refuses every statement type but SELECT by DuckDB's own classification.

The file is held only for the query: a pipeline run may want to write right after, and
DuckDB lets one process write only when no other process has it open. A writer holding the
file makes us retry with backoff until ``timeout_s``, then raise ``WarehouseLocked``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb
import polars as pl

from instruct_assets.lib.paths import DataPaths

__all__ = [
    "QueryFailed",
    "QueryRefused",
    "QueryTimeout",
    "SqlEntryError",
    "WarehouseLocked",
    "WarehouseMissing",
    "check_query",
    "run_query",
    "write_result",
]


# --------------------------------------------------------------------------- errors


class SqlEntryError(Exception):
    """Base of every error ``run_query`` raises, so the CLI can print one clean line."""


class QueryRefused(SqlEntryError):
    """The query would write, escape the data dir, or change settings; nothing was run.

    ``what`` names the refused construct, ``reason`` says why it is refused.
    """

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"query refused: {what}: {reason}")


class QueryFailed(SqlEntryError):
    """DuckDB rejected an allowed query (syntax error, unknown column, bad cast...)."""


class QueryTimeout(SqlEntryError):
    """The query was still running at the deadline and was interrupted."""


class WarehouseMissing(SqlEntryError, FileNotFoundError):
    """No warehouse file yet: the pipeline has not built it."""


class WarehouseLocked(SqlEntryError):
    """Another process held the warehouse for writing during the whole wait.

    ``path`` is the database file, ``pid`` the holder's process id when DuckDB names it.
    """

    def __init__(self, path: Path, pid: int | None, holder: str | None, waited_s: float) -> None:
        self.path = path
        self.pid = pid
        self.holder = holder
        who = f"process {pid}" + (f" ({holder})" if holder else "") if pid else "another process"
        super().__init__(
            f"warehouse {path} is locked for writing by {who}; waited {waited_s:.1f}s. "
            "Wait for the pipeline run to finish (or stop that process) and retry."
        )


# --------------------------------------------------------------------------- policy

#: Statement types that are never run, with the reason shown to the user.
_REFUSED_TYPES: dict[str, str] = {
    "INSERT": "it writes rows; the SQL entry point is read-only",
    "UPDATE": "it writes rows; the SQL entry point is read-only",
    "DELETE": "it deletes rows; the SQL entry point is read-only",
    "MERGE_INTO": "it writes rows; the SQL entry point is read-only",
    "CREATE": "it creates objects; the SQL entry point is read-only",
    "CREATE_FUNC": "it creates functions; the SQL entry point is read-only",
    "DROP": "it drops objects; the SQL entry point is read-only",
    "ALTER": "it alters objects; the SQL entry point is read-only",
    "COPY": "COPY reads or writes files; use write_result/--output to save results",
    "COPY_DATABASE": "it copies a database to another file",
    "EXPORT": "EXPORT DATABASE writes files",
    "ATTACH": "it opens another database file",
    "DETACH": "it changes the attached databases",
    "LOAD": "INSTALL/LOAD of extensions is disabled (they can reach files and the network)",
    "EXTENSION": "extension management is disabled",
    "SET": "SET/RESET/USE change session settings (which guard file access)",
    "VARIABLE_SET": "it changes session variables",
    "TRANSACTION": "transaction control is not needed for a read-only query",
    "PREPARE": "prepared statements are not supported here",
    "EXECUTE": "prepared statements are not supported here",
    "ANALYZE": "ANALYZE updates statistics in the database",
    "VACUUM": "VACUUM rewrites the database",
    "MULTI": "it expands to several statements (e.g. a bare PIVOT creates an enum); "
    "wrap it as SELECT * FROM (PIVOT ...)",
    "LOGICAL_PLAN": "raw plans are not supported",
    "RELATION": "raw relations are not supported",
}

#: Table functions that only read DuckDB's own state or generate values.
_SAFE_TABLE_FUNCTIONS: frozenset[str] = frozenset(
    {
        "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
        "summary", "histogram", "histogram_values", "icu_calendar_names", "pg_timezone_names",
        "pragma_collations", "pragma_database_size", "pragma_metadata_info", "pragma_platform",
        "pragma_show", "pragma_storage_info", "pragma_table_info", "pragma_version",
        "pragma_user_agent", "duckdb_columns", "duckdb_constraints", "duckdb_databases",
        "duckdb_dependencies", "duckdb_functions", "duckdb_indexes", "duckdb_keywords",
        "duckdb_schemas", "duckdb_sequences", "duckdb_settings", "duckdb_tables",
        "duckdb_types", "duckdb_views", "duckdb_extensions", "duckdb_memory",
        "duckdb_optimizers", "duckdb_temporary_files", "duckdb_table_sample",
    }
)  # fmt: skip

#: Table functions that read files: allowed only on literal paths inside the data dir.
#: The path is their first positional argument (a string or a list of strings).
_FILE_TABLE_FUNCTIONS: frozenset[str] = frozenset(
    {
        "read_parquet", "parquet_scan", "read_csv", "read_csv_auto", "sniff_csv", "read_json",
        "read_json_auto", "read_ndjson", "read_ndjson_auto", "read_json_objects",
        "read_json_objects_auto", "read_ndjson_objects", "parquet_metadata", "parquet_schema",
        "parquet_file_metadata", "parquet_kv_metadata", "parquet_full_metadata",
        "parquet_page_index", "parquet_bloom_probe", "glob",
    }
)  # fmt: skip

#: Functions refused wherever they appear, with why.
_DENIED_FUNCTIONS: dict[str, str] = {
    "read_text": "it reads any file as text; query the warehouse views instead",
    "read_blob": "it reads any file as bytes; query the warehouse views instead",
    "read_duckdb": "it opens another database file",
    "query": "it runs SQL built from a string, which would bypass these checks",
    "query_table": "it resolves tables from strings, which would bypass these checks",
    "json_execute_serialized_sql": "it runs serialized SQL, which would bypass these checks",
    "write_log": "it writes to DuckDB's log",
    "getenv": "it reads the environment",
}

#: Read-only PRAGMAs and the SELECT each one is rewritten to (so the tree walk can check it).
_PRAGMA_REWRITES: dict[str, str] = {
    "table_info": "SELECT * FROM pragma_table_info{args}",
    "version": "SELECT * FROM pragma_version()",
    "database_size": "SELECT * FROM pragma_database_size()",
    "storage_info": "SELECT * FROM pragma_storage_info{args}",
    "metadata_info": "SELECT * FROM pragma_metadata_info()",
    "platform": "SELECT * FROM pragma_platform()",
    "collations": "SELECT * FROM pragma_collations()",
    "show": "SELECT * FROM pragma_show{args}",
    "show_tables": "SHOW TABLES",
    "show_tables_expanded": "SHOW ALL TABLES",
    "database_list": "SELECT * FROM duckdb_databases()",
}

_FILE_EXTENSIONS = re.compile(
    r"\.(csv|tsv|txt|parquet|json|jsonl|ndjson|gz|zst|bz2|xz|arrow|feather|ipc|xlsx|xls|"
    r"db|duckdb|sqlite|sqlite3|avro|orc|blob|bin)$",
    re.IGNORECASE,
)
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_GLOB_CHARS = re.compile(r"[*?\[{]")
_LEADING_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)
_EXPLAIN = re.compile(r"\AEXPLAIN\s+(?:ANALY[SZ]E\s+)?(?P<inner>.*)\Z", re.IGNORECASE | re.DOTALL)
_CALL = re.compile(r"\ACALL\s+(?P<inner>.*?)[\s;]*\Z", re.IGNORECASE | re.DOTALL)
_PRAGMA = re.compile(
    r"\APRAGMA\s+(?P<name>[A-Za-z_]+)\s*(?P<args>\(.*\))?[\s;]*\Z", re.IGNORECASE | re.DOTALL
)
_LOCK_ERROR = re.compile(r"could not set lock|conflicting lock", re.IGNORECASE)
_LOCK_HOLDER = re.compile(r"lock is held in (?P<holder>.*?) \(PID (?P<pid>\d+)\)")

#: Settings passed at connect time: nothing may be fetched or loaded behind our back.
_CONNECT_CONFIG: dict[str, Any] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
}


@dataclass(frozen=True)
class CheckedQuery:
    """A query that passed the parse check.

    ``sql`` is what will run (a ``CALL``/``PRAGMA`` is rewritten to its SELECT form);
    ``unknown_table_functions`` must turn out to be table macros defined in the warehouse.
    """

    sql: str
    unknown_table_functions: frozenset[str]


# --------------------------------------------------------------------------- parse check


def _parser() -> duckdb.DuckDBPyConnection:
    """An in-memory connection that can only parse: no file, network or extension access."""
    con = duckdb.connect(":memory:", config=dict(_CONNECT_CONFIG))
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _roots(data_dir: Path) -> tuple[str, ...]:
    """The data dir as written and as resolved (views may use either spelling)."""
    spellings = {os.path.normpath(data_dir.absolute()), os.path.normpath(data_dir.resolve())}
    return tuple(sorted(spellings))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _check_path(raw: str, data_dir: Path, used_by: str) -> None:
    """Refuse a file path unless it is a literal absolute path inside the data dir."""
    what = f"{used_by} on {raw!r}"
    if _URL_SCHEME.match(raw):
        raise QueryRefused(
            what,
            "remote or URL-style paths are not allowed; only files in "
            f"the data dir {data_dir} can be read",
        )
    if raw.startswith("~"):
        raise QueryRefused(what, f"it points outside the data dir {data_dir}")
    if not os.path.isabs(raw):
        raise QueryRefused(
            what,
            "relative paths resolve against the current directory, not the data dir; "
            f"write the absolute path, e.g. '{data_dir / raw}'",
        )
    if ".." in Path(raw).parts:
        raise QueryRefused(what, "'..' in file paths is not allowed")
    roots = _roots(data_dir)
    if not any(_inside(os.path.normpath(raw), r) for r in roots):
        raise QueryRefused(what, f"it is outside the data dir {data_dir}")
    # Symlinks inside the data dir must not lead out of it: resolve the glob-free prefix.
    parts = Path(raw).parts
    fixed = list(_takewhile_no_glob(parts))
    real = os.path.normpath(Path(*fixed).resolve()) if fixed else "/"
    if not _inside(real, os.path.normpath(data_dir.resolve())):
        raise QueryRefused(what, f"it leads (through a symlink) outside the data dir {data_dir}")


def _takewhile_no_glob(parts: tuple[str, ...]) -> Iterator[str]:
    for p in parts:
        if _GLOB_CHARS.search(p):
            return
        yield p


def _is_named_argument(arg: dict[str, Any]) -> bool:
    expr = arg.get("expression") or {}
    return bool(arg.get("name")) or (
        expr.get("type") == "COMPARE_EQUAL"
        and (expr.get("left") or {}).get("class") == "COLUMN_REF"
    )


def _literal_paths(expr: dict[str, Any]) -> list[str] | None:
    """The strings of a literal path or list of paths, or None for anything computed."""
    if expr.get("class") == "CONSTANT":
        literal = expr.get("literal") or {}
        return [literal["text"]] if literal.get("kind") == "STRING" else None
    if expr.get("class") == "FUNCTION" and expr.get("function_name") in (
        "list_value",
        "array_value",
    ):
        out: list[str] = []
        for arg in expr.get("arguments", []):
            sub = _literal_paths(arg.get("expression") or {})
            if sub is None:
                return None
            out.extend(sub)
        return out
    return None


def _check_file_function(name: str, func: dict[str, Any], data_dir: Path) -> None:
    args = func.get("arguments") or []
    if not args or _is_named_argument(args[0]):
        raise QueryRefused(f"{name}()", "it needs a file path as its first argument")
    paths = _literal_paths(args[0].get("expression") or {})
    if not paths:
        raise QueryRefused(
            f"{name}()",
            "file paths must be written as string literals (not computed), "
            "so they can be checked against the data dir",
        )
    for p in paths:
        _check_path(p, data_dir, f"{name}()")


def _looks_like_path(table_name: str) -> bool:
    return bool(any(c in table_name for c in "/\\*?:") or _FILE_EXTENSIONS.search(table_name))


def _walk(node: Any, data_dir: Path, unknown: set[str]) -> None:
    """Check every table reference and function call in a serialized syntax tree."""
    if isinstance(node, list):
        for item in node:
            _walk(item, data_dir, unknown)
        return
    if not isinstance(node, dict):
        return
    if node.get("class") == "FUNCTION":
        fname = str(node.get("function_name", "")).lower()
        if fname in _DENIED_FUNCTIONS:
            raise QueryRefused(f"{fname}()", _DENIED_FUNCTIONS[fname])
    kind = node.get("type")
    if kind == "TABLE_FUNCTION":
        func = node.get("function") or {}
        fname = str(func.get("function_name", "")).lower()
        if fname in _DENIED_FUNCTIONS:
            raise QueryRefused(f"{fname}()", _DENIED_FUNCTIONS[fname])
        if fname in _FILE_TABLE_FUNCTIONS:
            _check_file_function(fname, func, data_dir)
        elif fname not in _SAFE_TABLE_FUNCTIONS:
            unknown.add(fname)
    elif kind == "BASE_TABLE":
        name = str(node.get("table_name", ""))
        if not node.get("schema_name") and not node.get("catalog_name") and _looks_like_path(name):
            _check_path(name, data_dir, "file path used as a table")
    for value in node.values():
        _walk(value, data_dir, unknown)


def _statements(con: duckdb.DuckDBPyConnection, sql: str) -> list[Any]:
    try:
        return list(con.extract_statements(sql))
    except duckdb.Error as exc:
        raise QueryFailed(str(exc)) from exc


def _strip_comments(sql: str) -> str:
    return sql[_LEADING_COMMENTS.match(sql).end() :]  # type: ignore[union-attr]


def _select_form(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[str, str]:
    """``(sql to run, SELECT to check)`` for one statement, or QueryRefused.

    EXPLAIN runs as written but its inner SELECT is what gets checked; read-only CALL and
    PRAGMA are rewritten to the equivalent SELECT so the tree walk sees the function call.
    """
    stmts = _statements(con, sql)
    if len(stmts) != 1:
        kinds = ", ".join(s.type.name for s in stmts) or "none"
        raise QueryRefused(
            f"{len(stmts)} statements ({kinds})", "exactly one read-only statement is allowed"
        )
    kind = stmts[0].type.name
    body = _strip_comments(sql)
    if kind == "SELECT":
        return sql, sql
    if kind == "EXPLAIN":
        m = _EXPLAIN.match(body)
        inner = _statements(con, m["inner"]) if m else []
        if not m or len(inner) != 1 or inner[0].type.name != "SELECT":
            raise QueryRefused("EXPLAIN", "only EXPLAIN [ANALYZE] <select query> is allowed")
        return sql, m["inner"]
    if kind == "CALL":
        m = _CALL.match(body)
        if not m:
            raise QueryRefused("CALL", "only CALL <read-only table function>(...) is allowed")
        rewritten = f"SELECT * FROM {m['inner']}"
        return rewritten, rewritten
    if kind == "PRAGMA":
        m = _PRAGMA.match(body)
        named = re.match(r"PRAGMA\s+(\w+)", body, re.IGNORECASE)
        if not named:  # IMPORT DATABASE parses as a PRAGMA
            what = " ".join(body.split()[:2]).upper()
            raise QueryRefused(what, "it reads files into the database; the entry is read-only")
        name = named[1].lower()
        if not m or name not in _PRAGMA_REWRITES:
            raise QueryRefused(
                f"PRAGMA {name}",
                "only read-only PRAGMAs are allowed ("
                + ", ".join(sorted(_PRAGMA_REWRITES))
                + "); others change settings or files",
            )
        rewritten = _PRAGMA_REWRITES[name].format(args=m["args"] or "()")
        return rewritten, rewritten
    reason = _REFUSED_TYPES.get(kind, "only read-only SELECT-like statements are allowed")
    raise QueryRefused(f"{kind} statement", reason)


def check_query(data_dir: Path, query: str) -> CheckedQuery:
    """Parse ``query`` with DuckDB and refuse anything but one read-only, in-data-dir SELECT.

    Runs without opening the warehouse, so a refused query never touches it.
    """
    data_dir = Path(data_dir).expanduser().absolute()
    if not query.strip():
        raise QueryRefused("empty query", "there is nothing to run")
    con = _parser()
    try:
        sql, to_check = _select_form(con, query)
        checked = _statements(con, to_check)
        if len(checked) != 1 or checked[0].type.name != "SELECT":
            raise QueryRefused("rewritten query", "it does not form exactly one SELECT")
        row = con.execute("SELECT json_serialize_sql(?)", [to_check]).fetchone()
    finally:
        con.close()
    tree = json.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        raise QueryRefused(
            "query", f"DuckDB cannot check it ({tree.get('error_message', 'unknown error')})"
        )
    unknown: set[str] = set()
    _walk(tree.get("statements", []), data_dir, unknown)
    return CheckedQuery(sql=sql, unknown_table_functions=frozenset(unknown))


# --------------------------------------------------------------------------- engine


def _lock_down(con: duckdb.DuckDBPyConnection, data_dir: Path) -> None:
    """Confine the engine to the data dir; the order matters (each step locks the previous)."""
    allowed = [r.rstrip(os.sep) + os.sep for r in _roots(data_dir)]
    con.execute("SET allowed_directories = ?", [allowed])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _open(warehouse: Path, deadline: float, started: float) -> duckdb.DuckDBPyConnection:
    """Open read-only, retrying with backoff while a writer in another process holds it."""
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(warehouse), read_only=True, config=dict(_CONNECT_CONFIG))
        except duckdb.IOException as exc:
            message = str(exc)
            if not _LOCK_ERROR.search(message):
                raise QueryFailed(f"cannot open warehouse {warehouse}: {message}") from exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                m = _LOCK_HOLDER.search(message)
                raise WarehouseLocked(
                    warehouse,
                    int(m["pid"]) if m else None,
                    m["holder"] if m else None,
                    time.monotonic() - started,
                ) from exc
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)


def _check_macros(con: duckdb.DuckDBPyConnection, names: frozenset[str]) -> None:
    """Unknown table functions pass only as table macros the pipeline defined in the warehouse."""
    if not names:
        return
    rows = con.execute(
        "SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
        "WHERE function_type = 'table_macro' AND NOT internal"
    ).fetchall()
    missing = sorted(names - {r[0] for r in rows})
    if missing:
        raise QueryRefused(
            f"{missing[0]}()",
            "it is not a known read-only table function nor a macro defined in the warehouse",
        )


def run_query(data_dir: Path, query: str, *, timeout_s: float = 100) -> pl.DataFrame:
    """Run one read-only query against the warehouse and return its result.

    ``timeout_s`` bounds the whole call: waiting for a writer to release the file plus running
    the query (interrupted at the deadline so the file is never held past it). Raises
    QueryRefused (nothing run), WarehouseMissing, WarehouseLocked, QueryTimeout, QueryFailed.
    """
    started = time.monotonic()
    deadline = started + max(timeout_s, 0.0)
    paths = DataPaths.at(data_dir)
    checked = check_query(data_dir, query)
    warehouse = paths.warehouse
    if not warehouse.is_file():
        raise WarehouseMissing(
            f"no warehouse at {warehouse}: run the pipeline first so it builds the "
            "warehouse, then query it"
        )
    con = _open(warehouse, deadline, started)
    timer: threading.Timer | None = None
    try:
        _lock_down(con, Path(data_dir).expanduser())
        _check_macros(con, checked.unknown_table_functions)
        timer = threading.Timer(max(deadline - time.monotonic(), 0.0), con.interrupt)
        timer.daemon = True
        timer.start()
        try:
            return con.sql(checked.sql).pl()
        except duckdb.InterruptException as exc:
            raise QueryTimeout(
                f"query interrupted after {time.monotonic() - started:.1f}s "
                f"(timeout {timeout_s:g}s); narrow it or raise the timeout"
            ) from exc
        except duckdb.PermissionException as exc:
            raise QueryRefused("file access", f"the engine refused it: {exc}") from exc
        except duckdb.Error as exc:
            raise QueryFailed(str(exc)) from exc
    finally:
        if timer is not None:
            timer.cancel()
        con.close()


# --------------------------------------------------------------------------- output


def _flatten_nested(frame: pl.DataFrame) -> pl.DataFrame:
    """CSV has no nested values: encode list/struct/array columns as JSON text (vectorised)."""
    nested = [
        name
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.List | pl.Struct | pl.Array)
    ]
    if not nested:
        return frame
    return frame.with_columns(
        pl.when(pl.col(c).is_null())
        .then(None)
        .otherwise(
            pl.struct(pl.col(c).alias("v"))
            .struct.json_encode()
            .str.strip_prefix('{"v":')
            .str.strip_suffix("}")
        )
        .alias(c)
        for c in nested
    )


def write_result(frame: pl.DataFrame, path: Path, fmt: Literal["csv", "json", "parquet"]) -> Path:
    """Write ``frame`` to ``path`` atomically (temp file in the same folder, then rename).

    A reader never sees a half-written file, and a failed write leaves any old file intact.
    csv: nested columns become JSON text; json: one array of row objects; parquet: as is.
    """
    if fmt not in ("csv", "json", "parquet"):
        raise ValueError(f"unknown format {fmt!r}; use csv, json or parquet")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            if fmt == "csv":
                _flatten_nested(frame).write_csv(fh)
            elif fmt == "json":
                frame.write_json(fh)
            else:
                frame.write_parquet(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
