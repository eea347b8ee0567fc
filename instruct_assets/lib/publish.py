"""Staging and promotion of per-source outputs (write, check, then publish atomically).

A source's new examples and rejects are written to ``staging/source=<name>/``; only after its
blocking checks pass are they moved (``os.replace``, atomic per file) to ``normalized/`` and
``rejects/``, which later stages read. A held-back source keeps its last good published
files. A small JSON report per source records what the last normalization saw.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import polars as pl

from instruct_assets.lib.normalize import NormalizedSource
from instruct_assets.lib.parquet_io import atomic_path, write_parquet
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.schema import NORMALIZED_SCHEMA, REJECTS_SCHEMA

EXAMPLES_FILE = "examples.parquet"
REJECTS_FILE = "rejects.parquet"
REPORT_FILE = "report.json"


def staging_dir(paths: DataPaths, source: str) -> Path:
    return paths.partition_dir(paths.staging, source)


def write_staging(paths: DataPaths, source: str, result: NormalizedSource,
                  fingerprint: str | None = None, checks: dict | None = None) -> Path:
    """Write examples, rejects and the report of ``source`` (with its input fingerprint and
    check outcomes, so an unchanged source can be recognised later) to its staging folder."""
    folder = staging_dir(paths, source)
    write_parquet(result.examples, folder / EXAMPLES_FILE, NORMALIZED_SCHEMA)
    write_parquet(result.rejects, folder / REJECTS_FILE, REJECTS_SCHEMA)
    report = {
        "source": source,
        "records_read": result.records_read,
        "rows": result.examples.height,
        "rejects": result.rejects.height,
        "rejects_by_reason": result.rejects_by_reason(),
        "formats": result.formats(),
        "files": [asdict(f) for f in result.files],
        "fingerprint": fingerprint,
        "checks": checks or {},
    }
    with atomic_path(folder / REPORT_FILE) as tmp:
        tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def promote(paths: DataPaths, source: str) -> dict[str, Path]:
    """Publish the staged files of ``source`` (each move is an atomic rename)."""
    folder = staging_dir(paths, source)
    targets = {
        EXAMPLES_FILE: paths.normalized_file(source),
        REJECTS_FILE: paths.rejects_file(source),
        REPORT_FILE: paths.partition_dir(paths.normalized, source) / REPORT_FILE,
    }
    missing = [name for name in targets if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"nothing staged for source {source!r}: missing {missing}")
    for name, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder / name, target)
    return targets


def published_sources(paths: DataPaths, registered: list[str] | None = None) -> list[str]:
    """Sources with published examples, restricted to ``registered`` when given."""
    if not paths.normalized.is_dir():
        return []
    found = sorted(
        p.parent.name.removeprefix("source=")
        for p in paths.normalized.glob(f"source=*/{EXAMPLES_FILE}")
    )
    if registered is not None:
        keep = set(registered)
        found = [s for s in found if s in keep]
    return found


def read_report(paths: DataPaths, source: str, staged: bool = False) -> dict | None:
    folder = staging_dir(paths, source) if staged else paths.partition_dir(paths.normalized, source)
    path = folder / REPORT_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def scan_published(paths: DataPaths, sources: list[str]) -> pl.LazyFrame:
    """Lazy scan of the published examples of ``sources``."""
    files = [str(paths.normalized_file(s)) for s in sources]
    if not files:
        return pl.LazyFrame(schema=NORMALIZED_SCHEMA)
    return pl.scan_parquet(files)


def clear_staging(paths: DataPaths, source: str) -> None:
    """Remove what is staged for ``source`` (nothing left to promote)."""
    folder = staging_dir(paths, source)
    for name in (EXAMPLES_FILE, REJECTS_FILE, REPORT_FILE):
        (folder / name).unlink(missing_ok=True)


def unchanged_since_publication(paths: DataPaths, source: str, fingerprint: str) -> dict | None:
    """The published report when ``source`` was last published from the same fingerprint."""
    report = read_report(paths, source)
    if (report and report.get("fingerprint") == fingerprint and report.get("checks")
            and paths.normalized_file(source).exists() and paths.rejects_file(source).exists()):
        return report
    return None
