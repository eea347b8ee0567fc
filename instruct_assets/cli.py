"""``instruct-assets``: run the pipeline, query the warehouse, inspect sources.

Subcommands share ``--data-dir`` (default: ``$INSTRUCT_ASSETS_DATA`` or ``./data``) and the
Dagster instance from ``$DAGSTER_HOME`` (or ``--dagster-home``), so the CLI, the UI and the
tests see the same runs, materializations and check results.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from instruct_assets.lib.paths import DATA_DIR_ENV, DataPaths


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def _data_paths(args: argparse.Namespace, must_have_raw: bool = True) -> DataPaths:
    from instruct_assets.definitions import resolve_data_dir

    paths = resolve_data_dir(args.data_dir)
    if not paths.root.is_dir():
        raise CliError(f"data dir {paths.root} does not exist (set --data-dir or "
                       f"{DATA_DIR_ENV}); it should hold raw/<source>/ folders")
    if must_have_raw and not paths.raw.is_dir() and not paths.sources_file.exists():
        raise CliError(f"data dir {paths.root} has no raw/ folder and no sources.yaml: "
                       f"put each source's files in {paths.raw}/<source>/")
    return paths


def _instance(args: argparse.Namespace):
    import dagster as dg

    home = args.dagster_home or os.environ.get("DAGSTER_HOME")
    if not home:
        raise CliError("DAGSTER_HOME is not set: runs and check results would vanish. "
                       "Set it to the project's dagster_home/ (export DAGSTER_HOME=$PWD/"
                       "dagster_home) or pass --dagster-home")
    home_path = Path(home).expanduser().resolve()
    if not (home_path / "dagster.yaml").exists():
        raise CliError(f"DAGSTER_HOME={home_path} has no dagster.yaml; use the project's "
                       "dagster_home/ folder")
    os.environ["DAGSTER_HOME"] = str(home_path)
    return dg.DagsterInstance.get()


def cmd_run(args: argparse.Namespace) -> int:
    from instruct_assets.definitions import build_defs
    from instruct_assets.lib.sources import SourcesConfigError
    from instruct_assets.pipeline import run_pipeline

    paths = _data_paths(args)
    instance = _instance(args)
    defs = build_defs(paths.root)
    print(f"instruct-assets: data dir {paths.root}")
    try:
        outcome = run_pipeline(defs, paths, instance, progress=print, quiet=not args.verbose)
    except SourcesConfigError as exc:
        raise CliError(str(exc)) from exc
    published = [s for s in outcome.sources if s.published]
    print()
    print(f"{len(published)} of {len(outcome.sources)} sources published: "
          f"{sum(s.rows for s in published)} examples, "
          f"{sum(s.rejects for s in outcome.sources)} rejects "
          f"(in {paths.rejects}, with reasons), {outcome.seconds:.1f}s")
    for s in outcome.held_back:
        why = ", ".join(s.failed_checks) or s.error or "failed"
        print(f"  held back: {s.source} ({why}); its last good output, if any, stays published")
    if outcome.downstream_ok is not None:
        state = "ok" if outcome.downstream_ok else "FAILED"
        label = "checks with warnings" if outcome.downstream_ok else "failed"
        print(f"downstream stages: {state}"
              + (f" ({label}: {'; '.join(outcome.downstream_failures)})"
                 if outcome.downstream_failures else ""))
    print(f"outputs: {paths.normalized}, {paths.rejects}"
          + (f", {paths.warehouse}" if paths.warehouse.exists() else ""))
    if outcome.downstream_ok is False:
        return 1
    if args.strict and outcome.held_back:
        return 1
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from instruct_assets.lib import sql_entry

    paths = _data_paths(args, must_have_raw=False)
    try:
        frame = sql_entry.run_query(paths.root, args.query, timeout_s=args.timeout)
    except sql_entry.SqlEntryError as exc:
        raise CliError(str(exc)) from exc
    if args.output:
        sql_entry.write_result(frame, Path(args.output), args.format)
        print(f"{frame.height} rows written to {args.output}")
        return 0
    import polars as pl

    with pl.Config(tbl_rows=args.limit, tbl_cols=-1, fmt_str_lengths=80, tbl_width_chars=200):
        print(frame)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="instruct-assets", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help=f"data directory (default ${DATA_DIR_ENV} or ./data)")
    common.add_argument("--dagster-home", help="Dagster instance folder (default $DAGSTER_HOME)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common],
                         help="materialize the whole graph in-process, with progress")
    run.add_argument("--strict", action="store_true",
                     help="exit 1 when any source is held back by a blocking check")
    run.add_argument("--verbose", action="store_true", help="show Dagster's own logs")
    run.set_defaults(func=cmd_run)
    sql = sub.add_parser("sql", parents=[common],
                         help="run one read-only query against the warehouse")
    sql.add_argument("query")
    sql.add_argument("--format", choices=["csv", "json", "parquet"], default="csv")
    sql.add_argument("--output", "-o", help="write the result to this file instead of printing")
    sql.add_argument("--limit", type=int, default=50, help="rows to print (default 50)")
    sql.add_argument("--timeout", type=float, default=100.0,
                     help="seconds to wait for a writer holding the warehouse")
    sql.set_defaults(func=cmd_sql)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"instruct-assets: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
