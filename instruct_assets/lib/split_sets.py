"""Build the split tables from the curated examples (pure; the splits asset calls this)."""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.schema import NORMALIZED_SCHEMA
from instruct_assets.lib.splits import SplitConfig, assign_splits, prompt_key_expr

SPLIT_NAMES = ("train", "eval")
KEY = ["source", "example_id"]
ASSIGNMENT_COLUMNS = ["source", "example_id", "split", "complexity_tier", "dup_cluster_id",
                      "prompt_key", "origin", "split_group"]


def build_splits(
    examples: pl.DataFrame, curated: pl.DataFrame, complexity: pl.DataFrame, cfg: SplitConfig
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """(assignments, {split: canonical rows + split + complexity_tier}) for kept rows only."""
    kept = curated.filter(pl.col("kept")).select(*KEY, "dup_cluster_id")
    frame = (
        examples.join(kept, on=KEY, how="inner")
        .join(complexity.select(*KEY, pl.col("complexity_tier").cast(pl.String)), on=KEY,
              how="left")
        .with_columns(prompt_key_expr().alias("prompt_key"))
        .sort(KEY)
    )
    assigned = assign_splits(frame, cfg).sort(KEY)
    assignments = assigned.select(
        *[pl.col(c).cast(pl.String) if c == "complexity_tier" else pl.col(c)
          for c in ASSIGNMENT_COLUMNS])
    sets = {
        name: assigned.filter(pl.col("split") == name).select(
            *NORMALIZED_SCHEMA.names(), "split", pl.col("complexity_tier").cast(pl.String))
        for name in SPLIT_NAMES
    }
    return assignments, sets
