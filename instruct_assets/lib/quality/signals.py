"""One row of quality signals per example: raw measures, boolean flags, flag list, score.

``score_examples`` answers "which of my examples are bad, and why?": every flag is a
boolean column named as the flag, ``quality_flags`` lists the raised ones in a fixed order,
and the raw measure behind each flag is a column too, so a curator can move a threshold
and see what changes. Duplicates come from ``dedup.py``; ``apply_duplicate_penalty``
folds them into the same flags and score.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import polars as pl

from instruct_assets.lib.keys import KEY, key_order, key_sorted
from instruct_assets.lib.parallel import slices
from instruct_assets.lib.quality import alignment, consistency, instructions, lengths, responses
from instruct_assets.lib.quality.config import FLAG_ORDER, QualityThresholds
from instruct_assets.lib.quality.text import (
    FENCE,
    RESPONSE,
    add_columns,
    code_line_stages,
    with_text_columns,
)

ROW = "_row"

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


def _add_scores(
    frame: pl.DataFrame, cfg: QualityThresholds, flags: dict[str, pl.Expr]
) -> pl.DataFrame:
    """``frame`` plus ``quality_flags``, ``has_severe_flag`` and ``quality_score``.

    The score is plain arithmetic over the boolean flags (1 - sum of the raised flags'
    weights, clipped to [0, 1]). The flag list is not assembled per row (a list of 16
    candidates per row costs more than all other scoring steps together): each row's
    raised flags are one bit mask, the list of each distinct mask (a few hundred) is built
    once, and rows gather theirs.
    """
    if len(flags) > 64:
        raise ValueError("at most 64 flags fit the flag bit mask")
    raised = [e.fill_null(False) for e in flags.values()]
    severe = [e.fill_null(False) for f, e in flags.items() if f in cfg.severe_flags]
    mask = pl.sum_horizontal([r.cast(pl.UInt64) * (1 << i) for i, r in enumerate(raised)])
    frame = add_columns(
        frame,
        [
            (pl.any_horizontal(severe) if severe else pl.lit(False)).alias("has_severe_flag"),
            _score_expr(cfg, flags).alias("quality_score"),
            mask.alias("_flag_mask"),
        ],
    )
    masks = frame.get_column("_flag_mask")
    distinct = masks.unique().sort()
    names = list(flags)
    lists = pl.Series(
        "quality_flags",
        [[f for i, f in enumerate(names) if m >> i & 1] for m in distinct.to_list()],
        dtype=pl.List(pl.String),
    )
    return frame.drop("_flag_mask", "quality_flags", strict=False).hstack(
        [lists.gather(distinct.search_sorted(masks))]
    )


#: Columns the row-local part hands to the group-level part (``with_shape_outlier`` reads
#: ``n_turns``, which is an output column too).
_ROW_LEVEL_COLUMNS = [
    c
    for c in QUALITY_COLUMNS
    if c
    not in (
        "template_dominant_shape",
        "shape_outlier",
        "quality_flags",
        "has_severe_flag",
        "quality_score",
    )
]


def _row_signals(frame: pl.DataFrame, cfg: QualityThresholds) -> pl.DataFrame:
    """Every signal that reads one row only, for ``frame`` (``_row``, KEY, ``messages``).

    Returns ``_row`` plus ``_ROW_LEVEL_COLUMNS`` in input order; the text columns are
    dropped here so chunks stay small.
    """
    frame = with_text_columns(frame)
    # Response facts several modules read, computed once: fence, code-line signals (capped
    # at 2: readers test "> 0" and ">= 2"), last visible character, length, visible text,
    # several lines.
    r = pl.col(RESPONSE)
    code = code_line_stages(RESPONSE)
    facts = [
        r.str.contains(FENCE, literal=True).fill_null(False).alias("_has_fence"),
        responses.last_char().alias("_last"),
        r.fill_null("").str.len_chars().alias("_chars"),
        r.str.contains("\n", literal=True).fill_null(False).alias("_multi"),
    ]
    for stage in [
        [*facts, *code[0]],
        [*code[1], responses.nonblank_response(pl.col("_last")).alias("_nonblank")],
    ]:
        frame = add_columns(frame, stage)
    frame = lengths.length_frame(frame, cfg, nonblank_response="_nonblank")
    for stage in instructions.instruction_columns(cfg):
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
    return frame.select(ROW, *_ROW_LEVEL_COLUMNS)


#: Most rows of a thread's slice worked on at once (longer slices are cut into pieces the
#: thread works through in turn). A piece's intermediate columns are most of the stage's
#: peak memory: at a million rows, two 250k-row pieces per thread measured ~40% less of it
#: than one 500k-row slice, for the same CPU time (much smaller pieces start costing CPU).
_PIECE_ROWS = 250_000


def row_signals(frame: pl.DataFrame, cfg: QualityThresholds) -> pl.DataFrame:
    """The row-local signals (``_row`` plus ``_ROW_LEVEL_COLUMNS``, in input order) of a
    frame with ``_row``, KEY and ``messages``, on row slices in parallel threads: the part
    of :func:`score_examples` that a chunked stage runs chunk by chunk."""
    chunks = slices(frame)
    if len(chunks) == 1:
        return _row_signals(frame, cfg)
    per_slice = -(-chunks[0].height // _PIECE_ROWS)
    size = -(-chunks[0].height // per_slice)
    pieces = [c.slice(i * size, size) for c in chunks for i in range(per_slice)]
    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        parts = list(pool.map(lambda part: _row_signals(part, cfg), pieces))
    return pl.concat(parts, how="vertical")


def finish_scores(rows: pl.DataFrame, cfg: QualityThresholds,
                  groups: pl.DataFrame | None = None) -> pl.DataFrame:
    """:func:`score_examples`' output columns from :func:`row_signals`' rows (any order;
    kept): shape outliers against ``groups`` (``consistency.dominant_shapes`` of every row,
    by default of ``rows``), flags and the score."""
    frame = consistency.with_shape_outlier(rows, cfg, groups)
    frame = _add_scores(frame, cfg, {f: pl.col(f) for f in FLAG_ORDER})
    return frame.select(list(QUALITY_COLUMNS))


#: Row-local flags (every flag of FLAG_ORDER but the group-level ``shape_outlier``).
ROW_FLAGS = tuple(f for f in FLAG_ORDER if f != "shape_outlier")


def row_flag_mask(rows: pl.DataFrame) -> pl.Series:
    """The row-local flags of :func:`row_signals`' rows as one UInt32 per row (bit i =
    ``FLAG_ORDER[i]``; null reads as False): what :func:`mask_scores` needs, 4 bytes a row."""
    bits = [pl.col(f).fill_null(False).cast(pl.UInt32) * (1 << FLAG_ORDER.index(f))
            for f in ROW_FLAGS]
    return rows.select(pl.sum_horizontal(bits).cast(pl.UInt32).alias("_mask")).to_series()


def mask_scores(mask: pl.Series, shape_outlier: pl.Series,
                cfg: QualityThresholds) -> pl.Series:
    """``quality_score`` before duplicates (as :func:`score_examples` computes it, the same
    float operations in the same order) from :func:`row_flag_mask` and ``shape_outlier``."""
    frame = pl.DataFrame({"_mask": mask, "shape_outlier": shape_outlier})
    flags = {
        f: (pl.col("shape_outlier") if f == "shape_outlier"
            else (pl.col("_mask") & (1 << i)) != 0)
        for i, f in enumerate(FLAG_ORDER)
    }
    return frame.select(_score_expr(cfg, flags).alias("quality_score")).to_series()


def _score_expr(cfg: QualityThresholds, flags: dict[str, pl.Expr]) -> pl.Expr:
    """1 - the sum of the raised flags' weights, clipped to [0, 1]."""
    penalty = pl.sum_horizontal(
        [e.fill_null(False).cast(pl.Float64) * cfg.weight(f) for f, e in flags.items()]
    )
    return (1.0 - penalty).clip(0.0, 1.0)


def score_examples(normalized: pl.DataFrame, cfg: QualityThresholds | None = None) -> pl.DataFrame:
    """Quality signals for every example of a normalized frame (see :func:`scores_and_order`)."""
    return scores_and_order(normalized, cfg)[0]


def scores_and_order(
    normalized: pl.DataFrame, cfg: QualityThresholds | None = None
) -> tuple[pl.DataFrame, pl.Series]:
    """Quality signals for every example of a normalized frame, and the key order they were
    sorted by (output row i is input row ``order[i]``): a caller holding other per-row
    results in input order lines them up with one gather instead of sorting them again.

    Input: the canonical normalized schema (``source``, ``example_id``, ``messages`` are
    read). Output: the columns of ``QUALITY_COLUMNS`` in that order, one row per example,
    sorted by (source, example_id).

    The row-local signals run on contiguous row slices in parallel threads (polars releases
    the GIL): most of their kernels are single-threaded string scans, so one thread per core
    uses every core (see :func:`row_signals`). Every row-local value depends on its own row
    only, so the result does not depend on the slicing; template groups and scores are
    computed on the whole frame.
    """
    cfg = cfg or QualityThresholds()
    # One chunk per column (a multi-file read has several): gathers and joins over chunked
    # columns cost several times more, and rechunking views copies no text.
    frame = normalized.select(*KEY, "messages").rechunk().with_row_index(ROW)
    # The output order is computed alongside (it reads the keys only).
    with ThreadPoolExecutor(max_workers=1) as pool:
        ordered = pool.submit(key_order, frame)
        frame = row_signals(frame, cfg)
        order = ordered.result()
    frame = consistency.with_shape_outlier(frame, cfg)
    frame = _add_scores(frame, cfg, {f: pl.col(f) for f in FLAG_ORDER})
    # Rows are still in input order, so gathering by the key order sorts them by KEY
    # (a gather over single-chunk columns is ~3x cheaper: the chunks are joined first).
    return frame.select(list(QUALITY_COLUMNS)).rechunk()[order], order


def sort_by_key(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame.sort(KEY)``, cheaper: free when the rows are already in key order (scored
    frames are), else a gather by ``key_order`` (integer keys). Frames with duplicate or
    null keys take ``sort`` itself (ties have no single order)."""
    if key_sorted(frame, strict=True):
        return frame
    out = frame.rechunk()[key_order(frame)]
    return out if key_sorted(out, strict=True) else frame.sort(KEY)


def align_by_key(left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
    """``right``'s non-key columns for each row of ``left`` (a left join on KEY, in
    ``left``'s row order; ``right`` has at most one row per key).

    Joining a million string keys costs ~0.5 s; when ``right`` holds exactly ``left``'s
    keys, in the same order or (for a key-sorted ``left``) in any order, comparing the keys
    and gathering by ``key_order`` gives the same rows for a fraction of that.
    """
    cols = [c for c in right.columns if c not in KEY]
    if left.height == right.height and key_sorted(left, strict=True):
        if right.select(KEY).equals(left.select(KEY)):
            return right.select(cols)
        ordered = sort_by_key(right)
        if ordered.select(KEY).equals(left.select(KEY)):
            return ordered.select(cols)
    joined = left.select(KEY).join(right, on=KEY, how="left", maintain_order="left")
    return joined.select(cols)


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
    aligned = align_by_key(base, dups.select(*KEY, *DUP_COLUMNS)).with_columns(
        pl.col("is_exact_duplicate").fill_null(False),
        pl.col("is_near_duplicate").fill_null(False),
        pl.col("is_dup_representative").fill_null(True),
    )
    merged = base.hstack(aligned)
    not_rep = ~pl.col("is_dup_representative")
    exact = not_rep & pl.col("is_exact_duplicate")
    near = not_rep & ~pl.col("is_exact_duplicate") & pl.col("is_near_duplicate")
    # Per-example flags come from their boolean columns, so re-applying replaces the old
    # duplicate flags instead of stacking them.
    flags = {f: pl.col(f) for f in FLAG_ORDER} | {"exact_duplicate": exact, "near_duplicate": near}
    out = _add_scores(merged.with_row_index(ROW), cfg, flags).drop(ROW)
    cols = [c for c in scores.columns if c not in DUP_COLUMNS]
    return sort_by_key(out.select(*cols, *[c for c in DUP_COLUMNS if c not in cols]))
