"""Build and write the split tables from the curated examples (the splits stage's data work).

Why this shape: the split of a million rows is decided on small key columns, never on the
conversations. :func:`split_keys` joins the kept keys with their tier and prompt key,
:func:`assign_splits` ranks the groups, and only then is each split's set gathered from the
examples, once, in key order (:func:`split_set`). :func:`run_splits` is the whole stage body
(reads, writes, integrity figures); the splits asset and ``bench/stages.py`` both call it, so
the bench cannot drift from the asset.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from instruct_assets.lib.complexity import ComplexityConfig, score_complexity
from instruct_assets.lib.parquet_io import write_parquet
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.schema import NORMALIZED_SCHEMA
from instruct_assets.lib.splits import (
    SplitConfig,
    assign_splits,
    check_split_integrity,
    prompt_key_expr,
)
from instruct_assets.lib.stage_io import read_examples
from instruct_assets.lib.synthetic_cap import (
    CAP_REASON,
    SyntheticCapConfig,
    cap_synthetic_share,
    synthetic_cap_check,
    synthetic_share_table,
)

SPLIT_NAMES = ("train", "eval")
KEY = ["source", "example_id"]
ASSIGNMENT_COLUMNS = ["source", "example_id", "split", "complexity_tier", "dup_cluster_id",
                      "prompt_key", "origin", "split_group"]
#: Columns of each split's set: the canonical example columns, then ``split`` and the tier.
SET_SCHEMA = pl.Schema({**NORMALIZED_SCHEMA, "split": pl.String, "complexity_tier": pl.String})

_ROW = "__split_row"  # row of the key frame in ``examples``
_GATHER_ROWS = 128 * 1024  # rows per gathered chunk of a split's set (= the row-group size)


def split_keys(examples: pl.DataFrame, curated: pl.DataFrame,
               complexity: pl.DataFrame) -> pl.DataFrame:
    """One row per kept example, sorted by (source, example_id): the columns
    :func:`assign_splits` needs, plus the row of the example in ``examples``.

    Same rows as an inner join with the kept rows of ``curated`` and a left join with
    ``complexity``, sorted by key. Fast path: the curation and complexity tables are
    published sorted by key with one row per example, so when their keys equal the sorted,
    unique example keys their columns are taken as they stand, without a join.
    """
    # streaming: the prompt keys' string work runs on all cores, in row order
    keys = (examples.lazy().select(*KEY, "origin", prompt_key_expr()).with_row_index(_ROW)
            .collect(engine="streaming"))
    keys = keys[_key_order(keys)]
    tier = pl.col("complexity_tier").cast(pl.String)
    if _same_keys(keys, curated) and _same_keys(keys, complexity) and _unique_sorted(keys):
        return keys.with_columns(
            curated["dup_cluster_id"], complexity.select(tier).to_series()
        ).filter(curated["kept"])
    kept = curated.filter(pl.col("kept")).select(*KEY, "dup_cluster_id")
    frame = keys.join(kept, on=KEY, how="inner").join(
        complexity.select(*KEY, tier), on=KEY, how="left")
    return frame[_key_order(frame)]


def _same_keys(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.height == b.height and a.select(KEY).equals(b.select(KEY))


def _unique_sorted(keys: pl.DataFrame) -> bool:
    """No two adjacent rows of a key-sorted frame share a key."""
    same = (pl.col("source") == pl.col("source").shift()) & (
        pl.col("example_id") == pl.col("example_id").shift())
    return not keys.select(same.any()).item()


_MASKS = np.array([0] + [((1 << (8 * k)) - 1) << (8 * (8 - k)) for k in range(1, 9)],
                  dtype=np.uint64)


def _key_order(frame: pl.DataFrame) -> np.ndarray:
    """Row order by (source, example_id), compared as UTF-8 bytes (polars' string order).

    About ten times cheaper than ``frame.sort(KEY)`` at a million rows: sources (few) are
    ranked; ids are sorted by their first 8 bytes as a big-endian integer, and only rows
    still tied are refined by the next 8 bytes, then by length (so "a" < "a\x00"). Rows
    with equal keys keep their relative order. Null keys take polars' sort.
    """
    src, ids = frame["source"], frame["example_id"]
    if src.null_count() or ids.null_count():
        return frame.select(pl.arg_sort_by(KEY, maintain_order=True)).to_series().to_numpy()
    uniq = src.unique().sort()
    rank = src.replace_strict(uniq, pl.int_range(uniq.len(), eager=True),
                              return_dtype=pl.Int64).to_numpy()
    arr = ids.cast(pl.Binary).to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_binary())
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = np.zeros(offsets[-1] - offsets[0] + 8, dtype=np.uint8)
    if data_buf is not None:
        data[:-8] = np.frombuffer(data_buf, np.uint8)[offsets[0]:offsets[-1]]
    starts, lens = offsets[:-1] - offsets[0], np.diff(offsets)
    words = np.ndarray((data.size - 7,), dtype=">u8", buffer=data, strides=(1,))

    def word(rows: np.ndarray, j: int) -> np.ndarray:
        rest = np.clip(lens[rows] - 8 * j, 0, 8)
        at = np.minimum(starts[rows] + 8 * j, data.size - 8)
        return words[at].astype(np.uint64) & _MASKS[rest]

    order = np.arange(frame.height, dtype=np.int64)
    order = order[np.argsort(word(order, 0), kind="stable")]
    rk = rank[order]
    order = order[np.argsort(rk.astype(np.int16) if uniq.len() < 1 << 15 else rk,
                             kind="stable")]  # int16: numpy's radix sort
    # runs of rows tied so far (same source, same first word), refined word by word
    new_run = np.ones(order.size, dtype=bool)
    rk, w = rank[order], word(order, 0)
    new_run[1:] = (rk[1:] != rk[:-1]) | (w[1:] != w[:-1])
    n_words = int((lens.max() + 7) // 8) if lens.size else 0
    for j in range(1, n_words + 1):
        run = np.cumsum(new_run) - 1
        tied = np.bincount(run)[run] > 1
        if not tied.any():
            break
        pos = np.flatnonzero(tied)
        rows = order[pos]
        key = word(rows, j) if j < n_words else lens[rows].astype(np.uint64)
        sub = np.lexsort((key, run[pos]))
        order[pos] = rows[sub]
        key = key[sub]
        new_run[pos[1:]] |= key[1:] != key[:-1]
    return order


def assignments_of(assigned: pl.DataFrame) -> pl.DataFrame:
    """The published assignment table (:data:`ASSIGNMENT_COLUMNS`) of an assigned key frame."""
    return assigned.select(ASSIGNMENT_COLUMNS)


def split_set(examples: pl.DataFrame, assigned: pl.DataFrame, name: str) -> pl.DataFrame:
    """Rows of split ``name`` (:data:`SET_SCHEMA`), in key order, gathered from ``examples``.

    Gathered in blocks of :data:`_GATHER_ROWS` rows kept as separate chunks: gathering from a
    single-chunk frame is cheap (polars' multi-chunk gather of nested columns is not, so
    ``examples`` is rechunked first; its strings are views, so that copies no text), and a
    frame of row-group-sized chunks writes much faster than one huge chunk (the Parquet
    writer sizes its pages from the buffers a chunk references; one huge chunk of views
    gives many small pages). The chunks depend on the input only, so the bytes do too.
    """
    part = assigned.filter(pl.col("split") == name).select(_ROW, "split", "complexity_tier")
    source = examples.select(NORMALIZED_SCHEMA.names()).rechunk()  # no-op when single-chunk
    blocks = [
        source[block[_ROW]].hstack(block.drop(_ROW))
        for block in part.iter_slices(_GATHER_ROWS)
    ]
    if not blocks:
        return pl.DataFrame(schema=SET_SCHEMA)
    return pl.concat(blocks, rechunk=False)


def build_splits(
    examples: pl.DataFrame, curated: pl.DataFrame, complexity: pl.DataFrame, cfg: SplitConfig
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """(assignments, {split: canonical rows + split + complexity_tier}) for kept rows only."""
    assigned = assign_splits(split_keys(examples, curated, complexity), cfg)
    return assignments_of(assigned), {n: split_set(examples, assigned, n) for n in SPLIT_NAMES}


def read_split_inputs(
    paths: DataPaths, sources: list[str], complexity_cfg: ComplexityConfig | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(examples, curated, complexity) as the stage reads them.

    Human edits (``curation/edited_examples.parquet``) join the examples under their new
    ids, and are tiered here with ``complexity_cfg``.
    """
    examples = read_examples(paths, sources)
    curated = pl.read_parquet(paths.curation / "curation.parquet")
    complexity = pl.read_parquet(paths.curation / "complexity.parquet",
                                 columns=["source", "example_id", "complexity_tier"])
    edited_file = paths.curation / "edited_examples.parquet"
    edited = (pl.read_parquet(edited_file).select(examples.columns) if edited_file.exists()
              else examples.clear())
    if edited.height:  # human edits: the edited conversations, under their new ids
        examples = pl.concat([examples, edited])
        tiers = score_complexity(edited, complexity_cfg)
        complexity = pl.concat([complexity, tiers.select(
            "source", "example_id", pl.col("complexity_tier").cast(pl.String))])
    return examples, curated, complexity


@dataclass(frozen=True)
class SplitOutcome:
    """What the splits stage wrote and the figures its checks read."""

    assignments: pl.DataFrame
    assignments_path: Path
    files: dict[str, Path]  # split name -> its Parquet set (:data:`SET_SCHEMA`)
    integrity: dict  # :func:`check_split_integrity` of ``assignments``
    excluded_in: pl.DataFrame  # assigned rows that curation excluded (must be empty)
    #: per split, before any cap: rows, synthetic share, allowed and over-cap synthetic rows
    synthetic_before: pl.DataFrame
    #: synthetic rows the enforced cap dropped (assignment columns + exclusion_reason)
    capped: pl.DataFrame
    capped_path: Path
    synthetic_after: dict  # :func:`synthetic_cap_check` of the published assignments


def _no_part(_name: str) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def run_splits(paths: DataPaths, sources: list[str], cfg: SplitConfig,
               complexity_cfg: ComplexityConfig | None = None,
               part: Callable[[str], AbstractContextManager[None]] = _no_part,
               synthetic_cap: SyntheticCapConfig | None = None) -> SplitOutcome:
    """The splits stage: read, assign on the keys, cap the synthetic share (when enforced,
    ``lib.synthetic_cap``), write assignments and one set per split.

    ``part(name)`` times each step (the bench passes a timer). Each split's set is gathered
    and written in a worker thread while the assignments are written and checked (polars
    releases the GIL), which never changes a byte: every file is written on its own.
    """
    with part("read_inputs"):
        examples, curated, complexity = read_split_inputs(paths, sources, complexity_cfg)
        examples = examples.rechunk()  # once, for both sets' gathers (see split_set)
    with part("assign"):
        assigned = assign_splits(split_keys(examples, curated, complexity), cfg)
        cap = synthetic_cap or SyntheticCapConfig(enforce=False)
        synthetic_before = synthetic_share_table(assigned, cap)
        assigned, capped = cap_synthetic_share(assigned, cap)
        assignments = assignments_of(assigned)
        capped = assignments_of(capped).with_columns(
            exclusion_reason=pl.lit(CAP_REASON, dtype=pl.String))
    with part("write_and_check"), ThreadPoolExecutor(max_workers=len(SPLIT_NAMES)) as pool:
        futures = {
            name: pool.submit(lambda n: write_parquet(split_set(examples, assigned, n),
                                                      paths.splits / f"{n}.parquet"), name)
            for name in SPLIT_NAMES
        }
        target = write_parquet(assignments, paths.splits / "assignments.parquet")
        capped_path = write_parquet(capped, paths.splits / "synthetic_capped.parquet")
        integrity = check_split_integrity(assignments, cfg)
        excluded_in = assignments.join(
            curated.filter(~pl.col("kept")).select(*KEY), on=KEY, how="semi")
        files = {name: fut.result() for name, fut in futures.items()}
    return SplitOutcome(assignments, target, files, integrity, excluded_in, synthetic_before,
                        capped, capped_path, synthetic_cap_check(assignments, cap))
