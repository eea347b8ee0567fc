"""Plain text -> raw records: one record per ``Q:`` block, or the whole file as one record.

The BIG-Bench-Hard prompt files have a canary line, a ``-----`` header line, a task
description, then blank-line-separated ``Q: ... A: ...`` blocks with multi-line answers.
The preamble before the first block is kept on every record (keys ``canary``, ``task``) and
ends up in ``extra``; the ``Q:``/``A:`` text itself is parsed by the ``qa_text`` format.
"""

from __future__ import annotations

import json
import re

import polars as pl

from instruct_assets.lib.readers.base import (
    FileRejected,
    RawBatch,
    decode_lossless,
    invalid_bytes_note,
    printable,
)

_BLOCK_START = re.compile(r"^Q:", re.MULTILINE)
_CANARY = re.compile(r"canary", re.IGNORECASE)


def read_text(data: bytes) -> RawBatch:
    """Split a text file into ``Q:`` blocks; ``source_row`` is the block's 0-based line."""
    text, invalid_bytes = decode_lossless(data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise FileRejected("empty_file", "the file is empty")
    starts = [m.start() for m in _BLOCK_START.finditer(text)]
    if not starts:
        if invalid_bytes:
            raise FileRejected("invalid_encoding", invalid_bytes_note(text) or "invalid UTF-8",
                               printable(text[:200]))
        record = json.dumps({"text": text}, ensure_ascii=False)
        return RawBatch.build(
            pl.DataFrame({"source_row": [0], "raw": [record]}), None, "text"
        )
    preamble = _preamble(text[: starts[0]])
    if invalid_bytes and invalid_bytes_note(json.dumps(preamble, ensure_ascii=False)):
        preamble = {k: printable(v) for k, v in preamble.items()}
    rows, raws, rejects = [], [], []
    for begin, end in zip(starts, [*starts[1:], len(text)], strict=True):
        block = text[begin:end].strip("\n")
        row = text.count("\n", 0, begin)
        if invalid_bytes and (note := invalid_bytes_note(block)) is not None:
            rejects.append((row, "invalid_encoding", f"block at line {row + 1}: {note}",
                            printable(block)))
            continue
        rows.append(row)
        raws.append(json.dumps({"text": block, **preamble}, ensure_ascii=False))
    return RawBatch.build(pl.DataFrame({"source_row": rows, "raw": raws},
                                       schema={"source_row": pl.Int64, "raw": pl.String}),
                          rejects, "text")


def _preamble(head: str) -> dict[str, str]:
    """``canary`` and ``task`` from the lines before the first block (``-----`` dropped)."""
    lines = [ln for ln in head.split("\n") if ln.strip() and set(ln.strip()) != {"-"}]
    out: dict[str, str] = {}
    canary = [ln for ln in lines if _CANARY.search(ln)]
    if canary:
        out["canary"] = canary[0]
    task = [ln for ln in lines if not _CANARY.search(ln)]
    if task:
        out["task"] = "\n".join(task)
    return out
