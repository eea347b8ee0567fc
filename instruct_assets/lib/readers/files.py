"""Bytes of a raw file: transparent gzip and BOM handling, container sniffing.

Why here: readers see plain UTF-8 bytes; every oddity of how a file is stored (``.gz``, a
UTF-8 BOM, a binary file with a text name) is decided once, before any parsing.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from instruct_assets.lib.readers.base import FileRejected

BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"

CONTAINERS_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
    ".md": "text",
}


def logical_suffix(path: Path) -> str:
    """The suffix that names the container, ignoring a trailing ``.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip, without a UTF-8 BOM."""
    data = path.read_bytes()
    named_gz = path.suffix.lower() == ".gz"
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileRejected("unreadable_file", f"corrupt gzip stream: {exc}",
                               data[:200]) from exc
    elif named_gz and data:
        # a mislabelled file: reading it as whatever it happens to hold would hide the
        # mistake, and the error would otherwise blame the JSON/CSV inside
        raise FileRejected(
            "unreadable_file",
            f"named .gz but not gzip: starts with bytes {data[:2].hex(' ')}, not 1f 8b",
            data[:200])
    if data.startswith(BOM):
        data = data[len(BOM) :]
    return data


def sniff_container(path: Path, data: bytes) -> str:
    """Container of ``data``: by suffix, else by content (Parquet magic, JSON, text)."""
    if data[:4] == PARQUET_MAGIC:
        return "parquet"
    by_suffix = CONTAINERS_BY_SUFFIX.get(logical_suffix(path))
    if by_suffix is not None:
        return by_suffix
    head = data[:4096].lstrip()
    if head[:1] in (b"{", b"["):
        return "json"
    return "text"


#: Control bytes (not tab, LF, CR, form feed) that real text files almost never contain.
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"


def reject_binary(data: bytes) -> None:
    """Raise for files that are not text at all: over 5% control bytes in the first 8 KiB.

    A single NUL or a stray invalid byte inside an otherwise valid JSONL file is not binary:
    that line alone is rejected later.
    """
    head = data[:8192]
    if not head:
        return
    control = len(head) - len(head.translate(None, _CONTROL))
    if control / len(head) > 0.05:
        raise FileRejected(
            "invalid_encoding",
            f"binary content: {control} control bytes in the first {len(head)} bytes",
            data[:200],
        )
