"""Length signals: characters per role, approximate tokens, and what does not fit.

Why approximate: exact counts need the target model's tokenizer, which the warehouse does
not know (and which costs far more than counting characters). ``approx_tokens`` is
``chars / cfg.chars_per_token`` (4: OpenAI's rule of thumb for English BPE) plus
``cfg.tokens_per_message`` per turn for the chat template; it undercounts CJK text.
"""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.text import MESSAGES, has_nonempty_role, role_chars

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
