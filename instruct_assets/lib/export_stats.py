"""Figures for the dataset card and the export round-trip check (pure functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from instruct_assets.lib.normalize import normalize_source
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.sources import SourceSpec, discover_sources


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
        "not_exportable": {kind: {s: info["not_exportable"]["count"]}
                           for s, res in results.items()
                           for kind, info in res["formats"].items() if "not_exportable" in info},
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


#: Keys each JSON export kind may hold, per record.
RECORD_KEYS: dict[str, set[str]] = {
    "openai": {"messages", "tools"},
    "sharegpt": {"conversations", "system", "tools"},
    "alpaca": {"instruction", "input", "output", "system"},
    "text_chatml": {"text"},
    "text_llama3": {"text"},
    "text_alpaca": {"text"},
}

#: Above this many rows, ``check_export`` parses every line natively instead of validating
#: every record's content in detail (which costs minutes at a million rows).
DETAILED_MAX_ROWS = 100_000


def check_export(path: Path, kind: str, rows: int) -> dict[str, Any]:
    """Every line parses and holds one format: detailed validation for small files, a full
    native parse with a key-set check for large ones (same verdict on well-formed files)."""
    from instruct_assets.lib.export.validate import validate_export

    if rows <= DETAILED_MAX_ROWS or kind == "openai_parquet":
        return validate_export(path, kind)
    errors: list[str] = []
    try:
        frame = (pl.read_ndjson(path, infer_schema_length=None) if path.suffix == ".jsonl"
                 else pl.read_json(path, infer_schema_length=None))
    except Exception as exc:
        return {"path": str(path), "kind": kind, "valid": False, "rows": 0,
                "errors": [f"does not parse: {exc}"[:300]]}
    extra = set(frame.columns) - RECORD_KEYS.get(kind, set(frame.columns))
    if extra:
        errors.append(f"keys {sorted(extra)} do not belong to format {kind}")
    return {"path": str(path), "kind": kind, "valid": not errors, "rows": frame.height,
            "errors": errors}


def round_trip_ids(paths: DataPaths, export_file: Path, split: pl.DataFrame,
                   max_rows: int = 50_000) -> dict[str, Any]:
    """Ingest ``export_file`` (OpenAI JSONL) as a source; compare its ids with ``split``'s.

    Up to ``max_rows`` lines are checked: beyond that, every k-th line (a deterministic
    sample, k = ceil(rows / max_rows)), so the check stays cheap on millions of rows. The
    export holds the split's rows in (source, example_id) order, so line i is row i.
    """
    ordered = split.sort("source", "example_id")
    step = max(1, -(-ordered.height // max_rows))
    target = export_file
    if step > 1:
        lines = export_file.read_bytes().split(b"\n")
        target = paths.staging / "_roundtrip" / export_file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\n".join(lines[::step][: -(-ordered.height // step)]) + b"\n")
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
