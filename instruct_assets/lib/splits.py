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

from collections.abc import Callable
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


def _row_key() -> pl.Expr:
    """A row's own graph node (no link): ``"\\x00row\\x1f<source>\\x1f<example_id>"``."""
    return pl.format("\x00row\x1f{}\x1f{}", pl.col("source"), pl.col("example_id"))


def prompt_hashes(frame: pl.DataFrame) -> pl.Series:
    """``prompt_hash``: per row, the 64-bit hash of its prompt node, its ``prompt_key`` (an
    empty or null key is replaced by the row's own key: no link; those strings are only
    built when such rows exist). Needs ``source``, ``example_id`` and ``prompt_key``.

    Why: rows are grouped by this hash (see :func:`_component_labels`), so a caller that
    computes it chunk by chunk can drop the prompt text (about 100 bytes a row) and pass
    ``prompt_hash`` to :func:`assign_splits` instead of ``prompt_key``: the same groups.
    """
    prompt = pl.when(pl.col("prompt_key").str.len_bytes() > 0).then(pl.col("prompt_key"))
    pk = frame.select(prompt).to_series()
    if pk.null_count():
        pk = frame.select(pl.coalesce(prompt, _row_key())).to_series()
    return pk.hash(seed=0).rename("prompt_hash")


def _cluster_keys(frame: pl.DataFrame) -> pl.Series:
    """Per row: its cluster key as a graph node name (a null ``dup_cluster_id`` is replaced
    by the row's own key: no link; those strings are only built when such rows exist)."""
    cluster = pl.col("dup_cluster_id").cast(pl.String)
    ck = frame.select(cluster).to_series()
    if ck.null_count():
        ck = frame.select(pl.coalesce(cluster, _row_key())).to_series()
    return ck.rename("_ck")


def _prompt_hashes(frame: pl.DataFrame) -> np.ndarray:
    """Per row: its prompt node's hash (``prompt_hash`` as given, else from ``prompt_key``)."""
    if "prompt_hash" in frame.columns:
        return frame["prompt_hash"].to_numpy()
    return prompt_hashes(frame).to_numpy()


def _component_labels(ck: pl.Series, pk_hash: np.ndarray) -> np.ndarray:
    """Per row: a dense id (0 .. groups - 1) of its connected component (its group).

    Nodes are cluster keys and prompt keys; each row is an edge between its two nodes. Dense
    node ids are the dense ranks of polars string hashes (:func:`prompt_hashes` for the
    prompts; 32-bit, as ``np.unique``'s inverse but in half the memory): the ids are
    internal only (rows are grouped by them; the public group key is the smallest cluster
    key string), so a hash collision could only merge two groups, which never leaks.
    """
    u = (ck.hash(seed=0).rank("dense") - 1).to_numpy()
    v = (pl.Series(pk_hash).rank("dense") - 1).to_numpy()
    n_clusters = int(u.max()) + 1
    n_nodes = n_clusters + int(v.max()) + 1
    roots = connected_components(n_nodes, u, v + n_clusters)[u]
    del u, v
    is_root = np.zeros(n_nodes, dtype=bool)
    is_root[roots] = True
    return (np.cumsum(is_root) - 1)[roots]


def _md5_prefix(keys: pl.Series, seed: str) -> np.ndarray:
    """The first 64 bits of md5(seed + "\\x1f" + key) of each key, as uint64 (in DuckDB).

    Equal to ``int(hashlib.md5((seed + "\\x1f" + key).encode()).hexdigest()[:16], 16)``.
    """
    con = duckdb.connect()
    try:
        con.register("groups", pl.DataFrame(
            {"i": np.arange(keys.len(), dtype=np.int64), "k": keys}))
        got = con.sql(
            "select i, ('0x' || substr(md5($seed || chr(31) || k), 1, 16))::UBIGINT as h"
            " from groups",
            params={"seed": seed},
        ).pl()
    finally:
        con.close()
    out = np.empty(keys.len(), dtype=np.uint64)
    out[got["i"].to_numpy()] = got["h"].to_numpy()
    return out


def _order(keys: list[np.ndarray], split_group: pl.Series) -> np.ndarray:
    """Group order by ``keys`` (first = primary, the last is the md5 prefix), ties broken by
    ``split_group``.

    Sorted key by key from the last, stably (small non-negative ints take numpy's radix
    sort). A tie on every key needs two groups with the same 64-bit hash prefix: practically
    never, and then the string decides, as a full sort would.
    """
    order = np.argsort(keys[-1])  # equal hashes are settled below
    for k in keys[-2::-1]:
        kk = k[order]
        if kk.size and kk.min() >= 0 and kk.max() < 1 << 15:
            kk = kk.astype(np.int16)
        order = order[np.argsort(kk, kind="stable")]
    tie = np.ones(max(order.size - 1, 0), dtype=bool)
    for k in keys:
        ks = k[order]
        tie &= ks[1:] == ks[:-1]
    if tie.any():
        frame = pl.DataFrame({f"k{i}": k for i, k in enumerate(keys)}).with_columns(
            split_group.alias("_sg"))
        order = frame.with_row_index("_i").sort(frame.columns)["_i"].to_numpy()
    return order


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Mask of the first element of each run of equal values."""
    first = np.ones(sorted_keys.size, dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return first


def _take_fallback(eval_g: np.ndarray, unit: np.ndarray, size: np.ndarray,
                   g_hash: np.ndarray, split_group: pl.Series) -> None:
    """In place: each unit (stratum or tier) with >= 2 groups and none in eval takes its
    first group by (size, hash, split_group). Only the groups of such units are ordered."""
    n_groups = np.bincount(unit)
    has_eval = np.bincount(unit, weights=eval_g, minlength=n_groups.size) > 0
    cand = np.flatnonzero(((n_groups >= 2) & ~has_eval)[unit])
    if not cand.size:
        return
    order = cand[_order([unit[cand], size[cand], g_hash[cand]], split_group.gather(cand))]
    eval_g[order[_run_starts(unit[order])]] = True


def assign_splits(frame: pl.DataFrame, cfg: SplitConfig | None = None) -> pl.DataFrame:
    """Add ``split_group`` and ``split`` ("train"/"eval") to the kept rows in ``frame``.

    Input columns: ``source``, ``example_id``, ``complexity_tier``, ``dup_cluster_id``
    (null = not a duplicate), ``prompt_key`` (see :func:`prompt_key_expr`; or instead
    ``prompt_hash``, see :func:`prompt_hashes`: the same split without the texts),
    ``origin``; others are carried through, rows keep their order. ``split`` depends on
    content only.

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
    have = {*frame.columns, *(["prompt_key"] if "prompt_hash" in frame.columns else [])}
    missing = [c for c in REQUIRED_COLUMNS if c not in have]
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
    stratum = frame.select(
        pl.col("complexity_tier")
        .cast(pl.String)
        .replace_strict(tier_rank, default=len(TIERS), return_dtype=pl.Int64)
        .fill_null(len(TIERS) + 1)
        * (len(own) + 1)
        + pl.col("source").replace_strict(source_rank, default=0, return_dtype=pl.Int64)
    ).to_series().to_numpy()
    ck = _cluster_keys(frame)
    gid = _component_labels(ck, _prompt_hashes(frame))  # group of each row
    n_groups = int(gid.max()) + 1
    size = np.bincount(gid, minlength=n_groups)

    # one stratum per group: the one holding most of its rows (ties: lower stratum id), and
    # the group key: its smallest cluster key, taken as the row holding it (gathered once, so
    # the keys stay views of ``ck``: no string is copied). A one-row group takes its row's;
    # only the rows of larger groups are counted and compared.
    n_strata = int(stratum.max()) + 1
    key_row = np.empty(n_groups, dtype=np.int64)
    key_row[gid] = np.arange(gid.size)
    g_stratum = stratum[key_row]
    multi = np.flatnonzero(size[gid] > 1)
    if multi.size:
        pairs, counts = np.unique(gid[multi] * n_strata + stratum[multi], return_counts=True)
        pair_group, pair_stratum = pairs // n_strata, pairs % n_strata
        best = np.lexsort((pair_stratum, -counts, pair_group))
        best = best[_run_starts(pair_group[best])]
        g_stratum[pair_group[best]] = pair_stratum[best]
        del pairs, counts, pair_group, pair_stratum, best
        mins = (
            pl.DataFrame({"g": gid[multi], "r": multi, "ck": ck.gather(multi)})
            .group_by("g")
            .agg(pl.col("r").get(pl.col("ck").arg_min()))
        )
        key_row[mins["g"].to_numpy()] = mins["r"].to_numpy()
        del mins
    del stratum, multi
    split_group = ck.gather(key_row).rename("split_group")
    del key_row
    g_hash = _md5_prefix(split_group, cfg.seed)

    # per stratum, greedy in hash order over the groups that fit the stratum's eval target
    order = _order([g_stratum, g_hash], split_group)
    st, sz = g_stratum[order], size[order]
    stratum_rows = np.bincount(g_stratum, weights=size, minlength=n_strata)
    target = np.floor(stratum_rows * cfg.eval_fraction + 0.5).astype(np.int64)[st]
    fits = sz <= target
    fit_size = np.where(fits, sz, 0)
    taken = np.cumsum(fit_size)  # inclusive, over all strata
    starts = np.flatnonzero(_run_starts(st))
    before_stratum = np.repeat(taken[starts] - fit_size[starts],
                               np.diff(np.append(starts, st.size)))
    eval_g = np.zeros(n_groups, dtype=bool)
    eval_g[order] = fits & (taken - fit_size - before_stratum < target)
    # fallback: a stratum with >= 2 groups and no eval group takes its smallest group
    _take_fallback(eval_g, g_stratum, size, g_hash, split_group)
    # same at tier level: a tier spread over strata of one group each still gets evaluated
    g_tier = g_stratum // (len(own) + 1)
    _take_fallback(eval_g, g_tier, size, g_hash, split_group)

    split = pl.Series("split", ["train", "eval"], dtype=pl.String).gather(
        eval_g[gid].astype(np.uint32))
    return pl.concat([frame, pl.DataFrame([split_group.gather(gid), split])], how="horizontal")


def split_report(splits: pl.DataFrame) -> pl.DataFrame:
    """Rows per split x tier x source x origin, sorted."""
    return (
        splits.group_by("split", "complexity_tier", "source", "origin")
        .agg(rows=pl.len())
        .sort("split", "complexity_tier", "source", "origin")
    )


def _mixed(h: np.ndarray, sh: np.ndarray) -> np.ndarray:
    """Mask of the rows whose hash ``h`` is shared by rows of two splits (split hash ``sh``)."""
    order = np.argsort(h)
    hs, ss = h[order], sh[order]
    starts = np.flatnonzero(np.concatenate([[True], hs[1:] != hs[:-1]]))
    mixed = np.minimum.reduceat(ss, starts) != np.maximum.reduceat(ss, starts)
    if not mixed.any():
        return np.zeros(h.size, dtype=bool)
    return np.isin(h, hs[starts[mixed]])


def _dup_across(splits: pl.DataFrame, key: list[str]) -> int:
    """Keys (non-null, non-empty prompt) whose rows lie in more than one split.

    Rows are first grouped by a 64-bit hash of the key: only hash groups holding two splits
    can hold a straddling key (a collision can only add candidates), and those few rows
    are then counted exactly on the key strings.
    """
    valid = splits.select(*key, "split")
    if any(valid[k].null_count() for k in key):
        valid = valid.drop_nulls(key)
    if "prompt_key" in key:
        valid = valid.filter(pl.col("prompt_key").str.len_bytes() > 0)
    if valid.height < 2:
        return 0
    hashed = valid.select(_h=pl.struct(key).hash(seed=0), _s=pl.col("split").hash(seed=0))
    mixed = _mixed(hashed["_h"].to_numpy(), hashed["_s"].to_numpy())
    if not mixed.any():
        return 0
    valid = valid.filter(pl.Series(mixed))
    return valid.group_by(key).agg(pl.col("split").n_unique()).filter(pl.col("split") > 1).height


def _prompts_across(splits: pl.DataFrame,
                    prompt_keys: Callable[[pl.DataFrame], pl.Series] | None) -> int:
    """:func:`_dup_across` on ``prompt_key``, or, without that column, on ``prompt_hash``
    (:func:`prompt_hashes`): only rows whose hash lies in two splits can hold a straddling
    prompt, and ``prompt_keys(rows)`` gives those few rows' keys to count them exactly."""
    if "prompt_key" in splits.columns:
        return _dup_across(splits, ["prompt_key"])
    if splits.height < 2:
        return 0
    mixed = _mixed(splits["prompt_hash"].to_numpy(),
                   splits.select(pl.col("split").hash(seed=0)).to_series().to_numpy())
    if not mixed.any():
        return 0
    if prompt_keys is None:
        raise ValueError("prompt_keys is needed to check prompts given as prompt_hash")
    rows = splits.filter(pl.Series(mixed))
    return _dup_across(rows.with_columns(prompt_keys(rows).alias("prompt_key")), ["prompt_key"])


def check_split_integrity(splits: pl.DataFrame, cfg: SplitConfig | None = None, *,
                          prompt_keys: Callable[[pl.DataFrame], pl.Series] | None = None
                          ) -> dict:
    """Leakage and balance checks for an assigned split (used by asset checks).

    Returns counts that must be zero (``examples_in_both``, ``clusters_across_splits``,
    ``prompts_across_splits``), tier shares per split with their largest gap, tiers missing
    from eval, the synthetic share per split, and ``ok`` when all checks pass.
    ``splits`` may carry ``prompt_hash`` instead of ``prompt_key`` (a stage that does not
    hold the prompt texts); then ``prompt_keys(rows)`` must give the ``prompt_key`` of some
    of its rows (see :func:`_prompts_across`). Only the needed columns are filtered, so
    the check copies little of a large frame.
    """
    cfg = cfg or SplitConfig()
    total = splits.height
    full, splits = splits, splits.select("split", "complexity_tier", "origin")
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
        "examples_in_both": _dup_across(full, ["source", "example_id"]),
        "clusters_across_splits": _dup_across(full, ["dup_cluster_id"]),
        "prompts_across_splits": _prompts_across(full, prompt_keys),
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
