"""Leakage-free, reproducible train/eval splits.

Why: an eval set is only worth something if none of its examples (nor a near-copy, nor the
same prompt with another answer) was trained on, and if re-running the pipeline - on another
machine, with rows in another order - gives the same split. So:

* The unit of assignment is a **group**: a connected component of rows linked by a shared
  ``dup_cluster_id`` or a shared ``prompt_key``. A whole duplicate cluster and every row
  sharing a prompt land in one split, transitively.
* Groups are ranked by ``md5(seed + "\\x1f" + group_key)`` (computed in DuckDB over the
  distinct group keys; identical to ``hashlib.md5`` on the UTF-8 bytes), where ``group_key``
  is the smallest cluster key of the group. Nothing depends on row order, process, hash seeds
  or machine.
* Stratified by complexity tier (and by source, for sources with enough rows), so eval has
  the same tier mix as train and every tier present is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from instruct_assets.lib.complexity import TIERS
from instruct_assets.lib.graph import connected_components

SPLITS: tuple[str, ...] = ("train", "eval")

#: Stratum label for sources too small to be stratified on their own.
POOLED_SOURCE = "__pooled__"

REQUIRED_COLUMNS: tuple[str, ...] = (
    "source",
    "example_id",
    "complexity_tier",
    "dup_cluster_id",
    "prompt_key",
    "origin",
)

_ROLE = pl.element().struct.field("role")
_CONTENT = pl.element().struct.field("content")


@dataclass(frozen=True)
class SplitConfig:
    """How much goes to eval, and how it is stratified."""

    #: Target share of rows in eval, per stratum (0.1: a common size that still leaves 90%
    #: to train; the realised share differs slightly because whole groups move together).
    eval_fraction: float = 0.1
    #: Part of the hashed text: changing it draws a different (equally valid) split.
    seed: str = "instruct-assets-split-v1"
    #: A source with at least this many rows is stratified on its own (source x tier);
    #: smaller sources are pooled per tier, so a 20-row source does not get its own
    #: 1-row eval slice per tier.
    min_source_rows: int = 500
    #: Allowed absolute gap between a tier's share in eval and in train
    #: (checked by :func:`check_split_integrity`).
    tier_tolerance: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError("eval_fraction must be in (0, 1)")
        if self.min_source_rows < 1:
            raise ValueError("min_source_rows must be >= 1")


def prompt_key_expr(messages: str = "messages") -> pl.Expr:
    """The first user turn, lowercased, whitespace collapsed and trimmed (``prompt_key``).

    Why: the same question asked with different spacing or casing is the same prompt for
    leakage purposes.
    """
    first_user = pl.col(messages).list.eval(_CONTENT.filter(_ROLE == "user")).list.first()
    return (
        first_user.str.to_lowercase()
        # a run of 2+ whitespace chars, or one that is not a plain space (cheaper than \s+,
        # which would rewrite every single space)
        .str.replace_all(r"\s{2,}|[^\S ]", " ")
        .str.strip_chars()
        .alias("prompt_key")
    )


def _component_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """Per row: ``_label`` (component id, only meaningful within this call) and ``_ck``.

    Nodes are cluster keys and prompt keys; each row is an edge between its two nodes. A null
    ``dup_cluster_id`` or empty ``prompt_key`` is replaced by the row's own key (no link).
    Dense node ids come from ``np.unique`` over polars string hashes: the ids are internal
    only (rows are grouped by them; the public group key is the smallest cluster key string),
    so a hash collision could only merge two groups, which never leaks.
    """
    row_key = pl.format("\x00row\x1f{}\x1f{}", pl.col("source"), pl.col("example_id"))
    keys = frame.select(
        _ck=pl.coalesce(pl.col("dup_cluster_id"), row_key),
        _pk=pl.coalesce(
            pl.when(pl.col("prompt_key").str.len_bytes() > 0).then(pl.col("prompt_key")),
            row_key,
        ),
    )
    _, u = np.unique(keys["_ck"].hash(seed=0).to_numpy(), return_inverse=True)
    _, v = np.unique(keys["_pk"].hash(seed=0).to_numpy(), return_inverse=True)
    n_clusters = int(u.max()) + 1
    roots = connected_components(n_clusters + int(v.max()) + 1, u, v + n_clusters)
    return keys.select("_ck").with_columns(_label=pl.Series(roots[u], dtype=pl.Int64))


def _group_hashes(groups: pl.DataFrame, seed: str) -> pl.DataFrame:
    """Adds ``_hash``: the first 64 bits of md5(seed + "\x1f" + split_group) as UInt64.

    Equal to ``int(hashlib.md5((seed + "\x1f" + key).encode()).hexdigest()[:16], 16)``.
    """
    con = duckdb.connect()
    try:
        con.register("groups", groups)
        return con.sql(
            "select *, ('0x' || substr(md5($seed || chr(31) || split_group), 1, 16))::UBIGINT"
            " as _hash from groups",
            params={"seed": seed},
        ).pl()
    finally:
        con.close()


def assign_splits(frame: pl.DataFrame, cfg: SplitConfig | None = None) -> pl.DataFrame:
    """Add ``split_group`` and ``split`` ("train"/"eval") to the kept rows in ``frame``.

    Input columns: ``source``, ``example_id``, ``complexity_tier``, ``dup_cluster_id``
    (null = not a duplicate), ``prompt_key`` (see :func:`prompt_key_expr`), ``origin``;
    others are carried through, rows keep their order. ``split`` depends on content only.

    Per stratum (tier x source, small sources pooled) groups are taken in hash order until
    the eval rows reach ``round(eval_fraction * stratum_rows)`` (half up). Groups larger than
    that target are skipped (one big cluster must not swallow a stratum's eval). A stratum
    with >= 2 groups that got none takes its smallest group (ties by hash); then so does a
    tier with >= 2 groups and none in eval (its rows may sit in one-group strata of several
    sources). So every tier with two groups or more is evaluated, and train keeps at least
    one group of it. A group whose rows span strata belongs to the stratum holding most of
    its rows (ties: lower tier, then the pooled stratum, then sources by name).
    """
    cfg = cfg or SplitConfig()
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"assign_splits needs columns {missing}")
    if frame.height == 0:
        return frame.with_columns(
            split_group=pl.lit(None, pl.String), split=pl.lit(None, pl.String)
        )

    # stratum = tier x source (small sources pooled), as one int ordered by (tier, source)
    per_source = frame.group_by("source").agg(_n=pl.len())
    own = sorted(per_source.filter(pl.col("_n") >= cfg.min_source_rows)["source"].to_list())
    source_rank = {src: i + 1 for i, src in enumerate(own)}  # 0 = pooled
    tier_rank = {t: i for i, t in enumerate(TIERS)}
    strata = frame.select(
        _stratum=pl.col("complexity_tier")
        .cast(pl.String)
        .replace_strict(tier_rank, default=len(TIERS), return_dtype=pl.Int64)
        .fill_null(len(TIERS) + 1)
        * (len(own) + 1)
        + pl.col("source").replace_strict(source_rank, default=0, return_dtype=pl.Int64)
    )
    rows = pl.concat([_component_labels(frame), strata], how="horizontal")

    # one stratum per group: the one holding most of its rows (ties: lower stratum id)
    group_stratum = (
        rows.group_by("_label", "_stratum")
        .agg(_n=pl.len())
        .sort(["_label", "_n", "_stratum"], descending=[False, True, False])
        .unique(subset="_label", keep="first", maintain_order=True)
        .select("_label", "_stratum")
    )
    groups = rows.group_by("_label").agg(split_group=pl.col("_ck").min(), _size=pl.len())
    groups = groups.join(group_stratum, on="_label")
    groups = _group_hashes(groups, cfg.seed).sort("_stratum", "_hash", "split_group")

    stratum = "_stratum"
    stratum_rows = pl.col("_size").sum().over(stratum)
    groups = groups.with_columns(
        _target=(stratum_rows * cfg.eval_fraction + 0.5).floor().cast(pl.Int64),
        _n_groups=pl.len().over(stratum),
    ).with_columns(_fit_size=pl.when(pl.col("_size") <= pl.col("_target")).then("_size"))
    # greedy in hash order over the groups that fit (window functions keep frame order)
    taken_before = pl.col("_fit_size").fill_null(0).cum_sum().over(stratum) - pl.col("_fit_size")
    groups = groups.with_columns(_eval=(taken_before < pl.col("_target")).fill_null(False))
    # fallback: a stratum with >= 2 groups and no eval group takes its smallest group
    groups = groups.sort(stratum, "_size", "_hash", "split_group").with_columns(
        _eval=pl.col("_eval")
        | (
            (pl.col("_n_groups") >= 2)
            & ~pl.col("_eval").any().over(stratum)
            & (pl.int_range(pl.len()).over(stratum) == 0)
        )
    )
    # same at tier level: a tier spread over strata of one group each still gets evaluated
    tier = pl.col("_stratum") // (len(own) + 1)
    groups = groups.sort(tier, "_size", "_hash", "split_group").with_columns(
        _eval=pl.col("_eval")
        | (
            (pl.len().over(tier) >= 2)
            & ~pl.col("_eval").any().over(tier)
            & (pl.int_range(pl.len()).over(tier) == 0)
        )
    )

    out = (
        rows.select("_label")
        .join(
            groups.select("_label", "split_group", "_eval"),
            on="_label",
            how="left",
            maintain_order="left",
        )
        .with_columns(
            split=pl.when(pl.col("_eval")).then(pl.lit("eval")).otherwise(pl.lit("train"))
        )
    )
    return pl.concat([frame, out.select("split_group", "split")], how="horizontal")


def split_report(splits: pl.DataFrame) -> pl.DataFrame:
    """Rows per split x tier x source x origin, sorted."""
    return (
        splits.group_by("split", "complexity_tier", "source", "origin")
        .agg(rows=pl.len())
        .sort("split", "complexity_tier", "source", "origin")
    )


def _dup_across(splits: pl.DataFrame, key: list[str]) -> int:
    valid = splits.drop_nulls(key)
    if "prompt_key" in key:
        valid = valid.filter(pl.col("prompt_key").str.len_bytes() > 0)
    return valid.group_by(key).agg(pl.col("split").n_unique()).filter(pl.col("split") > 1).height


def check_split_integrity(splits: pl.DataFrame, cfg: SplitConfig | None = None) -> dict:
    """Leakage and balance checks for an assigned split (used by asset checks).

    Returns counts that must be zero (``examples_in_both``, ``clusters_across_splits``,
    ``prompts_across_splits``), tier shares per split with their largest gap, tiers missing
    from eval, the synthetic share per split, and ``ok`` when all checks pass.
    """
    cfg = cfg or SplitConfig()
    total = splits.height
    n_split = {s: splits.filter(pl.col("split") == s).height for s in SPLITS}
    tier_share: dict[str, dict[str, float]] = {}
    for s in SPLITS:
        part = splits.filter(pl.col("split") == s)
        counts = (
            part.group_by(pl.col("complexity_tier").cast(pl.String)).len().sort("complexity_tier")
        )
        tier_share[s] = {
            t: (n / part.height if part.height else 0.0) for t, n in counts.iter_rows()
        }
    tiers = sorted(set(tier_share["train"]) | set(tier_share["eval"]))
    gaps = [abs(tier_share["train"].get(t, 0.0) - tier_share["eval"].get(t, 0.0)) for t in tiers]
    max_gap = max(gaps) if gaps else 0.0
    missing_in_eval = [t for t in tiers if t not in tier_share["eval"]]
    synthetic = {
        s: (
            splits.filter(pl.col("split") == s)["origin"].eq("synthetic").mean() or 0.0
            if n_split[s]
            else 0.0
        )
        for s in SPLITS
    }
    result = {
        "rows": total,
        "train_rows": n_split["train"],
        "eval_rows": n_split["eval"],
        "eval_share": n_split["eval"] / total if total else 0.0,
        "examples_in_both": _dup_across(splits, ["source", "example_id"]),
        "clusters_across_splits": _dup_across(splits, ["dup_cluster_id"]),
        "prompts_across_splits": _dup_across(splits, ["prompt_key"]),
        "tier_share": tier_share,
        "max_tier_share_gap": max_gap,
        "tiers_within_tolerance": max_gap <= cfg.tier_tolerance,
        "tiers_missing_in_eval": missing_in_eval,
        "synthetic_share": synthetic,
    }
    result["ok"] = (
        result["examples_in_both"] == 0
        and result["clusters_across_splits"] == 0
        and result["prompts_across_splits"] == 0
        and result["tiers_within_tolerance"]
        and not missing_in_eval
    )
    return result
