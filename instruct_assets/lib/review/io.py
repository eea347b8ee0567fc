"""Reading just the published examples the review stage needs (not every conversation)."""

from __future__ import annotations

import polars as pl

from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.publish import scan_published

KEY = ["source", "example_id"]


def examples_for(paths: DataPaths, sources: list[str], keys: pl.DataFrame) -> pl.DataFrame:
    """Published rows of ``sources`` whose (source, example_id) is in ``keys``, sorted.

    A lazy scan joined to the keys: only the rows asked for are kept in memory, which
    matters when a review touches a few hundred rows of a million-row dataset.
    """
    wanted = keys.select(pl.col("source").cast(pl.String),
                         pl.col("example_id").cast(pl.String)).unique()
    scan = scan_published(paths, sources)
    return scan.join(wanted.lazy(), on=KEY, how="semi").collect().sort(KEY)
