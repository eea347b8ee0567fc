"""The quality stage's data work, shared by the ``quality_scores`` asset and ``bench/``.

Why one function: the benchmark must time exactly what the asset does, so the asset keeps
only Dagster wiring (views under its DuckDB resource, check results, metadata) and both call
:func:`publish_quality`.

Bounded memory: when the examples exceed ``chunk_rows`` rows, they are walked in chunks and
only narrow per-row columns are kept across chunks (keys, dedup hashes, template group
hashes, flag bit masks; then cluster facts and the summary columns). The wide quality rows
are finished chunk by chunk once the global steps (template groups, duplicate clusters and
their representatives) are known. The output is sorted by (source, example_id) while the
published examples are not: pass 1 spills each chunk's row-local signals into buckets by
output chunk (its rows' positions in the global key order, from the narrow keys), and the
output pass reads one bucket at a time, sorts it and writes it. At or below one chunk the
stage runs exactly as it always has, on one frame.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from instruct_assets.lib.chunks import (
    DEFAULT_CHUNK_ROWS,
    ChunkedParquetWriter,
    iter_parquet_chunks,
    parquet_rows,
    spill_dir,
)
from instruct_assets.lib.keys import KEY, adjacent_repeats, key_order, key_sorted
from instruct_assets.lib.parquet_io import write_parquet
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.consistency import (
    dominant_shapes,
    merge_system_prompts,
    shape_keys,
    system_prompt_table,
)
from instruct_assets.lib.quality.dedup import (
    DedupConfig,
    cluster_hashes,
    dedup_hashes,
    duplicates_frame,
    pick_representatives,
    signatures_of,
)
from instruct_assets.lib.quality.signals import (
    ROW,
    finish_scores,
    mask_scores,
    row_flag_mask,
    row_signals,
)
from instruct_assets.lib.quality.table import (
    build_quality,
    combine_duplicates,
    flag_counts,
    merge_flag_counts,
    narrow_columns,
    source_summary,
    worst_candidates,
)
from instruct_assets.lib.schema import NORMALIZED_SCHEMA, REJECTS_SCHEMA
from instruct_assets.lib.stage_io import example_files, read_examples, rejects_per_source
from instruct_assets.lib.warehouse import view_over

#: Columns of the examples the stage reads (scoring: messages; exact key: tools).
_READ = [*KEY, "messages", "tools"]


@dataclass
class QualityStage:
    """What the stage wrote, the views to (re)create, and the figures its checks read.

    Never the wide quality table: its checks and metadata read ``narrow`` (one small row per
    quality row), ``worst`` and the written Parquet.
    """

    sources: list[str]
    examples_rows: int
    #: rows written to quality.parquet, and its schema
    rows: int
    schema: pl.Schema
    #: ``table.narrow_columns`` of every quality row, in the written (key) order
    narrow: pl.DataFrame
    #: ``table.worst_candidates`` (feed ``worst_examples``)
    worst: pl.DataFrame
    summary: pl.DataFrame
    flags: pl.DataFrame
    prompts: pl.DataFrame
    views: dict[str, str]
    #: published examples without a quality row (sample of ids) and their count
    missing: pl.DataFrame
    #: quality rows whose key appears more than once
    duplicated: int
    #: (source, example_id, quality_score) of rows whose score is null or outside [0, 1]
    out_of_range: pl.DataFrame
    #: seconds spent reading examples and scoring them (chunked: and writing quality rows)
    seconds: float
    #: chunks the examples were walked in (1: in one piece)
    chunks: int = 1


def _out_of_range(quality: pl.DataFrame) -> pl.DataFrame:
    return quality.filter(pl.col("quality_score").is_null()
                          | ~pl.col("quality_score").is_between(0.0, 1.0)
                          ).select(*KEY, "quality_score")


def publish_quality(paths: DataPaths, sources: list[str], cfg: QualityThresholds,
                    dedup: DedupConfig, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> QualityStage:
    """Score every published example of ``sources`` and write ``quality/*.parquet``
    atomically; the caller creates the returned views in the warehouse. Examples beyond
    ``chunk_rows`` rows are processed in chunks (same output, bounded memory)."""
    started = time.perf_counter()
    files = example_files(paths, sources)
    total = parquet_rows(files) if files else 0
    out = paths.quality
    if total <= chunk_rows:
        examples = read_examples(paths, sources, _READ)
        quality = build_quality(examples, cfg, dedup)
        seconds = time.perf_counter() - started
        prompts = system_prompt_table(examples)
        ex_keys = examples.select(KEY)
        del examples
        flags = flag_counts(quality)
        narrow = narrow_columns(quality).rechunk()
        worst = worst_candidates(quality)
        out_of_range = _out_of_range(quality)
        # The blocking check compares the keys themselves (not what the code should have
        # made): an anti-join finds examples without a row; sorted keys prove no repeat.
        q_keys = quality.select(KEY)
        missing = ex_keys.join(q_keys, on=KEY, how="anti")
        duplicated = (0 if key_sorted(q_keys, strict=True)
                      else q_keys.filter(pl.struct(KEY).is_duplicated()).height)
        del ex_keys, q_keys
        quality_file = write_parquet(quality, out / "quality.parquet")
        schema, rows, chunks = quality.schema, quality.height, 1
        del quality
    else:
        res = _chunked(files, total, cfg, dedup, chunk_rows, out)
        seconds = time.perf_counter() - started
        prompts, flags, narrow, worst = res["prompts"], res["flags"], res["narrow"], res["worst"]
        out_of_range, missing, duplicated = res["out_of_range"], res["missing"], res["dupl"]
        quality_file, schema, rows = res["file"], res["schema"], res["rows"]
        chunks = res["chunks"]
    summary = source_summary(narrow, flags, prompts, rejects_per_source(paths, sources), cfg)
    views = {
        "examples": view_over([paths.normalized_file(s) for s in sources], NORMALIZED_SCHEMA),
        "rejects": view_over([paths.rejects_file(s) for s in sources], REJECTS_SCHEMA),
        "quality": view_over([quality_file], schema),
    }
    for name, frame in {"source_summary": summary, "flag_counts": flags,
                        "system_prompts": prompts}.items():
        views[name] = view_over([write_parquet(frame, out / f"{name}.parquet")], frame.schema)
    return QualityStage(
        sources=sources,
        examples_rows=total,
        rows=rows,
        schema=schema,
        narrow=narrow,
        worst=worst,
        summary=summary,
        flags=flags,
        prompts=prompts,
        views=views,
        missing=missing,
        duplicated=duplicated,
        out_of_range=out_of_range,
        seconds=seconds,
        chunks=chunks,
    )


def _written_keys_check(ex_keys: pl.DataFrame, target: Path) -> dict:
    """Missing examples and repeated keys of the written quality file (the slow way)."""
    q_keys = pl.read_parquet(target, columns=KEY)
    return {"missing": ex_keys.join(q_keys, on=KEY, how="anti"),
            "dupl": q_keys.filter(pl.struct(KEY).is_duplicated()).height}


def _chunked(files: list[Path], total: int, cfg: QualityThresholds, dedup: DedupConfig,
             chunk_rows: int, out: Path) -> dict:
    """The quality table of ``files`` (``total`` > ``chunk_rows`` rows) in chunks, written to
    ``out/quality.parquet``; returns the narrow results :func:`publish_quality` needs."""
    # Global key order from the narrow keys: each row's output position and output chunk.
    ex_keys = pl.read_parquet(files, columns=KEY).rechunk()
    order = key_order(ex_keys).to_numpy().astype(np.int64)
    # Keys must be unique (as in one piece, where ranking representatives fails otherwise):
    # in key order, a repeated key sits next to its copy.
    if adjacent_repeats(ex_keys[order]):
        raise pl.exceptions.ComputeError(
            "examples share a (source, example_id) key: quality rows are keyed on it")
    pos = np.empty(total, dtype=np.int64)
    pos[order] = np.arange(total, dtype=np.int64)
    n_out = -(-total // chunk_rows)
    with spill_dir(out) as spill:
        return _chunked_in(files, total, cfg, dedup, chunk_rows, out, spill,
                           ex_keys, order, pos, n_out)


def _chunked_in(files: list[Path], total: int, cfg: QualityThresholds, dedup: DedupConfig,
                chunk_rows: int, out: Path, spill: Path, ex_keys: pl.DataFrame,
                order: np.ndarray, pos: np.ndarray, n_out: int) -> dict:
    """Pass 1 over the chunks, the global steps, the output pass (see the module doc)."""
    # Pass 1: row-local signals (spilled by output chunk), narrow per-row material.
    keyed, masks, prompt_parts = [], [], []
    # Dedup material filled in place (a list of per-chunk arrays would be copied once more).
    hashes = {"hi": np.empty(total, dtype=np.uint64), "lo": np.empty(total, dtype=np.uint64),
              "has": np.empty(total, dtype=bool),
              "bands": np.empty((dedup.num_bands, total), dtype=np.uint64)}
    offset = 0
    n_in = 0
    # Each chunk's dedup hashes are computed in a background thread beside its signals (as
    # ``build_quality`` does in one piece): both have serial stretches the other fills.
    with ThreadPoolExecutor(max_workers=1) as hasher:
        for chunk in iter_parquet_chunks(files, _READ, chunk_rows):
            hashed = hasher.submit(dedup_hashes, chunk, dedup)
            frame = chunk.select(*KEY, "messages").rechunk().with_row_index(ROW, offset=offset)
            rows = row_signals(frame, cfg)
            del frame
            keyed.append(shape_keys(rows))
            masks.append(row_flag_mask(rows))
            for name, values in hashed.result().items():
                hashes[name][..., offset:offset + values.shape[-1]] = values
            del hashed, values
            prompt_parts.append(system_prompt_table(chunk))
            del chunk
            dest = pl.Series("_dest", pos[offset:offset + rows.height] // chunk_rows)
            for (d,), part in rows.with_columns(dest).partition_by(
                    "_dest", as_dict=True, maintain_order=True).items():
                folder = spill / f"{d:06d}"
                folder.mkdir(exist_ok=True)
                part.drop("_dest").write_parquet(folder / f"{n_in:06d}.parquet",
                                                 compression="lz4", statistics=False)
            offset += rows.height
            n_in += 1
            del rows
    prompts = merge_system_prompts(prompt_parts)
    del prompt_parts

    # Global: template groups over every row; duplicate clusters over every row's hashes
    # (signatures of candidate rows hashed again from their chunks).
    keyed_all = pl.concat(keyed).rechunk()
    del keyed
    groups = dominant_shapes(keyed_all, cfg)
    mask = pl.concat(masks).rechunk()
    del masks

    def signatures(need: np.ndarray) -> np.ndarray:
        sig = np.empty((dedup.num_hashes, need.size), dtype=np.uint32)
        start = 0
        for chunk in iter_parquet_chunks(files, ["messages"], chunk_rows):
            lo, hi = np.searchsorted(need, [start, start + chunk.height])
            if hi > lo:
                sig[:, lo:hi] = signatures_of(chunk, dedup, need[lo:hi] - start)
            start += chunk.height
        return sig

    clusters = cluster_hashes(hashes, dedup, signatures)
    del hashes

    # Representatives of shared clusters, ranked by the score before duplicates.
    rep = np.ones(total, dtype=bool)
    shared = np.flatnonzero(clusters["cluster_size"] > 1)
    if shared.size:
        sk = ex_keys[shared]
        so = keyed_all[shared].join(groups, on="_gid", how="left", maintain_order="left")
        outlier = so.select(pl.col("template_dominant_shape").is_not_null()
                            & (pl.col("output_shape") != pl.col("template_dominant_shape")))
        scores = sk.with_columns(mask_scores(mask[shared], outlier.to_series(), cfg))
        dups = duplicates_frame(sk, clusters, shared)
        picked = pick_representatives(dups, scores)
        rep[shared] = picked["is_dup_representative"].to_numpy()
    del keyed_all, mask

    # Output pass: one bucket per output chunk, in key order, finished and written.
    narrow, flag_parts, worst, bad = [], [], [], []
    keys_match = True
    target = out / "quality.parquet"
    with ChunkedParquetWriter(target) as writer:
        for d in range(n_out):
            folder = spill / f"{d:06d}"
            rows = pl.concat([pl.read_parquet(f) for f in sorted(folder.glob("*.parquet"))])
            shutil.rmtree(folder, ignore_errors=True)
            ids = order[d * chunk_rows:(d + 1) * chunk_rows]
            rows = rows[np.argsort(pos[rows[ROW].to_numpy()], kind="stable")]
            if not np.array_equal(rows[ROW].to_numpy(), ids):
                raise RuntimeError("quality rows lost their key order between passes")
            scores = finish_scores(rows.drop(ROW).rechunk(), cfg, groups)
            del rows
            dups = duplicates_frame(ex_keys[ids], clusters, ids).with_columns(
                is_dup_representative=pl.Series(rep[ids]))
            quality = combine_duplicates(scores, dups, cfg)
            del scores, dups
            writer.write(quality)
            narrow.append(narrow_columns(quality))
            flag_parts.append(flag_counts(quality))
            worst.append(worst_candidates(quality))
            bad.append(_out_of_range(quality))
            # what was written, against the examples' keys in key order
            keys_match &= quality.select(KEY).equals(ex_keys[ids])
            schema = quality.schema
            del quality
    return {
        "prompts": prompts,
        "flags": merge_flag_counts(flag_parts),
        "narrow": pl.concat(narrow).rechunk(),
        "worst": pl.concat(worst),
        "out_of_range": pl.concat(bad),
        # Each written chunk holds exactly its examples' keys, in key order, and the keys
        # are unique: nothing is missing or repeated. Otherwise, compare with the file.
        **({"missing": ex_keys.clear(), "dupl": 0} if keys_match
           else _written_keys_check(ex_keys, target)),
        "file": target,
        "schema": schema,
        "rows": writer.rows,
        "chunks": n_in,
    }
