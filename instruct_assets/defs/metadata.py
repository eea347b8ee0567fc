"""Helpers that turn frames into Dagster metadata: schemas, previews, counts."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl


def column_schema(schema: pl.Schema, descriptions: dict[str, str] | None = None
                  ) -> dg.TableSchema:
    """A ``dagster/column_schema`` value from a polars schema."""
    descriptions = descriptions or {}
    return dg.TableSchema(columns=[
        dg.TableColumn(name, str(dtype), description=descriptions.get(name))
        for name, dtype in schema.items()
    ])


def _cell(value: object, width: int) -> str:
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    text = "" if value is None else str(value)
    text = text.replace("\n", "⏎").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(frame: pl.DataFrame, limit: int = 5, width: int = 80) -> str:
    """A small markdown table of the first ``limit`` rows, long cells cut to ``width``."""
    if frame.height == 0:
        return "_(no rows)_"
    head = frame.head(limit)
    lines = ["| " + " | ".join(head.columns) + " |",
             "|" + "---|" * len(head.columns)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join(_cell(v, width) for v in row) + " |")
    return "\n".join(lines)


def counts_markdown(counts: dict[str, int], key: str = "key", value: str = "rows") -> str:
    if not counts:
        return "_(none)_"
    lines = [f"| {key} | {value} |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.items()]
    return "\n".join(lines)


def conversation_preview(frame: pl.DataFrame, limit: int = 5) -> str:
    """Markdown preview of a few examples: id, row, and each turn (cut)."""
    if frame.height == 0:
        return "_(no rows)_"
    out = []
    for row in frame.head(limit).iter_rows(named=True):
        out.append(f"**{row['example_id']}** ({row['source_file']} row {row['source_row']})")
        for m in row["messages"]:
            out.append(f"- *{m['role']}*: {_cell(m['content'], 160)}")
    return "\n".join(out)
