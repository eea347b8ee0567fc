"""One source's raw files -> canonical examples + rejects + the figures that account for them.

This is the whole ingestion transform, with no Dagster in it: read each file (``readers``),
keep the JSON objects, detect each key set's format (``formats.detect``), map records to
turns in DuckDB (``formats.pairs``/``chat``/``qa_text``), enforce the turn contract
(``formats.turns``), assign ids, and sort. Every record read ends as exactly one example or
one reject: ``records_read == rows + rejects`` is asserted before returning.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from instruct_assets.lib.formats.chat import chat_sql
from instruct_assets.lib.formats.detect import FieldMap, detect_fields
from instruct_assets.lib.formats.fast_pairs import fast_fieldmap, fast_map
from instruct_assets.lib.formats.pairs import pairs_sql
from instruct_assets.lib.formats.qa_text import qa_text_sql, qa_text_turns
from instruct_assets.lib.formats.turns import CALL_SPEAKERS, build_messages, role_map
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.readers import RawBatch, read_file
from instruct_assets.lib.readers.base import RECORDS_SCHEMA, excerpt
from instruct_assets.lib.schema import (
    NORMALIZED_SCHEMA,
    RAW_EXCERPT_CHARS,
    REJECTS_SCHEMA,
    conform,
)
from instruct_assets.lib.sources import SourceSpec, source_files

#: At most this many distinct key sets are classified per file; rarer ones count as unknown.
MAX_KEYSETS = 256


@dataclass
class FileReport:
    """What happened to one file: container, detected format and how well rows fit it."""

    file: str
    container: str
    records_read: int
    rows: int
    rejects: int
    format: str | None
    format_share: float
    formats: dict[str, int] = field(default_factory=dict)
    blank_lines: int = 0


@dataclass
class NormalizedSource:
    """The outputs of normalizing one source."""

    examples: pl.DataFrame
    rejects: pl.DataFrame
    files: list[FileReport]

    @property
    def records_read(self) -> int:
        return sum(f.records_read for f in self.files)

    def rejects_by_reason(self) -> dict[str, int]:
        counts = self.rejects["reason_code"].value_counts(sort=True)
        return {r: int(n) for r, n in counts.sort(["count", "reason_code"],
                                                  descending=[True, False]).iter_rows()}

    def formats(self) -> dict[str, int]:
        counts = self.examples["source_format"].value_counts()
        return dict(sorted((f, int(n)) for f, n in counts.iter_rows()))


def normalize_source(paths: DataPaths, spec: SourceSpec,
                     files: list[Path] | None = None) -> NormalizedSource:
    """Normalize every file of ``spec`` (or ``files``, when a caller lists them itself);
    the result is deterministic for the same bytes."""
    examples, rejects, reports = [], [], []
    con = duckdb.connect()
    try:
        for file in source_files(paths, spec) if files is None else files:
            ex, rej, report = normalize_file(con, paths, spec, file)
            examples.append(ex)
            rejects.append(rej)
            reports.append(report)
    finally:
        con.close()
    all_examples = (
        pl.concat(examples) if examples else pl.DataFrame(schema=NORMALIZED_SCHEMA)
    )
    all_examples = assign_ids(_in_file_order(all_examples))
    all_rejects = _in_file_order(
        pl.concat(rejects) if rejects else pl.DataFrame(schema=REJECTS_SCHEMA))
    result = NormalizedSource(conform(all_examples, NORMALIZED_SCHEMA),
                              conform(all_rejects, REJECTS_SCHEMA), reports)
    accounted = result.examples.height + result.rejects.height
    if accounted != result.records_read:
        raise AssertionError(
            f"source {spec.name}: {result.records_read} records read but "
            f"{result.examples.height} rows + {result.rejects.height} rejects")
    return result


def _in_file_order(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by (source_file, source_row); usually it already is (files are read
    in order, each mapped in row order), and sorting a million conversations copies them."""
    file, row = pl.col("source_file"), pl.col("source_row")
    ordered = ((file > file.shift(1))
               | ((file == file.shift(1)) & (row > row.shift(1)))).fill_null(True).all()
    if frame.height < 2 or frame.select(ordered).item():
        return frame
    return frame.sort("source_file", "source_row")


def normalize_file(
    con: duckdb.DuckDBPyConnection, paths: DataPaths, spec: SourceSpec, file: Path
) -> tuple[pl.DataFrame, pl.DataFrame, FileReport]:
    """One file -> (examples without ids, rejects, report)."""
    rel = paths.relative(file)
    batch = read_file(file)
    fast_mapped, fast_fm = None, None
    if batch.table is not None and (fast_fm := fast_fieldmap(batch.table, spec)) is not None:
        fast_mapped, leftover = fast_map(batch.table, fast_fm, spec.system_prompt)
        strings = _string_typed(con, batch.records_at(leftover.sort()), fast_fm)
        if strings.len():
            # Text that only looked like a coerced number/list ("42", "[1, 2]") but is a
            # JSON string in the file: the fast path maps it after all.
            more, leftover_of_more = fast_map(
                batch.table.filter(pl.col("source_row").is_in(strings.implode())), fast_fm,
                spec.system_prompt, types_checked=True)
            fast_mapped = pl.concat([fast_mapped, more]).sort("source_row")
            leftover = pl.concat([leftover.filter(~leftover.is_in(strings.implode())),
                                  leftover_of_more])
        batch.table = None
        records = (batch.records_at(leftover.sort()) if leftover.len()
                   else pl.DataFrame(schema=RECORDS_SCHEMA))
        rejects = batch.rejects
    else:
        records, rejects = _objects_only(con, batch)
    mapped, fmt_counts = _map_records(con, records, spec)
    if fast_mapped is not None:
        fmt_counts[fast_fm.format] = fmt_counts.get(fast_fm.format, 0) + fast_mapped.height
        mapped = pl.concat([
            fast_mapped.with_columns(
                pl.lit(None, dtype=pl.String).alias("tools"),
                pl.lit(None, dtype=pl.String).alias("extra"),
                pl.lit(0, dtype=pl.Int64).alias("non_text_parts"),
                pl.lit(None, dtype=pl.String).alias("error_code"),
                pl.lit(None, dtype=pl.String).alias("error_detail"),
            ).select(*_MAPPED_COLUMNS),
            mapped.select(*_MAPPED_COLUMNS),
        ]).sort("source_row")
    bad = mapped.filter(pl.col("error_code").is_not_null())
    good = mapped.filter(pl.col("error_code").is_null())
    if bad.height:
        bad_raw = bad.select("source_row", "error_code", "error_detail").join(
            records, on="source_row", how="left")
        rejects = pl.concat([rejects, bad_raw.select(
            "source_row", pl.col("error_code").alias("reason_code"),
            pl.col("error_detail").alias("detail"), pl.col("raw").str.slice(0, RAW_EXCERPT_CHARS),
        )])
    examples = good.select(
        pl.lit(spec.name).alias("source"),
        pl.lit(rel).alias("source_file"),
        "source_row", "source_format", "messages",
        _clean_tools().alias("tools"),
        pl.lit(spec.origin).alias("origin"),
        _extra_with_notes().alias("extra"),
    )
    rejects = rejects.select(
        pl.lit(spec.name).alias("source"), pl.lit(rel).alias("source_file"), "source_row",
        "reason_code", "detail", "raw",
    )
    main_format, share = None, 0.0
    if fmt_counts:
        main_format, top = sorted(fmt_counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        share = round(top / max(batch.units, 1), 4)
    report = FileReport(
        file=rel, container=batch.container, records_read=batch.units, rows=examples.height,
        rejects=rejects.height, format=main_format, format_share=share,
        formats=dict(sorted(fmt_counts.items())), blank_lines=batch.notes.get("blank_lines", 0),
    )
    return examples, rejects, report


def _string_typed(con: duckdb.DuckDBPyConnection, records: pl.DataFrame, fm: FieldMap
                  ) -> pl.Series:
    """``source_row`` of the records whose mapped fields are all JSON strings (or null or
    absent), read from the raw lines: the fast path cannot tell "42" from 42 by itself."""
    fields = fm.mapped_fields()
    if records.height == 0 or any('"' in f or "\\" in f for f in fields):
        return pl.Series("source_row", [], dtype=pl.Int64)
    rec = records  # noqa: F841 - read by DuckDB by name
    typed = " AND ".join(
        f"coalesce(json_type(raw, '$.\"{f}\"') IN ('VARCHAR', 'NULL'), true)" for f in fields)
    return con.sql(f"SELECT source_row FROM rec WHERE json_valid(raw) AND "
                   f"json_type(raw) = 'OBJECT' AND {typed} ORDER BY source_row").pl()["source_row"]


def _objects_only(
    con: duckdb.DuckDBPyConnection, batch: RawBatch
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split reader records into valid JSON objects and ``invalid_json``/``not_a_record``."""
    rejects = batch.rejects
    if batch.records.height == 0:
        return batch.records, rejects
    rec = batch.records  # noqa: F841 - read by DuckDB by name
    kinds = con.sql(
        "SELECT source_row, CASE WHEN json_valid(raw) THEN json_type(raw) END AS kind FROM rec"
    ).pl()
    ok_rows = kinds.filter(pl.col("kind") == "OBJECT")["source_row"]
    if ok_rows.len() == batch.records.height:
        return batch.records, rejects
    bad = batch.records.join(kinds.filter(pl.col("kind") != "OBJECT")
                             .vstack(kinds.filter(pl.col("kind").is_null())),
                             on="source_row").sort("source_row")
    bad_rows = [
        (row, *_why_not_object(raw, kind), excerpt(raw))
        for row, raw, kind in bad.select("source_row", "raw", "kind").iter_rows()
    ]
    extra = pl.DataFrame(bad_rows, schema=rejects.schema, orient="row")
    records = batch.records.filter(pl.col("source_row").is_in(ok_rows.implode()))
    return records, pl.concat([rejects, extra])


def _why_not_object(raw: str, kind: str | None) -> tuple[str, str]:
    """Reason and a precise detail for one record that is not a JSON object (slow path)."""
    if kind is not None:
        return "not_a_record", f"a JSON {kind.lower()} where a record (object) belongs"
    text = raw.strip()
    if text.startswith("{'") or (text.startswith("{\"") and "'" in text[:3]):
        return "invalid_json", "Python dict syntax (single-quoted strings), not JSON"
    if text[:1] not in ("{", "[", '"') and not text[:1].isdigit():
        return "invalid_json", "a bare text line, not a JSON record"
    if "\x00" in raw:
        return "invalid_json", f"NUL byte at character {raw.index(chr(0))}"
    try:
        json.loads(raw)
    except json.JSONDecodeError as exc:
        return "invalid_json", f"{exc.msg.removesuffix(' at')} at character {exc.pos}"
    except RecursionError:
        return "invalid_json", "JSON nested too deeply to parse"
    return "invalid_json", "rejected by the JSON parser (nesting or size limits)"


def _map_records(
    con: duckdb.DuckDBPyConnection, records: pl.DataFrame, spec: SourceSpec
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Every JSON-object record -> turns -> messages, with an error for rows that fail."""
    if records.height == 0:
        return _empty_mapped(), {}
    rec = records  # noqa: F841 - read by DuckDB by name
    keys = con.sql("SELECT source_row, list_sort(json_keys(raw)) AS keys FROM rec").pl()
    keysets = (
        keys.group_by("keys").agg(pl.len().alias("n"), pl.col("source_row").min().alias("first"))
        .sort(["n", "first"], descending=[True, False])
    )
    roles = role_map(spec.tags, spec.roles)
    calls = set(CALL_SPEAKERS) | ({spec.tags["function_tag"].lower()}
                                  if "function_tag" in spec.tags else set())
    groups: dict[FieldMap, list[list[str]]] = {}
    unknown: list[tuple[list[str], str]] = []
    for i, keyset in enumerate(keysets["keys"].to_list()):
        fm = detect_fields(keyset, spec) if i < MAX_KEYSETS else FieldMap(
            None, why="too many distinct key sets in one file")
        if fm.format is None:
            unknown.append((keyset, fm.why))
        else:
            groups.setdefault(fm, []).append(keyset)
    parts: list[pl.DataFrame] = []
    fmt_counts: Counter[str] = Counter()
    for fm, keysets_of_fm in groups.items():
        rows = keys.filter(pl.col("keys").is_in(keysets_of_fm))["source_row"]
        sub = records.filter(pl.col("source_row").is_in(rows.implode()))
        mapped = _map_group(con, sub, fm, spec)
        mapped = build_messages(mapped, roles, calls, spec.system_prompt)
        fmt_counts[fm.format] += mapped.height
        parts.append(mapped.select(*_MAPPED_COLUMNS))
    for keyset, why in unknown:
        rows = keys.filter(pl.col("keys") == pl.lit(keyset, dtype=pl.List(pl.String)))
        parts.append(rows.select(
            "source_row", pl.lit(None, dtype=pl.String).alias("source_format"),
            pl.lit(None, dtype=pl.List(pl.Struct({"role": pl.String, "content": pl.String})))
            .alias("messages"),
            pl.lit(None, dtype=pl.String).alias("tools"),
            pl.lit(None, dtype=pl.String).alias("extra"),
            pl.lit(0, dtype=pl.Int64).alias("non_text_parts"),
            pl.lit("unknown_format").alias("error_code"),
            pl.lit(f"{why}; set format/columns for this source in sources.yaml")
            .alias("error_detail"),
        ))
    return pl.concat(parts).sort("source_row"), dict(fmt_counts)


_MAPPED_COLUMNS = ("source_row", "source_format", "messages", "tools", "extra",
                   "non_text_parts", "error_code", "error_detail")


def _empty_mapped() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "source_row": pl.Int64, "source_format": pl.String,
        "messages": NORMALIZED_SCHEMA["messages"], "tools": pl.String, "extra": pl.String,
        "non_text_parts": pl.Int64, "error_code": pl.String, "error_detail": pl.String})


def _map_group(
    con: duckdb.DuckDBPyConnection, rec: pl.DataFrame, fm: FieldMap, spec: SourceSpec
) -> pl.DataFrame:
    if fm.format in ("openai", "sharegpt"):
        return con.sql(chat_sql(fm)).pl()
    if fm.format in ("alpaca", "prompt_completion"):
        return con.sql(pairs_sql(fm, spec.merged_prompt)).pl()
    if fm.text is None:
        return rec.select("source_row", pl.lit(None, dtype=pl.String).alias("text"),
                          pl.lit(None, dtype=pl.String).alias("text_type"),
                          pl.lit(None, dtype=pl.String).alias("system"),
                          pl.lit(None, dtype=pl.String).alias("extra")).pipe(qa_text_turns)
    return qa_text_turns(con.sql(qa_text_sql(fm)).pl())


def _clean_tools() -> pl.Expr:
    """``tools`` JSON text; empty strings and ``[]`` mean "no tools" and become null."""
    t = pl.col("tools").str.strip_chars()
    return pl.when(t.is_null() | t.is_in(["", "[]", "null", "{}"])).then(None).otherwise(
        pl.col("tools"))


def _extra_with_notes() -> pl.Expr:
    """``extra``, plus ``non_text_parts`` when non-text content parts were left out."""
    n = pl.col("non_text_parts").cast(pl.String)
    note = pl.concat_str(pl.lit('{"non_text_parts":'), n, pl.lit("}"))
    return (
        pl.when(pl.col("non_text_parts") > 0)
        .then(pl.when(pl.col("extra").is_null()).then(note)
              .otherwise(pl.concat_str(pl.col("extra").str.strip_suffix("}"),
                                       pl.lit(',"non_text_parts":'), n, pl.lit("}"))))
        .otherwise(pl.col("extra"))
    )


#: The canonical text an id hashes: role, U+001F, content per turn, joined by U+001E, then
#: U+001D and the tools JSON (empty when none). Written in SQL so DuckDB builds and hashes
#: it in one vectorised pass.
CONTENT_KEY_SQL = (
    "array_to_string(list_transform(messages, lambda m: m.role || chr(31) || m.content), "
    "chr(30)) || chr(29) || coalesce(tools, '')"
)


def assign_ids(frame: pl.DataFrame) -> pl.DataFrame:
    """``example_id`` = first 16 hex digits of md5(content key), plus ``-<n>`` for the n-th
    repeat of the same conversation within the source (so ids stay unique and exact
    duplicates survive to the quality stage, where they are reported).

    md5 is used as a stable fingerprint (not for security): it is the same on every machine
    and DuckDB computes it vectorised. The input must already be in its final order.
    """
    if frame.height == 0:
        return frame.with_columns(pl.lit(None, dtype=pl.String).alias("example_id"))
    keyed = frame.select("messages", "tools")  # noqa: F841 - read by DuckDB by name
    con = duckdb.connect()
    try:
        digests = con.sql(f"SELECT substr(md5({CONTENT_KEY_SQL}), 1, 16) AS h FROM keyed").pl()["h"]
    finally:
        con.close()
    frame = frame.with_columns(digests.alias("example_id"))
    repeated = digests.is_duplicated()
    if not repeated.any():
        return frame
    n = pl.int_range(pl.len()).over("example_id")
    fixed = (
        frame.with_row_index("_i").filter(repeated)
        .select("_i", pl.when(n == 0).then(pl.col("example_id"))
                .otherwise(pl.format("{}-{}", "example_id", n)).alias("_id"))
    )
    return (
        frame.with_row_index("_i").join(fixed, on="_i", how="left")
        .sort("_i")
        .with_columns(pl.coalesce("_id", "example_id").alias("example_id"))
        .drop("_i", "_id")
    )
