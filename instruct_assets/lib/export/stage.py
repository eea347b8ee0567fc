"""The exports stage's data work, shared by the ``training_exports`` asset and the bench.

One function so the asset and ``bench/stages.py`` cannot drift: read each split, write each
export kind, check every file on disk, compare row counts, run the round trip, write the
card. The asset adds only Dagster wiring (check results, metadata).

Why a thread pool: the JSON-line files and the Parquet copy are written from the same
sorted rows independently, and the heavy work (polars encoding, pyarrow compression,
DuckDB parsing, fsync) releases the GIL. Three workers, one per group of files (two
JSON-line groups and the Parquet copy): the Parquet copy is mostly single-threaded
(pyarrow's encoder) and waits on its writeback, so on its own worker it runs from the
start beside both JSON-line groups instead of queueing behind one of them (measured at 1M
rows on a busy two-core box: ~11% less wall, same CPU, lower peak RSS); every file's bytes
are independent of the scheduling. Each file is checked (re-read from disk, see
``validate.validate_export``) on its own task as soon as it is written.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from instruct_assets.lib.chunks import (
    DEFAULT_CHUNK_ROWS,
    chunk_bounds,
    iter_parquet_chunks,
    parquet_rows,
)
from instruct_assets.lib.export.card import write_card
from instruct_assets.lib.export.common import KEY, key_list
from instruct_assets.lib.export.validate import validate_export
from instruct_assets.lib.export.writers import (
    KindsWriter,
    SharedChunks,
    check_kinds,
    prepare_rows,
    split_result,
)
from instruct_assets.lib.export_stats import card_stats, round_trip_ids
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.split_sets import SPLIT_NAMES

#: Split columns the stage reads: the export's inputs plus what the card counts.
SPLIT_COLUMNS: tuple[str, ...] = ("example_id", "source", "messages", "tools", "complexity_tier")

#: Columns of each split kept after export (for the card, the counts, the round trip).
KEPT_COLUMNS: tuple[str, ...] = ("example_id", "source", "complexity_tier")

Part = Callable[[str], contextlib.AbstractContextManager[Any]]


@dataclass
class ExportOutcome:
    """What ``run_exports`` wrote and found.

    ``frames``: each split's ``KEPT_COLUMNS`` (``height`` = the split's rows); ``results``:
    ``export_split``-style results per split; ``validations``: ``validate_export`` reports
    (+ ``split``, ``seconds``); ``count_errors``: files whose rows on disk (+ listed
    not-exportable rows) differ from the split's; ``trip``: ``round_trip_ids`` per split;
    ``files``: one row per file (split, kind, path, rows, bytes, not_exportable).
    """

    frames: dict[str, pl.DataFrame]
    results: dict[str, dict[str, Any]]
    validations: list[dict[str, Any]]
    count_errors: list[str]
    trip: dict[str, dict[str, Any]]
    files: pl.DataFrame
    card: Path

    @property
    def invalid(self) -> list[dict[str, Any]]:
        return [v for v in self.validations if not v["valid"]]

    @property
    def trip_failures(self) -> dict[str, dict[str, Any]]:
        return {s: t for s, t in self.trip.items() if t["missing"] or t["unexpected"]}


@contextlib.contextmanager
def _no_part(_name: str) -> Iterator[None]:
    yield


def _check(paths: DataPaths, entry: dict[str, Any], kept: pl.DataFrame, split: str,
           kind: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Validate one written file (and run the round trip on the OpenAI JSONL)."""
    started = time.perf_counter()
    report = validate_export(entry["path"], kind) | {"split": split}
    report["seconds"] = round(time.perf_counter() - started, 3)
    trip = round_trip_ids(paths, Path(entry["path"]), kept) if kind == "openai" else None
    return report, trip


def _timed_chunks(chunks: Iterator[pl.DataFrame], timed: Part, name: str
                  ) -> Iterator[pl.DataFrame]:
    """``chunks``, each read under ``timed(name)``."""
    while True:
        with timed(name):
            chunk = next(chunks, None)
        if chunk is None:
            return
        yield chunk


def _check_order(rows: pl.DataFrame, previous: tuple | None, source: Path) -> tuple | None:
    """The last key of ``rows`` (sorted) after checking its first key follows ``previous``
    (the last key of the chunk before): chunks must come in key order, with no repeat."""
    if not rows.height:
        return previous
    if previous is not None and rows.select(KEY).row(0) <= previous:
        raise ValueError(f"{source} is not in (source, example_id) order: a split set must "
                         "be, to be exported in chunks")
    return rows.select(KEY).row(-1)


def run_exports(paths: DataPaths, sources: list[str], kinds: list[str] | tuple[str, ...],
                config: dict[str, Any], *, part: Part | None = None,
                workers: int = 3, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ExportOutcome:
    """Export every split in ``kinds`` under ``paths.exports``, check the files, write the
    card (``config`` goes to its configuration section). ``sources``: the live sources
    the card lists. ``part(name)``: an optional timer context per step (the bench's).

    Per split, the JSON-line kinds are written in two groups (each in one pass over one
    shared encoding, see ``writers.write_kinds``) and the Parquet copy on its own; each
    file is then checked on its own task. The round trip ("ingesting the OpenAI JSONL gives
    the split's example ids") needs the ``openai`` kind; without it, ``trip`` is empty.

    Each split is read ``chunk_rows`` rows at a time (its set is in key order, the order of
    every export: the splits stage writes it so) and every file is appended chunk by chunk
    (``writers.KindsWriter``): the next chunk is read and prepared while the previous one is
    written, so at most two chunks' rows are in memory. Files equal the one-chunk files.
    """
    timed = part or _no_part
    kinds = check_kinds(kinds)
    # Two groups of JSON-line files, so two workers write text at once, sharing one
    # encoding of the messages (``writers.SharedChunks``); the Parquet copy is a task of its
    # own (the third worker).
    texts = [g for g in ([k for k in kinds if k == "openai" or k.startswith("text_")],
                         [k for k in kinds if k in ("sharegpt", "alpaca")]) if g]
    parquet = [k for k in kinds if k == "openai_parquet"]
    groups = texts + ([parquet] if parquet else [])
    frames: dict[str, pl.DataFrame] = {}
    results: dict[str, dict[str, Any]] = {}
    writes: list[tuple[str, Future]] = []
    open_writers: list[KindsWriter] = []
    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:

            def write_then_check(writer: KindsWriter, rows: pl.DataFrame,
                                 chunks: SharedChunks | None, last: bool) -> Any:
                writer.write(rows, chunks)
                if not last:
                    return None
                entries = writer.close()
                open_writers.remove(writer)
                split = writer.split
                return entries, {k: pool.submit(_check, paths, entries[k], frames[split],
                                                split, k) for k in writer.kinds}

            for split in SPLIT_NAMES:
                source = paths.splits / f"{split}.parquet"
                n_chunks = len(chunk_bounds(parquet_rows([source]), chunk_rows))
                writers = [KindsWriter(paths.exports, split, g) for g in groups]
                open_writers += writers
                kept: list[pl.DataFrame] = []
                invalid: list[dict[str, str]] = []
                height, previous, pending = 0, None, []
                chunks_read = _timed_chunks(iter_parquet_chunks(
                    [source], list(SPLIT_COLUMNS), chunk_rows), timed, "read_split")
                for index, frame in enumerate(chunks_read):
                    last = index == n_chunks - 1
                    with timed("prepare_rows"):
                        rows = prepare_rows(frame, split)
                        kept.append(frame.select(KEPT_COLUMNS))
                        del frame
                        if n_chunks > 1:
                            previous = _check_order(rows, previous, source)
                        height += rows.height
                        invalid += key_list(rows, pl.col("tools_status") == "invalid")
                        if last:
                            frames[split] = pl.concat(kept) if len(kept) > 1 else kept[0]
                            kept.clear()
                            results[split] = split_result(rows.clear(), paths.exports,
                                                          split) | {"rows": height,
                                                                    "invalid_tools": invalid}
                    for future in pending:  # this split's previous chunk is written
                        future.result()
                    shared = SharedChunks(rows, len(texts)) if len(texts) > 1 else None
                    pending = [pool.submit(write_then_check, w, rows,
                                           shared if w.kinds != parquet else None, last)
                               for w in writers]
                    del rows, shared  # the tasks hold them until they finish
                writes += [(split, future) for future in pending]
            with timed("write_and_check"):
                done = {}
                for split, future in writes:
                    entries, checks = future.result()
                    for kind, entry in entries.items():
                        done[split, kind] = (entry, *checks[kind].result())
    except BaseException:
        for writer in open_writers:
            writer.abort()
        raise
    done = {(s, k): done[s, k] for s in SPLIT_NAMES for k in kinds}  # caller's order
    validations = []
    trip: dict[str, dict[str, Any]] = {}
    for (split, kind), (entry, report, split_trip) in done.items():
        results[split]["formats"][kind] = entry
        validations.append(report)
        if split_trip is not None:
            trip[split] = split_trip
    count_errors = []
    for report in validations:
        split, kind = report["split"], report["kind"]
        entry = results[split]["formats"][kind]
        dropped = entry.get("not_exportable", {}).get("count", 0)
        height = frames[split].height
        if report["rows"] != entry["rows"] or report["rows"] + dropped != height:
            count_errors.append(f"{kind}/{split}: {report['rows']} on disk + {dropped} "
                                f"not exportable != {height} (writer: {entry['rows']})")
    with timed("card"):
        stats = card_stats(paths, sources, frames, results, config)
        card = write_card(paths.exports / "README.md", stats)
    files = pl.DataFrame(
        [{"split": split, "kind": kind, "path": str(info["path"]), "rows": info["rows"],
          "bytes": info["bytes"],
          "not_exportable": info.get("not_exportable", {}).get("count", 0)}
         for split, res in results.items() for kind, info in res["formats"].items()],
        schema={"split": pl.String, "kind": pl.String, "path": pl.String, "rows": pl.Int64,
                "bytes": pl.Int64, "not_exportable": pl.Int64})
    return ExportOutcome(frames=frames, results=results, validations=validations,
                         count_errors=count_errors, trip=trip, files=files, card=card)
