"""What every reader returns: raw records as JSON text, plus the units it could not read.

Readers only split bytes into records. They never interpret instruction formats; that is
``lib/formats``. A record is one JSON object serialised as text (``raw``), so every
container (JSON, JSONL, CSV, Parquet, text) feeds the same format mappers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from instruct_assets.lib.schema import RAW_EXCERPT_CHARS

#: Records (one JSON line, array item, CSV/Parquet row or text block, as UTF-8 JSON text)
#: larger than this are ``too_large`` rejects. 32 MiB of text is millions of tokens, beyond
#: any training context, and one such row would dominate every later stage's memory; a
#: 20 MB field (long documents, base64 blobs) still passes.
MAX_RECORD_BYTES = 32 * 1024 * 1024

RECORDS_SCHEMA = pl.Schema({"source_row": pl.Int64, "raw": pl.String})
READ_REJECTS_SCHEMA = pl.Schema(
    {"source_row": pl.Int64, "reason_code": pl.String, "detail": pl.String, "raw": pl.String}
)


@dataclass
class RawBatch:
    """The records of one file and the units that could not become records.

    ``table`` is set when the whole file parsed natively as a table (clean JSON Lines): the
    fast path maps it by column. ``records`` then holds the raw lines, split on demand.
    """

    _records: pl.DataFrame | Callable[[], pl.DataFrame]
    rejects: pl.DataFrame
    container: str
    #: lines/records the file holds (records + rejects); blank JSONL lines are not units.
    units: int
    notes: dict[str, int] = field(default_factory=dict)
    table: pl.DataFrame | None = None
    #: For the table path: the records of some rows only, without splitting every line.
    lines_at: Callable[[pl.Series], pl.DataFrame] | None = None

    @property
    def records(self) -> pl.DataFrame:
        if callable(self._records):
            self._records = self._records()
        return self._records

    def records_at(self, rows: pl.Series) -> pl.DataFrame:
        """The records of ``rows`` (source_row values), in the order given."""
        if self.lines_at is not None and callable(self._records):
            return self.lines_at(rows)
        return self.records.filter(pl.col("source_row").is_in(rows.implode()))

    @classmethod
    def build(
        cls,
        records: pl.DataFrame | None,
        rejects: list[tuple[int, str, str, str]] | pl.DataFrame | None,
        container: str,
        notes: dict[str, int] | None = None,
    ) -> RawBatch:
        recs = records if records is not None else pl.DataFrame(schema=RECORDS_SCHEMA)
        recs = recs.select(pl.col("source_row").cast(pl.Int64), pl.col("raw").cast(pl.String))
        if isinstance(rejects, pl.DataFrame):
            rej = rejects.select(
                pl.col(name).cast(dtype) for name, dtype in READ_REJECTS_SCHEMA.items()
            )
        else:
            rej = pl.DataFrame(
                [(r, c, d, excerpt(x)) for r, c, d, x in (rejects or [])],
                schema=READ_REJECTS_SCHEMA,
                orient="row",
            )
        return cls(recs, rej, container, recs.height + rej.height, dict(notes or {}))


def excerpt(raw: str | bytes | None) -> str | None:
    """The first ``RAW_EXCERPT_CHARS`` characters of a raw record, for a reject row."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw[: RAW_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    return printable(raw[:RAW_EXCERPT_CHARS])


class FileRejected(Exception):
    """The whole file is one reject (binary, empty, unreadable)."""

    def __init__(self, reason_code: str, detail: str, raw: str | bytes | None = None) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail
        self.raw = raw


def decode_lossless(data: bytes) -> tuple[str, bool]:
    """``data`` as text; invalid UTF-8 bytes become lone surrogates (``surrogateescape``)
    so one bad byte costs only the record holding it. Returns (text, had_invalid_bytes)."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="surrogateescape"), True


_INVALID_BYTE = re.compile("[\udc80-\udcff]")


def invalid_bytes_note(text: str) -> str | None:
    """``"invalid UTF-8 byte 0xe9 at character 12"`` for text decoded by
    :func:`decode_lossless`, or None when it holds no invalid byte."""
    m = _INVALID_BYTE.search(text)
    if m is None:
        return None
    return f"invalid UTF-8 byte 0x{ord(m.group()) - 0xDC00:02x} at character {m.start()}"


def printable(text: str) -> str:
    """``text`` with escaped invalid bytes replaced by U+FFFD, safe to store."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
