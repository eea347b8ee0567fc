"""The DuckDB warehouse: views over the Parquet outputs, rebuilt in one short transaction.

Parquet under the data dir is the source of truth; ``warehouse.duckdb`` only holds views
(with absolute paths into the data dir) so it can be deleted and rebuilt at any time, and a
write holds DuckDB's single-writer lock for milliseconds. Every relation here is documented
in the README ("SQL over the outputs").
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl

from instruct_assets.lib.formats.sql import lit

#: Relations and what they hold (README and UI descriptions).
RELATIONS: dict[str, str] = {
    "examples": "every published normalized example (view over normalized/*/examples.parquet)",
    "rejects": "every rejected record with reason_code and detail (view over rejects/)",
    "quality": "one row per example: every quality signal, quality_score, quality_flags, "
               "dup_cluster_id",
    "source_summary": "per source: rows, rejects, flags by kind, mean score, shapes",
    "flag_counts": "per source and flag: flagged rows (long form of the flags by kind)",
    "system_prompts": "distinct system prompts with their count and sources",
    "splits": "example_id, split, complexity_tier, source of every kept example",
    "train": "the train split joined to its examples",
    "eval": "the eval split joined to its examples",
    "synthetic_capped": "synthetic rows the enforced synthetic cap dropped from a split "
                        "(exclusion_reason synthetic_cap)",
    "curation": "one row per example with exclusion_reason (null when kept)",
    "complexity": "complexity features, complexity_score and complexity_tier per example",
    "contamination": "benchmark n-gram hits per example",
    "contamination_hits": "per benchmark: items hit and examples hit",
    "edited_examples": "human-edited conversations under their new example_id, with "
                       "original_example_id",
    "annotations": "one row per human annotation: source, example_id, verdict, "
                   "edited_content, reason, annotator, annotated_at, tool",
    "annotation_rejects": "annotation records that could not be used, with reason_code",
    "review_queue": "the examples queued for human review, why, and their position",
}


def _empty_select(schema: pl.Schema) -> str:
    """A typed, empty SELECT for a relation whose files do not exist yet."""
    con = duckdb.connect()
    try:
        frame = pl.DataFrame(schema=schema)  # noqa: F841 - read by DuckDB by name
        types = con.sql("SELECT * FROM frame").types
    finally:
        con.close()
    cols = ", ".join(f"CAST(NULL AS {t}) AS \"{n}\"" for n, t in zip(schema.names(), types,
                                                                     strict=True))
    return f"SELECT {cols} WHERE false"


def view_over(files: list[Path], schema: pl.Schema) -> str:
    """SQL selecting all rows of ``files`` (an empty typed select when there are none)."""
    existing = [f for f in files if f.exists()]
    if not existing:
        return _empty_select(schema)
    listed = ", ".join(lit(str(f)) for f in existing)
    return f"SELECT * FROM read_parquet([{listed}], union_by_name = true)"


def replace_views(con: duckdb.DuckDBPyConnection, views: dict[str, str]) -> None:
    """Create or replace ``views`` (name -> SELECT) in one transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        for name, select in views.items():
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {select}')
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


class WarehouseLockedError(RuntimeError):
    """Another process held the warehouse past the wait: names the holder when known."""


_HOLDER = re.compile(r"Conflicting lock is held in (?P<holder>.+?) \(PID (?P<pid>\d+)\)")


def connect_for_write(path: Path, timeout_s: float, log: Callable[[str], None],
                      config: dict | None = None) -> duckdb.DuckDBPyConnection:
    """Open ``path`` read-write, waiting at most ``timeout_s`` for another process's lock.

    DuckDB allows one writer, and a user's open read-write session blocks every other
    process. We log once who holds it (DuckDB names the process and PID), retry with
    backoff, and fail with that name when the wait is over, never touching the file.
    """
    deadline = time.monotonic() + timeout_s
    delay, told = 0.2, False
    while True:
        try:
            return duckdb.connect(str(path), read_only=False, config=config or {})
        except duckdb.IOException as exc:
            found = _HOLDER.search(str(exc))
            if found is None and "lock" not in str(exc).lower():
                raise
            holder = (f"{found['holder']} (PID {found['pid']})" if found
                      else "another process")
            if time.monotonic() >= deadline:
                raise WarehouseLockedError(
                    f"{path} is locked by {holder}; waited {timeout_s:g}s. Close that DuckDB "
                    f"session (or open it with -readonly / read_only=True) and re-run") from exc
            if not told:
                log(f"{path} is locked by {holder}; waiting up to {timeout_s:g}s for it "
                    "to close (a DuckDB session opened read-write blocks writers)")
                told = True
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
            delay = min(delay * 2, 5.0)
