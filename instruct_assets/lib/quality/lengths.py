"""Length signals: characters per role, approximate tokens, and what does not fit.

Why approximate: exact counts need the target model's tokenizer, which the warehouse does
not know (and which costs far more than counting characters). ``approx_tokens`` is
``chars / cfg.chars_per_token`` (4: OpenAI's rule of thumb for English BPE) plus
``cfg.tokens_per_message`` per turn for the chat template; it undercounts CJK text.
"""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.text import (
    MESSAGES,
    add_columns,
    collect,
    has_nonempty_role,
    role_chars,
)

ROLE_CHAR_COLUMNS: dict[str, str] = {
    "system": "chars_system",
    "user": "chars_user",
    "assistant": "chars_assistant",
    "tool": "chars_tool",
}


def role_char_columns(messages: str = MESSAGES) -> list[pl.Expr]:
    """``chars_<role>`` for every role plus ``chars_total``."""
    exprs = [role_chars(role, messages).alias(name) for role, name in ROLE_CHAR_COLUMNS.items()]
    total = (
        pl.col(messages)
        .list.eval(pl.element().struct.field("content").str.len_chars().cast(pl.Int64))
        .list.sum()
        .cast(pl.Int64)
        .alias("chars_total")
    )
    return [*exprs, total]


def approx_tokens(chars: pl.Expr, cfg: QualityThresholds) -> pl.Expr:
    """Ceil of ``chars / cfg.chars_per_token`` as Int64."""
    return (chars.cast(pl.Float64) / cfg.chars_per_token).ceil().cast(pl.Int64)


def length_columns(cfg: QualityThresholds, messages: str = MESSAGES) -> list[list[pl.Expr]]:
    """Stages of length expressions; each stage may read the previous stage's columns."""
    n_msgs = pl.col(messages).list.len().cast(pl.Int64)
    return [
        [
            *role_char_columns(messages),
            (~has_nonempty_role("assistant", messages)).alias("no_trainable_content"),
        ],
        [
            (approx_tokens(pl.col("chars_total"), cfg) + n_msgs * cfg.tokens_per_message).alias(
                "approx_tokens"
            ),
            approx_tokens(pl.col("chars_system"), cfg).alias("approx_tokens_system"),
        ],
        [
            (pl.col("approx_tokens") > cfg.context_window_tokens).alias("too_long_for_context"),
            (pl.col("approx_tokens_system") > cfg.max_system_prompt_tokens).alias(
                "overlong_system_prompt"
            ),
        ],
    ]


def _row_sums(values: pl.Series, ends: pl.Series, counts: pl.Series) -> pl.Series:
    """Per-row sums of ``values`` (a flattened list column, one value per element) given
    each row's element count and end position: differences of a running sum."""
    cum = pl.concat([pl.Series([0], dtype=pl.Int64), values.fill_null(0).cum_sum()])
    return cum.gather(ends) - cum.gather(ends - counts)


def length_frame(
    frame: pl.DataFrame,
    cfg: QualityThresholds,
    messages: str = MESSAGES,
    nonblank_response: str | None = None,
) -> pl.DataFrame:
    """``frame`` plus every column of ``length_columns`` (same values), computed faster.

    ``length_columns`` runs one ``list.eval`` per role over every message; here the
    messages are flattened once and each row's per-role sums are differences of a running
    sum. ``no_trainable_content`` is False wherever the final response has visible text
    (column ``nonblank_response``, when given: that response is a non-empty assistant
    turn), so the per-message check runs only on the other rows.
    """
    lists = frame.get_column(messages)
    counts = lists.list.len().fill_null(0).cast(pl.Int64)
    ends = counts.cum_sum()
    flat = lists.explode(keep_nulls=False, empty_as_null=False).struct.unnest()
    role = pl.col("role")
    lens = pl.col("content").str.len_chars().cast(pl.Int64)
    per_role = collect(
        flat.lazy().select(
            *[pl.when(role == r).then(lens).otherwise(0).alias(r) for r in ROLE_CHAR_COLUMNS],
            lens.alias("_total"),
        )
    )
    missing = lists.is_null()
    sums = [
        pl.select(
            pl.when(missing).then(None).otherwise(_row_sums(per_role[c], ends, counts))
        ).to_series().alias(name)
        for c, name in [*ROLE_CHAR_COLUMNS.items(), ("_total", "chars_total")]
    ]
    nonempty = has_nonempty_role("assistant", messages)
    if nonblank_response is None:
        trainable = frame.select(nonempty).to_series()
    else:
        trainable = pl.Series([True] * frame.height, dtype=pl.Boolean)
        check = frame.get_column(nonblank_response).not_().arg_true()
        if check.len():
            part = frame.select(messages)[check].select(nonempty).to_series()
            trainable = trainable.scatter(check, part)
    out = frame.hstack([*sums, (~trainable).alias("no_trainable_content")])
    for stage in length_columns(cfg, messages)[1:]:
        out = add_columns(out, stage)
    return out
