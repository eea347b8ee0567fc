"""Alpaca export: a JSON array of ``{"instruction", "input", "output", "system"?, "tools"?}``.

Why only single-turn rows: Alpaca has one prompt and one answer. A conversation with more
turns (or tool turns) cannot be written without losing turns, so such rows are returned by
key as not exportable instead of being dropped silently. ``input`` is always ``""``: the
canonical user turn already holds instruction and input joined, and splitting it back
would be a guess.
"""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.export.common import encode_records

#: Reason recorded for rows Alpaca cannot hold.
NOT_SINGLE_TURN = "not_single_turn"


def _has_system() -> pl.Expr:
    return pl.col("messages").list.first().struct.field("role") == "system"


def _turn(offset: int) -> pl.Expr:
    """The message ``offset`` places after the optional system turn."""
    return pl.col("messages").list.get(_has_system().cast(pl.Int64) + offset, null_on_oob=True)


def single_turn_mask() -> pl.Expr:
    """True for ``[system?, user, assistant]`` conversations: the rows Alpaca can hold."""
    n = pl.col("messages").list.len() - _has_system().cast(pl.UInt32)
    return (
        (n == 2)
        & (_turn(0).struct.field("role") == "user")
        & (_turn(1).struct.field("role") == "assistant")
    ).fill_null(False)


def instruction_expr() -> pl.Expr:
    """The user turn of a single-turn row."""
    return _turn(0).struct.field("content")


def output_expr() -> pl.Expr:
    """The assistant turn of a single-turn row."""
    return _turn(1).struct.field("content")


def system_expr() -> pl.Expr:
    """The system turn's content, or null."""
    return pl.when(_has_system()).then(pl.col("messages").list.first().struct.field("content"))


def alpaca_lines(rows: pl.DataFrame) -> pl.Series:
    """One JSON object text per single-turn row (filter rows with :func:`single_turn_mask`
    first). Input columns: ``messages``, ``tools_json``; ``tools`` is a JSON string, as
    LLaMA-Factory's Alpaca ``tools`` column expects.
    """
    values = rows.select(
        instruction_expr().alias("instruction"),
        pl.lit("").alias("input"),
        output_expr().alias("output"),
        system_expr().alias("system"),
        pl.col("tools_json").alias("tools"),
    )
    return encode_records(values)
