"""Reading just the published examples the review stage needs (not every conversation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from instruct_assets.lib.keys import KEY
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.schema import NORMALIZED_SCHEMA


def examples_for(paths: DataPaths, sources: list[str], keys: pl.DataFrame) -> pl.DataFrame:
    """Published rows of ``sources`` whose (source, example_id) is in ``keys``, sorted.

    Why by row group: a review touches a few hundred rows of millions, and a lazy scan
    joined to the keys decoded every conversation (0.4 GB per million rows at its peak).
    Here the keys alone locate the wanted rows; then only the row groups holding one are
    decoded, one at a time, and only those rows are kept: memory is the key columns plus
    one row group, whatever the dataset's size.
    """
    wanted = keys.select(pl.col("source").cast(pl.String),
                         pl.col("example_id").cast(pl.String)).unique()
    files = [paths.normalized_file(s) for s in sources]
    parts = []
    for file in files if wanted.height else []:
        # row positions of the wanted keys (two narrow columns), then the row groups
        # holding them, one at a time
        scan = pl.scan_parquet(file)
        at = (scan.select(KEY).with_row_index("_at")
              .filter(pl.col("example_id").is_in(wanted["example_id"].implode()))
              .collect().join(wanted, on=KEY, how="semi").sort("_at")["_at"]
              .to_numpy().astype(np.int64))
        if not at.size:
            continue
        sizes = [g.num_rows for g in _row_groups(file)]
        starts = np.cumsum([0, *sizes])
        group_of = np.searchsorted(starts, at, side="right") - 1
        for group in np.unique(group_of):
            rows = scan.slice(int(starts[group]), sizes[group]).collect()
            parts.append(_compact(rows[at[group_of == group] - starts[group]]))
            del rows
    if not parts:
        return pl.DataFrame(schema=NORMALIZED_SCHEMA)
    return pl.concat(parts).sort(KEY)


def _compact(rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` in buffers of their own: a gathered string column still points into the
    whole row group's buffers, which would keep every decoded group alive."""
    return pl.from_arrow(rows.to_arrow(compat_level=pl.CompatLevel.oldest()))


def _row_groups(file: Path) -> list[pq.RowGroupMetaData]:
    meta = pq.ParquetFile(file).metadata
    return [meta.row_group(i) for i in range(meta.num_row_groups)]
