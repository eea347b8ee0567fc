"""Cap the share of synthetic rows in each split (the splits stage's enforceable limit).

Why: guidance on synthetic instruction data warns against training (or evaluating) on
generated rows alone, so a team sets a ceiling on their share, and the pipeline keeps it
instead of only reporting it.

The rule, per split (train and eval alike), with ``c = max_synthetic_share``:

* ``synthetic`` rows are those whose ``origin`` is ``"synthetic"``; every other origin
  (null included) counts as human. Human rows are never dropped.
* The split keeps the **largest** number of synthetic rows ``k`` with
  ``k / (human + k) <= c``, i.e. ``k = floor(c * human / (1 - c))``, computed exactly on
  the decimal the cap is written as (0.3 is 3/10), so the kept share never exceeds ``c``,
  compared as fractions or as floats;
  ``c >= 1`` keeps every row, ``c = 0`` drops every synthetic row, and a split with no
  human row keeps no synthetic row (unless ``c >= 1``). Fewer rows cannot be dropped: each
  dropped synthetic row lowers the share by the least possible amount.
* The ``k`` kept synthetic rows are spread over complexity tiers in proportion to the
  split's synthetic rows per tier (largest remainder: each tier first gets
  ``floor(k * tier_synthetic / synthetic)``, the rows left go to the tiers with the largest
  remainders, ties to the smaller tier name, a null tier last), so every tier loses the
  same share of its synthetic rows and the tier mix of the split barely moves.
* Within a (split, tier), the synthetic rows kept are those with the smallest
  ``md5(seed + "\\x1f" + source + "\\x1f" + example_id)`` (the whole digest): the choice
  depends on the ids and the seed only, never on row order, process or machine.

Dropped rows come back with ``exclusion_reason = "synthetic_cap"``. With ``enforce`` off
(or no cap) nothing is dropped; :func:`synthetic_share_table` still says what the cap
would do, for a report-only (WARN) check.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import duckdb
import polars as pl

SYNTHETIC = "synthetic"
CAP_REASON = "synthetic_cap"
REQUIRED_COLUMNS: tuple[str, ...] = ("source", "example_id", "split", "origin")

_IDX = "__cap_row"
_TIER = "__cap_tier"

SHARE_SCHEMA = pl.Schema({
    "split": pl.String,
    "rows": pl.Int64,
    "synthetic": pl.Int64,
    "human": pl.Int64,
    "synthetic_share": pl.Float64,
    "cap": pl.Float64,
    "allowed_synthetic": pl.Int64,
    "over_cap": pl.Int64,
    "within_cap": pl.Boolean,
})


@dataclass(frozen=True)
class SyntheticCapConfig:
    """The ceiling on synthetic rows per split and whether the splits stage enforces it."""

    #: Largest share of synthetic rows in any split, in [0, 1]; None: no cap at all.
    max_synthetic_share: float | None = 0.5
    #: Drop synthetic rows to meet the cap (True) or only report it (False).
    enforce: bool = False
    #: Part of the hashed text that picks which synthetic rows stay.
    seed: str = "instruct-assets-synthetic-cap-v1"

    def __post_init__(self) -> None:
        c = self.max_synthetic_share
        if c is not None and not 0.0 <= c <= 1.0:
            raise ValueError(f"max_synthetic_share must be in [0, 1] or None, got {c}")


def allowed_synthetic(human: int, cap: float | None, synthetic: int) -> int:
    """Most synthetic rows a split with ``human`` human rows may keep (at most
    ``synthetic``, the number it has)."""
    if cap is None or cap >= 1.0:
        return synthetic
    # the decimal as written (0.3 -> 3/10): a share <= it rounds to a float <= cap too
    c = Fraction(repr(float(cap)))
    return min(synthetic, int(c * human / (1 - c)))


def _is_synthetic() -> pl.Expr:
    return (pl.col("origin") == SYNTHETIC).fill_null(False)


def _check_columns(frame: pl.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the synthetic cap needs columns {missing}")


def synthetic_share_table(assignments: pl.DataFrame,
                          cfg: SyntheticCapConfig | None = None) -> pl.DataFrame:
    """Per split (sorted): rows, synthetic, human, ``synthetic_share``, the ``cap`` (null
    when none), ``allowed_synthetic``, ``over_cap`` (synthetic rows the cap drops) and
    ``within_cap``. Ignores ``enforce``: it says what the cap does or would do."""
    cfg = cfg or SyntheticCapConfig()
    _check_columns(assignments)
    counts = (assignments.group_by("split")
              .agg(rows=pl.len().cast(pl.Int64), synthetic=_is_synthetic().sum().cast(pl.Int64))
              .sort("split"))
    cap = cfg.max_synthetic_share
    rows = []
    for split, n, s in counts.iter_rows():
        human = n - s
        allowed = allowed_synthetic(human, cap, s)
        rows.append({"split": split, "rows": n, "synthetic": s, "human": human,
                     "synthetic_share": s / n if n else 0.0, "cap": cap,
                     "allowed_synthetic": allowed, "over_cap": s - allowed,
                     "within_cap": s == allowed})
    return pl.DataFrame(rows, schema=SHARE_SCHEMA)


def _ranked_synthetic(synthetic: pl.DataFrame, seed: str) -> pl.DataFrame:
    """``synthetic`` (``_IDX``, split, tier, source, example_id) with ``_hash`` and
    ``_hash_lo``: the two halves of md5(seed \x1f source \x1f example_id) as UInt64, so
    (``_hash``, ``_hash_lo``) orders rows totally by the whole digest (cheaper to sort
    than the strings; equal digests mean equal keys)."""
    con = duckdb.connect()
    try:
        con.register("synthetic", synthetic)
        return con.sql(
            "select * exclude (_md5), ('0x' || substr(_md5, 1, 16))::UBIGINT as _hash, "
            "('0x' || substr(_md5, 17, 16))::UBIGINT as _hash_lo from (select *, "
            "md5($seed || chr(31) || source || chr(31) || example_id) as _md5 from synthetic)",
            params={"seed": seed},
        ).pl()
    finally:
        con.close()


def _tier_quotas(per_tier: pl.DataFrame, allowed: dict[str, int]) -> pl.DataFrame:
    """(split, tier, _keep, _stratum): each tier's share of its split's ``allowed``
    synthetic rows, by largest remainder (see the module docstring), and an integer id
    per (split, tier)."""
    total = pl.col("_n").sum().over("split")
    k = pl.col("split").replace_strict(allowed, return_dtype=pl.Int64)
    quotas = per_tier.with_columns(_k=k, _total=total).with_columns(
        _floor=(pl.col("_k") * pl.col("_n")) // pl.col("_total"),
        _rem=(pl.col("_k") * pl.col("_n")) % pl.col("_total"),
    ).with_columns(_left=pl.col("_k") - pl.col("_floor").sum().over("split"))
    quotas = quotas.sort(["split", "_rem", _TIER], descending=[False, True, False],
                         nulls_last=True)
    extra = (pl.int_range(pl.len()).over("split") < pl.col("_left")).cast(pl.Int64)
    return quotas.select("split", _TIER, _keep=pl.col("_floor") + extra,
                         _stratum=pl.int_range(pl.len(), dtype=pl.UInt32))


def cap_synthetic_share(assignments: pl.DataFrame, cfg: SyntheticCapConfig | None = None
                        ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept, capped): ``assignments`` without the synthetic rows the cap drops (same
    columns, same order), and those rows plus ``exclusion_reason = "synthetic_cap"``
    (sorted by split, source, example_id).

    ``assignments`` needs ``source``, ``example_id``, ``split``, ``origin`` and, to spread
    the drops over tiers, ``complexity_tier`` (without it the split is one stratum); other
    columns are carried through. Nothing is dropped unless ``cfg.enforce`` and a cap is
    set. The rule is the module docstring's.
    """
    cfg = cfg or SyntheticCapConfig()
    _check_columns(assignments)
    capped_schema = {**assignments.schema, "exclusion_reason": pl.String}
    none = pl.DataFrame(schema=capped_schema)
    if not cfg.enforce or cfg.max_synthetic_share is None:
        return assignments, none
    table = synthetic_share_table(assignments, cfg)
    if table.filter(pl.col("over_cap") > 0).height == 0:
        return assignments, none
    allowed = dict(zip(table["split"], table["allowed_synthetic"], strict=True))
    over = table.filter(pl.col("over_cap") > 0)["split"]

    tier = (pl.col("complexity_tier").cast(pl.String) if "complexity_tier" in assignments.columns
            else pl.lit(None, dtype=pl.String))
    synthetic = (assignments.select("source", "example_id", "split", tier.alias(_TIER),
                                    _is_synthetic().alias("_s"))
                 .with_row_index(_IDX).filter(pl.col("_s") & pl.col("split").is_in(over.implode()))
                 .drop("_s"))
    per_tier = synthetic.group_by("split", _TIER).agg(_n=pl.len().cast(pl.Int64))
    quotas = _tier_quotas(per_tier, allowed)
    ranked = _ranked_synthetic(synthetic, cfg.seed).join(
        quotas, on=["split", _TIER], how="left", nulls_equal=True)
    rank = pl.int_range(pl.len()).over("_stratum")
    dropped = (ranked.select(_IDX, "_stratum", "_keep", "_hash", "_hash_lo")
               .sort("_stratum", "_hash", "_hash_lo")
               .filter(rank >= pl.col("_keep"))[_IDX])
    drop = pl.int_range(pl.len(), dtype=pl.UInt32).is_in(dropped.implode())
    kept = assignments.filter(~drop)
    capped = (assignments.filter(drop)
              .with_columns(exclusion_reason=pl.lit(CAP_REASON))
              .sort("split", "source", "example_id"))
    return kept, capped


def synthetic_cap_check(assignments: pl.DataFrame, cfg: SyntheticCapConfig | None = None
                        ) -> dict:
    """Figures for the ``synthetic_share_within_cap`` check of (capped) assignments:
    ``passed`` (every split within the cap, or no cap), ``synthetic_share`` and
    ``over_cap`` per split, and the ``cap``."""
    cfg = cfg or SyntheticCapConfig()
    table = synthetic_share_table(assignments, cfg)
    return {
        "passed": bool(table["within_cap"].all()),
        "cap": cfg.max_synthetic_share,
        "synthetic_share": {s: round(v, 4) for s, v in
                            zip(table["split"], table["synthetic_share"], strict=True)},
        "over_cap": {s: int(v) for s, v in zip(table["split"], table["over_cap"],
                                                strict=True)},
    }
