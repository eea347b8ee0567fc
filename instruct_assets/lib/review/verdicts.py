"""Human verdicts applied to curation: reject, edit, or accept over an automatic flag.

One verdict per example (:func:`resolve_verdicts`), by this rule: **the latest
``annotated_at`` wins; a null time is older than any known time; verdicts tied at the
latest time resolve to the most conservative one, ``reject`` > ``edit`` > ``accept``**
(two tied edits: the greatest annotator, then text, then reason, tool and annotation
reference, so the choice never depends on row order).
Every example whose annotations disagree (more than one distinct verdict or edited text)
is listed by :func:`verdict_conflicts`, with how it was resolved.

:func:`apply_verdicts` then, on the curated table:

* ``reject``: excluded with ``exclusion_reason = "human_rejected"`` (first in
  ``all_reasons``), whatever the automatic rules said.
* ``accept``: the automatic *quality* judgments (``flag:*``, ``below_quality_threshold``)
  no longer exclude it; contamination and duplicate exclusions still do (a reviewer sees
  one conversation, not the benchmarks or its copies). ``human_override`` marks rows kept
  only because of the human.
* ``edit``: the last assistant turn is replaced by the edited text; the row takes the id
  of the edited conversation (same hash as ingestion, ``normalize.assign_ids``) and keeps
  the old one in ``original_example_id``. If the edited conversation already exists in the
  source, the row is excluded as ``duplicate_of:<that id>`` under the id
  ``<hash>-edit-<original id>``. The edited conversations come back as canonical rows
  (:attr:`VerdictOutcome.edited_examples`) for the stages that read content.
  **The edited text is re-scored** (``quality.signals.score_examples`` on the edited rows
  only; the original's duplicate flags carried over) and its quality columns replace the
  original's, so curation judges the text that will be trained on: ``all_reasons`` are
  recomputed (the original's ``contaminated:*`` and ``duplicate*`` reasons, then
  ``flag:<f>`` for each ``exclude_flags`` flag the edited text raises and
  ``below_quality_threshold`` for its score). The human vouches, as with accept, only for
  what they saw: a quality reason **the edit introduced** excludes the row - an excluding
  flag the original did not raise (an edit that empties the response or leaks a template
  token), or a score below the threshold *and* below the original's. A quality reason the
  original had too is overridden (``human_override``); an edit that fixes a flagged
  response clears the flag and is kept on its own merits (no override).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import polars as pl

from instruct_assets.lib.curation import CurationConfig
from instruct_assets.lib.keys import KEY
from instruct_assets.lib.normalize import CONTENT_KEY_SQL
from instruct_assets.lib.quality.config import DUPLICATE_FLAGS, QualityThresholds
from instruct_assets.lib.quality.signals import score_examples
from instruct_assets.lib.schema import NORMALIZED_SCHEMA

#: Verdict severity for ties (higher wins).
SEVERITY: dict[str, int] = {"accept": 0, "edit": 1, "reject": 2}

#: Curation rules a human accept overrides (prefixes of ``exclusion_reason``).
OVERRIDABLE_RULES: tuple[str, ...] = ("flag", "below_quality_threshold")

HUMAN_REJECTED = "human_rejected"

EDITED_SCHEMA = pl.Schema({**NORMALIZED_SCHEMA, "original_example_id": pl.String})


@dataclass(frozen=True)
class VerdictOutcome:
    """Curated rows after the verdicts, the edited conversations, and what happened."""

    curated: pl.DataFrame
    edited_examples: pl.DataFrame
    conflicts: pl.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def _ordered(annotations: pl.DataFrame) -> pl.DataFrame:
    return annotations.with_columns(
        _sev=pl.col("verdict").replace_strict(SEVERITY, default=-1, return_dtype=pl.Int32),
    ).sort([*KEY, "annotated_at", "_sev", "annotator", "edited_content", "reason", "tool",
            "annotation_ref"], nulls_last=False)


def resolve_verdicts(annotations: pl.DataFrame) -> pl.DataFrame:
    """One row per (source, example_id): the winning ``verdict``, its ``edited_content``,
    ``reason``, ``annotator`` and ``annotated_at``, plus ``n_annotations``."""
    ordered = _ordered(annotations)
    winner = ordered.group_by(KEY, maintain_order=True).agg(
        pl.col("verdict", "edited_content", "reason", "annotator", "annotated_at", "tool")
        .last(),
        n_annotations=pl.len().cast(pl.Int64),
    )
    return winner.sort(KEY)


def verdict_conflicts(annotations: pl.DataFrame) -> pl.DataFrame:
    """Examples whose annotations disagree: their verdicts, annotators, the resolved
    verdict and ``resolution`` (``latest`` when one annotation is the latest,
    ``tie_most_conservative`` when several share the latest time)."""
    ordered = _ordered(annotations)
    opinion = pl.struct("verdict", "edited_content")
    latest = pl.col("annotated_at").max()
    grouped = ordered.group_by(KEY, maintain_order=True).agg(
        n_annotations=pl.len().cast(pl.Int64),
        n_opinions=opinion.n_unique(),
        verdicts=pl.col("verdict").unique().sort(),
        annotators=pl.col("annotator").drop_nulls().unique().sort(),
        resolved_verdict=pl.col("verdict").last(),
        tied=(pl.col("annotated_at") == latest).sum(),
        null_times=pl.col("annotated_at").is_null().sum(),
        latest=latest,
    )
    tied_at_top = pl.when(pl.col("latest").is_null()).then(pl.col("null_times")) \
        .otherwise(pl.col("tied"))
    return (grouped.filter(pl.col("n_opinions") > 1)
            .with_columns(resolution=pl.when(tied_at_top > 1)
                          .then(pl.lit("tie_most_conservative")).otherwise(pl.lit("latest")))
            .select(*KEY, "n_annotations", "verdicts", "annotators", "resolved_verdict",
                    "resolution")
            .sort(KEY))


def _override_pattern(rules: tuple[str, ...]) -> str:
    return "^(?:" + "|".join(rules) + ")(?::|$)"


def edited_conversations(edits: pl.DataFrame, examples: pl.DataFrame) -> pl.DataFrame:
    """Canonical rows for ``edits`` (``source``, ``example_id``, ``edited_content``): the
    example with its last turn's content replaced and ``new_id`` = the hash ingestion
    would give it (``original_example_id`` keeps the old id)."""
    rows = examples.join(edits.select(*KEY, "edited_content"), on=KEY, how="inner")
    n = pl.col("messages").list.len()
    last_role = pl.col("messages").list.last().struct.field("role")
    rows = rows.with_columns(
        messages=pl.concat_list(
            pl.col("messages").list.slice(0, n - 1),
            pl.struct(last_role.alias("role"), pl.col("edited_content").alias("content")),
        ),
        original_example_id=pl.col("example_id"),
    )
    keyed = rows.select("messages", "tools")  # noqa: F841 - read by DuckDB by name
    con = duckdb.connect()
    try:
        digests = con.sql(f"SELECT substr(md5({CONTENT_KEY_SQL}), 1, 16) AS h FROM keyed").pl()
    finally:
        con.close()
    return rows.with_columns(new_id=digests["h"])


def rescore_edits(conv: pl.DataFrame, curated: pl.DataFrame,
                  quality_cfg: QualityThresholds | None = None) -> pl.DataFrame:
    """Quality signals of the edited conversations (``edited_conversations`` rows, keyed by
    the *original* ``example_id``): ``signals.score_examples`` on them alone, plus the
    duplicate flags (``exact_duplicate``/``near_duplicate``) the original carried in
    ``curated`` and their penalty, as ``signals.apply_duplicate_penalty`` scored them.

    Group-level signals (``shape_outlier`` compares a response with its template group)
    are computed among the edited rows only, so an edit does not raise them.
    """
    quality_cfg = quality_cfg or QualityThresholds()
    scores = score_examples(conv.select(NORMALIZED_SCHEMA.names()), quality_cfg)
    dup_flags = curated.join(conv.select(KEY), on=KEY, how="semi").select(
        *KEY, _dup=pl.col("quality_flags").list.eval(
            pl.element().filter(pl.element().is_in(list(DUPLICATE_FLAGS)))))
    scores = scores.join(dup_flags, on=KEY, how="left", maintain_order="left")
    dup = pl.col("_dup").fill_null(pl.lit([], dtype=pl.List(pl.String)))
    penalty = pl.sum_horizontal([dup.list.contains(f).cast(pl.Float64) * quality_cfg.weight(f)
                                 for f in DUPLICATE_FLAGS])
    return scores.with_columns(
        quality_flags=pl.concat_list("quality_flags", dup),
        quality_score=(pl.col("quality_score") - penalty).clip(0.0, 1.0),
    ).drop("_dup")


def apply_verdicts(
    curated: pl.DataFrame,
    annotations: pl.DataFrame,
    examples: pl.DataFrame,
    overridable: tuple[str, ...] = OVERRIDABLE_RULES,
    *,
    cfg: CurationConfig | None = None,
    quality_cfg: QualityThresholds | None = None,
) -> VerdictOutcome:
    """``curated`` (``curation.curate`` output) with the human verdicts applied: the rules
    of :func:`_apply_verdicts_all`, run only on the rows a verdict can touch.

    A row without a verdict passes through unchanged (no verdict, no override, no original
    id), but the rules evaluate list expressions on every row they get: seconds at a
    million rows for a review of a few hundred. So they run on the rows that have a verdict
    plus the rows an edited conversation could collide with (same source and id as an
    edit's new id); the other rows get the pass-through values. Same rows, same order;
    ``curated`` is not copied when no verdict touches it, and copied once otherwise.
    """
    final = resolve_verdicts(annotations)
    edits = final.filter(pl.col("verdict") == "edit").select(*KEY, "edited_content")
    involved = [final.select(KEY)]
    if edits.height:
        involved.append(edited_conversations(edits, examples).select(
            "source", pl.col("new_id").alias("example_id")))
    involved = pl.concat(involved).unique()
    framed = curated.with_row_index("_pos")
    touched = framed.join(involved, on=KEY, how="semi", maintain_order="left")
    outcome = _apply_verdicts_all(touched, annotations, examples, overridable,
                                  cfg=cfg, quality_cfg=quality_cfg)
    done = outcome.curated
    # every row gets the pass-through values (new columns: the others are not copied),
    # then the touched rows are put back at their positions with one gather (no copy at
    # all when no row is touched: ten million rows hold gigabytes)
    merged = curated.with_columns(
        human_verdict=pl.lit(None, done.schema["human_verdict"]),
        human_override=pl.lit(False, done.schema["human_override"]),
        original_example_id=pl.lit(None, done.schema["original_example_id"]),
    )
    if done.height:
        n = merged.height
        at = np.arange(n, dtype=np.int64)
        at[done["_pos"].to_numpy()] = np.arange(n, n + done.height, dtype=np.int64)
        merged = pl.concat([merged, done.drop("_pos")], how="vertical").select(
            pl.all().gather(pl.Series(at)))
    return VerdictOutcome(merged, outcome.edited_examples, outcome.conflicts, outcome.counts)


def _apply_verdicts_all(
    curated: pl.DataFrame,
    annotations: pl.DataFrame,
    examples: pl.DataFrame,
    overridable: tuple[str, ...] = OVERRIDABLE_RULES,
    *,
    cfg: CurationConfig | None = None,
    quality_cfg: QualityThresholds | None = None,
) -> VerdictOutcome:
    """``curated`` (``curation.curate`` output) with the human verdicts applied, on every row.

    Same rows in the same order, plus ``human_verdict`` (null without one),
    ``human_override`` (kept only because a human accepted or edited it) and
    ``original_example_id`` (set on edited rows, whose ``example_id`` is the edited
    conversation's). ``examples``: published rows holding at least the annotated ones
    (the content of edits); ids already taken are looked up in ``curated`` and ``examples``.

    Edited rows are re-scored (:func:`rescore_edits`, with ``quality_cfg``, the thresholds
    the quality stage used) and re-judged with ``cfg`` (the ``CurationConfig`` that made
    ``curated``): their quality columns present in ``curated`` are the edited text's, and
    the module docstring's edit rule decides.
    """
    cfg = cfg or CurationConfig()
    current = examples.select(
        *KEY, pl.col("messages").list.last().struct.field("content").alias("_current"))
    final = resolve_verdicts(annotations).join(current, on=KEY, how="left").select(
        *KEY,
        # an "edit" that changes nothing is an accept
        pl.when((pl.col("verdict") == "edit") & (pl.col("edited_content") == pl.col("_current")))
        .then(pl.lit("accept")).otherwise(pl.col("verdict")).alias("human_verdict"),
        "edited_content")
    frame = curated.join(final, on=KEY, how="left", maintain_order="left")
    verdict = pl.col("human_verdict")

    # edits: new ids, collisions with existing rows of the source or with each other
    edits = frame.filter(verdict == "edit").select(*KEY, "edited_content")
    conv = edited_conversations(edits, examples)
    taken = pl.concat([curated.select(KEY), examples.select(KEY)]).unique().select(
        "source", pl.col("example_id").alias("new_id"))
    clash_existing = conv.join(taken, on=["source", "new_id"], how="semi")["example_id"]
    conv = conv.sort("source", "original_example_id").with_columns(
        _clash=pl.col("example_id").is_in(clash_existing.implode())
        | (pl.int_range(pl.len()).over("source", "new_id") > 0),
    ).with_columns(
        final_id=pl.when("_clash").then(pl.format("{}-edit-{}", "new_id", "original_example_id"))
        .otherwise(pl.col("new_id")),
    )
    ids = conv.select(*KEY, "final_id", "new_id", "_clash")
    frame = frame.join(ids, on=KEY, how="left", maintain_order="left")

    # the edited text's own quality signals replace the original's (same columns)
    rescored = rescore_edits(conv, curated, quality_cfg)
    replaced = [c for c in rescored.columns if c in curated.columns and c not in KEY]
    frame = frame.join(rescored.select(*KEY, *[pl.col(c).alias(f"_new_{c}") for c in replaced],
                                       _rescored=pl.lit(True)),
                       on=KEY, how="left", maintain_order="left")
    is_edit = pl.col("_rescored").fill_null(False)
    old_flags, old_score = pl.col("quality_flags"), pl.col("quality_score").fill_nan(None)
    new_flags = pl.col("_new_quality_flags")
    new_score = pl.col("_new_quality_score").fill_nan(None).fill_null(float("-inf"))

    def hard(prefix: str) -> pl.Expr:  # the original's reasons the edit cannot change
        return pl.col("all_reasons").list.eval(
            pl.element().filter(pl.element().str.starts_with(prefix)))

    below = new_score < cfg.min_quality_score
    worse = new_score < old_score.fill_null(float("-inf"))

    def edit_reasons(only_new: bool) -> pl.Expr:
        """The edited row's curation reasons in rule order; ``only_new``: those the edit
        brought (flags the original lacked, a score it lowered below the threshold)."""
        flags = [pl.when(new_flags.list.contains(f)
                         & (~old_flags.list.contains(f) if only_new else pl.lit(True)))
                 .then(pl.lit(f"flag:{f}")) for f in cfg.exclude_flags]
        low = below & worse if only_new else below
        return pl.concat_list(
            hard("contaminated:"), *flags,
            pl.when(low).then(pl.lit("below_quality_threshold")),
            hard("duplicate"),
        ).list.drop_nulls()

    hard_reasons = pl.col("all_reasons").list.eval(
        pl.element().filter(~pl.element().str.contains(_override_pattern(overridable))))
    first_hard = hard_reasons.list.first()
    vouched = verdict.is_in(["accept", "edit"])
    clash = pl.col("_clash").fill_null(False)
    dup_reason = pl.format("duplicate_of:{}", "new_id")
    reason = (
        pl.when(verdict == "reject").then(pl.lit(HUMAN_REJECTED))
        .when(is_edit & clash).then(pl.coalesce(pl.col("_edit_blocking").list.first(),
                                                dup_reason))
        .when(is_edit).then(pl.col("_edit_blocking").list.first())
        .when(vouched & clash).then(pl.coalesce(first_hard, dup_reason))
        .when(vouched).then(first_hard)
        .otherwise(pl.col("exclusion_reason"))
    )
    all_reasons = (
        pl.when(verdict == "reject")
        .then(pl.concat_list(pl.lit([HUMAN_REJECTED]), pl.col("all_reasons")))
        .when(is_edit & clash).then(pl.concat_list(pl.col("_edit_all"),
                                                   pl.concat_list(dup_reason)))
        .when(is_edit).then(pl.col("_edit_all"))
        .when(vouched & clash).then(pl.concat_list(pl.col("all_reasons"),
                                                   pl.concat_list(dup_reason)))
        .otherwise(pl.col("all_reasons"))
    )
    out = frame.with_columns(
        _was_kept=pl.col("kept"),
        _edit_all=edit_reasons(only_new=False),
        _edit_blocking=edit_reasons(only_new=True),
    ).with_columns(
        exclusion_reason=reason,
        all_reasons=all_reasons,
        original_example_id=pl.when(pl.col("final_id").is_not_null()).then(pl.col("example_id")),
        example_id=pl.coalesce("final_id", "example_id"),
        # an edit that made a row worse: remembered before the quality columns change
        _edit_worse=is_edit & (pl.col("_edit_blocking").list.len()
                               > (hard("contaminated:").list.len()
                                  + hard("duplicate").list.len())),
        _edit_flagged=is_edit & (pl.col("_edit_all").list.len()
                                 > (hard("contaminated:").list.len()
                                    + hard("duplicate").list.len())),
        _edit_cleared=is_edit & old_flags.list.set_difference(new_flags).list.len().gt(0),
    ).with_columns(
        [pl.when(is_edit).then(pl.col(f"_new_{c}")).otherwise(pl.col(c)).alias(c)
         for c in replaced]
    ).with_columns(kept=pl.col("exclusion_reason").is_null()).with_columns(
        human_override=pl.when(is_edit)
        .then(pl.col("kept") & pl.col("_edit_all").list.len().gt(0))
        .otherwise(vouched.fill_null(False) & pl.col("kept") & ~pl.col("_was_kept")),
    )
    edit_counts = out.select(pl.col("_edit_worse", "_edit_flagged", "_edit_cleared").sum())
    out = out.select(*curated.columns, "human_verdict", "human_override",
                     "original_example_id")

    edited = conv.with_columns(example_id=pl.col("final_id")).select(EDITED_SCHEMA.names())
    conflicts = verdict_conflicts(annotations)
    known = curated.select(KEY)
    counts = {
        "verdicts": final.height,
        "rejected": int(out.select((pl.col("human_verdict") == "reject").sum()).item() or 0),
        "accepted": int(out.select((pl.col("human_verdict") == "accept").sum()).item() or 0),
        "edited": int(out.select((pl.col("human_verdict") == "edit").sum()).item() or 0),
        "overrides": int(out["human_override"].sum() or 0),
        "edit_duplicates": int(conv["_clash"].sum() or 0) if conv.height else 0,
        "edits_rescored": rescored.height,
        "edits_flagged": int(edit_counts["_edit_flagged"].item() or 0),
        "edits_made_worse": int(edit_counts["_edit_worse"].item() or 0),
        "edits_clearing_flags": int(edit_counts["_edit_cleared"].item() or 0),
        "orphan_verdicts": final.join(known, on=KEY, how="anti").height,
        "conflicts": conflicts.height,
    }
    return VerdictOutcome(out, edited.cast(dict(EDITED_SCHEMA)).sort(KEY), conflicts, counts)
