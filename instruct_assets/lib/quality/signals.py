"""One row of quality signals per example: raw measures, boolean flags, flag list, score.

``score_examples`` answers "which of my examples are bad, and why?": every flag is a
boolean column named as the flag, ``quality_flags`` lists the raised ones in a fixed order,
and the raw measure behind each flag is a column too, so a curator can move a threshold
and see what changes. Duplicates come from ``dedup.py``; ``apply_duplicate_penalty``
folds them into the same flags and score.
"""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.quality import alignment, consistency, instructions, lengths, responses
from instruct_assets.lib.quality.config import FLAG_ORDER, QualityThresholds
from instruct_assets.lib.quality.text import (
    FENCE,
    RESPONSE,
    add_columns,
    code_line_count,
    with_text_columns,
)

ROW = "_row"
KEY = ["source", "example_id"]

#: Flag name -> one-line meaning (README and UI).
FLAG_DESCRIPTIONS: dict[str, str] = {
    "no_trainable_content": "no assistant turn has any text, so there is nothing to learn from",
    "empty_or_trivial_response": (
        "the final response is empty, filler ('N/A', '...'), or a bare yes/ok to a prompt "
        "that is not a yes/no question"
    ),
    "special_token_leak": (
        "a tokenizer/chat-template token (<|endoftext|>, </s>, [INST], <|im_start|>, ...) "
        "appears in the text"
    ),
    "template_placeholder": (
        "an unrendered template variable ({{name}}, [Your Name], <NAME>, {field}) is left in "
        "the text"
    ),
    "truncated_response": (
        "the response was cut off: an unclosed ``` fence, unclosed { or [, a trailing ':', "
        "or long prose that stops mid-sentence"
    ),
    "repetition": (
        "the response repeats itself above Gopher's limits (duplicate lines, top 2-gram or "
        "duplicate 5-gram character share)"
    ),
    "refusal_boilerplate": (
        "the assistant uses AI-disclaimer or refusal boilerplate ('As an AI language model', "
        "'I'm sorry, but I cannot')"
    ),
    "output_misalignment": (
        "the response ignores an explicit request (JSON, code, N items, one sentence, a word "
        "budget, a language); see misalignment_kind"
    ),
    "too_long_for_context": "approx_tokens exceed the configured context window",
    "missing_context": (
        "the instruction refers to content ('the following text', 'this code') that is not "
        "in the prompt"
    ),
    "vague_instruction": (
        "the instruction is a generic directive with no object or criterion ('Make this "
        "better', 'Fix it')"
    ),
    "noisy_response": (
        "a large share of the response is HTML tags/entities, control characters or symbol "
        "runs (markup the prompt did not ask for)"
    ),
    "shape_outlier": (
        "the response's shape (json/code/list/prose/...) differs from the dominant shape of "
        "its instruction template in this source"
    ),
    "overlong_system_prompt": "the system prompt alone exceeds the configured token budget",
    "exact_duplicate": "an exact copy of another example (not the one kept from its cluster)",
    "near_duplicate": "a near copy of another example (not the one kept from its cluster)",
}

#: Output column -> meaning, in output order.
QUALITY_COLUMNS: dict[str, str] = {
    "source": "source name (key with example_id)",
    "example_id": "example id, unique within its source",
    "n_messages": "messages in the conversation (all roles)",
    "n_turns": "user turns",
    "chars_system": "characters in the system prompt",
    "chars_user": "characters in all user turns",
    "chars_assistant": "characters in all assistant turns",
    "chars_tool": "characters in all tool turns",
    "chars_total": "characters in all turns",
    "approx_tokens": "chars_total / chars_per_token + tokens_per_message per message",
    "approx_tokens_system": "chars_system / chars_per_token",
    "instruction_chars": "characters in the first user turn",
    "context_reference": "phrase pointing at content the prompt lacks ('the following text')",
    "json_requested": "the instruction asks for JSON output",
    "json_valid": "the response holds valid JSON (null unless JSON was requested)",
    "code_requested": "the instruction asks for code (a function, program, script, query)",
    "has_code": "the response holds code (null unless code was requested)",
    "requested_items": "N in 'list N things' (null if no count was requested)",
    "response_items": "items found in the response (null if no count was requested)",
    "requested_sentences": "N in 'in N sentence(s)' (null if not requested)",
    "response_sentences": "sentences in the response (null if not requested)",
    "requested_words": "N in 'in/under N words' (null if not requested)",
    "response_words": "whitespace-separated words in the response (null if not requested)",
    "requested_language": "ISO code of a requested output language ('translate to French')",
    "target_language_share": (
        "share of the response in the requested language (script letters, or target "
        "stopwords among target+English stopwords)"
    ),
    "misalignment_kind": "first violated request: " + ", ".join(alignment.MISALIGNMENT_KINDS),
    "bracket_imbalance": "'{'+'[' minus '}'+']' in a response that does not end cleanly",
    "dup_line_frac": "share of non-empty response lines repeating an earlier line (Gopher)",
    "dup_line_char_frac": "share of line characters in repeated lines (Gopher)",
    "top_2gram_char_frac": (
        "characters of the most frequent word 2-gram x its count / word characters; null "
        "when the response is short or shows no sign of looping"
    ),
    "dup_5gram_char_frac": (
        "word characters covered by repeated 5-grams / word characters; null when the "
        "response is short or shows no sign of looping"
    ),
    "placeholder_count": (
        "template placeholders found ({{x}} anywhere; [Your X], <X>, {x} in prose)"
    ),
    "placeholder": "the first placeholder found",
    "special_token": "the first special token found",
    "refusal_phrase": "the first refusal/AI-disclaimer phrase found (lower-cased)",
    "noise_ratio": "characters in HTML tags/entities, control chars, symbol runs / characters",
    "output_shape": "shape of the final response: " + ", ".join(consistency.SHAPES),
    "instruction_template": "masked first words of the first user turn (groups templated rows)",
    "template_dominant_shape": "the shape most rows of this source+template share, if dominant",
    **{flag: FLAG_DESCRIPTIONS[flag] for flag in FLAG_ORDER},
    "quality_flags": "raised flags, in the fixed order of FLAG_ORDER",
    "has_severe_flag": "at least one raised flag is in cfg.severe_flags",
    "quality_score": "1 - sum of the raised flags' weights, clipped to [0, 1]",
}


def _flag_list(flags: dict[str, pl.Expr]) -> pl.Expr:
    """list[str] of the names of the raised flags, in the order of ``flags``."""
    return (
        pl.concat_list([pl.when(e).then(pl.lit(f)).otherwise(None) for f, e in flags.items()])
        .list.drop_nulls()
        .alias("quality_flags")
    )


def _add_scores(
    frame: pl.DataFrame, cfg: QualityThresholds, flags: dict[str, pl.Expr]
) -> pl.DataFrame:
    """``frame`` plus ``quality_flags``, ``has_severe_flag`` and ``quality_score``.

    The score is plain arithmetic over the boolean flags (1 - sum of the raised flags'
    weights, clipped to [0, 1]); the flag list is built only on rows that raised a flag
    (a list of 14 candidates per row costs more than all other scoring steps together).
    """
    penalty = pl.sum_horizontal(
        [e.fill_null(False).cast(pl.Float64) * cfg.weight(f) for f, e in flags.items()]
    )
    severe = [e.fill_null(False) for f, e in flags.items() if f in cfg.severe_flags]
    frame = add_columns(
        frame,
        [
            (pl.any_horizontal(severe) if severe else pl.lit(False)).alias("has_severe_flag"),
            (1.0 - penalty).clip(0.0, 1.0).alias("quality_score"),
            pl.any_horizontal([e.fill_null(False) for e in flags.values()]).alias("_any_flag"),
        ],
    )
    flagged = frame.filter(pl.col("_any_flag")).select(ROW, _flag_list(flags))
    aligned = frame.select(ROW).join(flagged, on=ROW, how="left", maintain_order="left")
    return frame.drop("_any_flag", "quality_flags", strict=False).hstack(
        [aligned["quality_flags"].fill_null(pl.lit([], dtype=pl.List(pl.String)))]
    )


def score_examples(normalized: pl.DataFrame, cfg: QualityThresholds | None = None) -> pl.DataFrame:
    """Quality signals for every example of a normalized frame.

    Input: the canonical normalized schema (``source``, ``example_id``, ``messages`` are
    read). Output: the columns of ``QUALITY_COLUMNS`` in that order, one row per example,
    sorted by (source, example_id).
    """
    cfg = cfg or QualityThresholds()
    frame = normalized.select(*KEY, "messages").with_row_index(ROW)
    frame = with_text_columns(frame)
    # Facts several modules read, computed once: fence presence and code-line signals.
    frame = add_columns(
        frame,
        [
            pl.col(RESPONSE).str.contains(FENCE, literal=True).fill_null(False).alias("_has_fence"),
            code_line_count(RESPONSE).alias("_code_lines"),
        ],
    )
    for stage in [*lengths.length_columns(cfg), *instructions.instruction_columns(cfg)]:
        frame = add_columns(frame, stage)
    # Both return one row per input row in input order: stack them instead of joining.
    aligned = alignment.alignment_frame(frame, cfg)
    answered = responses.response_frame(frame, cfg)
    if not (aligned[ROW].equals(frame[ROW]) and answered[ROW].equals(frame[ROW])):
        raise RuntimeError("alignment/response frames lost the input row order")
    frame = frame.hstack(aligned.drop(ROW)).hstack(answered.drop(ROW))
    frame = consistency.with_instruction_template(
        frame.with_columns(consistency.output_shape(frame, cfg)), cfg
    )
    frame = consistency.with_shape_outlier(frame, cfg)
    frame = _add_scores(frame, cfg, {f: pl.col(f) for f in FLAG_ORDER})
    return frame.select(list(QUALITY_COLUMNS)).sort(KEY)


DUP_COLUMNS = ["dup_cluster_id", "is_exact_duplicate", "is_near_duplicate", "is_dup_representative"]


def apply_duplicate_penalty(
    scores: pl.DataFrame, dups: pl.DataFrame, cfg: QualityThresholds | None = None
) -> pl.DataFrame:
    """Fold duplicate clusters into ``scores``: dup columns, flags and the combined score.

    ``dups`` has (source, example_id) and ``DUP_COLUMNS``. Only non-representatives are
    flagged (``exact_duplicate`` or else ``near_duplicate``), so dropping flagged rows keeps
    one copy per cluster. Rows absent from ``dups`` are unique. Idempotent: existing dup
    columns and flags are replaced, and the score is recomputed from the flags.
    """
    cfg = cfg or QualityThresholds()
    base = scores.drop([c for c in DUP_COLUMNS if c in scores.columns])
    d = dups.select(*KEY, *DUP_COLUMNS)
    # Join the keys only and stack: joining the wide score table would copy all its columns.
    aligned = base.select(KEY).join(d, on=KEY, how="left", maintain_order="left")
    merged = base.hstack(aligned.drop(KEY)).with_columns(
        pl.col("is_exact_duplicate").fill_null(False),
        pl.col("is_near_duplicate").fill_null(False),
        pl.col("is_dup_representative").fill_null(True),
    )
    not_rep = ~pl.col("is_dup_representative")
    exact = not_rep & pl.col("is_exact_duplicate")
    near = not_rep & ~pl.col("is_exact_duplicate") & pl.col("is_near_duplicate")
    # Per-example flags come from their boolean columns, so re-applying replaces the old
    # duplicate flags instead of stacking them.
    flags = {f: pl.col(f) for f in FLAG_ORDER} | {"exact_duplicate": exact, "near_duplicate": near}
    out = _add_scores(merged.with_row_index(ROW), cfg, flags).drop(ROW)
    cols = [c for c in scores.columns if c not in DUP_COLUMNS]
    return out.select(*cols, *[c for c in DUP_COLUMNS if c not in cols]).sort(KEY)
