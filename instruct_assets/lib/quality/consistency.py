"""Consistency within a source: output shapes, instruction templates and the odd row out.

Synthetic sets are generated from templates ("Transform this data from TOML to CSV: ...");
rows of one template should answer in one shape. A row whose shape differs from its
template group's dominant shape (e.g. prose where 95% of siblings return JSON) is usually
a failed generation. Also two small summary tables for the UI: system prompts and shapes.
"""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.quality.alignment import json_valid
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.text import (
    FENCE,
    FIRST_USER,
    MESSAGES,
    RESPONSE,
    SYSTEM,
    add_columns,
    code_line_count,
    collect,
    system_prompt,
    with_text_columns,
)

#: ``output_shape`` values and what each means.
SHAPES: dict[str, str] = {
    "empty": "no response text",
    "json": "the whole response (or its only fenced block) is valid JSON",
    "code": "a fenced code block, or at least two lines only code writes",
    "table": "a markdown table (a header row and a |---| separator)",
    "list": "at least two list items (numbered or bulleted) make up most lines",
    "short": "a one-line answer of a few words (a label, a number, a name)",
    "prose": "anything else: sentences and paragraphs",
}

TABLE_RE = r"(?m)^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)+\|?\s*$"
_ITEM = r"[ \t]*(?:[-*•+]|[0-9]{1,2}[.)]|\([0-9]{1,2}\)|[a-z][.)])[ \t]+[^ \t\n]"
#: List items at a line start: after a newline, or at the start of the text (two patterns so
#: the first has a literal prefix; see the performance note in ``text.py``).
LIST_ITEM_PATTERNS = (rf"\n{_ITEM}", rf"\A{_ITEM}")
NONEMPTY_LINE_RE = r"(?m)^[ \t]*\S"


def output_shape(frame: pl.DataFrame, cfg: QualityThresholds) -> pl.Series:
    """The shape of each row's final response (see ``SHAPES``), as a String series.

    ``frame`` needs the ``response`` text column; ``_has_fence``/``_code_lines``/
    ``_nonblank``/``_multi``/``response_lines`` are reused when present (``score_examples``
    computes them once).
    JSON validity is checked with DuckDB on the rows that look like JSON (start with '{'/'['
    or a ```json fence) only. Every input of the final decision is a column computed in one
    pass (in parallel), so the decision itself only reads booleans and counts.
    """
    r = pl.col(RESPONSE)
    has = set(frame.columns)
    multi = (
        pl.col("_multi") if "_multi" in has else r.str.contains("\n", literal=True).fill_null(False)
    )
    # Stage 1: cheap facts over every row. "Looks like JSON" (the first 24 characters,
    # leading space stripped, open a bracket or a fence) is decided on the few rows whose
    # first visible character is one: an anchored probe is cheaper than the head copy.
    lj_probe = r.str.find(r"^\s*[\[{`]").is_not_null()
    head = pl.when(pl.col("_lj_probe")).then(r).str.head(24).str.strip_chars_start()
    looks_json = head.str.find(
        r"^(?:[\[{]|```(?:json|JSON)?\s*[\[{]?\s*$|```(?:json|JSON)\s)"
    ).is_not_null()
    facts = (
        frame.lazy()
        .with_columns(lj_probe.fill_null(False).alias("_lj_probe"))
        .select(
            looks_json.alias("_lj"),
            (
                pl.col("_nonblank")
                if "_nonblank" in has
                else r.str.contains(r"\S").fill_null(False)
            ).alias("_nonblank"),
            (pl.col("_has_fence") if "_has_fence" in has else r.str.contains(FENCE, literal=True))
            .fill_null(False)
            .alias("_fence"),
            (pl.col("_code_lines") if "_code_lines" in has else code_line_count(RESPONSE)).alias(
                "_code"
            ),
            r.str.contains(TABLE_RE).fill_null(False).alias("_table"),
            multi.alias("_multi"),
            (
                pl.col("response_lines")
                if "response_lines" in has
                else r.str.count_matches(NONEMPTY_LINE_RE).fill_null(0)
            ).alias("_lines"),
            # Words are counted on short one-liners only (others are masked to null).
            pl.when((r.str.len_bytes() <= 60) & ~multi)
            .then(r)
            .str.count_matches(r"\S+")
            .alias("_short_words"),
        )
        .collect(engine="in-memory")
    )
    # List items are counted only where the decision can reach the list rule: not blank,
    # code or a table, and on several lines (a line holds at most one item and the rule
    # needs two). Elsewhere the count stays null: count_matches skips null rows, and a
    # null count never satisfies the rule.
    reach = (
        pl.col("_nonblank")
        & ~(pl.col("_fence") | (pl.col("_code") >= 2))
        & ~pl.col("_table")
        & pl.col("_multi")
    )
    t = pl.when(pl.col("_reach")).then(pl.col("_t"))
    items = t.str.count_matches(LIST_ITEM_PATTERNS[0]) + t.str.count_matches(LIST_ITEM_PATTERNS[1])
    facts = collect(
        facts.lazy()
        .with_columns(reach.alias("_reach"), frame.get_column(RESPONSE).alias("_t"))
        .with_columns(items.fill_null(0).alias("_items"))
        .drop("_reach", "_t")
    )
    # Stage 2: JSON validity on the candidates only.
    cand = (
        frame.select(r.alias("_t"))
        .with_row_index("_i")
        .filter(facts["_lj"])
        .with_columns(pl.col("_t").str.strip_chars())
        .with_columns(
            pl.coalesce(
                pl.col("_t").str.extract(r"(?s)^```(?:json|JSON)?\s*\n(.*?)```$", 1), pl.col("_t")
            ).alias("_json")
        )
    )
    valid = json_valid(cand, ["_json"])
    is_json = pl.Series("_json", [False] * frame.height, dtype=pl.Boolean)
    if cand.height:
        is_json = is_json.scatter(cand["_i"], valid.fill_null(False))
    f = facts.with_columns(is_json)
    items, lines = pl.col("_items"), pl.col("_lines")
    shape = (
        pl.when(~pl.col("_nonblank"))
        .then(pl.lit("empty"))
        .when(pl.col("_json"))
        .then(pl.lit("json"))
        .when(pl.col("_fence") | (pl.col("_code") >= 2))
        .then(pl.lit("code"))
        .when(pl.col("_table"))
        .then(pl.lit("table"))
        .when((items >= 2) & (items * 2 >= lines))
        .then(pl.lit("list"))
        .when(pl.col("_short_words") <= cfg.short_answer_max_words)
        .then(pl.lit("short"))
        .otherwise(pl.lit("prose"))
    )
    return f.select(shape.alias("output_shape")).get_column("output_shape")


def instruction_template_stages(
    cfg: QualityThresholds, col: str = FIRST_USER
) -> list[list[pl.Expr]]:
    """Stages computing ``instruction_template``, a key grouping rows generated from one
    prompt template.

    The first line of the first user turn (its first 160 characters), quoted strings
    masked, cut to its first ``cfg.template_words`` words, lower-cased, then numbers and
    long tokens (ids, URLs, identifiers of at least ``cfg.template_mask_min_chars``
    characters) masked. E.g. 'Translate "Good morning" into French.' ->
    'translate <q> into french.'. Masking after the cut keeps the costly patterns on a few
    dozen characters per row.
    """
    c = pl.col(col)
    # head/splitn count characters (``str.find`` returns a byte offset, so it cannot cut)
    first_line = c.str.head(160).str.splitn("\n", 2).struct.field("field_0")
    quoted = first_line.str.replace_all(r"\"[^\"]*\"|“[^”]*”|`[^`]*`|'[^'\s][^']*'", "<q>")
    k = max(cfg.template_words, 1)
    # The first K space-separated words with their separators: everything before the K-th
    # space (the whole line when it has fewer). One anchored regex over a short prefix;
    # ~3x cheaper than splitn + concat_str.
    words = quoted.str.strip_chars_start().str.extract(rf"^(?:[^ ]* ){{0,{k - 1}}}[^ ]*", 0)
    key = (
        words.str.to_lowercase()
        .str.replace_all(rf"[^ \t]{{{cfg.template_mask_min_chars},}}", "<tok>")
        .str.replace_all(r"[0-9]+(?:[.,][0-9]+)*", "<n>")
        .str.strip_chars()
    )
    return [[key.fill_null("").alias("instruction_template")]]


def with_instruction_template(frame: pl.DataFrame, cfg: QualityThresholds) -> pl.DataFrame:
    """``frame`` plus ``instruction_template`` (see :func:`instruction_template_stages`)."""
    for stage in instruction_template_stages(cfg):
        frame = add_columns(frame, stage)
    return frame


def shape_keys(frame: pl.DataFrame) -> pl.DataFrame:
    """``_gid`` (the row's template group, see :func:`with_shape_outlier`) and
    ``output_shape``: the narrow per-row input of :func:`dominant_shapes`."""
    key = ["source", "instruction_template"] + (["n_turns"] if "n_turns" in frame.columns else [])
    return frame.select(pl.struct(key).hash(seed=0).alias("_gid"), "output_shape")


def dominant_shapes(keyed: pl.DataFrame, cfg: QualityThresholds) -> pl.DataFrame:
    """(``_gid``, ``template_dominant_shape``) of the groups of ``keyed`` (:func:`shape_keys`
    of all rows, possibly concatenated from chunks) that have a dominant shape."""
    counts = keyed.group_by("_gid", "output_shape").agg(pl.len().alias("_n"))
    return (
        counts.sort(["_gid", "_n", "output_shape"], descending=[False, True, False])
        .group_by("_gid")
        .agg(
            pl.col("_n").sum().alias("_size"),
            pl.col("_n").first().alias("_top"),
            pl.col("output_shape").first().alias("_dom"),
        )
        .filter(
            (pl.col("_size") >= cfg.shape_min_group_rows)
            & (
                pl.col("_top").cast(pl.Float64)
                >= cfg.shape_dominant_share * pl.col("_size").cast(pl.Float64)
            )
        )
        .select("_gid", pl.col("_dom").alias("template_dominant_shape"))
    )


def with_shape_outlier(frame: pl.DataFrame, cfg: QualityThresholds,
                       groups: pl.DataFrame | None = None) -> pl.DataFrame:
    """``frame`` plus ``template_dominant_shape`` and ``shape_outlier``.

    Needs ``source``, ``instruction_template`` and ``output_shape`` (and uses ``n_turns``
    when present: the shape compared is the final response's, so a chat of another length
    is another template). A (source, template) group of at least
    ``cfg.shape_min_group_rows`` rows whose most common shape covers at least
    ``cfg.shape_dominant_share`` of it has a dominant shape; other shapes in it are outliers.
    With a share above 0.5 the dominant shape is unique (ties are broken by name for lower
    shares, which never make a shape dominant).

    Computed on a small (group, shape) count table joined back on one integer key: window
    functions over two string columns cost ~8x more at a million rows. The key is polars'
    row hash, used only to group within this process (equality, not stored). ``groups``:
    :func:`dominant_shapes` computed over more rows than ``frame`` (a chunked stage's whole
    input); by default, over ``frame``.
    """
    keyed = shape_keys(frame)
    if groups is None:
        groups = dominant_shapes(keyed, cfg)
    dominant = keyed.join(groups, on="_gid", how="left", maintain_order="left")
    out = frame.hstack([dominant["template_dominant_shape"]])
    return out.with_columns(
        (
            pl.col("template_dominant_shape").is_not_null()
            & (pl.col("output_shape") != pl.col("template_dominant_shape"))
        ).alias("shape_outlier")
    )


def system_prompt_table(frame: pl.DataFrame) -> pl.DataFrame:
    """Distinct system prompts: ``text``, ``count`` (rows), ``sources`` (sorted list).

    Accepts a normalized frame (``messages``) or one that already has ``system_prompt``.
    Sorted by count descending, then text, for a stable UI table.
    """
    sys_col = pl.col(SYSTEM) if SYSTEM in frame.columns else system_prompt(MESSAGES)
    return (
        frame.select(sys_col.alias("text"), pl.col("source"))
        .drop_nulls("text")
        .group_by("text")
        .agg(
            pl.len().cast(pl.Int64).alias("count"),
            pl.col("source").unique().sort().alias("sources"),
        )
        .sort(["count", "text"], descending=[True, False])
    )


def merge_system_prompts(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """:func:`system_prompt_table` of the rows of several chunks, from the tables of each
    chunk: counts add up, source lists unite (distinct prompts are few; rows are many)."""
    if len(parts) == 1:
        return parts[0]
    return (
        pl.concat(parts)
        .group_by("text")
        .agg(
            pl.col("count").sum().cast(pl.Int64),
            pl.col("sources").explode(keep_nulls=False, empty_as_null=False).unique().sort(),
        )
        .sort(["count", "text"], descending=[True, False])
    )


def shape_distribution(frame: pl.DataFrame, cfg: QualityThresholds | None = None) -> pl.DataFrame:
    """Rows per (``source``, ``output_shape``) as ``source, shape, count``.

    Accepts a scored frame (with ``output_shape``) or a normalized one (shapes are computed).
    """
    if "output_shape" not in frame.columns:
        texts = with_text_columns(frame)
        frame = texts.with_columns(output_shape(texts, cfg or QualityThresholds()))
    return (
        frame.group_by("source", pl.col("output_shape").alias("shape"))
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .sort(["source", "count", "shape"], descending=[False, True, False])
    )
