"""Plain-text records (``{"text": ...}``) with ``Q:``/``A:`` or ``### Human:``/``### Assistant:``
markers at line starts -> turns.

Marker lines are layout, so turn content is stripped of surrounding whitespace. Text before
the first marker (the mlx-examples WikiSQL rows: ``table: ...\\ncolumns: ...``) is context for
the first question and is kept at the start of the first user turn.
"""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.formats.detect import FieldMap
from instruct_assets.lib.formats.sql import path, rest_of

MARKER = r"(?m)^(Q|A|### Human|### Assistant|### Instruction|### Response):[ \t]?"


def qa_text_sql(fm: FieldMap) -> str:
    """SQL that pulls the text field out of each record (parsing happens in polars)."""
    assert fm.text is not None
    return f"""
SELECT source_row,
  CASE WHEN json_type(raw, {path(fm.text)}) = 'VARCHAR' THEN raw->>{path(fm.text)} END AS text,
  json_type(raw, {path(fm.text)}) AS text_type,
  CASE WHEN json_type(raw, {path(fm.system)}) = 'VARCHAR' THEN raw->>{path(fm.system)} END
    AS system,
  {rest_of(fm.mapped_fields())} AS extra
FROM rec
""" if fm.system else f"""
SELECT source_row,
  CASE WHEN json_type(raw, {path(fm.text)}) = 'VARCHAR' THEN raw->>{path(fm.text)} END AS text,
  json_type(raw, {path(fm.text)}) AS text_type,
  CAST(NULL AS VARCHAR) AS system,
  {rest_of(fm.mapped_fields())} AS extra
FROM rec
"""


def qa_text_turns(frame: pl.DataFrame) -> pl.DataFrame:
    """Split ``text`` into turns at the markers; rows without markers get ``unknown_format``."""
    marked = (
        pl.col("text")
        .str.replace_all("\r\n", "\n")
        .str.replace_all(MARKER, "\x00${1}\x01")
        # move any preamble behind the first marker, so it joins the first turn's content
        .str.replace(r"^([^\x00]*)\x00([^\x01]*)\x01", "\x00${2}\x01${1}")
    )
    turn = pl.element().str.splitn("\x01", 2)
    turns = (
        marked.str.split("\x00").list.slice(1)
        .list.eval(pl.struct(
            turn.struct.field("field_0").alias("speaker"),
            pl.lit("VARCHAR").alias("stype"),
            pl.lit("OBJECT").alias("ttype"),
            pl.lit("VARCHAR").alias("ctype"),
            turn.struct.field("field_1").str.strip_chars().alias("content"),
            pl.lit(None, dtype=pl.String).alias("bad_part"),
            pl.lit(0, dtype=pl.Int64).alias("non_text"),
            pl.lit(None, dtype=pl.String).alias("tool_calls"),
        ))
    )
    has_marker = pl.col("text").str.contains(MARKER)
    return frame.with_columns(
        pl.lit("qa_text").alias("source_format"),
        turns.alias("turns"),
        pl.lit(None, dtype=pl.String).alias("tools"),
        pl.when(pl.col("text_type").is_null()).then(pl.lit("missing_field"))
        .when(pl.col("text").is_null()).then(pl.lit("wrong_type"))
        .when(~has_marker).then(pl.lit("unknown_format"))
        .alias("error_code"),
        pl.when(pl.col("text_type").is_null()).then(pl.lit("no text field"))
        .when(pl.col("text").is_null())
        .then(pl.format("text field is {}, expected text", pl.col("text_type").str.to_lowercase()))
        .when(~has_marker)
        .then(pl.lit("text has no Q:/A: or ### Human:/### Assistant: markers at line starts"))
        .alias("error_detail"),
    ).drop("text", "text_type")
