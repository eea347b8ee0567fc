"""Build and write the split tables from the curated examples (the splits stage's data work).

Why this shape: the split of a million rows is decided on small key columns, never on the
conversations. :func:`split_keys` joins the kept keys with their tier and prompt key,
:func:`assign_splits` ranks the groups, and only then is each split's set gathered from the
examples, once, in key order (:func:`split_set`). :func:`run_splits` is the whole stage body
(reads, writes, integrity figures); the splits asset and ``bench/stages.py`` both call it, so
the bench cannot drift from the asset.

Bounded memory: when the examples exceed ``chunk_rows``, they are read twice in chunks. The
first pass keeps only narrow columns of every row: keys, origin and the 64-bit hash of the
prompt key (:func:`lib.splits.prompt_hashes`, what the grouping uses in both paths, so the
groups are the same); the prompt texts go to one spill file per chunk. The assignment is
global, over all rows. The second pass distributes each chunk's wide rows, and its prompt
keys, to spill files, one per (table, output block of ``chunk_rows`` rows); each block is
then gathered in key order and appended to its table (sets: :func:`_write_set`;
assignments and capped rows: :func:`_write_gathered`), a slice of :data:`_GATHER_ROWS` rows
at a time. The tables keep their content and order, so they are the one-chunk tables (and
the exports, which need the sets' (source, example_id) order, can stream them).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from instruct_assets.lib.chunks import (
    DEFAULT_CHUNK_ROWS,
    ChunkedParquetWriter,
    iter_parquet_chunks,
    parquet_rows,
    spill_dir,
)
from instruct_assets.lib.complexity import ComplexityConfig, score_complexity
from instruct_assets.lib.keys import KEY, key_order, key_sorted
from instruct_assets.lib.parquet_io import write_parquet
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.schema import NORMALIZED_SCHEMA
from instruct_assets.lib.splits import (
    SplitConfig,
    assign_splits,
    check_split_integrity,
    prompt_hashes,
    prompt_key_expr,
)
from instruct_assets.lib.stage_io import example_files, read_examples
from instruct_assets.lib.synthetic_cap import (
    CAP_REASON,
    SyntheticCapConfig,
    cap_synthetic_share,
    synthetic_cap_check,
    synthetic_share_table,
)

SPLIT_NAMES = ("train", "eval")
ASSIGNMENT_COLUMNS = ["source", "example_id", "split", "complexity_tier", "dup_cluster_id",
                      "prompt_key", "origin", "split_group"]
#: Columns of each split's set: the canonical example columns, then ``split`` and the tier.
SET_SCHEMA = pl.Schema({**NORMALIZED_SCHEMA, "split": pl.String, "complexity_tier": pl.String})

_ROW = "__split_row"  # row of the key frame in ``examples``
_GATHER_ROWS = 128 * 1024  # rows per gathered chunk of a split's set (= the row-group size)
_POS = "__split_pos"  # row of a spilled example in its split's set (chunked path)
#: Columns of curation.parquet the stage reads.
CURATED_COLUMNS = ["source", "example_id", "kept", "dup_cluster_id"]
#: Columns the key pass reads (the edited examples' tiers need ``messages`` too).
_KEY_INPUT = ["source", "example_id", "origin", "messages"]
#: Columns of the assignments :class:`SplitOutcome` carries (the asset's metadata needs).
OUTCOME_COLUMNS = ["source", "example_id", "split", "complexity_tier", "origin"]


def split_keys(examples: pl.DataFrame, curated: pl.DataFrame,
               complexity: pl.DataFrame) -> pl.DataFrame:
    """One row per kept example, sorted by (source, example_id): the columns
    :func:`assign_splits` needs, plus the row of the example in ``examples``.

    Same rows as an inner join with the kept rows of ``curated`` and a left join with
    ``complexity``, sorted by key. Fast path: the curation and complexity tables are
    published sorted by key with one row per example, so when their keys equal the sorted,
    unique example keys their columns are taken as they stand, without a join.
    """
    return _joined_keys(_example_keys(examples).with_row_index(_ROW), curated, complexity)


def _example_keys(examples: pl.DataFrame) -> pl.DataFrame:
    """source, example_id, origin, prompt_key of each example, in row order. Row-wise, so
    chunks of the examples give the chunks of the whole."""
    # streaming: the prompt keys' string work runs on all cores, in row order
    return (examples.lazy().select(*KEY, "origin", prompt_key_expr())
            .collect(engine="streaming"))


def _joined_keys(keys: pl.DataFrame, curated: pl.DataFrame,
                 complexity: pl.DataFrame) -> pl.DataFrame:
    """:func:`split_keys` from the examples' keys (with their :data:`_ROW`).

    Fast path: the kept rows are gathered once, in key order (``keys[order]`` filtered by
    ``kept``, without building the full sorted frame), and their cluster ids and tiers are
    ``curated``'s and ``complexity``'s kept rows as they stand. ``keys`` is rechunked
    first: the streaming key pass (and the chunked path's concat) yields many chunks, and
    the gathers below cost ~0.8 CPU-s from those at 1M rows, ~0.1 from one chunk (its
    strings are views, so the rechunk copies no text).
    """
    keys = keys.rechunk()
    order = key_order(keys).to_numpy()
    tier = pl.col("complexity_tier").cast(pl.String)
    if (_same_keys(curated, complexity) and _keys_at(keys, order, curated)
            and key_sorted(curated, strict=True)):
        kept = curated["kept"].fill_null(False)
        return keys[order[kept.to_numpy()]].with_columns(
            curated["dup_cluster_id"].filter(kept),
            complexity.select(tier).to_series().filter(kept))
    kept = curated.filter(pl.col("kept")).select(*KEY, "dup_cluster_id")
    frame = keys[order].join(kept, on=KEY, how="inner").join(
        complexity.select(*KEY, tier), on=KEY, how="left")
    return frame[key_order(frame)]


def _keys_at(keys: pl.DataFrame, order: np.ndarray, other: pl.DataFrame) -> bool:
    """``keys[order]`` has ``other``'s keys; compared a slice at a time (no sorted copy)."""
    if keys.height != other.height:
        return False
    keys, other = keys.select(KEY), other.select(KEY)
    return all(keys[order[i: i + _GATHER_ROWS]].equals(other.slice(i, _GATHER_ROWS))
               for i in range(0, keys.height, _GATHER_ROWS))


def _same_keys(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.height == b.height and a.select(KEY).equals(b.select(KEY))


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
    curated = pl.read_parquet(paths.curation / "curation.parquet", columns=CURATED_COLUMNS)
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

    #: the published assignments' narrow columns (:data:`OUTCOME_COLUMNS`: what the asset's
    #: metadata needs; the file also holds cluster ids, prompt keys and group keys)
    assignments: pl.DataFrame
    assignments_path: Path
    assignments_schema: pl.Schema  # of the file at ``assignments_path``
    files: dict[str, Path]  # split name -> its Parquet set (:data:`SET_SCHEMA`)
    integrity: dict  # :func:`check_split_integrity` of ``assignments``
    excluded_in: pl.DataFrame  # assigned rows that curation excluded (must be empty)
    #: per split, before any cap: rows, synthetic share, allowed and over-cap synthetic rows
    synthetic_before: pl.DataFrame
    #: synthetic rows the enforced cap dropped (:data:`OUTCOME_COLUMNS` + exclusion_reason)
    capped: pl.DataFrame
    capped_path: Path
    capped_schema: pl.Schema  # of the file at ``capped_path``
    synthetic_after: dict  # :func:`synthetic_cap_check` of the published assignments


def _no_part(_name: str) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def run_splits(paths: DataPaths, sources: list[str], cfg: SplitConfig,
               complexity_cfg: ComplexityConfig | None = None,
               part: Callable[[str], AbstractContextManager[None]] = _no_part,
               synthetic_cap: SyntheticCapConfig | None = None, *,
               chunk_rows: int = DEFAULT_CHUNK_ROWS) -> SplitOutcome:
    """The splits stage: read, assign on the keys, cap the synthetic share (when enforced,
    ``lib.synthetic_cap``), write assignments and one set per split.

    ``part(name)`` times each step (the bench passes a timer). Each split's set is gathered
    and written in a worker thread while the assignments are written and checked (polars
    releases the GIL), which never changes a byte: every file is written on its own.
    More examples than ``chunk_rows`` (published plus human edits): the wide rows are walked
    in chunks (see the module docstring); same tables, same order.
    """
    files = example_files(paths, sources)
    edited_file = paths.curation / "edited_examples.parquet"
    edited = [edited_file] if edited_file.exists() else []
    if parquet_rows(files) + parquet_rows(edited) > chunk_rows:
        return _run_splits_chunked(paths, files, edited, cfg, complexity_cfg, part,
                                   synthetic_cap, chunk_rows)
    with part("read_inputs"):
        examples, curated, complexity = read_split_inputs(paths, sources, complexity_cfg)
        examples = examples.rechunk()  # once, for both sets' gathers (see split_set)
    with part("assign"):
        assigned, capped, synthetic_before, cap = _assign(
            split_keys(examples, curated, complexity), cfg, synthetic_cap)
        assignments = assignments_of(assigned)
        capped = _capped_table(assignments_of(capped))
    with part("write_and_check"), ThreadPoolExecutor(max_workers=len(SPLIT_NAMES)) as pool:
        futures = {
            name: pool.submit(lambda n: write_parquet(split_set(examples, assigned, n),
                                                      paths.splits / f"{n}.parquet"), name)
            for name in SPLIT_NAMES
        }
        target = write_parquet(assignments, paths.splits / "assignments.parquet")
        capped_path = write_parquet(capped, paths.splits / "synthetic_capped.parquet")
        integrity = check_split_integrity(assignments, cfg)
        outcome = SplitOutcome(
            assignments.select(OUTCOME_COLUMNS), target, assignments.schema,
            {n: f.result() for n, f in futures.items()}, integrity,
            _excluded_in(assignments, curated.filter(~pl.col("kept")).select(KEY)),
            synthetic_before, capped.select(*OUTCOME_COLUMNS, "exclusion_reason"), capped_path,
            capped.schema, synthetic_cap_check(assignments, cap))
    return outcome


def _assign(keys: pl.DataFrame, cfg: SplitConfig, synthetic_cap: SyntheticCapConfig | None
            ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, SyntheticCapConfig]:
    """(assigned key frame, capped rows of it, synthetic share before the cap, cap)."""
    assigned = assign_splits(keys, cfg)
    cap = synthetic_cap or SyntheticCapConfig(enforce=False)
    synthetic_before = synthetic_share_table(assigned, cap)
    assigned, capped = cap_synthetic_share(assigned, cap)
    return assigned, capped, synthetic_before, cap


def _capped_table(capped: pl.DataFrame) -> pl.DataFrame:
    return capped.with_columns(exclusion_reason=pl.lit(CAP_REASON, dtype=pl.String))


def _excluded_in(assignments: pl.DataFrame, excluded: pl.DataFrame) -> pl.DataFrame:
    """Assigned rows (:data:`OUTCOME_COLUMNS`) whose key curation excluded."""
    return assignments.select(OUTCOME_COLUMNS).join(excluded, on=KEY, how="semi")


def _example_chunks(files: list[Path], edited: list[Path], columns: list[str],
                    chunk_rows: int) -> Iterator[tuple[pl.DataFrame, bool]]:
    """(chunk, is_edited): the published examples then the human edits, in the order of
    :func:`read_split_inputs` (a chunk never spans the two)."""
    if files:
        for chunk in iter_parquet_chunks(files, columns, chunk_rows):
            yield chunk, False
    if edited:
        for chunk in iter_parquet_chunks(edited, columns, chunk_rows):
            yield chunk, True


def _curation_tables(paths: DataPaths) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(curated, complexity) as :func:`read_split_inputs` reads them; when both are
    published on the same keys (the usual case), ``complexity`` shares ``curated``'s key
    columns, so the keys are held once."""
    curated = pl.read_parquet(paths.curation / "curation.parquet", columns=CURATED_COLUMNS)
    complexity = pl.read_parquet(paths.curation / "complexity.parquet",
                                 columns=["source", "example_id", "complexity_tier"])
    if _same_keys(curated, complexity):
        complexity = curated.select(KEY).with_columns(complexity["complexity_tier"])
    return curated, complexity


def _spill_name(table: str, block: int, chunk: int) -> str:
    return f"{table}.{block:06d}.{chunk:06d}.parquet"


def _run_splits_chunked(paths: DataPaths, files: list[Path], edited: list[Path],
                        cfg: SplitConfig, complexity_cfg: ComplexityConfig | None,
                        part: Callable[[str], AbstractContextManager[None]],
                        synthetic_cap: SyntheticCapConfig | None,
                        chunk_rows: int) -> SplitOutcome:
    """:func:`run_splits` over chunks of at most ``chunk_rows`` examples: the same tables.

    Kept across chunks (all rows at once, as :func:`assign_splits` needs): each example's
    keys, origin and 64-bit prompt hash (:func:`prompt_hashes`: the text goes to a spill
    file per chunk), the curation's cluster ids and the tiers; then the assigned key frame.
    The prompt texts come back only to write the assignments (and for the rare rows the
    prompt check must compare on text).
    """
    with spill_dir(paths.splits) as spill:
        with part("read_inputs"):
            curated, complexity = _curation_tables(paths)
        with part("keys"):
            keys, bounds, tiers = [], [], []
            for n, (chunk, is_edited) in enumerate(
                    _example_chunks(files, edited, _KEY_INPUT, chunk_rows)):
                offset = bounds[-1][1] if bounds else 0
                bounds.append((offset, offset + chunk.height))
                if is_edited and chunk.height:  # human edits are tiered here
                    tiers.append(score_complexity(chunk, complexity_cfg).select(
                        "source", "example_id", pl.col("complexity_tier").cast(pl.String)))
                chunk = _example_keys(chunk)
                chunk.select("prompt_key").write_parquet(
                    spill / _spill_name("prompt", 0, n), compression="lz4", statistics=False)
                keys.append(chunk.select(*KEY, "origin", prompt_hashes(chunk)))
                del chunk
            if tiers:
                complexity = pl.concat([complexity, *tiers])
            keys = pl.concat(keys).with_row_index(_ROW)
        with part("assign"):
            excluded = curated.filter(~pl.col("kept")).select(*KEY)
            joined = _joined_keys(keys, curated, complexity)
            del keys, curated, complexity
            assigned, capped, synthetic_before, cap = _assign(joined, cfg, synthetic_cap)
            del joined
        with part("write_and_check"):
            schema = pl.Schema({c: pl.String if c == "prompt_key" else assigned.schema[c]
                                for c in ASSIGNMENT_COLUMNS})
            capped_schema = pl.Schema({**schema, "exclusion_reason": pl.String})
            _spill_chunks(spill, files, edited, assigned, capped, bounds, chunk_rows)
            target = _write_gathered(
                spill, "assignments", paths.splits / "assignments.parquet", schema,
                assigned.drop("prompt_hash"), chunk_rows)
            capped_path = _write_gathered(
                spill, "capped", paths.splits / "synthetic_capped.parquet", capped_schema,
                _capped_table(capped.drop("prompt_hash")), chunk_rows)
            integrity = check_split_integrity(
                assigned, cfg, prompt_keys=lambda rows: _prompt_keys_at(spill, bounds, rows))
            outcome = SplitOutcome(
                assigned.select(OUTCOME_COLUMNS), target, schema,
                {n: _write_set(spill, n, paths.splits / f"{n}.parquet", assigned, chunk_rows)
                 for n in SPLIT_NAMES},
                integrity, _excluded_in(assigned, excluded), synthetic_before,
                _capped_table(capped.select(OUTCOME_COLUMNS)), capped_path, capped_schema,
                synthetic_cap_check(assigned, cap))
    return outcome


def _positions(total: int, rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per example row: the index of the table of ``rows`` it is in (-1: none) and its
    position in that table (``rows[t]``: the example rows of table ``t``, in table order)."""
    code = np.full(total, -1, dtype=np.int8)
    pos = np.zeros(total, dtype=np.int32 if total < 1 << 31 else np.int64)
    for t, r in enumerate(rows):
        code[r] = t
        pos[r] = np.arange(r.size)
    return code, pos


def _spill_pieces(spill: Path, tables: tuple[str, ...], rows: pl.DataFrame, code: np.ndarray,
                  pos: np.ndarray, n_chunk: int, block_rows: int) -> None:
    """Spill ``rows`` (one chunk's) to one file per (table, block of ``block_rows`` table
    rows) they land in, each row with its position in its table (:data:`_POS`)."""
    for t, table in enumerate(tables):
        local = np.flatnonzero(code == t)
        if not local.size:
            continue
        bucket = pos[local] // block_rows
        order = np.argsort(bucket, kind="stable")
        local, bucket = local[order], bucket[order]
        for piece in np.split(local, np.flatnonzero(np.diff(bucket)) + 1):
            _write_spill(spill / _spill_name(table, int(pos[piece[0]] // block_rows), n_chunk),
                         (rows[sub].with_columns(pl.Series(_POS, pos[sub], dtype=pl.Int64))
                          for sub in np.split(piece, range(_GATHER_ROWS, piece.size,
                                                           _GATHER_ROWS))))


def _write_spill(path: Path, frames: Iterable[pl.DataFrame]) -> None:
    """Write ``frames`` (one schema; a lazy iterable) to one lz4 Parquet file, a frame at a
    time: only one gathered frame of :data:`_GATHER_ROWS` rows is held, not the whole
    piece. A piece of one frame (small chunks: most pieces) is one plain write."""
    frames = iter(frames)
    first = next(frames)
    second = next(frames, None)
    if second is None:
        first.write_parquet(path, compression="lz4", statistics=False)
        return
    table = first.to_arrow()
    del first
    with pq.ParquetWriter(path, table.schema, compression="lz4",
                          write_statistics=False) as writer:
        for frame in itertools.chain([second], frames):
            writer.write_table(table, row_group_size=_GATHER_ROWS)
            table = frame.to_arrow()
        writer.write_table(table, row_group_size=_GATHER_ROWS)


def _spill_chunks(spill: Path, files: list[Path], edited: list[Path], assigned: pl.DataFrame,
                  capped: pl.DataFrame, bounds: list[tuple[int, int]], chunk_rows: int) -> None:
    """Second walk over the examples: spill each chunk's wide rows to its split's set
    blocks, and its prompt keys (the key pass's spill) to the assignments' and capped rows'
    blocks (see :func:`_spill_pieces`)."""
    total = bounds[-1][1] if bounds else 0
    split = assigned["split"]
    set_code, set_pos = _positions(
        total, [assigned[_ROW].filter(split == n).to_numpy() for n in SPLIT_NAMES])
    table_code, table_pos = _positions(
        total, [assigned[_ROW].to_numpy(), capped[_ROW].to_numpy()])
    columns = NORMALIZED_SCHEMA.names()
    for n, (chunk, _) in enumerate(_example_chunks(files, edited, columns, chunk_rows)):
        lo, hi = bounds[n]
        _spill_pieces(spill, SPLIT_NAMES, chunk.rechunk(), set_code[lo:hi], set_pos[lo:hi], n,
                      chunk_rows)
        del chunk
        prompt_file = spill / _spill_name("prompt", 0, n)
        _spill_pieces(spill, ("assignments", "capped"), pl.read_parquet(prompt_file),
                      table_code[lo:hi], table_pos[lo:hi], n, chunk_rows)


def _gathered(spill: Path, table: str, block: int, start: int) -> tuple[pl.DataFrame,
                                                                        np.ndarray]:
    """(spilled rows of a table's block, their order in the table); the pieces are deleted."""
    pieces = sorted(spill.glob(f"{table}.{block:06d}.*.parquet"))
    rows = pl.read_parquet(pieces).rechunk()
    for piece in pieces:
        piece.unlink()
    order = np.empty(rows.height, dtype=np.int64)
    order[rows[_POS].to_numpy() - start] = np.arange(rows.height)
    return rows.drop(_POS), order


def _write_gathered(spill: Path, table: str, target: Path, schema: pl.Schema,
                    narrow: pl.DataFrame, block_rows: int) -> Path:
    """Write ``narrow`` (one row per table row, in table order) with its ``prompt_key``
    gathered back from the spilled blocks, as :data:`ASSIGNMENT_COLUMNS` (+ the reason)."""
    with ChunkedParquetWriter(target, schema=schema) as writer:
        for b, start in enumerate(range(0, narrow.height, block_rows)):
            prompts, order = _gathered(spill, table, b, start)
            block = narrow.slice(start, block_rows)
            for i in range(0, block.height, _GATHER_ROWS):  # one gathered slice at a time
                writer.write(block.slice(i, _GATHER_ROWS).with_columns(
                    prompts["prompt_key"].gather(order[i: i + _GATHER_ROWS])).select(
                    schema.names()))
    return target


def _write_set(spill: Path, name: str, target: Path, assigned: pl.DataFrame,
               block_rows: int) -> Path:
    """Write split ``name``'s set (:func:`split_set`'s frame) from its spilled blocks."""
    part = assigned.filter(pl.col("split") == name).select("split", "complexity_tier")
    columns = NORMALIZED_SCHEMA.names()
    with ChunkedParquetWriter(target, schema=SET_SCHEMA) as writer:
        for b, start in enumerate(range(0, part.height, block_rows)):
            rows, order = _gathered(spill, name, b, start)
            block = part.slice(start, block_rows)
            for i in range(0, rows.height, _GATHER_ROWS):  # one gathered slice at a time
                writer.write(rows[order[i: i + _GATHER_ROWS]].select(columns).hstack(
                    block.slice(i, _GATHER_ROWS)))
            del rows
    return target


def _prompt_keys_at(spill: Path, bounds: list[tuple[int, int]],
                    rows: pl.DataFrame) -> pl.Series:
    """``prompt_key`` of ``rows`` (of the key frame: :data:`_ROW`), from the key pass's
    spill files (only the files holding some of them are read)."""
    at = rows[_ROW].to_numpy()
    pieces = []
    for n, (lo, hi) in enumerate(bounds):
        sel = np.flatnonzero((at >= lo) & (at < hi))
        if sel.size:
            texts = pl.read_parquet(spill / _spill_name("prompt", 0, n))["prompt_key"]
            pieces.append(pl.DataFrame({"i": sel, "prompt_key": texts.gather(at[sel] - lo)}))
    if not pieces:
        return pl.Series("prompt_key", [], dtype=pl.String)
    return pl.concat(pieces).sort("i")["prompt_key"]
