"""Required-work floors: what a stage's required outputs alone cost on this machine.

Why: the issues set speed targets as multiples of the parse floor (``polars.read_ndjson``
of the input). Whether a target is reachable at all depends on what the stage must write
and read back, whatever else it does. This script is a minimal implementation of only
that, one native polars/DuckDB call per output, with none of what a real stage also needs
(format detection, provenance, rejects, quality signals, checks beyond one parse,
metadata). If such a floor is above a target's budget, no implementation built on these
libraries meets the target here:

- ``parse``: ``read_ndjson`` of the input (the parse floor itself, again in this process);
- ``normalize``: read the input, build ``messages`` for Alpaca rows with one polars
  expression, compute the stable content id (the same DuckDB md5 as ``normalize``), write
  ``example_id`` + ``messages`` as Parquet with the project's settings (``write_options``);
- ``exports``: for each split Parquet of a finished run (``--splits``), write every default
  export kind's bytes with one polars call each (``write_ndjson`` of a column built by one
  expression; ``write_parquet`` for the Parquet copy), then one DuckDB parse of each file
  (the least an "every line parses" check can do).

Usage: ``python bench/floors.py --input F.jsonl [--splits DIR] [--work DIR]``; prints one
JSON line: per part ``seconds``, ``cpu_seconds`` and ``bytes`` written. ``bench/run.py``
runs it after the stages and reports each floor as a multiple of the parse floor beside the
target for that stage group.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from instruct_assets.defs.settings import ExportSettings  # noqa: E402
from instruct_assets.lib.export.sharegpt import ROLE_TO_FROM  # noqa: E402
from instruct_assets.lib.normalize import CONTENT_KEY_SQL  # noqa: E402
from instruct_assets.lib.parquet_io import write_options  # noqa: E402


class Timer:
    """Wall and CPU seconds (all threads) per named part, and the bytes each wrote."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[str, float]] = {}

    def run(self, name: str, fn: Any, *args: Any) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        value = fn(*args)
        part = self.parts.setdefault(name, {"seconds": 0.0, "cpu_seconds": 0.0})
        part["seconds"] += time.perf_counter() - t0
        part["cpu_seconds"] += time.process_time() - c0
        if isinstance(value, int):  # the writers return the bytes written
            part["bytes"] = part.get("bytes", 0) + value
        return value


def parse(path: Path) -> None:
    pl.read_ndjson(path)


def normalize(timer: Timer, path: Path, out: Path) -> None:
    """Alpaca rows to ``example_id`` + ``messages`` Parquet: the core of normalization,
    timed as four parts ``normalize.read``, ``.build``, ``.ids``, ``.write``."""
    frame = timer.run("normalize.read", pl.read_ndjson, path)
    user = pl.when(pl.col("input").fill_null("") == "").then(pl.col("instruction")).otherwise(
        pl.concat_str("instruction", pl.lit("\n\n"), "input"))
    messages = timer.run("normalize.build", frame.select, pl.concat_list(
        pl.struct(role=pl.lit("user"), content=user),
        pl.struct(role=pl.lit("assistant"), content=pl.col("output")),
    ).alias("messages"), pl.lit(None, pl.String).alias("tools"))
    del frame
    ids = timer.run("normalize.ids", _content_ids, messages)
    target = out / "normalized.parquet"
    table = messages.select(ids.alias("example_id"), "messages")
    timer.run("normalize.write", _write_parquet, table, target)


def _content_ids(messages: pl.DataFrame) -> pl.Series:
    con = duckdb.connect()
    try:
        return con.sql(f"SELECT substr(md5({CONTENT_KEY_SQL}), 1, 16) AS h FROM messages"
                       ).pl()["h"]
    finally:
        con.close()


def _write_parquet(frame: pl.DataFrame, target: Path) -> int:
    frame.write_parquet(target, **write_options())
    return target.stat().st_size


def _text_chatml() -> pl.Expr:
    turn = pl.concat_str(pl.lit("<|im_start|>"), pl.element().struct.field("role"),
                         pl.lit("\n"), pl.element().struct.field("content"),
                         pl.lit("<|im_end|>\n"))
    return pl.col("messages").list.eval(turn).list.join("").alias("text")


def _sharegpt() -> pl.Expr:
    turn = pl.struct(**{"from": pl.element().struct.field("role").replace_strict(ROLE_TO_FROM),
                        "value": pl.element().struct.field("content")})
    return pl.col("messages").list.eval(turn).alias("conversations")


def _alpaca() -> list[pl.Expr]:
    content = pl.col("messages").list
    return [content.first().struct.field("content").alias("instruction"),
            pl.lit("").alias("input"),
            content.last().struct.field("content").alias("output")]


#: kind -> (columns to write, JSON or Parquet); the default kinds of ``ExportSettings``.
KINDS: dict[str, tuple[list[pl.Expr], str]] = {
    "openai": ([pl.col("messages")], "jsonl"),
    "openai_parquet": ([pl.col("messages")], "parquet"),
    "sharegpt": ([_sharegpt()], "jsonl"),
    "alpaca": (_alpaca(), "jsonl"),
    "text_chatml": ([_text_chatml()], "jsonl"),
}


def write_kind(frame: pl.DataFrame, kind: str, target: Path) -> int:
    columns, layout = KINDS[kind]
    out = frame.select(columns)
    if layout == "parquet":
        return _write_parquet(out, target)
    out.write_ndjson(target)
    return target.stat().st_size


def parse_back(target: Path) -> None:
    """One DuckDB parse of every record (auto-detected columns), the least a check does."""
    reader = "read_parquet" if target.suffix == ".parquet" else "read_json"
    con = duckdb.connect()
    try:
        con.sql(f"SELECT count(*) FROM {reader}('{target}')").fetchall()
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, required=True, help="the Alpaca JSONL input")
    ap.add_argument("--splits", type=Path, default=None,
                    help="a run's splits/ folder (train.parquet, eval.parquet): adds exports")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "floors")
    args = ap.parse_args()
    defaults = ExportSettings().kinds()
    if sorted(defaults) != sorted(KINDS):
        raise SystemExit(f"floors.KINDS {sorted(KINDS)} != the default exports {defaults}")
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    timer = Timer()
    try:
        timer.run("parse", parse, args.input)
        normalize(timer, args.input, args.work)
        if args.splits is not None:
            for split in ("train", "eval"):
                frame = pl.read_parquet(args.splits / f"{split}.parquet", columns=["messages"])
                for kind, (_, layout) in KINDS.items():
                    target = args.work / f"{split}.{kind}.{layout}"
                    timer.run("exports.write", write_kind, frame, kind, target)
                    timer.run("exports.parse_back", parse_back, target)
                del frame
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    parts = {k: {f: round(v, 3) if f != "bytes" else int(v) for f, v in p.items()}
             for k, p in timer.parts.items()}
    groups = {g: {f: round(sum(p[f] for k, p in parts.items() if k.split(".")[0] == g), 3)
                  for f in ("seconds", "cpu_seconds")}
              for g in ("parse", "normalize", "exports")}
    print(json.dumps({"groups": groups, "parts": parts}))


if __name__ == "__main__":
    main()
