"""JSON containers -> raw records: JSON Lines, a JSON array, one object, an object keyed by id.

The JSON Lines path is the hot path (a 1M-row Alpaca JSONL file): it splits lines with numpy
over the file's bytes and builds an Arrow string column over the same buffer, without a Python
object per line. JSON validity of each line is decided later, vectorised, in DuckDB.
"""

from __future__ import annotations

import io
import json

import numpy as np
import polars as pl
import pyarrow as pa

from instruct_assets.lib.readers.base import READ_REJECTS_SCHEMA, FileRejected, RawBatch

#: Keys that mark a JSON object as one record rather than a mapping of id -> record.
RECORD_KEYS = frozenset(
    {"instruction", "messages", "conversations", "text", "prompt", "question", "output",
     "input", "response", "completion", "answer", "query", "system", "role", "content"}
)


def read_jsonl(data: bytes) -> RawBatch:
    """One record per line; blank lines are counted in ``notes`` but are not records."""
    if not data[:65536].strip() and not data.strip():
        raise FileRejected("empty_file", "the file is empty")
    fast = _read_table(data)
    if fast is not None:
        return RawBatch(lambda: _records_of(data), pl.DataFrame(schema=READ_REJECTS_SCHEMA),
                        "jsonl", fast.height, {"blank_lines": 0}, table=fast)
    return _read_lines(data)


def _read_table(data: bytes) -> pl.DataFrame | None:
    """The whole file as a native polars table, when every line is a JSON object.

    Only for files without blank lines (so row index == line index); any parse problem
    returns None and the line-by-line path takes over.
    """
    n_lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if b"\n\n" in data or b"\n\r\n" in data or data[:1] in (b"\n", b"\r"):
        return None
    try:
        table = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
    except Exception:
        return None
    if table.height != n_lines or "source_row" in table.columns:
        return None
    return table.with_row_index("source_row").with_columns(pl.col("source_row").cast(pl.Int64))


def _records_of(data: bytes) -> pl.DataFrame:
    return _read_lines(data).records


def _read_lines(data: bytes) -> RawBatch:
    lines = _split_lines(data)
    frame = pl.DataFrame({"raw": lines}).with_row_index("source_row")
    blank = frame.select(pl.col("raw").str.strip_chars().str.len_bytes() == 0).to_series()
    n_blank = int(blank.sum())
    records = frame.filter(~blank) if n_blank else frame
    bad_utf8 = records.filter(pl.col("raw").is_null())
    rejects = None
    if bad_utf8.height:
        rejects = _utf8_rejects(data, bad_utf8["source_row"].to_list())
        records = records.filter(pl.col("raw").is_not_null())
    return RawBatch.build(records, rejects, "jsonl", {"blank_lines": n_blank})


def _split_lines(data: bytes) -> pl.Series:
    """Lines of ``data`` (without the line break) as a String series; invalid UTF-8 -> null."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10) + 1
    if data and data[-1:] != b"\n":
        ends = np.append(ends, len(data))
    offsets = np.concatenate([np.zeros(1, dtype=np.int64), ends.astype(np.int64)])
    n = len(offsets) - 1
    binary = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    try:
        strings = binary.cast(pa.large_string())
    except pa.ArrowInvalid:
        strings = _cast_lines_lossless(binary)
    series = pl.Series("raw", strings)
    return series.str.strip_chars_end("\r\n")


def _cast_lines_lossless(binary: pa.LargeBinaryArray) -> pa.Array:
    """Slow path for files with invalid UTF-8: decode line by line, null for bad lines."""
    out: list[str | None] = []
    for value in binary.to_pylist():
        try:
            out.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(None)
    return pa.array(out, type=pa.large_string())


def _utf8_rejects(data: bytes, rows: list[int]) -> list[tuple[int, str, str, bytes]]:
    lines = data.split(b"\n")
    out = []
    for row in rows:
        raw = lines[row]
        try:
            raw.decode("utf-8")
            detail = "invalid UTF-8"
        except UnicodeDecodeError as exc:
            detail = f"invalid UTF-8 at byte {exc.start} of the line: {exc.reason}"
        out.append((row, "invalid_encoding", detail, raw))
    return out


def read_json(data: bytes) -> RawBatch:
    """A JSON document: array of records, one record, or an object keyed by id.

    Files named ``.json`` that are really JSON Lines go to :func:`read_jsonl`. A truncated
    array keeps the records before the damage and rejects the rest as one unit.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRejected(
            "invalid_encoding", f"invalid UTF-8 at byte {exc.start}: {exc.reason}", data[:200]
        ) from exc
    stripped = text.strip()
    if not stripped:
        raise FileRejected("empty_file", "the file is empty")
    try:
        doc = json.loads(stripped)
    except RecursionError as exc:
        raise FileRejected("invalid_json", "JSON nested too deeply to parse", text[:200]) from exc
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" or (stripped[0] == "{" and "\n" in stripped):
            return read_jsonl(data)
        if stripped[0] == "[":
            return _salvage_array(stripped)
        raise FileRejected("invalid_json", _where(exc), text[:200]) from exc
    return _records_from_document(doc)


def _where(exc: json.JSONDecodeError) -> str:
    return f"{exc.msg} at line {exc.lineno} column {exc.colno}"


def _records_from_document(doc: object) -> RawBatch:
    if isinstance(doc, list):
        return _records_from_list(doc, "json_array")
    if isinstance(doc, dict):
        keyed_by_id = all(isinstance(v, dict) for v in doc.values())
        if doc and not (RECORD_KEYS & doc.keys()) and keyed_by_id:
            keyed = [
                {**value, ("id" if "id" not in value else "_key"): key}
                for key, value in doc.items()
            ]
            return _records_from_list(keyed, "json_keyed_object")
        return _records_from_list([doc], "json_object")
    raise FileRejected("not_a_record", f"top-level JSON {type(doc).__name__} is not a record")


def _records_from_list(items: list, container: str) -> RawBatch:
    rows, raws, rejects = [], [], []
    for i, item in enumerate(items):
        raw = json.dumps(item, ensure_ascii=False)
        if isinstance(item, dict):
            rows.append(i)
            raws.append(raw)
        else:
            rejects.append((i, "not_a_record", f"array item is a {_json_kind(item)}", raw))
    records = pl.DataFrame({"source_row": rows, "raw": raws},
                           schema={"source_row": pl.Int64, "raw": pl.String})
    return RawBatch.build(records, rejects, container)


def _json_kind(value: object) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _salvage_array(text: str) -> RawBatch:
    """Parse array items one by one until the damage; the rest is one ``invalid_json`` unit."""
    decoder = json.JSONDecoder()
    items: list = []
    pos = text.index("[") + 1
    error = "truncated JSON array"
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            item, pos = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            error = _where(exc) if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            break
        items.append(item)
    batch = _records_from_list(items, "json_array")
    line = text.count("\n", 0, pos) + 1
    tail = (len(items), "invalid_json",
            f"array damaged after {len(items)} records (line {line}): {error}; "
            f"{len(text) - pos} characters not parsed", text[pos:])
    return RawBatch.build(batch.records, [*_rows(batch.rejects), tail], "json_array")


def _rows(frame: pl.DataFrame) -> list[tuple[int, str, str, str]]:
    return list(frame.select("source_row", "reason_code", "detail", "raw").iter_rows())
