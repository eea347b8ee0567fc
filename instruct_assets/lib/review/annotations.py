"""Annotation exports (Label Studio, Argilla, Prodigy) -> one ``annotations`` relation.

Drop any export into ``<data dir>/annotations/`` (any nesting; hidden files ignored). Each
record is recognised by its shape, not its file name:

* Label Studio JSON (``"annotations"``/``"completions"`` + ``"data"`` per task; one row per
  annotation), JSON-MIN (flat task data + ``annotator``/``annotation_id``) and CSV/TSV
  (the same columns). Controls: ``verdict`` (choices), ``edited_response`` and ``reason``
  (text areas), as ``tools.LABEL_STUDIO_CONFIG`` defines them.
* Argilla 2.x records: nested (``records.to_json``: ``fields``/``metadata``/``responses``)
  or flat (``to_list(flatten=True)``, ``to_datasets()``: ``verdict.responses`` +
  ``.users`` + ``.status``); one row per user who answered ``verdict``. The flat shape also
  comes as Parquet (``.parquet``): ``records.to_datasets().to_parquet(path)`` or a Hub
  export (``dataset.to_hub``: ``to_datasets()`` pushed as ``data/<split>-*.parquet``), one
  record per row with the fields and metadata as columns and the dotted response and
  suggestion columns (lists per user; null where a record has none); ``tool_format``
  ``argilla_parquet``.
* Prodigy ``db-out`` JSONL (``answer`` + ``meta`` + ``_annotator_id``/``_timestamp``):
  ``reject`` rejects; ``accept`` accepts, or edits when ``edited_response`` differs from
  ``response``; a choice task (``options`` + ``accept``) may name the verdict itself.

Nothing is dropped silently: every record (or annotation inside a task) ends as one row of
``annotations`` or one row of the rejects with a ``reason_code`` (:data:`REJECT_REASONS`);
a Parquet file that does not open is one ``unreadable_file`` reject, one with no rows an
``empty_file``, and a row in no tool's shape an ``unknown_format``, as for JSON.
Times are UTC; Argilla exports carry none (null). Edited text is kept as written except
``\\r\\n`` -> ``\\n``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from instruct_assets.lib.fingerprint import FileCache, files_fingerprint
from instruct_assets.lib.keys import KEY
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.review.layout import ReviewPaths
from instruct_assets.lib.review.tools import VERDICTS

#: Bump when parsing changes: part of the inbox fingerprint (re-parse on upgrade).
PARSER_VERSION = "annotations-2"

TOOLS: tuple[str, ...] = ("label_studio", "argilla", "prodigy")
RAW_CHARS = 2000

ANNOTATIONS_SCHEMA = pl.Schema({
    "source": pl.String,
    "example_id": pl.String,
    "verdict": pl.String,
    "edited_content": pl.String,
    "reason": pl.String,
    "annotator": pl.String,
    "annotated_at": pl.Datetime("us", "UTC"),
    "tool": pl.String,
    "tool_format": pl.String,
    "annotation_ref": pl.String,
    "file": pl.String,
    "record": pl.Int64,
})

ANNOTATION_REJECTS_SCHEMA = pl.Schema({
    "file": pl.String,
    "record": pl.Int64,
    "tool": pl.String,
    "reason_code": pl.String,
    "detail": pl.String,
    "raw": pl.String,
})

REJECT_REASONS: dict[str, str] = {
    "unreadable_file": "not UTF-8 text, a Parquet file that does not open, or a file type "
                       "no tool exports",
    "empty_file": "a file with no records",
    "invalid_json": "a file or line that is not JSON",
    "unknown_format": "a record in no supported tool's export shape",
    "missing_key": "no source/example_id (nor a review_key) to tie it to an example",
    "no_verdict": "a task nobody annotated (or no answer to the verdict question)",
    "skipped": "skipped/cancelled (Label Studio), discarded (Argilla), ignore (Prodigy)",
    "not_submitted": "an Argilla draft response",
    "bad_verdict": "a verdict other than accept / reject / edit",
    "empty_edit": "verdict edit without edited text",
    "unknown_example": "no published example has this source and example_id",
    "duplicate_annotation": "the same annotation seen before (e.g. in an earlier export)",
}

JSON_SUFFIXES = {".json"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
PARQUET_SUFFIXES = {".parquet"}
#: Format hint of Parquet rows: Argilla's flat records, tagged ``argilla_parquet``.
PARQUET_HINT = "parquet"


class RecordError(ValueError):
    """A record (or one annotation in it) that cannot be used: ``code`` is its reason."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass
class ParsedAnnotations:
    """Rows, rejects and what each file held."""

    annotations: pl.DataFrame
    rejects: pl.DataFrame
    files: dict[str, dict[str, int]] = field(default_factory=dict)
    edits_unchanged: int = 0

    def rejects_by_reason(self) -> dict[str, int]:
        counts = self.rejects.group_by("reason_code").len().sort("reason_code")
        return {r: int(n) for r, n in counts.iter_rows()}


# --- small value helpers ------------------------------------------------------------------

def _text(value: Any) -> str | None:
    """A text answer from any tool's shape (str, list of str, {"text": [...]})."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.replace("\r\n", "\n")
    if isinstance(value, dict):
        for k in ("text", "choices", "value"):
            if k in value:
                return _text(value[k])
        return None
    if isinstance(value, list):
        parts = [t for t in (_text(v) for v in value) if t is not None]
        return parts[-1] if parts else None
    return str(value)


def _verdict(value: Any) -> str:
    text = _text(value)
    if text is None or not text.strip():
        raise RecordError("no_verdict", "no verdict given")
    verdict = text.strip().lower()
    if verdict not in VERDICTS:
        raise RecordError("bad_verdict", f"verdict {text!r} is not one of {list(VERDICTS)}")
    return verdict


def _time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            try:
                return datetime.fromtimestamp(float(value), UTC)
            except ValueError:
                return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


def _annotator(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("email") or value.get("username") or value.get("id")
    return None if value in (None, "") else str(value)


def _key(source: Any, example_id: Any, review_key: Any = None) -> tuple[str, str]:
    if isinstance(source, str) and source and isinstance(example_id, str) and example_id:
        return source, example_id
    if isinstance(review_key, str) and ":" in review_key:
        src, _, ex = review_key.partition(":")
        if src and ex:
            return src, ex
    raise RecordError("missing_key", "no source/example_id or review_key")


def _row(key: tuple[str, str], verdict: str, edited: str | None, reason: str | None,
         annotator: str | None, at: datetime | None, tool: str, fmt: str,
         ref: Any) -> dict[str, Any]:
    if verdict == "edit" and (edited is None or not edited.strip()):
        raise RecordError("empty_edit", "verdict edit without edited text")
    reason = reason.strip() if isinstance(reason, str) else None
    return {"source": key[0], "example_id": key[1], "verdict": verdict,
            "edited_content": edited if verdict == "edit" else None,
            "reason": reason or None, "annotator": annotator, "annotated_at": at,
            "tool": tool, "tool_format": fmt,
            "annotation_ref": None if ref is None else str(ref)}


# --- Label Studio -------------------------------------------------------------------------

def _ls_results(result: Any) -> dict[str, Any]:
    """``from_name`` -> value of the last result of that control."""
    out: dict[str, Any] = {}
    for item in result if isinstance(result, list) else []:
        if isinstance(item, dict) and isinstance(item.get("value"), dict):
            out[str(item.get("from_name"))] = item["value"]
    return out


def _label_studio_task(task: dict) -> Iterator[dict | RecordError]:
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    try:
        key = _key(data.get("source"), data.get("example_id"), data.get("review_key"))
    except RecordError as exc:
        yield exc
        return
    annotations = task.get("annotations", task.get("completions")) or []
    if not isinstance(annotations, list) or not annotations:
        yield RecordError("no_verdict", f"task {task.get('id')} has no annotation")
        return
    for ann in annotations:
        if not isinstance(ann, dict):
            yield RecordError("unknown_format", "an annotation that is not an object")
            continue
        if ann.get("was_cancelled") or ann.get("skipped"):
            yield RecordError("skipped", f"annotation {ann.get('id')} was skipped")
            continue
        values = _ls_results(ann.get("result"))
        try:
            verdict = _verdict(values.get("verdict", {}).get("choices"))
            yield _row(key, verdict, _text(values.get("edited_response")),
                       _text(values.get("reason")), _annotator(ann.get("completed_by")),
                       _time(ann.get("updated_at") or ann.get("created_at")), "label_studio",
                       "label_studio_json", ann.get("id"))
        except RecordError as exc:
            yield exc


def _label_studio_min(rec: dict, fmt: str) -> Iterator[dict | RecordError]:
    try:
        key = _key(rec.get("source"), rec.get("example_id"), rec.get("review_key"))
        verdict = _verdict(rec.get("verdict"))
        yield _row(key, verdict, _text(rec.get("edited_response")), _text(rec.get("reason")),
                   _annotator(rec.get("annotator")),
                   _time(rec.get("updated_at") or rec.get("created_at")), "label_studio", fmt,
                   rec.get("annotation_id"))
    except RecordError as exc:
        yield exc


# --- Argilla ------------------------------------------------------------------------------

def _argilla_answers(responses: dict, question: str) -> dict[str, dict]:
    """user_id -> response dict for one question of a nested record."""
    out = {}
    for r in responses.get(question) or []:
        if isinstance(r, dict):
            out[str(r.get("user_id"))] = r
    return out


def _argilla_nested(rec: dict) -> Iterator[dict | RecordError]:
    meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
    fields = rec.get("fields") if isinstance(rec.get("fields"), dict) else {}
    responses = rec.get("responses") if isinstance(rec.get("responses"), dict) else {}
    try:
        key = _key(meta.get("source", fields.get("source")),
                   meta.get("example_id", fields.get("example_id")), rec.get("id"))
    except RecordError as exc:
        yield exc
        return
    verdicts = _argilla_answers(responses, "verdict")
    if not verdicts:
        yield RecordError("no_verdict", f"record {rec.get('id')} has no verdict response")
        return
    edits = _argilla_answers(responses, "edited_response")
    reasons = _argilla_answers(responses, "reason")
    for user in sorted(verdicts):
        r = verdicts[user]
        yield from _argilla_one(key, user, r.get("value"), r.get("status"),
                                edits.get(user, {}).get("value"),
                                reasons.get(user, {}).get("value"),
                                r.get("updated_at") or r.get("inserted_at"), "argilla_nested",
                                rec.get("id"))


def _argilla_flat(rec: dict, fmt: str = "argilla_flat") -> Iterator[dict | RecordError]:
    try:
        key = _key(rec.get("source"), rec.get("example_id"), rec.get("id"))
    except RecordError as exc:
        yield exc
        return

    def by_user(question: str) -> dict[str, tuple[Any, Any]]:
        values = rec.get(f"{question}.responses") or []
        users = rec.get(f"{question}.responses.users") or []
        status = rec.get(f"{question}.responses.status") or []
        if not isinstance(values, list):
            values = [values]
        out = {}
        for i, value in enumerate(values):
            user = str(users[i]) if isinstance(users, list) and i < len(users) else str(i)
            out[user] = (value, status[i] if isinstance(status, list) and i < len(status)
                         else None)
        return out

    verdicts = by_user("verdict")
    if not verdicts:
        yield RecordError("no_verdict", f"record {rec.get('id')} has no verdict response")
        return
    edits, reasons = by_user("edited_response"), by_user("reason")
    for user in sorted(verdicts):
        value, status = verdicts[user]
        yield from _argilla_one(key, user, value, status, edits.get(user, (None,))[0],
                                reasons.get(user, (None,))[0], None, fmt, rec.get("id"))


def _argilla_one(key, user, value, status, edited, reason, at, fmt, ref
                 ) -> Iterator[dict | RecordError]:
    status = status.get("value") if isinstance(status, dict) else status
    if status == "discarded":
        yield RecordError("skipped", f"user {user}: response discarded")
        return
    if status == "draft":
        yield RecordError("not_submitted", f"user {user}: response is a draft")
        return
    try:
        yield _row(key, _verdict(value), _text(edited), _text(reason), user, _time(at),
                   "argilla", fmt, f"{ref}:{user}")
    except RecordError as exc:
        yield exc


# --- Prodigy ------------------------------------------------------------------------------

def _prodigy(rec: dict) -> Iterator[dict | RecordError]:
    meta = rec.get("meta") if isinstance(rec.get("meta"), dict) else {}
    try:
        key = _key(meta.get("source", rec.get("source")),
                   meta.get("example_id", rec.get("example_id")),
                   meta.get("review_key", rec.get("review_key")))
        answer = rec.get("answer")
        if answer == "ignore":
            raise RecordError("skipped", "answer ignore")
        if answer not in ("accept", "reject"):
            raise RecordError("bad_verdict", f"answer {answer!r} is not accept/reject/ignore")
        edited = _text(rec.get("edited_response"))
        chosen = rec.get("accept") if isinstance(rec.get("options"), list) else None
        chosen = [c for c in chosen if c in VERDICTS] if isinstance(chosen, list) else []
        if answer == "reject":
            verdict = "reject"
        elif chosen:
            verdict = chosen[-1]
        else:
            original = _text(rec.get("response"))
            changed = edited is not None and edited.strip() and edited != original
            verdict = "edit" if changed else "accept"
        yield _row(key, verdict, edited, _text(rec.get("reason")),
                   _annotator(rec.get("_annotator_id") or rec.get("_session_id")),
                   _time(rec.get("_timestamp")), "prodigy", "prodigy_jsonl",
                   rec.get("_task_hash"))
    except RecordError as exc:
        yield exc


# --- dispatch -----------------------------------------------------------------------------

def classify(rec: Any) -> tuple[str | None, str | None]:
    """(tool, tool_format) of one record, by its keys; (None, None) when unknown."""
    if not isinstance(rec, dict):
        return None, None
    if isinstance(rec.get("annotations", rec.get("completions")), list) and "data" in rec:
        return "label_studio", "label_studio_json"
    if "annotation_id" in rec and "annotator" in rec:
        return "label_studio", "label_studio_json_min"
    if isinstance(rec.get("fields"), dict) and ("responses" in rec or "_server_id" in rec):
        return "argilla", "argilla_nested"
    if "_server_id" in rec or any(isinstance(k, str) and k.endswith((".responses",
                                                                      ".suggestion"))
                                  for k in rec):
        return "argilla", "argilla_flat"
    if "answer" in rec and ("meta" in rec or "_task_hash" in rec or "_input_hash" in rec):
        return "prodigy", "prodigy_jsonl"
    return None, None


def parse_record(rec: Any, fmt: str | None = None) -> Iterator[dict | RecordError]:
    """Annotation rows (dicts) or :class:`RecordError` per annotation of one record."""
    tool, detected = classify(rec)
    if fmt == PARQUET_HINT:  # a table row: whatever shape it has, flat Argilla expected
        fmt = "argilla_parquet" if detected == "argilla_flat" else detected
    fmt = fmt or detected
    if tool is None and fmt != "label_studio_csv":
        yield RecordError("unknown_format", "fits no Label Studio, Argilla or Prodigy export")
    elif fmt == "label_studio_json":
        yield from _label_studio_task(rec)
    elif fmt in ("label_studio_json_min", "label_studio_csv"):
        yield from _label_studio_min(rec, fmt)
    elif fmt == "argilla_nested":
        yield from _argilla_nested(rec)
    elif fmt in ("argilla_flat", "argilla_parquet"):
        yield from _argilla_flat(rec, fmt)
    else:
        yield from _prodigy(rec)


def _parquet_records(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """Rows of a Parquet file as dicts (lists and structs as Python lists and dicts)."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        yield 0, RecordError("unreadable_file", f"not a readable Parquet file: {exc}"), None
        return
    if table.num_rows == 0:
        yield 0, RecordError("empty_file", "a Parquet file with no rows"), None
        return
    for i, row in enumerate(table.to_pylist()):
        yield i, row, PARQUET_HINT


def _records(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(record index, parsed record or a RecordError, format hint) for one file."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        yield from _parquet_records(path)
        return
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        yield 0, RecordError("unreadable_file", "not UTF-8 text"), None
        return
    suffix = path.suffix.lower()
    if not text.strip():
        yield 0, RecordError("empty_file", "no records"), None
    elif suffix in JSON_SUFFIXES:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            yield 0, RecordError("invalid_json", f"line {exc.lineno}: {exc.msg}"), None
            return
        for i, rec in enumerate(doc if isinstance(doc, list) else [doc]):
            yield i, rec, None
    elif suffix in JSONL_SUFFIXES:
        for i, line in enumerate(text.replace("\r\n", "\n").split("\n")):
            if not line.strip():
                continue
            try:
                yield i, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield i, RecordError("invalid_json", exc.msg), None
    elif suffix in CSV_SUFFIXES:
        reader = csv.DictReader(io.StringIO(text), delimiter=CSV_SUFFIXES[suffix])
        if not {"annotation_id", "annotator"} <= set(reader.fieldnames or []):
            yield 0, RecordError("unknown_format", "a CSV without Label Studio's "
                                 "annotation_id/annotator columns"), None
            return
        for i, row in enumerate(reader):
            yield i, row, "label_studio_csv"
    else:
        yield 0, RecordError("unreadable_file", f"no tool exports {suffix or 'this'} files"), \
            None


def inbox_files(layout: ReviewPaths) -> list[Path]:
    """Every non-hidden file under the annotations folder, sorted by path."""
    root = layout.inbox
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _excerpt(rec: Any) -> str:
    text = rec if isinstance(rec, str) else json.dumps(rec, ensure_ascii=False, default=str)
    return text[:RAW_CHARS]


def read_annotation_files(paths: DataPaths) -> tuple[pl.DataFrame, pl.DataFrame,
                                                     dict[str, dict[str, int]]]:
    """Every file of the inbox parsed: (annotations, rejects, per-file counts), unvalidated
    against the examples (see :func:`finalize`)."""
    layout = ReviewPaths(paths)
    rows: list[dict] = []
    rejects: list[dict] = []
    files: dict[str, dict[str, int]] = {}
    for path in inbox_files(layout):
        rel = paths.relative(path)
        counts = {"records": 0, "annotations": 0, "rejects": 0}
        for index, rec, hint in _records(path):
            if isinstance(rec, RecordError):
                rejects.append({"file": rel, "record": index, "tool": None,
                                "reason_code": rec.code, "detail": rec.detail, "raw": None})
                counts["rejects"] += 1
                continue
            counts["records"] += 1
            tool = classify(rec)[0] or ("label_studio" if hint == "label_studio_csv"
                                        else None)
            for item in parse_record(rec, hint):
                if isinstance(item, RecordError):
                    rejects.append({"file": rel, "record": index, "tool": tool,
                                    "reason_code": item.code, "detail": item.detail,
                                    "raw": _excerpt(rec)})
                    counts["rejects"] += 1
                else:
                    rows.append({**item, "file": rel, "record": index})
                    counts["annotations"] += 1
        files[rel] = counts
    annotations = pl.DataFrame(rows, schema=ANNOTATIONS_SCHEMA)
    rejected = pl.DataFrame(rejects, schema=ANNOTATION_REJECTS_SCHEMA)
    return annotations, rejected, files


def finalize(annotations: pl.DataFrame, rejects: pl.DataFrame,
             examples: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Vectorised validation: unknown examples and repeated annotations become rejects; an
    edit whose text equals the current response becomes an accept. Returns (annotations,
    rejects, edits found unchanged), both sorted."""
    order = ["file", "record", "annotation_ref"]
    frame = annotations.sort(order, nulls_last=False)
    moved: list[pl.DataFrame] = []

    def to_rejects(part: pl.DataFrame, code: str, detail: pl.Expr) -> pl.DataFrame:
        return part.select("file", "record", "tool", pl.lit(code).alias("reason_code"),
                           detail.alias("detail"), pl.lit(None, dtype=pl.String).alias("raw"))

    unchanged = 0
    if examples is not None:
        last = examples.select(
            *KEY, pl.col("messages").list.last().struct.field("content").alias("_current"))
        frame = frame.join(last, on=KEY, how="left", maintain_order="left")
        unknown = frame.filter(pl.col("_current").is_null())
        moved.append(to_rejects(unknown, "unknown_example",
                                pl.format("no published example {}:{}", "source",
                                          "example_id")))
        frame = frame.filter(pl.col("_current").is_not_null())
        same = (pl.col("verdict") == "edit") & (pl.col("edited_content") == pl.col("_current"))
        unchanged = int(frame.select(same.sum()).item() or 0)
        frame = frame.with_columns(
            verdict=pl.when(same).then(pl.lit("accept")).otherwise(pl.col("verdict")),
            edited_content=pl.when(same).then(None).otherwise(pl.col("edited_content")),
        ).drop("_current")
    content = ["source", "example_id", "verdict", "edited_content", "reason", "annotator",
               "annotated_at", "tool", "annotation_ref"]
    repeat = pl.int_range(pl.len()).over(content) > 0
    dup = frame.filter(repeat)
    moved.append(to_rejects(dup, "duplicate_annotation",
                            pl.format("same annotation as an earlier row for {}:{}", "source",
                                      "example_id")))
    frame = frame.filter(~repeat)
    out = frame.sort("source", "example_id", "annotated_at", "tool", "annotator", "file",
                     "record", nulls_last=False).select(ANNOTATIONS_SCHEMA.names())
    all_rejects = pl.concat([rejects, *[m.cast(dict(ANNOTATION_REJECTS_SCHEMA))
                                        for m in moved]])
    return (out.cast(dict(ANNOTATIONS_SCHEMA)),
            all_rejects.sort("file", "record", "reason_code", nulls_last=False), unchanged)


def parse_annotations(paths: DataPaths, examples: pl.DataFrame | None = None
                      ) -> ParsedAnnotations:
    """The inbox parsed and validated against ``examples`` (published rows) when given."""
    annotations, rejects, files = read_annotation_files(paths)
    annotations, rejects, unchanged = finalize(annotations, rejects, examples)
    return ParsedAnnotations(annotations, rejects, files, unchanged)


def inbox_fingerprint(paths: DataPaths, cache: FileCache | None = None) -> str:
    """Content fingerprint of the annotations folder, for a sensor's run key.

    md5 of every file's relative path and digest (digests cached by size and mtime in
    ``cache``, like the source sensor's cursor) plus :data:`PARSER_VERSION`. An empty or
    missing folder has a fingerprint too, so removing every file triggers a re-parse.
    """
    cache = {} if cache is None else cache
    return files_fingerprint(paths, inbox_files(ReviewPaths(paths)), cache,
                             {"code": PARSER_VERSION})
