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


def cmd_sources(args: argparse.Namespace) -> int:
    """Sources with their detected format, rows, rejects and last materialization."""
    from instruct_assets.defs.ingest.assets import NORMALIZED, STAGED
    from instruct_assets.lib.publish import read_report
    from instruct_assets.lib.sources import SourcesConfigError, discover_sources

    paths = _data_paths(args)
    instance = _instance(args)
    try:
        specs = discover_sources(paths)
    except SourcesConfigError as exc:
        raise CliError(str(exc)) from exc
    rows = []
    for name, spec in specs.items():
        published = read_report(paths, name)
        staged = read_report(paths, name, staged=True)
        latest = staged or published or {}
        last = _latest(instance, STAGED, name)
        pub = _latest(instance, NORMALIZED, name) if last is not None else None
        held = bool(staged) and staged.get("fingerprint") != (published or {}).get("fingerprint")
        failed = [c for c, o in (latest.get("checks") or {}).items() if not o["passed"]]
        rows.append({
            "source": name,
            "format": ",".join(latest.get("formats", {})) or "-",
            "origin": spec.origin,
            "rows": latest.get("rows", 0),
            "rejects": latest.get("rejects", 0),
            "status": ("not ingested" if not latest else
                       f"held back ({', '.join(failed)})" if held and failed else
                       "published"),
            "last_ingested": _when(last),
            "last_published": _when(pub),
        })
    _print_table(rows, ["source", "format", "origin", "rows", "rejects", "status",
                        "last_ingested", "last_published"])
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The latest result of every asset check (and which failing ones block)."""
    from instruct_assets.definitions import build_defs

    paths = _data_paths(args, must_have_raw=False)
    instance = _instance(args)
    defs = build_defs(paths.root)
    graph = defs.resolve_asset_graph()
    keys = sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name))
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    from instruct_assets.lib.publish import read_report
    from instruct_assets.lib.sources import discover_sources

    rows = []
    for name in discover_sources(paths):
        report = read_report(paths, name, staged=True) or read_report(paths, name) or {}
        for check, o in sorted((report.get("checks") or {}).items()):
            rows.append({"asset": "staged_examples", "check": check, "blocking": "yes",
                         "result": "passed" if o["passed"] else "FAILED", "partition": name,
                         "description": o["description"]})
    keys = [k for k in keys if k.asset_key.to_user_string() != "staged_examples"]
    for key in keys:
        record = latest.get(key)
        evaluation = record.evaluation if record else None
        spec = graph.get_check_spec(key)
        rows.append({
            "asset": key.asset_key.to_user_string(),
            "check": key.name,
            "blocking": "yes" if spec.blocking else "no",
            "result": ("never run" if record is None else str(record.status.value).lower()
                       if evaluation is None else "passed" if evaluation.passed else
                       ("FAILED" if evaluation.severity.value == "ERROR" else "warn")),
            "partition": (record.event.dagster_event.partition if record and record.event
                          and record.event.dagster_event else None) or "",
            "description": (evaluation.description or "") if evaluation else "",
        })
    if not args.all:
        rows = [r for r in rows if r["result"] != "passed" or r["asset"] != "staged_examples"]
    _print_table(rows, ["asset", "check", "blocking", "result", "partition", "description"])
    return 1 if any(r["result"] == "FAILED" and r["blocking"] == "yes" for r in rows) else 0


def _latest(instance, key, partition: str):
    import dagster as dg

    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1)
    return result.records[0].event_log_entry if result.records else None


def _when(event) -> str:
    if event is None:
        return "-"
    import datetime

    return datetime.datetime.fromtimestamp(event.timestamp, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def _print_table(rows: list[dict], columns: list[str], width: int = 60) -> None:
    def cell(v: object) -> str:
        text = str(v)
        return text if len(text) <= width else text[: width - 1] + "…"

    widths = {c: max([len(c), *(len(cell(r[c])) for r in rows)]) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(cell(r[c]).ljust(widths[c]) for c in columns))


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
    sources = sub.add_parser("sources", parents=[common],
                             help="list sources: format, rows, rejects, last materialization")
    sources.set_defaults(func=cmd_sources)
    status = sub.add_parser("status", parents=[common],
                            help="latest result of every asset check")
    status.add_argument("--all", action="store_true",
                        help="also list every passed per-source ingestion check")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from instruct_assets.lib.settings_file import SettingsFileError

    try:
        return args.func(args)
    except (CliError, SettingsFileError) as exc:
        print(f"instruct-assets: error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # a settings.yaml value the resources refuse
        print(f"instruct-assets: error: settings.yaml: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
