"""Synthetic share capped per split: fewest drops, spread over tiers, hash-chosen."""

from __future__ import annotations

import hashlib
from fractions import Fraction

import polars as pl
import pytest

from instruct_assets.lib.synthetic_cap import (
    CAP_REASON,
    SyntheticCapConfig,
    allowed_synthetic,
    cap_synthetic_share,
    synthetic_cap_check,
    synthetic_share_table,
)

KEY = ["source", "example_id"]


def frame(spec: dict[tuple[str, str, str], int], source: str = "s") -> pl.DataFrame:
    """Assignment rows from {(split, origin, tier): n}; ids are unique and order-free."""
    rows = []
    for (split, origin, tier), n in spec.items():
        for i in range(n):
            rows.append({"source": source, "example_id": f"{split}-{origin}-{tier}-{i:03d}",
                         "split": split, "complexity_tier": tier, "origin": origin,
                         "split_group": f"g{len(rows)}"})
    return pl.DataFrame(rows, schema={"source": pl.String, "example_id": pl.String,
                                      "split": pl.String, "complexity_tier": pl.String,
                                      "origin": pl.String, "split_group": pl.String})


def share(df: pl.DataFrame, split: str) -> Fraction:
    part = df.filter(pl.col("split") == split)
    return Fraction((part["origin"] == "synthetic").sum(), part.height)


def enforce(cap: float | None) -> SyntheticCapConfig:
    return SyntheticCapConfig(max_synthetic_share=cap, enforce=True)


def test_the_cap_holds_in_every_split_with_the_fewest_drops():
    df = frame({("train", "human", "simple"): 30, ("train", "synthetic", "simple"): 50,
                ("eval", "human", "simple"): 7, ("eval", "synthetic", "simple"): 2})
    kept, capped = cap_synthetic_share(df, enforce(0.4))
    # train: k / (30 + k) <= 0.4  ->  k <= 20, so exactly 30 of 50 synthetic rows go
    assert share(kept, "train") == Fraction(20, 50)
    assert capped.height == 30 and set(capped["split"]) == {"train"}
    # eval already holds 2/9 < 0.4: untouched
    assert kept.filter(pl.col("split") == "eval").equals(df.filter(pl.col("split") == "eval"))
    # one row fewer dropped would break the cap
    assert Fraction(21, 51) > Fraction(2, 5)
    assert set(capped["exclusion_reason"]) == {CAP_REASON}
    assert (capped["origin"] == "synthetic").all()
    # every human row stays, the columns and the input order are kept
    assert kept.filter(pl.col("origin") == "human").height == 37
    assert kept.columns == df.columns
    assert kept.equals(df.join(capped.select(KEY), on=KEY, how="anti",
                               maintain_order="left"))
    assert kept.height + capped.height == df.height
    assert synthetic_cap_check(kept, enforce(0.4))["passed"]
    assert not synthetic_cap_check(df, enforce(0.4))["passed"]


@pytest.mark.parametrize("cap", [0.1, 0.2, 0.3, 1 / 3, 0.45, 0.5, 0.7, 0.9])
def test_allowed_is_the_exact_maximum_for_awkward_floats(cap):
    written = Fraction(repr(cap))  # the decimal the cap is written as
    for human in range(0, 40):
        k = allowed_synthetic(human, cap, 10_000)
        # the cap holds, as fractions and as floats, and one more row would break it
        assert k == 0 or (Fraction(k, human + k) <= written and k / (human + k) <= cap)
        assert Fraction(k + 1, human + k + 1) > written
    assert allowed_synthetic(7, 0.3, 10_000) == 3  # 3/10 is exactly 0.3: allowed


def test_drops_are_spread_over_tiers_in_proportion():
    df = frame({("train", "human", "simple"): 10, ("train", "human", "medium"): 10,
                ("train", "human", "complex"): 10,
                ("train", "synthetic", "simple"): 40, ("train", "synthetic", "medium"): 20,
                ("train", "synthetic", "complex"): 10})
    kept, capped = cap_synthetic_share(df, enforce(0.25))
    # k <= 0.25 * 30 / 0.75 = 10 synthetic rows kept, out of 70: 40:20:10 -> 5.71:2.86:1.43
    # -> floors 5, 2, 1 and the two rows left go to the largest remainders (medium, simple)
    tiers = dict(kept.filter(pl.col("origin") == "synthetic")
                 .group_by("complexity_tier").len().iter_rows())
    assert tiers == {"simple": 6, "medium": 3, "complex": 1}
    assert capped.height == 60


def test_the_choice_depends_on_ids_not_row_order():
    df = frame({("train", "human", "simple"): 20, ("train", "synthetic", "simple"): 40,
                ("train", "synthetic", "medium"): 15, ("eval", "human", "medium"): 3,
                ("eval", "synthetic", "medium"): 5})
    kept, capped = cap_synthetic_share(df, enforce(0.3))
    for seed in range(5):
        shuffled = df.sample(fraction=1.0, shuffle=True, seed=seed)
        k2, c2 = cap_synthetic_share(shuffled, enforce(0.3))
        assert k2.sort(KEY).equals(kept.sort(KEY))
        assert c2.equals(capped)  # capped rows come back sorted
    # which rows stay: the smallest md5(seed \x1f source \x1f example_id) of each tier
    seed = SyntheticCapConfig().seed
    ids = df.filter((pl.col("split") == "eval") & (pl.col("origin") == "synthetic"))[
        "example_id"].to_list()
    ranked = sorted(ids, key=lambda i: hashlib.md5(
        f"{seed}\x1fs\x1f{i}".encode()).hexdigest())
    allowed = allowed_synthetic(3, 0.3, 5)  # 1
    kept_eval = kept.filter((pl.col("split") == "eval") & (pl.col("origin") == "synthetic"))
    assert kept_eval["example_id"].to_list() == ranked[:allowed]
    # another seed draws another (equally valid) choice
    other = cap_synthetic_share(df, SyntheticCapConfig(0.3, True, seed="other"))[0]
    assert other.height == kept.height and not other.sort(KEY).equals(kept.sort(KEY))


def test_no_cap_or_not_enforced_changes_nothing():
    df = frame({("train", "synthetic", "simple"): 9, ("train", "human", "simple"): 1})
    for cfg in (enforce(None), SyntheticCapConfig(0.1, enforce=False)):
        kept, capped = cap_synthetic_share(df, cfg)
        assert kept.equals(df) and capped.height == 0
        assert "exclusion_reason" in capped.columns
    # report-only still says what the cap would do
    table = synthetic_share_table(df, SyntheticCapConfig(0.1, enforce=False))
    assert table.row(0, named=True)["over_cap"] == 9  # 0.1 * 1 / 0.9 < 1: none may stay
    assert synthetic_cap_check(df, enforce(None))["passed"]
    # a cap of 1 keeps everything too
    assert cap_synthetic_share(df, enforce(1.0))[0].equals(df)


def test_an_all_synthetic_split_and_a_cap_of_zero():
    df = frame({("train", "human", "simple"): 5, ("train", "synthetic", "simple"): 3,
                ("eval", "synthetic", "simple"): 4})
    kept, capped = cap_synthetic_share(df, enforce(0.5))
    # eval has no human row: no synthetic row can stay under a cap below 1
    assert kept.filter(pl.col("split") == "eval").height == 0
    assert share(kept, "train") == Fraction(3, 8)  # 3 <= 5: train untouched
    assert capped.height == 4
    check = synthetic_cap_check(kept, enforce(0.5))
    assert check["passed"] and "eval" not in check["synthetic_share"]

    kept0, capped0 = cap_synthetic_share(df, enforce(0.0))
    assert (kept0["origin"] == "human").all() and kept0.height == 5
    assert capped0.height == 7


def test_a_null_origin_counts_as_human_and_a_null_tier_is_a_stratum():
    df = frame({("train", "synthetic", "simple"): 4, ("train", "human", "simple"): 2})
    df = pl.concat([df, df.head(2).with_columns(
        example_id=pl.format("{}-n", "example_id"), complexity_tier=pl.lit(None, pl.String)),
        df.tail(1).with_columns(example_id=pl.lit("x"), origin=pl.lit(None, pl.String))])
    kept, capped = cap_synthetic_share(df, enforce(0.5))
    assert kept.filter(pl.col("origin").is_null()).height == 1  # human, never dropped
    assert (kept["origin"] == "synthetic").sum() == 3  # human rows: 2 + the null one
    # 6 synthetic (4 simple, 2 null-tier) keep 3: 2 simple, 1 null-tier
    got = kept.filter(pl.col("origin") == "synthetic")
    assert got["complexity_tier"].null_count() == 1
    assert capped.height == 3 and capped["complexity_tier"].null_count() == 1


def test_bad_configuration_and_missing_columns_are_refused():
    with pytest.raises(ValueError, match="max_synthetic_share"):
        SyntheticCapConfig(1.5)
    with pytest.raises(ValueError, match="origin"):
        cap_synthetic_share(pl.DataFrame({"source": ["s"], "example_id": ["1"],
                                          "split": ["train"]}), enforce(0.5))
