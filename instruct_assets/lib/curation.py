"""Curation: decide, per example, whether it is kept, and if not, say why.

Why: dropping rows silently makes a dataset impossible to audit. Every example gets one
``exclusion_reason`` (null = kept): the FIRST rule that applies, in this order, from the
most to the least serious (so a contaminated duplicate is reported as contaminated):

1. ``contaminated:<benchmark>`` - shares n-grams with a benchmark item (see
   ``decontaminate.find_contamination``); several benchmarks: the first by name.
2. ``flag:<flag_name>`` - carries a quality flag listed in ``exclude_flags``; several: the
   first in ``exclude_flags`` order.
3. ``below_quality_threshold`` - ``quality_score`` < ``min_quality_score`` (a null score
   has not passed the gate, so it counts as below).
4. ``duplicate_of:<dup_cluster_id>`` (or ``duplicate`` when the cluster id is null) - not the
   representative of its duplicate cluster, when ``keep_only_representatives``.

``all_reasons`` lists every rule that applies, so :func:`rule_counts` can also say how many
rows each rule would remove on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

#: Rule names in precedence order (the prefix of ``exclusion_reason``).
RULES: tuple[str, ...] = ("contaminated", "flag", "below_quality_threshold", "duplicate")

REQUIRED_COLUMNS: tuple[str, ...] = (
    "source",
    "example_id",
    "quality_score",
    "quality_flags",
    "dup_cluster_id",
    "is_dup_representative",
)


@dataclass(frozen=True)
class CurationConfig:
    """Which rules exclude an example."""

    #: Examples scoring below this are excluded (scores are in [0, 1] by convention).
    min_quality_score: float = 0.5
    #: Quality flags that exclude an example on their own, in reporting precedence.
    #: Other flags are informational and never exclude.
    exclude_flags: tuple[str, ...] = ()
    #: Keep one row per duplicate cluster (the representative chosen by dedup).
    keep_only_representatives: bool = True
    #: Exclude examples found contaminated (when a contamination frame is given).
    drop_contaminated: bool = True


def _contaminated_benchmark(
    quality: pl.DataFrame, contamination: pl.DataFrame | None
) -> pl.DataFrame:
    """(source, example_id, _benchmark): the first benchmark by name per contaminated row."""
    schema = {"source": pl.String, "example_id": pl.String, "_benchmark": pl.String}
    if contamination is None or contamination.height == 0:
        return pl.DataFrame(schema=schema)
    hits = contamination
    if "contaminated" in hits.columns:
        hits = hits.filter(pl.col("contaminated"))
    return (
        hits.group_by("source", "example_id").agg(_benchmark=pl.col("benchmark").min()).cast(schema)
    )


def curate(
    quality: pl.DataFrame,
    cfg: CurationConfig | None = None,
    contamination: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per example of ``quality`` (same order) plus ``kept``, ``exclusion_reason``
    and ``all_reasons`` (list[str]).

    ``quality`` needs ``source``, ``example_id``, ``quality_score`` (f64), ``quality_flags``
    (list[str]), ``dup_cluster_id`` (str), ``is_dup_representative`` (bool); other columns
    (e.g. ``origin``) are carried through. ``contamination`` needs ``source``,
    ``example_id``, ``benchmark`` and optionally ``contaminated`` (rows with false ignored).
    """
    cfg = cfg or CurationConfig()
    missing = [c for c in REQUIRED_COLUMNS if c not in quality.columns]
    if missing:
        raise ValueError(f"curate needs columns {missing}")

    # (condition, reason) per rule, in precedence order
    rules: list[tuple[pl.Expr, pl.Expr]] = []
    frame = quality.with_row_index("_row")
    if cfg.drop_contaminated:
        bench = _contaminated_benchmark(quality, contamination)
        frame = frame.join(bench, on=["source", "example_id"], how="left", maintain_order="left")
        rules.append(
            (pl.col("_benchmark").is_not_null(), pl.lit("contaminated:") + pl.col("_benchmark"))
        )
    for flag in cfg.exclude_flags:
        rules.append((pl.col("quality_flags").list.contains(flag), pl.lit(f"flag:{flag}")))
    rules.append(
        (
            pl.col("quality_score").fill_nan(None).fill_null(float("-inf"))
            < cfg.min_quality_score,
            pl.lit("below_quality_threshold"),
        )
    )
    if cfg.keep_only_representatives:
        rules.append(
            (
                ~pl.col("is_dup_representative").fill_null(True),
                pl.coalesce(
                    pl.lit("duplicate_of:") + pl.col("dup_cluster_id"), pl.lit("duplicate")
                ),
            )
        )

    # Reasons are built for the rows some rule applies to only (a few percent): building a
    # list per row for a million kept rows cost seconds. The others get no reason and [].
    reasons = [pl.when(cond).then(reason) for cond, reason in rules]
    hit = frame.filter(pl.any_horizontal([cond for cond, _ in rules])).select(
        "_row",
        exclusion_reason=pl.coalesce(reasons),
        all_reasons=pl.concat_list(reasons).list.drop_nulls(),
    )
    out = frame.join(hit, on="_row", how="left", maintain_order="left").with_columns(
        pl.col("all_reasons").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        kept=pl.col("exclusion_reason").is_null(),
    )
    return out.select(*quality.columns, "kept", "exclusion_reason", "all_reasons")


def _rule_of(reason: pl.Expr) -> pl.Expr:
    """Collapse ``duplicate_of:<cluster>`` to ``duplicate`` (clusters are many)."""
    return pl.when(reason.str.starts_with("duplicate")).then(pl.lit("duplicate")).otherwise(reason)


def rule_counts(curated: pl.DataFrame) -> pl.DataFrame:
    """Rows removed per rule, in precedence order.

    Columns: ``rule`` (``contaminated:<benchmark>``, ``flag:<name>``,
    ``below_quality_threshold``, ``duplicate``), ``removed`` (rows for which it was the first
    reason), ``matched`` (rows it applies to at all, overlapping other rules) and
    ``removed_share`` (of all rows). A final ``kept`` row counts the survivors.
    """
    total = curated.height
    removed = (
        curated.filter(pl.col("exclusion_reason").is_not_null())
        .group_by(rule=_rule_of(pl.col("exclusion_reason")))
        .agg(removed=pl.len().cast(pl.Int64))
    )
    matched = (
        # rows with a reason only (a few percent; all of them at ten million rows cost GBs)
        curated.select("all_reasons")
        .filter(pl.col("all_reasons").list.len() > 0)
        .select(pl.col("all_reasons").list.eval(_rule_of(pl.element())).list.unique())
        .explode("all_reasons")
        .drop_nulls("all_reasons")
        .group_by(rule="all_reasons")
        .agg(matched=pl.len().cast(pl.Int64))
    )
    table = matched.join(removed, on="rule", how="full", coalesce=True).with_columns(
        pl.col("removed", "matched").fill_null(0)
    )
    precedence = (
        pl.col("rule")
        .str.extract(r"^([a-z_]+)")
        .replace_strict(
            {name: i for i, name in enumerate(RULES)}, default=len(RULES), return_dtype=pl.Int32
        )
    )
    table = table.sort(precedence, "rule").select("rule", "removed", "matched")
    kept = pl.DataFrame(
        {"rule": ["kept"], "removed": [0], "matched": [int(curated["kept"].sum())]},
        schema=table.schema,
    )
    return pl.concat([table, kept]).with_columns(
        removed_share=(pl.col("removed") / total if total else pl.lit(0.0)).cast(pl.Float64)
    )
