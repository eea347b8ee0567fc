"""Check an export file and read it back into canonical conversations.

Why two paths: a check runs over every row of every export (1M rows, ~700 MB per file).
The native path (:func:`native_check`, DuckDB) parses every record with the kind's
schema, applies the content rules and accounts for every byte of the file, without a
Python call per record; a file it does not prove (a problem, or a foreign but valid
layout) goes to the detailed path, which decodes column-wise with polars, re-encodes, and
sends the records it cannot prove to ``json.loads`` + :func:`check_record`, so every
problem is reported with its record number.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow.parquet as pq

from instruct_assets.lib.export.common import dumps, encode_records
from instruct_assets.lib.export.openai_jsonl import PARQUET_SCHEMA
from instruct_assets.lib.export.rendered import SingleTurnTemplate, load_template, parse_text
from instruct_assets.lib.export.sharegpt import FROM_TO_ROLE
from instruct_assets.lib.export.writers import KIND_PATHS, KINDS, SINGLE_TURN_KINDS
from instruct_assets.lib.schema import MESSAGE_DTYPE, ROLES

_MAX_ERRORS = 20

#: ShareGPT ``from`` values allowed inside ``conversations`` (system lives in its own key).
SHAREGPT_FROM: tuple[str, ...] = tuple(f for f in FROM_TO_ROLE if f != "system")

_TURN_DTYPE = pl.Struct({"from": pl.String, "value": pl.String})

#: Record dtype per kind (all keys; a missing key decodes to null). ``openai`` ``tools`` are
#: free-form JSON and are checked separately.
RECORD_DTYPES: dict[str, pl.Struct] = {
    "openai": pl.Struct({"messages": pl.List(MESSAGE_DTYPE)}),
    "sharegpt": pl.Struct(
        {"conversations": pl.List(_TURN_DTYPE), "system": pl.String, "tools": pl.String}
    ),
    "alpaca": pl.Struct(
        {
            "instruction": pl.String,
            "input": pl.String,
            "output": pl.String,
            "system": pl.String,
            "tools": pl.String,
        }
    ),
    "text_chatml": pl.Struct({"text": pl.String}),
    "text_llama3": pl.Struct({"text": pl.String}),
    "text_alpaca": pl.Struct({"text": pl.String}),
}

_ARRAY_KINDS = frozenset({"sharegpt", "alpaca"})


def _kind_of(kind: str) -> str:
    if kind not in KIND_PATHS:
        raise ValueError(f"unknown export kind {kind!r}; known: {KINDS}")
    return kind


# ----------------------------------------------------------------------------- reading


def _record_lines(path: Path, kind: str) -> pl.Series | None:
    """One record text per element, if the file is in the writer's one-record-per-line
    layout (JSONL, or a JSON array with one element per line); None otherwise."""
    lines = pl.read_lines(path).get_column("line")
    if kind not in _ARRAY_KINDS:
        return lines
    if lines.len() == 1 and lines.item(0) == "[]":
        return lines.clear()
    if lines.len() < 3 or lines.item(0) != "[" or lines.item(-1) != "]":
        return None
    body = lines.slice(1, lines.len() - 2)
    if not body.head(-1).str.ends_with(",").all() or body.item(-1).endswith(","):
        return None
    return pl.concat([body.head(-1).str.head(-1), body.tail(1)])


def _python_records(path: Path, kind: str, errors: list[str]) -> list[Any]:
    """Reference parser: ``json.loads`` of the array, or of each JSONL line."""
    text = path.read_bytes().decode("utf-8")
    gc.disable()  # millions of small dicts: the cyclic GC would rescan them over and over
    try:
        if kind in _ARRAY_KINDS:
            try:
                records = json.loads(text)
            except ValueError as exc:
                errors.append(f"not valid JSON: {exc}")
                return []
            if not isinstance(records, list):
                errors.append("top level is not a JSON array")
                return []
            return records
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        records = []
        for i, line in enumerate(lines, start=1):
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                errors.append(f"record {i}: not valid JSON: {exc}")
                records.append(None)
        return records
    finally:
        gc.enable()


def _decode(lines: pl.Series, kind: str) -> pl.DataFrame | None:
    """Decode record texts column-wise; None if some text is not valid JSON."""
    try:
        decoded = lines.str.json_decode(RECORD_DTYPES[kind])
    except pl.exceptions.PolarsError:
        return None
    return decoded.struct.unnest()


# ----------------------------------------------------------------------------- checks


def _check_message(msg: object, where: str, errors: list[str]) -> None:
    if not isinstance(msg, dict) or set(msg) != {"role", "content"}:
        errors.append(f"{where}: message is not {{role, content}}: {str(msg)[:80]}")
    elif msg["role"] not in ROLES:
        errors.append(f"{where}: unknown role {msg['role']!r}")
    elif not isinstance(msg["content"], str) or not msg["content"]:
        errors.append(f"{where}: empty or non-string content")


def _tools_problem(tools: object) -> str | None:
    if not isinstance(tools, list) or not tools or not all(isinstance(t, dict) for t in tools):
        return "tools is not a non-empty list of objects"
    return None


def _tools_text_problem(text: str) -> str | None:
    try:
        return _tools_problem(json.loads(text))
    except ValueError:
        return "tools is not valid JSON"


def check_record(record: object, kind: str, where: str, errors: list[str]) -> None:
    """The reference check of one parsed record of ``kind``; appends problems to ``errors``."""
    if not isinstance(record, dict):
        errors.append(f"{where}: not a JSON object")
        return
    keys = set(record)
    if kind == "openai":
        if "messages" not in keys or not keys <= {"messages", "tools"}:
            errors.append(f"{where}: keys {sorted(keys)} are not messages[, tools]")
            return
        msgs = record["messages"]
        if not isinstance(msgs, list) or not msgs:
            errors.append(f"{where}: messages is not a non-empty list")
            return
        for i, msg in enumerate(msgs):
            _check_message(msg, f"{where} message {i}", errors)
        if "tools" in record and (problem := _tools_problem(record["tools"])):
            errors.append(f"{where}: {problem}")
    elif kind == "sharegpt":
        if "conversations" not in keys or not keys <= {"conversations", "system", "tools"}:
            errors.append(f"{where}: keys {sorted(keys)} are not conversations[, system, tools]")
            return
        turns = record["conversations"]
        if not isinstance(turns, list) or not turns:
            errors.append(f"{where}: conversations is not a non-empty list")
            return
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict) or set(turn) != {"from", "value"}:
                errors.append(f"{where} turn {i}: not {{from, value}}")
            elif turn["from"] not in SHAREGPT_FROM:
                errors.append(f"{where} turn {i}: unexpected from {turn['from']!r}")
            elif not isinstance(turn["value"], str) or not turn["value"]:
                errors.append(f"{where} turn {i}: empty or non-string value")
        if "system" in record and not (isinstance(record["system"], str) and record["system"]):
            errors.append(f"{where}: system is not a non-empty string")
        if "tools" in record:
            tools = record["tools"]
            problem = _tools_text_problem(tools) if isinstance(tools, str) else "tools not text"
            if problem:
                errors.append(f"{where}: {problem}")
    elif kind == "alpaca":
        required = {"instruction", "input", "output"}
        if not required <= keys or not keys <= required | {"system", "tools"}:
            errors.append(f"{where}: keys {sorted(keys)} are not Alpaca keys")
            return
        if not all(isinstance(record[k], str) for k in keys):
            errors.append(f"{where}: a field is not a string")
        elif not record["instruction"] or not record["output"]:
            errors.append(f"{where}: empty instruction or output")
        elif "system" in record and not record["system"]:
            errors.append(f"{where}: system is not a non-empty string")
        elif "tools" in record and (problem := _tools_text_problem(record["tools"])):
            errors.append(f"{where}: {problem}")
    elif keys != {"text"} or not isinstance(record["text"], str) or not record["text"]:
        errors.append(f"{where}: not a {{text}} record with non-empty text")


def _bad_rows(values: pl.DataFrame, kind: str) -> pl.Series:
    """Vectorised twin of :func:`check_record` for decoded rows whose keys are proven."""
    empty = lambda c: pl.col(c).is_null() | (pl.col(c) == "")  # noqa: E731
    if kind == "openai":
        turn_bad = (
            ~pl.element().struct.field("role").is_in(list(ROLES)).fill_null(False)
            | pl.element().struct.field("content").is_null()
            | (pl.element().struct.field("content") == "")
        )
        bad = (pl.col("messages").list.len() == 0) | pl.col("messages").list.eval(
            turn_bad
        ).list.any()
    elif kind == "sharegpt":
        turn_bad = (
            ~pl.element().struct.field("from").is_in(list(SHAREGPT_FROM)).fill_null(False)
            | pl.element().struct.field("value").is_null()
            | (pl.element().struct.field("value") == "")
        )
        bad = (
            (pl.col("conversations").list.len() == 0)
            | pl.col("conversations").list.eval(turn_bad).list.any()
            | (pl.col("system") == "").fill_null(False)
        )
    elif kind == "alpaca":
        bad = (
            empty("instruction")
            | pl.col("input").is_null()
            | empty("output")
            | (pl.col("system") == "").fill_null(False)
        )
    else:
        bad = empty("text")
    return values.select(bad.fill_null(True).alias("bad")).to_series()


def _tools_errors(texts: pl.Series, rows: pl.Series) -> list[tuple[int, str]]:
    """Check each distinct tools text once; return ``(row, problem)`` for bad ones."""
    frame = pl.DataFrame({"row": rows, "tools": texts}).drop_nulls("tools")
    problems = {t: _tools_text_problem(t) for t in frame.get_column("tools").unique().to_list()}
    bad = {t: p for t, p in problems.items() if p}
    if not bad:
        return []
    hits = frame.filter(pl.col("tools").is_in(list(bad))).sort("row")
    return [(r, bad[t]) for r, t in hits.iter_rows()]


def _fast_validate(lines: pl.Series, kind: str, errors: list[str]) -> bool:
    """Validate via decode + re-encode; False if the texts do not all decode as JSON."""
    values = _decode(lines, kind)
    if values is None:
        return False
    first = values.columns[0]
    index = pl.Series("row", range(lines.len()), dtype=pl.Int64)
    has_first = values.get_column(first).is_not_null()
    kept = values.filter(has_first)
    kept_lines = lines.filter(has_first)
    kept_rows = index.filter(has_first)
    encoded = encode_records(kept)
    same = encoded == kept_lines
    problems: list[tuple[int, str]] = []
    if kind == "openai":
        # A record with tools is the re-encoded messages plus ',"tools":<json>}'.
        prefix = encoded.str.head(-1) + ',"tools":'
        with_tools = ~same & kept_lines.str.starts_with(prefix) & kept_lines.str.ends_with("}")
        raw = kept_lines.str.slice(prefix.str.len_chars()).str.head(-1)
        tool_rows = kept_rows.filter(with_tools)
        problems += _tools_errors(raw.filter(with_tools), tool_rows)
        same = same | with_tools
    else:
        if "tools" in kept.columns:
            problems += _tools_errors(kept.get_column("tools").filter(same), kept_rows.filter(same))
    bad = _bad_rows(kept, kind) & same
    # Records the fast path could not prove, or found bad, go through the reference check
    # (which also words the error precisely).
    unproven = index.filter(~has_first).append(kept_rows.filter(~same | bad)).sort()
    for r in unproven.to_list():
        record_errors: list[str] = []
        try:
            check_record(json.loads(lines.item(r)), kind, f"record {r + 1}", record_errors)
        except ValueError as exc:
            record_errors.append(f"record {r + 1}: not valid JSON: {exc}")
        problems += [(r, e) for e in record_errors]
    problems.sort(key=lambda p: p[0])
    for r, problem in problems:
        errors.append(problem if problem.startswith("record ") else f"record {r + 1}: {problem}")
    return True


# ----------------------------------------------------------------------------- native check

#: Per kind: the record's keys in the writer's order, each with its DuckDB type and whether
#: it may be absent. ``openai`` ``tools`` is free-form JSON.
_RECORD_KEYS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "openai": (
        ("messages", "STRUCT(role VARCHAR, content VARCHAR)[]", False),
        ("tools", "JSON", True),
    ),
    "sharegpt": (
        ("conversations", 'STRUCT("from" VARCHAR, value VARCHAR)[]', False),
        ("system", "VARCHAR", True),
        ("tools", "VARCHAR", True),
    ),
    "alpaca": (
        ("instruction", "VARCHAR", False),
        ("input", "VARCHAR", False),
        ("output", "VARCHAR", False),
        ("system", "VARCHAR", True),
        ("tools", "VARCHAR", True),
    ),
    "text": (("text", "VARCHAR", False),),
}

#: Records up to this size are checked natively (DuckDB's default is 16 MB; bigger
#: limits measured slower, as the reader sizes its buffers by it); a bigger record sends
#: the file to the detailed path.
_MAX_OBJECT_BYTES = 64 << 20


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _record_length_sql(kind: str) -> str:
    """SQL for the byte length of a record as the writer encodes it from its parsed values
    (keys in order, absent keys omitted; null if a required key is missing)."""
    parts = []
    for i, (key, dtype, optional) in enumerate(_RECORD_KEYS[kind]):
        prefix = len(("," if i else "") + dumps(key) + ":")
        column = _quote(key)
        value = f"strlen({column}::VARCHAR)" if dtype == "JSON" else f"strlen(to_json({column}))"
        part = f"({prefix} + {value})"
        parts.append(f"coalesce({part}, 0)" if optional else part)
    return "2 + " + " + ".join(parts)  # 2: the braces


def _sql_list(values: tuple[str, ...] | list[str]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def _tools_sql(value: str, *, text: bool) -> str:
    """SQL true when a present ``tools`` value is not a non-empty JSON list of objects."""
    json_value = f"try_cast({value} AS JSON)" if text else value
    items = f"json_extract({json_value}, '$[*]')"
    return (
        f"({value} IS NOT NULL AND (coalesce(json_type({json_value}), '') <> 'ARRAY'"
        f" OR json_array_length({json_value}) = 0"
        f" OR NOT list_bool_and([json_type(t) = 'OBJECT' for t in {items}])))"
    )


def _bad_sql(kind: str) -> str:
    """SQL true for a parsed record whose values break the rules of ``kind`` (the
    vectorised twin of :func:`check_record`; a missing required key is null here)."""
    if kind == "openai":
        return (
            "(messages IS NULL OR len(messages) = 0 OR list_bool_or([m.role IS NULL OR m.role "
            f"NOT IN {_sql_list(ROLES)} OR m.content IS NULL OR m.content = '' "
            f"FOR m IN messages]) OR {_tools_sql('tools', text=False)})"
        )
    if kind == "sharegpt":
        return (
            "(conversations IS NULL OR len(conversations) = 0 OR list_bool_or([t.\"from\" IS "
            f"NULL OR t.\"from\" NOT IN {_sql_list(SHAREGPT_FROM)} OR t.value IS NULL OR "
            "t.value = '' FOR t IN conversations]) OR coalesce(system = '', false) "
            f"OR {_tools_sql('tools', text=True)})"
        )
    if kind == "alpaca":
        return (
            "(instruction IS NULL OR instruction = '' OR input IS NULL OR output IS NULL "
            f"OR output = '' OR coalesce(system = '', false) OR {_tools_sql('tools', text=True)})"
        )
    return "(text IS NULL OR text = '')"


def native_check(path: str | os.PathLike[str], kind: str) -> int | None:
    """The number of records if the file passes the native (DuckDB) check, None if not
    (or it does not parse): then :func:`validate_export`'s detailed path finds and words
    the problems.

    The check: DuckDB's JSON reader parses every record with the kind's explicit schema
    (invalid JSON or UTF-8 fails), every record passes the content rules, and every byte is
    accounted for: the file's size equals the records re-encoded as the writer does (one
    format, keys in order, absent keys omitted, no whitespace) plus the writer's
    separators. An extra key, a foreign layout, a pretty-printed record or a number where a
    string belongs changes the count and sends the file to the detailed path.

    Why DuckDB: its JSON reader parses a 700 MB file in about half a second of CPU and
    re-encodes with ``to_json`` natively; no Python call per record.
    """
    target = Path(path)
    if kind == "openai_parquet" or kind not in KIND_PATHS:
        raise ValueError(f"no native JSON check for kind {kind!r}")
    size = target.stat().st_size
    if size == 0:
        return 0 if kind not in _ARRAY_KINDS else None
    if kind in _ARRAY_KINDS and size == 3:
        return 0 if target.read_bytes() == b"[]\n" else None
    record = "text" if kind.startswith("text_") else kind
    columns = "{" + ", ".join(f"{_quote(k)}: '{t}'" for k, t, _ in _RECORD_KEYS[record]) + "}"
    fmt = "array" if kind in _ARRAY_KINDS else "newline_delimited"
    query = f"""
        SELECT count(*), sum({_record_length_sql(record)}),
               count(*) FILTER (WHERE ({_bad_sql(record)}) IS NOT FALSE)
        FROM read_json({_sql_list([str(target)])[1:-1]}, format='{fmt}', columns={columns},
                       maximum_object_size={_MAX_OBJECT_BYTES})"""
    con = duckdb.connect()
    try:
        n, total, bad = con.sql(query).fetchall()[0]
    except duckdb.Error:
        return None
    finally:
        con.close()
    # The writer's separators: "\n" after each JSONL record; an array is "[\n", the
    # elements joined by ",\n", then "\n]\n".
    layout = (total or 0) + (2 * n + 3 if kind in _ARRAY_KINDS else n)
    if bad or total is None or layout != size:
        return None
    return int(n)


def _native_parquet(path: Path) -> bool:
    """True if every row of the Parquet copy passes the content rules (DuckDB, native):
    non-empty messages with known roles and non-empty content, tools items JSON objects."""
    item_ok = "coalesce(json_type(try_cast(x::VARCHAR AS JSON)), '') = 'OBJECT'"
    query = f"""
        SELECT count(*) FILTER (WHERE len(messages) = 0 OR list_bool_or([m.role IS NULL OR
            m.role NOT IN {_sql_list(ROLES)} OR m.content IS NULL OR m.content = ''
            FOR m IN messages])
            OR (tools IS NOT NULL AND NOT list_bool_and([{item_ok} FOR x IN tools])))
        FROM read_parquet({_sql_list([str(path)])[1:-1]})"""
    con = duckdb.connect()
    try:
        return con.sql(query).fetchall()[0][0] == 0
    except duckdb.Error:
        return False
    finally:
        con.close()


def validate_export(path: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """Check an export file: it parses (every line, for JSONL), every record has exactly the
    keys and types of ``kind`` (one format per file), roles and contents are valid.

    Returns ``{"path", "kind", "valid", "rows", "bytes", "error_count", "errors"}`` with at
    most 20 error messages; bad content never raises (a missing file does).
    """
    kind = _kind_of(kind)
    target = Path(path)
    size = target.stat().st_size
    errors: list[str] = []
    if kind == "openai_parquet":
        rows = _validate_parquet(target, errors)
    else:
        with open(target, "rb") as handle:
            if size:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    errors.append("file does not end with a newline")
        native = native_check(target, kind) if not errors else None
        if native is not None:
            return _report(target, kind, native, size, errors)
        try:
            lines = _record_lines(target, kind)  # raises on invalid UTF-8
        except pl.exceptions.PolarsError:
            lines = None
        if lines is not None and _fast_validate(lines, kind, errors):
            rows = lines.len()
        else:
            try:
                records = _python_records(target, kind, errors)
            except UnicodeDecodeError as exc:
                errors.append(f"not UTF-8: {exc}")
                return _report(target, kind, 0, size, errors)
            for i, record in enumerate(records, start=1):
                if record is not None:
                    check_record(record, kind, f"record {i}", errors)
            rows = len(records)
    return _report(target, kind, rows, size, errors)


def _report(path: Path, kind: str, rows: int, size: int, errors: list[str]) -> dict[str, Any]:
    return {
        "path": str(path),
        "kind": kind,
        "valid": not errors,
        "rows": rows,
        "bytes": size,
        "error_count": len(errors),
        "errors": errors[:_MAX_ERRORS],
    }


def _validate_parquet(path: Path, errors: list[str]) -> int:
    rows = pq.read_metadata(path).num_rows
    schema = pq.read_schema(path)
    if not schema.remove_metadata().equals(PARQUET_SCHEMA):
        errors.append(f"schema {schema} is not {PARQUET_SCHEMA}")
        return rows
    if _native_parquet(path):
        return rows
    values = pl.read_parquet(path, columns=["messages"])
    bad = _bad_rows(values, "openai")
    for r in bad.arg_true().to_list():
        check_record(values.row(r, named=True), "openai", f"record {r + 1}", errors)
    tools = pq.read_table(path, columns=["tools"]).column("tools").to_pylist()
    texts = {t for row in tools if row is not None for t in row}
    for text in sorted(texts):
        if not isinstance(json.loads(text), dict):
            errors.append(f"a tool is not a JSON object: {text[:80]}")
    return rows


# ----------------------------------------------------------------------------- round trip


def _records_frame(path: Path, kind: str) -> pl.DataFrame:
    """The decoded columns of ``RECORD_DTYPES[kind]``, fast path or reference parser."""
    try:
        lines = _record_lines(path, kind)
    except pl.exceptions.PolarsError:
        lines = None
    values = _decode(lines, kind) if lines is not None else None
    if values is not None:
        return values
    errors: list[str] = []
    records = _python_records(path, kind, errors)
    if errors:
        raise ValueError(f"{path}: {errors[0]}")
    dtype = RECORD_DTYPES[kind]
    rows = [{name: r.get(name) for name in dtype.to_schema()} for r in records]
    return pl.DataFrame(rows, schema=dtype.to_schema())


def canonical_frame_from_export(path: str | os.PathLike[str], kind: str) -> pl.DataFrame:
    """Read an export back into one ``messages`` column (``list[struct{role, content}]``),
    in file order, so a check can compare export -> ingest with the source conversations.

    ShareGPT: the ``system`` key becomes a leading system turn, ``function_call`` an assistant
    turn, ``observation`` a tool turn. Alpaca: ``input`` (if any) is joined to the
    instruction with a blank line, as ingestion does. Text kinds are split at the template
    markers (content holding a marker cannot round-trip; Llama 3 content comes back trimmed).
    """
    kind = _kind_of(kind)
    target = Path(path)
    schema = {"messages": pl.List(MESSAGE_DTYPE)}
    if kind == "openai_parquet":
        return pl.read_parquet(target, columns=["messages"]).cast(schema)
    if kind.startswith("text_"):
        template = load_template(kind.removeprefix("text_"))
        if isinstance(template, SingleTurnTemplate) != (kind in SINGLE_TURN_KINDS):
            raise ValueError(f"template of {kind} does not match its kind")
        texts = _records_frame(target, kind).get_column("text").to_list()
        return pl.DataFrame({"messages": [parse_text(t, template) for t in texts]}, schema=schema)
    values = _records_frame(target, kind)
    if kind == "openai":
        return values.select("messages")
    system = pl.col("system")
    has_system = (system.is_not_null() & (system != "")).fill_null(False)
    system_turn = pl.struct(role=pl.lit("system"), content=system)
    if kind == "sharegpt":
        turns = pl.col("conversations").list.eval(
            pl.struct(
                role=pl.element().struct.field("from").replace_strict(FROM_TO_ROLE),
                content=pl.element().struct.field("value"),
            )
        )
        messages = pl.when(has_system).then(pl.concat_list(system_turn, turns)).otherwise(turns)
    else:  # alpaca
        has_input = (pl.col("input").is_not_null() & (pl.col("input") != "")).fill_null(False)
        user = (
            pl.when(has_input)
            .then(pl.concat_str(pl.col("instruction"), pl.lit("\n\n"), pl.col("input")))
            .otherwise(pl.col("instruction"))
        )
        pair = pl.concat_list(
            pl.struct(role=pl.lit("user"), content=user),
            pl.struct(role=pl.lit("assistant"), content=pl.col("output")),
        )
        messages = pl.when(has_system).then(pl.concat_list(system_turn, pair)).otherwise(pair)
    return values.select(messages.cast(pl.List(MESSAGE_DTYPE)).alias("messages"))


def canonical_from_export(path: str | os.PathLike[str], kind: str) -> list[list[dict[str, str]]]:
    """:func:`canonical_frame_from_export` as Python lists of ``{"role", "content"}`` dicts."""
    return canonical_frame_from_export(path, kind).get_column("messages").to_list()
