"""Build canonical normalized frames in tests without going through ingestion."""

from __future__ import annotations

import hashlib
import json

import polars as pl

from instruct_assets.lib.schema import NORMALIZED_SCHEMA


def frame_from_conversations(
    conversations: list[list[tuple[str, str]]],
    *,
    source: str = "test",
    source_format: str = "openai",
    origin: str = "human",
    tools: list[str | None] | None = None,
) -> pl.DataFrame:
    """One canonical row per conversation, given as ``[(role, content), ...]``.

    ids are a sha256 of the conversation plus the row number, so repeated conversations
    still get unique ids (as ingestion guarantees within a source).
    """
    rows = []
    for i, conv in enumerate(conversations):
        digest = hashlib.sha256(json.dumps([conv, i]).encode()).hexdigest()[:16]
        rows.append(
            {
                "example_id": digest,
                "source": source,
                "source_file": f"raw/{source}/test.jsonl",
                "source_row": i,
                "source_format": source_format,
                "messages": [{"role": r, "content": c} for r, c in conv],
                "tools": tools[i] if tools else None,
                "origin": origin,
                "extra": None,
            }
        )
    return pl.DataFrame(rows, schema=NORMALIZED_SCHEMA)


def alpaca_conversations(path: str) -> list[list[tuple[str, str]]]:
    """Read an Alpaca JSON array file into conversations (input joined after a blank line)."""
    with open(path, encoding="utf-8") as fh:
        records = json.load(fh)
    out = []
    for r in records:
        user = r.get("instruction", "")
        if r.get("input"):
            user = f"{user}\n\n{r['input']}"
        out.append([("user", user), ("assistant", r.get("output", ""))])
    return out
