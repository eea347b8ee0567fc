"""JSON containers -> raw records: JSON Lines, a JSON array, one object, an object keyed by id.

The JSON Lines path is the hot path (a 1M-row Alpaca JSONL file): it splits lines with numpy
over the file's bytes and builds an Arrow string column over the same buffer, without a Python
object per line. JSON validity of each line is decided later, vectorised, in DuckDB.
"""

from __future__ import annotations

import io
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pyarrow as pa

from instruct_assets.lib.readers.base import (
    READ_REJECTS_SCHEMA,
    FileRejected,
    RawBatch,
    decode_lossless,
    invalid_bytes_note,
    printable,
)

#: Keys that mark a JSON object as one record rather than a mapping of id -> record.
RECORD_KEYS = frozenset(
    {"instruction", "messages", "conversations", "text", "prompt", "question", "output",
     "input", "response", "completion", "answer", "query", "system", "role", "content"}
)


def read_jsonl(data: bytes, max_line_bytes: int | None = None, *, piece: bool = False,
               table: bool = True, offsets: np.ndarray | None = None) -> RawBatch:
    """One record per line; blank lines are counted in ``notes`` but are not records.

    A file with a line over ``max_line_bytes`` skips the native table path, so that line
    can be rejected alone (``read_file`` does it) instead of being parsed. ``piece``: ``data``
    is a run of whole lines of a larger file (``readers.chunked``), which may be all blank
    (whether the whole file is empty is decided over all its pieces). ``table=False`` skips
    the native table path (it decides speed only, never the outcome). ``offsets``: the
    line offsets (``line_offsets``) when the caller has them already.
    """
    if not piece and not data[:65536].strip() and not data.strip():
        raise FileRejected("empty_file", "the file is empty")
    offsets = line_offsets(data) if offsets is None else offsets
    if len(offsets) < 2:
        return _read_lines(data, offsets)
    if max_line_bytes is not None and len(data) > max_line_bytes and (
            int(np.diff(offsets).max()) - 1 > max_line_bytes):
        return _read_lines(data, offsets)
    fast = _read_table(data, offsets) if table else None
    if fast is not None:
        return RawBatch(lambda: _read_lines(data, offsets).records,
                        pl.DataFrame(schema=READ_REJECTS_SCHEMA), "jsonl", fast.height,
                        {"blank_lines": 0}, table=fast,
                        lines_at=lambda rows: _lines_at(data, offsets, rows))
    return _read_lines(data, offsets)


def _read_table(data: bytes, offsets: np.ndarray) -> pl.DataFrame | None:
    """The whole file as a native polars table, when every line is a JSON object.

    Only for files without blank lines (so row index == line index); any parse problem
    returns None and the line-by-line path takes over.
    """
    if data[:1] in (b"\n", b"\r") or _has_blank_line(data, offsets):
        return None
    try:
        table = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
    except Exception:
        return None
    if table.height != len(offsets) - 1 or "source_row" in table.columns:
        return None
    return table.with_row_index("source_row").with_columns(pl.col("source_row").cast(pl.Int64))


def line_offsets(data: bytes) -> np.ndarray:
    """Byte offset of each line start, plus the end of the data (int64, len = lines + 1)."""
    ends = [newline_ends(data)]
    if data and data[-1:] != b"\n":
        ends.append(np.array([len(data)], dtype=np.int64))
    return np.concatenate([np.zeros(1, dtype=np.int64), *ends])


#: Bytes per block of the newline scan: its boolean mask stays in the CPU cache (64 MiB
#: blocks measured twice the time of 4 MiB ones on a 766 MB file).
_SCAN_BLOCK = 1 << 22


def newline_ends(data: bytes | memoryview) -> np.ndarray:
    """Offsets just after each ``\\n`` of ``data`` (int64), scanned in cache-sized blocks
    (no data-sized temporary array), in threads when there are several blocks (numpy
    releases the GIL): 0.32 s became 0.09 s for a 766 MB file on 2 cores."""
    buf = np.frombuffer(data, dtype=np.uint8)

    def scan(start: int) -> np.ndarray:
        return np.flatnonzero(buf[start:start + _SCAN_BLOCK] == 10).astype(np.int64) + (
            start + 1)

    starts = range(0, len(buf), _SCAN_BLOCK)
    if len(starts) > 4:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            parts = list(pool.map(scan, starts))
    else:
        parts = [scan(i) for i in starts]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _has_blank_line(data: bytes, offsets: np.ndarray) -> bool:
    """A line that is only ``\\n`` or ``\\r\\n`` (from the offsets: no scan of the bytes)."""
    lengths = np.diff(offsets)
    if (lengths == 1).any():
        return True
    two = offsets[:-1][lengths == 2]
    return bool(len(two)) and bool((np.frombuffer(data, dtype=np.uint8)[two] == 13).any())


def _line_array(data: bytes, offsets: np.ndarray) -> pa.LargeBinaryArray:
    """Every line (with its line break) as binary values over ``data``'s own buffer."""
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _lines_at(data: bytes, offsets: np.ndarray, rows: pl.Series) -> pl.DataFrame:
    """Records of just ``rows`` (line indexes) of a file read by the table path, so a few
    leftover rows do not cost splitting the whole file. Such files are valid UTF-8."""
    taken = _line_array(data, offsets).take(pa.array(rows.cast(pl.Int64).to_numpy()))
    raw = pl.Series("raw", taken.cast(pa.large_string())).str.strip_chars_end("\r\n")
    return pl.DataFrame({"source_row": rows.cast(pl.Int64), "raw": raw})


def _read_lines(data: bytes, offsets: np.ndarray | None = None) -> RawBatch:
    lines = _split_lines(data, offsets)
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


def _split_lines(data: bytes, offsets: np.ndarray | None = None) -> pl.Series:
    """Lines of ``data`` (without the line break) as a String series; invalid UTF-8 -> null."""
    binary = _line_array(data, line_offsets(data) if offsets is None else offsets)
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


def read_json(data: bytes, max_line_bytes: int | None = None) -> RawBatch:
    """A JSON document: array of records, one record, or an object keyed by id.

    Files named ``.json`` that are really JSON Lines go to :func:`read_jsonl`. A damaged
    array item (nested too deeply, a NUL byte or other raw control character, Python dict
    syntax) is rejected alone and the items after it are still read; a truncated array
    keeps the records before the damage and rejects the rest as one unit. Invalid UTF-8
    costs only the records holding the bad bytes.
    """
    text, invalid_bytes = decode_lossless(data)
    stripped = text.strip()
    if not stripped:
        raise FileRejected("empty_file", "the file is empty")
    try:
        doc = json.loads(stripped)
    except RecursionError as exc:
        if stripped[0] == "[":
            return _salvage_array(stripped, invalid_bytes)
        raise FileRejected("invalid_json", f"JSON {_depth_note(stripped, 0)}",
                           text[:200]) from exc
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" or (stripped[0] == "{" and "\n" in stripped):
            return read_jsonl(data, max_line_bytes)
        if stripped[0] == "[":
            return _salvage_array(stripped, invalid_bytes)
        if invalid_bytes:
            raise FileRejected("invalid_encoding", invalid_bytes_note(stripped) or "invalid UTF-8",
                               data[:200]) from exc
        raise FileRejected("invalid_json", _where(exc), text[:200]) from exc
    return _records_from_document(doc, invalid_bytes)


def _where(exc: json.JSONDecodeError) -> str:
    """The parser's message and where it stopped (line, column; a NUL byte is named)."""
    msg = exc.msg.rstrip(": ").removesuffix(" at")
    if exc.pos < len(exc.doc) and exc.doc[exc.pos] == "\x00":
        msg += " (a NUL byte)"
    return f"{msg} at line {exc.lineno} column {exc.colno}"


def _records_from_document(doc: object, invalid_bytes: bool = False) -> RawBatch:
    if isinstance(doc, list):
        return _records_from_list(doc, "json_array", invalid_bytes)
    if isinstance(doc, dict):
        keyed_by_id = all(isinstance(v, dict) for v in doc.values())
        if doc and not (RECORD_KEYS & doc.keys()) and keyed_by_id:
            keyed = [
                {**value, ("id" if "id" not in value else "_key"): key}
                for key, value in doc.items()
            ]
            return _records_from_list(keyed, "json_keyed_object", invalid_bytes)
        return _records_from_list([doc], "json_object", invalid_bytes)
    raise FileRejected("not_a_record", f"the top-level JSON value is a {_json_kind(doc)}, "
                       "expected an object or an array of objects", json.dumps(doc)[:200])


def _records_from_list(items: list, container: str, invalid_bytes: bool = False,
                       rows: list[int] | None = None) -> RawBatch:
    """Objects become records; anything else is a ``not_a_record`` reject. ``rows`` are the
    array indexes of ``items`` (default 0..n-1); with ``invalid_bytes``, records holding
    bytes that were not UTF-8 are ``invalid_encoding`` rejects naming the field."""
    out_rows, raws, rejects = [], [], []
    for i, item in zip(rows if rows is not None else range(len(items)), items, strict=True):
        raw = json.dumps(item, ensure_ascii=False)
        if not isinstance(item, dict):
            rejects.append((i, "not_a_record", f"array item is a {_json_kind(item)}", raw))
        elif invalid_bytes and invalid_bytes_note(raw) is not None:
            rejects.append((i, "invalid_encoding", _bad_field(item), printable(raw)))
        else:
            out_rows.append(i)
            raws.append(raw)
    records = pl.DataFrame({"source_row": out_rows, "raw": raws},
                           schema={"source_row": pl.Int64, "raw": pl.String})
    return RawBatch.build(records, rejects, container)


def _bad_field(item: dict) -> str:
    """Which top-level field of ``item`` holds an invalid byte, and where in its value."""
    for key, value in item.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        note = invalid_bytes_note(text)
        if note is not None:
            return f"field {printable(key)!r}: {note}"
    return f"a field name: {invalid_bytes_note(json.dumps(item, ensure_ascii=False))}"


def _json_kind(value: object) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null", dict: "object"}.get(type(value), type(value).__name__)


def _salvage_array(text: str, invalid_bytes: bool = False) -> RawBatch:
    """Parse a damaged array item by item.

    An item that fails to parse but whose extent is certain (brackets balance outside
    quoted strings, and a ``,`` or ``]`` follows) is one ``invalid_json`` reject and the
    next item is read; otherwise (truncation, stray text) the rest of the file is one
    ``invalid_json`` unit, as nothing after it can be trusted to be a whole record.
    """
    decoder = json.JSONDecoder()
    items: list = []
    rows: list[int] = []
    damaged: list[tuple[int, str, str, str]] = []
    pos = text.index("[") + 1
    tail = None
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        index = len(items) + len(damaged)
        try:
            item, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            error = (_where(exc) if isinstance(exc, json.JSONDecodeError)
                     else _depth_note(text, pos))
            end = _value_end(text, pos)
            line = text.count("\n", 0, pos) + 1
            if end is None:
                tail = (index, "invalid_json",
                        f"array damaged after {index} records (line {line}): {error}; "
                        f"{len(text) - pos} characters not parsed", text[pos:])
                break
            damaged.append((index, "invalid_json", f"array item {index} (line {line}): {error}",
                            text[pos:end]))
            pos = end
            continue
        items.append(item)
        rows.append(index)
        pos = end
    batch = _records_from_list(items, "json_array", invalid_bytes, rows)
    rejects = [*_rows(batch.rejects), *damaged, *([tail] if tail else [])]
    return RawBatch.build(batch.records, sorted(rejects), "json_array")


def _value_end(text: str, pos: int) -> int | None:
    """End of the array item starting at ``pos``, found without parsing it (no recursion):
    brackets are counted outside strings quoted with ``"`` or ``'`` (Python dict syntax).
    None when the item does not end cleanly before a ``,`` or ``]`` (e.g. truncation)."""
    depth, quote, i, n = 0, "", pos, len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth < 0:  # the array's own closing bracket
                return i if i > pos else None
        elif ch == "," and depth == 0:
            return i
        i += 1
        if depth == 0 and not quote and ch in "]}":
            rest = text[i:].lstrip()
            return i if rest[:1] in (",", "]") else None
    return None


def _depth_note(text: str, pos: int) -> str:
    """``nested N levels deep`` for the value at ``pos`` (counted without recursion)."""
    depth = deepest = 0
    quote = ""
    i = pos
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch == '"':
            quote = ch
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
            if depth <= 0:
                break
        i += 1
    return (f"nested {deepest:,} levels deep, beyond what the JSON parser accepts "
            f"(about {sys.getrecursionlimit():,})")


def _rows(frame: pl.DataFrame) -> list[tuple[int, str, str, str]]:
    return list(frame.select("source_row", "reason_code", "detail", "raw").iter_rows())
