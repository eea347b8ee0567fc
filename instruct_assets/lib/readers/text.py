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

from instruct_assets.lib.readers.base import FileRejected, RawBatch

_BLOCK_START = re.compile(r"^Q:", re.MULTILINE)
_CANARY = re.compile(r"canary", re.IGNORECASE)


def read_text(data: bytes) -> RawBatch:
    """Split a text file into ``Q:`` blocks; ``source_row`` is the block's 0-based line."""
    try:
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise FileRejected(
            "invalid_encoding", f"invalid UTF-8 at byte {exc.start}: {exc.reason}", data[:200]
        ) from exc
    if not text.strip():
        raise FileRejected("empty_file", "the file is empty")
    starts = [m.start() for m in _BLOCK_START.finditer(text)]
    if not starts:
        record = json.dumps({"text": text}, ensure_ascii=False)
        return RawBatch.build(
            pl.DataFrame({"source_row": [0], "raw": [record]}), None, "text"
        )
    preamble = _preamble(text[: starts[0]])
    rows, raws = [], []
    for begin, end in zip(starts, [*starts[1:], len(text)], strict=True):
        block = text[begin:end].strip("\n")
        rows.append(text.count("\n", 0, begin))
        raws.append(json.dumps({"text": block, **preamble}, ensure_ascii=False))
    return RawBatch.build(pl.DataFrame({"source_row": rows, "raw": raws}), None, "text")


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
