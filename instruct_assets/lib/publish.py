"""Staging and promotion of per-source outputs (write, check, then publish atomically).

A source's new examples and rejects are written to ``staging/source=<name>/``; only after its
blocking checks pass are they moved (``os.replace``, atomic per file) to ``normalized/`` and
``rejects/``, which later stages read. A held-back source keeps its last good published
files. A small JSON report per source records what the last normalization saw.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from instruct_assets.lib import contract
from instruct_assets.lib.chunks import DEFAULT_CHUNK_ROWS, ChunkedParquetWriter
from instruct_assets.lib.normalize import (
    FileReport,
    SourceStream,
    run_chunked,
)
from instruct_assets.lib.parquet_io import atomic_path, compact_row_groups, write_parquet
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.schema import NORMALIZED_SCHEMA, REJECTS_SCHEMA
from instruct_assets.lib.sources import SourceSpec

EXAMPLES_FILE = "examples.parquet"
REJECTS_FILE = "rejects.parquet"
REPORT_FILE = "report.json"


def staging_dir(paths: DataPaths, source: str) -> Path:
    return paths.partition_dir(paths.staging, source)


def _write_report(folder: Path, source: str, records_read: int, rows: int,
                  rejects: pl.DataFrame, formats: dict[str, int], files: list[FileReport],
                  fingerprint: str | None, checks: dict | None) -> None:
    report = {
        "source": source,
        "records_read": records_read,
        "rows": rows,
        "rejects": rejects.height,
        "rejects_by_reason": rejects_by_reason(rejects),
        "formats": formats,
        "files": [asdict(f) for f in files],
        "fingerprint": fingerprint,
        "checks": checks or {},
    }
    with atomic_path(folder / REPORT_FILE) as tmp:
        tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")


#: Rows of a staged source kept in memory for previews.
HEAD_ROWS = 5


@dataclass
class StagedSource:
    """What staging a source leaves in memory: figures, rejects and a few head rows, never
    the examples themselves (they are streamed to the staging file)."""

    rows: int
    rejects: pl.DataFrame
    files: list[FileReport]
    formats: dict[str, int]
    outcomes: dict[str, contract.CheckOutcome]
    head: pl.DataFrame
    folder: Path

    @property
    def records_read(self) -> int:
        return sum(f.records_read for f in self.files)

    def rejects_by_reason(self) -> dict[str, int]:
        return rejects_by_reason(self.rejects)


def stage_source(paths: DataPaths, spec: SourceSpec, fingerprint: str | None,
                 max_reject_rate: float, files: list[Path] | None = None, *,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> StagedSource:
    """Normalize ``spec`` chunk by chunk into its staging folder: each frame of at most
    about ``chunk_rows`` rows is checked (``contract.SourceChecks``) and appended to the
    staged examples, then dropped; rejects and the report follow. The check outcomes, the
    report and the file equal those of ``normalize_source`` + ``source_checks`` on the
    whole source (one chunk gives the same bytes)."""
    folder = staging_dir(paths, spec.name)

    def consume(stream: SourceStream) -> tuple[contract.SourceChecks, pl.DataFrame]:
        checks = contract.SourceChecks()
        head = pl.DataFrame(schema=NORMALIZED_SCHEMA)
        with ChunkedParquetWriter(folder / EXAMPLES_FILE, NORMALIZED_SCHEMA) as writer:
            for frame in stream.examples():
                checks.add(frame)
                if head.height < HEAD_ROWS:
                    head = pl.concat([head, frame.head(HEAD_ROWS - head.height)])
                if stream.cut:  # more frames follow: do not hold this one until the next
                    writer.write(frame)
                    writer.stream()
                else:  # the source in one frame: compacted, its write costs half the CPU
                    writer.write(compact_row_groups(frame))
                del frame
        return checks, head

    (checks, head), stream = run_chunked(paths, spec, files, chunk_rows, consume)
    outcomes = checks.outcomes(stream.records_read, stream.rejects.height, max_reject_rate)
    write_parquet(stream.rejects, folder / REJECTS_FILE, REJECTS_SCHEMA)
    format_counts = dict(sorted(checks.formats.items()))
    _write_report(folder, spec.name, stream.records_read, stream.rows, stream.rejects,
                  format_counts, stream.files, fingerprint,
                  {name: asdict(o) for name, o in outcomes.items()})
    return StagedSource(stream.rows, stream.rejects, stream.files, format_counts, outcomes,
                        head, folder)


def rejects_by_reason(rejects: pl.DataFrame) -> dict[str, int]:
    counts = rejects["reason_code"].value_counts(sort=True)
    return {r: int(n) for r, n in counts.sort(["count", "reason_code"],
                                              descending=[True, False]).iter_rows()}


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
