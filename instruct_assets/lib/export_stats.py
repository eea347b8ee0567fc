"""Figures for the dataset card and the export round-trip check (pure functions)."""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from instruct_assets.lib.normalize import normalize_source
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.sources import SourceSpec, discover_sources


def _export_dir(results: dict[str, dict]) -> str:
    """The export folder of ``export_split`` results (where the card is written)."""
    return next(iter(results.values()))["out_dir"] if results else "."


def _per_kind(results: dict[str, dict], value: Any) -> dict[str, dict[str, Any]]:
    """``{kind: {split: value(info)}}`` over ``export_split`` results (None values left out)."""
    out: dict[str, dict[str, Any]] = {}
    for split, res in results.items():
        for kind, info in res["formats"].items():
            v = value(info)
            if v is not None:
                out.setdefault(kind, {})[split] = v
    return out


def card_stats(paths: DataPaths, sources: list[str], frames: dict[str, pl.DataFrame],
               results: dict[str, dict], config: dict[str, Any]) -> dict[str, Any]:
    """The ``stats`` dict ``export.card.build_card`` renders."""
    specs = discover_sources(paths)
    all_rows = pl.concat(list(frames.values())) if frames else pl.DataFrame()
    rows_by_source = dict(all_rows.group_by("source").len().iter_rows()) if all_rows.height else {}
    stats: dict[str, Any] = {
        "name": "instruct_assets",
        "description": "Curated instruction-tuning data built by the instruct_assets pipeline.",
        "sources": [
            {"name": s, "license": specs[s].license if s in specs else None,
             "origin": specs[s].origin if s in specs else None,
             "rows": int(rows_by_source.get(s, 0)),
             "note": specs[s].notes if s in specs else None}
            for s in sources
        ],
        "splits": {s: f.height for s, f in frames.items()},
        "tiers": {s: dict(f.group_by("complexity_tier").len().sort("complexity_tier")
                          .iter_rows()) for s, f in frames.items()},
        "source_counts": {s: dict(f.group_by("source").len().sort("source").iter_rows())
                          for s, f in frames.items()},
        "not_exportable": _per_kind(results, lambda info: info["not_exportable"]["count"]
                                    if "not_exportable" in info else None),
        # the files written (kinds not configured are not listed), relative to the card
        "exports": _per_kind(results, lambda info: Path(info["path"]).relative_to(
            Path(_export_dir(results))).as_posix()),
        "config": config,
    }
    curation = paths.curation / "curation.parquet"
    if curation.exists():
        reasons = pl.read_parquet(curation, columns=["exclusion_reason"]).drop_nulls()
        rules = reasons.select(pl.when(pl.col("exclusion_reason").str.starts_with("duplicate"))
                               .then(pl.lit("duplicate")).otherwise("exclusion_reason")
                               .alias("rule")).group_by("rule").len().sort("rule")
        stats["quality_removed"] = dict(rules.iter_rows())
    quality = paths.quality / "quality.parquet"
    if quality.exists():
        q = pl.read_parquet(quality, columns=["is_exact_duplicate", "is_near_duplicate",
                                              "is_dup_representative"])
        stats["dedup"] = {
            "exact_duplicate_rows": int(q["is_exact_duplicate"].sum()),
            "near_duplicate_rows": int(q["is_near_duplicate"].sum()),
            "non_representatives": int((~q["is_dup_representative"]).sum()),
        }
    rejects = [paths.rejects_file(s) for s in sources if paths.rejects_file(s).exists()]
    if rejects:
        r = pl.read_parquet(rejects, columns=["reason_code"])
        stats["rejects"] = dict(r.group_by("reason_code").len().sort("reason_code").iter_rows())
    return stats


#: Bytes read at a time by ``sample_lines``.
BLOCK_BYTES = 1 << 25


def sample_lines(path: Path, step: int, count: int) -> bytes:
    """Lines 0, step, 2*step, ... (at most ``count``) of a text file, each ending in "\\n".

    Why numpy over a memory map: newlines are found by a vectorised scan of the mapped file,
    block by block (no Python call per line), and the file's cached pages are scanned in
    place instead of copied into a buffer first. Each scanned block is released from the
    map, so the resident memory stays about one block whatever the file's size.
    """
    size = path.stat().st_size
    if not size or count <= 0:
        return b""
    picked: list[bytes] = []
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        data = np.frombuffer(m, dtype=np.uint8)
        try:
            line = 0  # index of the line that starts at ``start``
            start = 0  # file offset of the current line's first byte
            released = 0  # pages before this offset were handed back (see below)
            for offset in range(0, size, BLOCK_BYTES):
                ends = np.flatnonzero(data[offset:offset + BLOCK_BYTES] == 10) + offset
                if not len(ends):
                    continue
                starts = np.concatenate([[start], ends[:-1] + 1])
                keep = np.flatnonzero((line + np.arange(len(ends))) % step == 0)
                picked += [m[int(starts[k]):int(ends[k]) + 1] for k in keep[:count - len(picked)]]
                line += len(ends)
                start = int(ends[-1]) + 1
                if len(picked) >= count:
                    break
                # drop the scanned block's pages from this process (the page cache keeps
                # them): a mapped page stays in the RSS until unmapped, so scanning a 6 GB
                # export would otherwise count 6 GB against the stage's memory
                done = min(start, offset + BLOCK_BYTES) // mmap.PAGESIZE * mmap.PAGESIZE
                if done > released:
                    m.madvise(mmap.MADV_DONTNEED, released, done - released)
                    released = done
            if start < size and len(picked) < count and line % step == 0:
                picked.append(m[start:] + b"\n")  # a last line without a newline
        finally:
            del data  # release the map's buffer before it closes
    return b"".join(picked)


def round_trip_ids(paths: DataPaths, export_file: Path, split: pl.DataFrame,
                   max_rows: int = 10_000) -> dict[str, Any]:
    """Ingest ``export_file`` (OpenAI JSONL) as a source; compare its ids with ``split``'s.

    Up to ``max_rows`` lines are checked: beyond that, every k-th line (a deterministic
    sample, k = ceil(rows / max_rows)), so the check stays cheap on millions of rows. The
    export holds the split's rows in (source, example_id) order, so line i is row i: the
    ids are content hashes, so a sampled line that is not exactly its row's conversation
    shows up as a missing and an unexpected id.
    """
    ordered = split.select("source", "example_id").sort("source", "example_id")
    step = max(1, -(-ordered.height // max_rows))
    target = export_file
    if step > 1:
        target = paths.staging / "_roundtrip" / export_file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(sample_lines(export_file, step, -(-ordered.height // step)))
        ordered = ordered.gather_every(step)
    spec = SourceSpec(name="_roundtrip", format="openai", files=(paths.relative(target),))
    try:
        back = normalize_source(paths, spec)
    finally:
        if target != export_file:
            target.unlink(missing_ok=True)
    want = ordered["example_id"].to_list()
    got = back.examples.sort("source_row")["example_id"].to_list()
    # a sample can hold the same conversation twice only if the split does; ids then differ
    # only by the repeat suffix, which ingestion assigns by order
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    return {"rows_checked": len(want), "sample_every": step, "rejects": back.rejects.height,
            "missing": missing, "unexpected": unexpected}
