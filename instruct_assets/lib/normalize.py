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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import duckdb
import polars as pl

from instruct_assets.lib.chunks import DEFAULT_CHUNK_ROWS
from instruct_assets.lib.formats.chat import chat_sql
from instruct_assets.lib.formats.detect import FieldMap, detect_fields
from instruct_assets.lib.formats.fast_pairs import fast_fieldmap, fast_map
from instruct_assets.lib.formats.pairs import pairs_sql
from instruct_assets.lib.formats.qa_text import qa_text_sql, qa_text_turns
from instruct_assets.lib.formats.turns import CALL_SPEAKERS, build_messages, role_map
from instruct_assets.lib.keys import repeated
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.readers import FileRejected, RawBatch, read_file
from instruct_assets.lib.readers.base import RECORDS_SCHEMA, excerpt
from instruct_assets.lib.readers.chunked import Piece, StreamBroken, file_pieces, read_piece
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
                     files: list[Path] | None = None, *,
                     chunk_rows: int = DEFAULT_CHUNK_ROWS) -> NormalizedSource:
    """Normalize every file of ``spec`` (or ``files``, when a caller lists them itself);
    the result is deterministic for the same bytes and the same for every ``chunk_rows``.

    This holds the whole source in memory (tests, small tools); the ingestion asset streams
    it with :func:`run_chunked` instead."""
    def collect(stream: SourceStream) -> list[pl.DataFrame]:
        return list(stream.examples())

    frames, stream = run_chunked(paths, spec, files, chunk_rows, collect)
    examples = frames[0] if len(frames) == 1 else pl.concat(frames)
    return NormalizedSource(examples, stream.rejects, stream.files)


T = TypeVar("T")


def run_chunked(paths: DataPaths, spec: SourceSpec, files: list[Path] | None, chunk_rows: int,
                consume: Callable[[SourceStream], T]) -> tuple[T, SourceStream]:
    """``consume(stream)`` over one pass of the source; redone (rarely) when a pass finds it
    must read a file differently (a gzip stream breaking mid-file, or a cut file with more
    than ``MAX_KEYSETS`` key sets), so ``consume`` must write nothing visible on an error
    (``ChunkedParquetWriter`` does not)."""
    plan = Plan()
    while True:
        stream = SourceStream(paths, spec, files, chunk_rows, plan)
        try:
            return consume(stream), stream
        except _Redo as redo:
            plan = redo.plan


@dataclass(frozen=True)
class Plan:
    """How a pass reads files that an earlier pass could not stream as they came."""

    #: files (relative paths) read whole, as an unchunked run does
    whole: frozenset[str] = frozenset()
    #: cut files whose key sets must be ranked over the whole file first (None: not yet)
    ranked: dict[str, frozenset[tuple[str, ...]] | None] = field(default_factory=dict)


class _Redo(Exception):
    def __init__(self, plan: Plan) -> None:
        super().__init__("redo the source with a new reading plan")
        self.plan = plan


@dataclass
class _Tally:
    """What one batch (a whole file, or a piece of one) contributed to its file's report."""

    units: int
    fmt_counts: dict[str, int]
    blank_lines: int
    keysets: set[tuple[str, ...]] = field(default_factory=set)
    fast_columns: tuple[str, ...] | None = None


class SourceStream:
    """One pass over a source: its examples in final order, in frames of about
    ``chunk_rows`` rows, with ids; then its rejects and per-file reports.

    Files are read in order of their relative path (the final order). A JSON Lines file of
    more than ``chunk_rows`` lines is read in pieces of ``chunk_rows`` lines
    (``readers.chunked``); other files are read whole. Small files' rows are gathered up to
    ``chunk_rows`` per frame, so a source that fits in one chunk is one frame, exactly as an
    unchunked run makes it. Across frames only narrow state is kept: the repeat count of
    each content digest (ids), the rejects (excerpts) and the file reports.
    """

    def __init__(self, paths: DataPaths, spec: SourceSpec, files: list[Path] | None,
                 chunk_rows: int, plan: Plan) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        self.paths, self.spec, self.chunk_rows, self.plan = paths, spec, chunk_rows, plan
        found = source_files(paths, spec) if files is None else files
        self._files = sorted(found, key=paths.relative)
        self.files: list[FileReport] = []
        self.rows = 0
        #: True once a file was cut into pieces (more than one frame may follow)
        self.cut = False
        self._rejects: list[pl.DataFrame] = []
        self.rejects = pl.DataFrame(schema=REJECTS_SCHEMA)

    @property
    def records_read(self) -> int:
        return sum(f.records_read for f in self.files)

    def examples(self) -> Iterator[pl.DataFrame]:
        """The examples (NORMALIZED_SCHEMA, ids assigned); when exhausted, ``rejects`` and
        ``files`` are complete and the row accounting is asserted."""
        con = duckdb.connect()
        counter = _RepeatCounter()
        pending: list[pl.DataFrame] = []  # emptied by ``_flush``
        pending_rows, flushed = 0, False
        try:
            for file in self._files:
                for part in self._file(con, file):
                    if pending and pending_rows + part.height > self.chunk_rows:
                        yield self._flush(pending, counter)
                        pending_rows, flushed = 0, True
                    pending_rows += part.height
                    pending.append(part)
                    del part
                    if pending_rows >= self.chunk_rows:
                        yield self._flush(pending, counter)
                        pending_rows, flushed = 0, True
            if pending or not flushed:
                yield self._flush(pending, counter)
        finally:
            con.close()
        self.rejects = conform(_in_file_order(
            pl.concat(self._rejects) if self._rejects else pl.DataFrame(schema=REJECTS_SCHEMA)),
            REJECTS_SCHEMA)
        self._rejects = []
        if self.rows + self.rejects.height != self.records_read:
            raise AssertionError(
                f"source {self.spec.name}: {self.records_read} records read but "
                f"{self.rows} rows + {self.rejects.height} rejects")

    def _flush(self, pending: list[pl.DataFrame], counter: _RepeatCounter) -> pl.DataFrame:
        """The frame of ``pending``'s parts with ids (``pending`` is emptied)."""
        frame = (pending[0] if len(pending) == 1 else pl.concat(pending) if pending
                 else pl.DataFrame(schema=NORMALIZED_SCHEMA))
        pending.clear()
        frame = conform(counter.assign(_in_file_order(frame)), NORMALIZED_SCHEMA)
        self.rows += frame.height
        return frame

    def _file(self, con: duckdb.DuckDBPyConnection, file: Path) -> Iterator[pl.DataFrame]:
        """The examples of one file, whole or piece by piece (rejects/report kept aside)."""
        rel = self.paths.relative(file)
        pieces = None if rel in self.plan.whole else file_pieces(file, self.chunk_rows)
        if pieces is None:
            yield self._whole(con, rel, read_file(file))
            return
        piece: Piece | None = next(pieces)
        assert piece is not None
        if piece.whole:
            data, offsets, piece = piece.data, piece.offsets, None
            examples = self._whole(con, rel, read_file(file, data=data, offsets=offsets))
            del data, offsets  # not held while the caller writes
            yield examples
            return
        self.cut = True
        allowed = None
        if rel in self.plan.ranked:
            allowed = self.plan.ranked[rel]
            if allowed is None:
                allowed = self._rank_keysets(con, file)
                self.plan.ranked[rel] = allowed
        tallies: list[_Tally] = []
        rejects: list[pl.DataFrame] = []
        rows, content = 0, False
        keysets: set[tuple[str, ...]] = set()
        fast: set[tuple[str, ...]] = set()
        while piece is not None:
            try:
                batch = read_piece(piece, file, table=allowed is None)
            except FileRejected as exc:  # only the first piece: binary content
                yield self._whole(con, rel, _unreadable(exc))
                return
            content = content or bool(piece.data[:65536].strip() or piece.data.strip())
            first_line, piece = piece.first_line, None
            examples, rej, tally = _normalize_batch(con, self.spec, rel, batch, first_line,
                                                    allowed)
            del batch
            tallies.append(tally)
            rejects.append(rej)
            rows += examples.height
            keysets |= tally.keysets
            if tally.fast_columns is not None:
                fast.add(tally.fast_columns)
            if allowed is None and len(keysets) + sum(2 ** len(c) for c in fast) > MAX_KEYSETS:
                raise _Redo(replace(self.plan, ranked={**self.plan.ranked, rel: None}))
            yield examples
            del examples
            try:
                piece = next(pieces, None)
            except StreamBroken as exc:
                raise _Redo(replace(self.plan, whole=self.plan.whole | {rel})) from exc
        if not content:
            yield self._whole(con, rel, _unreadable(FileRejected("empty_file",
                                                                 "the file is empty")))
            return
        self._rejects.extend(rejects)
        self.files.append(_report(rel, "jsonl", tallies, rows,
                                  sum(r.height for r in rejects)))

    def _whole(self, con: duckdb.DuckDBPyConnection, rel: str, batch: RawBatch
               ) -> pl.DataFrame:
        examples, rejects, tally = _normalize_batch(con, self.spec, rel, batch, 0, None)
        self._rejects.append(rejects)
        self.files.append(_report(rel, batch.container, [tally], examples.height,
                                  rejects.height))
        return examples

    def _rank_keysets(self, con: duckdb.DuckDBPyConnection, file: Path
                      ) -> frozenset[tuple[str, ...]]:
        """The ``MAX_KEYSETS`` key sets an unchunked run classifies in ``file`` (a first
        pass over its pieces, keeping one row per key set): the most frequent, ties to the
        one seen first. Only for cut files with more key sets than that."""
        ranks: dict[tuple[str, ...], list[int]] = {}
        pieces = file_pieces(file, self.chunk_rows)
        try:
            for piece in pieces or ():
                try:
                    batch = read_piece(piece, file, table=False)
                except FileRejected:
                    return frozenset()
                records, _ = _objects_only(con, batch)
                rec = records  # noqa: F841 - read by DuckDB by name
                counts = con.sql("SELECT list_sort(json_keys(raw)) AS keys, count(*) AS n, "
                                 "min(source_row) AS first FROM rec GROUP BY 1").fetchall()
                for keys, n, first in counts:
                    have = ranks.setdefault(tuple(keys), [0, first + piece.first_line])
                    have[0] += n
        except StreamBroken as exc:
            rel = self.paths.relative(file)
            raise _Redo(replace(self.plan, whole=self.plan.whole | {rel})) from exc
        ranked = sorted(ranks.items(), key=lambda kv: (-kv[1][0], kv[1][1]))
        return frozenset(k for k, _ in ranked[:MAX_KEYSETS])


def _in_file_order(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by (source_file, source_row); usually it already is (files are read
    in order, each mapped in row order), and sorting a million conversations copies them."""
    file, row = pl.col("source_file"), pl.col("source_row")
    ordered = ((file > file.shift(1))
               | ((file == file.shift(1)) & (row > row.shift(1)))).fill_null(True).all()
    if frame.height < 2 or frame.select(ordered).item():
        return frame
    return frame.sort("source_file", "source_row")


def _unreadable(exc: FileRejected) -> RawBatch:
    return RawBatch.build(None, [(0, exc.reason_code, exc.detail, exc.raw)], "unreadable")


def _report(rel: str, container: str, tallies: list[_Tally], rows: int, rejects: int
            ) -> FileReport:
    """A file's report from the tallies of its batches (one, or one per piece)."""
    fmt_counts: Counter[str] = Counter()
    for t in tallies:
        fmt_counts.update(t.fmt_counts)
    units = sum(t.units for t in tallies)
    main_format, share = None, 0.0
    if fmt_counts:
        main_format, top = sorted(fmt_counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        share = round(top / max(units, 1), 4)
    return FileReport(
        file=rel, container=container, records_read=units, rows=rows, rejects=rejects,
        format=main_format, format_share=share, formats=dict(sorted(fmt_counts.items())),
        blank_lines=sum(t.blank_lines for t in tallies),
    )


class _RepeatCounter:
    """Ids across frames: how often each content digest occurred in earlier frames, so the
    n-th repeat of a conversation gets ``-<n>`` wherever its copies fall. The state is one
    (u64 digest, count) row per distinct conversation; the last frame's digests are counted
    in only when another frame comes, so a one-frame source pays nothing for it."""

    def __init__(self) -> None:
        self._seen: pl.DataFrame | None = None
        self._last: pl.Series | None = None

    def assign(self, frame: pl.DataFrame) -> pl.DataFrame:
        if self._last is not None:
            counts = (self._last.drop_nulls().str.to_integer(base=16, dtype=pl.UInt64)
                      .alias("h").value_counts(name="n")
                      .with_columns(pl.col("n").cast(pl.UInt32)))
            self._seen = counts if self._seen is None else (
                pl.concat([self._seen, counts]).group_by("h").agg(pl.col("n").sum()))
            self._last = None
        if frame.height == 0:
            return assign_ids(frame)
        digests = _digests(frame)
        self._last = digests
        prior = None
        if self._seen is not None:
            prior = (digests.str.to_integer(base=16, dtype=pl.UInt64).alias("h").to_frame()
                     .join(self._seen, on="h", how="left", maintain_order="left")["n"]
                     .fill_null(0))
        return _with_ids(frame, digests, prior)


def _normalize_batch(
    con: duckdb.DuckDBPyConnection, spec: SourceSpec, rel: str, batch: RawBatch,
    first_line: int, allowed: frozenset[tuple[str, ...]] | None,
) -> tuple[pl.DataFrame, pl.DataFrame, _Tally]:
    """A whole file's records or one piece's (numbered from 0; ``first_line`` is added)
    -> (examples without ids, rejects, tally). ``allowed``: the key sets to classify (a cut
    file's ranking over the whole file); None classifies the ``MAX_KEYSETS`` most frequent."""
    fast_mapped, fast_fm, fast_columns = None, None, None
    if batch.table is not None and (fast_fm := fast_fieldmap(batch.table, spec)) is not None:
        fast_columns = tuple(sorted(c for c in batch.table.columns if c != "source_row"))
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
    mapped, fmt_counts, keysets = _map_records(con, records, spec, allowed)
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
    row = pl.col("source_row") + first_line if first_line else pl.col("source_row")
    examples = good.select(
        pl.lit(spec.name).alias("source"),
        pl.lit(rel).alias("source_file"),
        row.alias("source_row"), "source_format", "messages",
        _clean_tools().alias("tools"),
        pl.lit(spec.origin).alias("origin"),
        _extra_with_notes().alias("extra"),
    )
    rejects = rejects.select(
        pl.lit(spec.name).alias("source"), pl.lit(rel).alias("source_file"),
        row.alias("source_row"), "reason_code", "detail", "raw",
    )
    tally = _Tally(batch.units, fmt_counts, batch.notes.get("blank_lines", 0), keysets,
                   fast_columns)
    return examples, rejects, tally


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
    con: duckdb.DuckDBPyConnection, records: pl.DataFrame, spec: SourceSpec,
    allowed: frozenset[tuple[str, ...]] | None = None,
) -> tuple[pl.DataFrame, dict[str, int], set[tuple[str, ...]]]:
    """Every JSON-object record -> turns -> messages, with an error for rows that fail;
    also the distinct key sets seen."""
    if records.height == 0:
        return _empty_mapped(), {}, set()
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
    all_keysets = keysets["keys"].to_list()
    for i, keyset in enumerate(all_keysets):
        classify = i < MAX_KEYSETS if allowed is None else tuple(keyset) in allowed
        fm = detect_fields(keyset, spec) if classify else FieldMap(
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
    return (pl.concat(parts).sort("source_row"), dict(fmt_counts),
            {tuple(k) for k in all_keysets})


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
    return _with_ids(frame, _digests(frame), None)


def _digests(frame: pl.DataFrame) -> pl.Series:
    keyed = frame.select("messages", "tools")  # noqa: F841 - read by DuckDB by name
    con = duckdb.connect()
    try:
        return con.sql(f"SELECT substr(md5({CONTENT_KEY_SQL}), 1, 16) AS h FROM keyed").pl()["h"]
    finally:
        con.close()


def _with_ids(frame: pl.DataFrame, digests: pl.Series, prior: pl.Series | None
              ) -> pl.DataFrame:
    """``frame`` with ids from ``digests``; ``prior``: per row, how many copies of its
    conversation earlier frames of the source held (None: this is the first frame).

    Only the repeated rows are numbered (every copy of a repeated digest is among them, in
    frame order, so the numbering is that of the whole frame): a window over all rows cost
    ~1 s at 1M rows for the few percent that repeat. The window runs on a narrow, rechunked
    frame: polars 2.1 panics ("assertion failed: i < self.len()") on it over multi-chunk
    columns, which the two files of one real source produced.
    """
    again = repeated(digests)
    if prior is not None:
        again = again | (prior > 0)
    if not again.any():
        return frame.with_columns(digests.alias("example_id"))
    rows = again.arg_true()
    narrow = pl.DataFrame({"example_id": digests.gather(rows)}).rechunk()
    n = pl.int_range(pl.len()).over("example_id")
    if prior is not None:
        narrow = narrow.with_columns(prior.gather(rows).cast(pl.Int64).rechunk().alias("_p"))
        n = n + pl.col("_p")
    numbered = narrow.select(pl.when(n == 0).then(pl.col("example_id"))
                             .otherwise(pl.format("{}-{}", "example_id", n))).to_series()
    # scatter writes in place: the caller keeps ``digests`` (the repeat counter reads it)
    return frame.with_columns(digests.clone().scatter(rows, numbered).alias("example_id"))
