"""Benchmark the pipeline's data work, its Dagster CLI run, and a Hugging Face baseline.

For each ``--rows N``: build (cached under ``bench/out/data/``) an N-row Alpaca JSONL from the
real public files (``bench/make_data.py``); time ``polars.read_ndjson`` of it (the parse
floor); run each pipeline stage in its own process exactly as its asset does
(``bench/stages.py``), each reading the previous stage's files; run the same job written with
Hugging Face ``datasets`` (``bench/baseline_datasets.py``); and run ``instruct-assets run``
end to end on a data dir holding only that source. Every child is timed and its peak RSS is
read from ``os.wait4``. Prints a table, the ratios the issues set as targets, growth with N
when several N are given, and one JSON object as the last line.

Not a test: it asserts nothing about timings (the machine is shared; expect spread).

Usage::

    .venv/bin/python bench/run.py --rows 100000 1000000
    .venv/bin/python bench/run.py --rows 1000000 --stages quality --skip-cli --skip-baseline
    .venv/bin/python bench/run.py --rows 1000000 --skip-cli --skip-baseline --profile

``--stages`` runs only the named stages and reuses the earlier stages' outputs in
``bench/out/run_<N>/data`` (so one stage can be re-measured after a change). ``--profile``
re-runs the named stages (default: the three slowest) under py-spy (line level, when
installed) or cProfile, and writes ``bench/out/profile_<N>_<stage>.txt``.

Ten million rows (``--rows 10000000``, ~7.6 GB of JSONL) runs every stage in chunks of
``--chunk-rows`` (default 1,000,000, ``MemorySettings``); above 2M rows the parse floor and
the CLI run are skipped unless asked for, and exports default to the OpenAI JSONL alone so
the outputs fit on the disk (about 25 GB in all).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
PY = sys.executable
SOURCE = "alpaca_bench"
sys.path.insert(0, str(HERE))

from stages import STAGES  # noqa: E402

#: Stage groups the issues set targets for, as multiples of the parse floor.
GROUPS = {
    "normalize": ("normalize",),
    "quality": ("quality",),
    "complexity+splits+exports": ("complexity", "splits", "exports"),
}
TARGETS_VS_FLOOR = {"normalize": 3.0, "quality": 6.0, "complexity+splits+exports": 4.0,
                    "total": 13.0}
TARGET_VS_DATASETS = 5.0  # our data work at least this many times faster than the baseline
TARGET_CLI_SHARE = 1 / 3  # the CLI run end to end under this share of the baseline
BASELINE_MAX_ROWS = 1_000_000
#: Above this many rows the parse floor (``read_ndjson`` of the whole file: ~1.7 GB per
#: million rows) and the CLI run (a second copy of every output) are skipped by default,
#: and exports default to the OpenAI JSONL alone (all formats: ~3 GB per million rows).
BIG_ROWS = 2_000_000
BIG_EXPORTS = {"formats": ["openai"], "templates": []}

FLOOR_CODE = (
    "import json, sys, time\n"
    "import polars as pl\n"
    "t0, c0 = time.perf_counter(), time.process_time()\n"
    "frame = pl.read_ndjson(sys.argv[1])\n"
    "print(json.dumps({'seconds': round(time.perf_counter() - t0, 3), 'rows': frame.height,\n"
    "                  'cpu_seconds': round(time.process_time() - c0, 3)}))\n"
)


@dataclass
class Child:
    """One finished child: exit code, wall and CPU seconds, peak RSS, its last JSON line."""

    rc: int
    wall: float
    cpu: float
    rss_mb: float
    info: dict[str, Any]
    log: Path

    def tail(self, n: int = 15) -> str:
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-n:])


@dataclass
class Result:
    rows: int
    input_bytes: int = 0
    floor: float | None = None
    floor_cpu: float | None = None
    floor_rss: float | None = None
    floor_note: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Child] = field(default_factory=dict)
    baseline: Child | None = None
    baseline_note: str = ""
    cli: Child | None = None
    cli_note: str = ""
    profiles: dict[str, Path] = field(default_factory=dict)
    required: Child | None = None


def run_child(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Child:
    """Run ``cmd`` with output to ``log``; wall time and peak RSS of that process alone."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    info: dict[str, Any] = {}
    for line in reversed(log.read_text(encoding="utf-8", errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                info = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    return Child(proc.returncode, wall, usage.ru_utime + usage.ru_stime,
                 usage.ru_maxrss / 1024, info, log)


def input_file(rows: int, seed: int) -> Path:
    """The cached N-row JSONL, generated in a child process when missing."""
    from make_data import cached_path

    path = cached_path(OUT / "data", rows, seed)
    if not path.exists():
        child = run_child([PY, str(HERE / "make_data.py"), "--rows", str(rows), "--out",
                           str(path), "--seed", str(seed)], OUT / "logs" / f"make_{rows}.log")
        if child.rc != 0:
            raise SystemExit(f"building the input failed:\n{child.tail()}")
        print(f"built {path.name} ({path.stat().st_size / 1e6:.0f} MB) in {child.wall:.1f}s",
              file=sys.stderr)
    return path


def fresh_data_dir(root: Path, jsonl: Path, settings: dict[str, Any] | None = None) -> Path:
    """A data dir holding only the bench source (hard link to the input), the benchmarks,
    and ``settings.yaml`` when ``settings`` has sections."""
    shutil.rmtree(root, ignore_errors=True)
    raw = root / "raw" / SOURCE
    raw.mkdir(parents=True)
    try:
        os.link(jsonl, raw / "alpaca.jsonl")
    except OSError:
        shutil.copy2(jsonl, raw / "alpaca.jsonl")
    bench_src = ROOT / "data" / "benchmarks"
    if bench_src.is_dir():
        shutil.copytree(bench_src, root / "benchmarks")
    if settings:
        (root / "settings.yaml").write_text(json.dumps(settings, indent=2) + "\n",
                                            encoding="utf-8")  # JSON is YAML
    return root


def run_stage(data_dir: Path, stage: str, log: Path, profile: Path | None = None,
              chunk_rows: int | None = None) -> Child:
    cmd = [PY, str(HERE / "stages.py"), "--data-dir", str(data_dir), "--stage", stage]
    if chunk_rows is not None:
        cmd += ["--chunk-rows", str(chunk_rows)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    return run_child(cmd, log)


def run_baseline(jsonl: Path, work: Path, rows: int) -> Child:
    out = work / "baseline_out"
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="hf-cache-") as cache:
        return run_child(
            [PY, str(HERE / "baseline_datasets.py"), str(jsonl), str(out), "--cache-dir", cache],
            OUT / "logs" / f"baseline_{rows}.log",
            env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": cache},
        )


def run_cli(jsonl: Path, work: Path, rows: int, settings: dict[str, Any]) -> Child:
    """``instruct-assets run`` on a fresh data dir and a fresh DAGSTER_HOME."""
    data_dir = fresh_data_dir(work / "cli_data", jsonl, settings)
    home = work / "dagster_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy2(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    exe = Path(PY).with_name("instruct-assets")
    cmd = [str(exe)] if exe.exists() else [PY, "-m", "instruct_assets.cli"]
    return run_child([*cmd, "run", "--data-dir", str(data_dir)],
                     OUT / "logs" / f"cli_{rows}.log", env={"DAGSTER_HOME": str(home)})


# -- profiling -------------------------------------------------------------------------------

def _frames(stack: str) -> list[tuple[str, str]]:
    """``func (file:line);...`` -> [(func, file:line)], outermost first."""
    out = []
    for frame in stack.split(";"):
        func, _, loc = frame.rpartition(" (")
        out.append((func, loc.rstrip(")")))
    return out


def summarize_pyspy(raw: Path, top: int = 25) -> str:
    """Hot spots from py-spy's raw (collapsed) stacks, by the innermost project line.

    polars and DuckDB run in native threads while the Python thread waits in ``collect()``
    or ``sql()``; sampling with ``--idle`` keeps those waits, so the innermost
    ``instruct_assets`` frame of a sample is the line whose native work is running.
    """
    inner: Counter[str] = Counter()
    pair: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    part: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        if not any(fn.startswith("stage_") and _is_stages(loc) for fn, loc in frames):
            continue  # imports and process start-up
        total += n
        ours = [f"{loc} {fn}" for fn, loc in frames if "instruct_assets/" in loc]
        inner[ours[-1] if ours else "(outside instruct_assets)"] += n
        if len(ours) >= 2:  # a shared helper (collect, write_parquet) is named by its callers
            pair["\n            -> ".join(_short(f) for f in ours[-3:])] += n
        leaf[f"{frames[-1][1]} {frames[-1][0]}"] += n
        stage_lines = [f"{loc} {fn}" for fn, loc in frames if _is_stages(loc)]
        part[stage_lines[-1]] += n

    def block(title: str, counts: Counter[str]) -> list[str]:
        lines = [f"== {title} ({total} samples) =="]
        for key, n in counts.most_common(top):
            lines.append(f"{100 * n / max(total, 1):5.1f}%  {n:6d}  {_short(key)}")
        return [*lines, ""]

    return "\n".join(block("innermost instruct_assets line", inner)
                     + block("the same with its two calling instruct_assets lines", pair)
                     + block("stage step (bench/stages.py line)", part)
                     + block("innermost frame (any code)", leaf))


def _is_stages(loc: str) -> bool:
    """py-spy prints paths relative to sys.path entries: ``stages.py:375``."""
    return Path(loc.rpartition(":")[0]).name == "stages.py"


def _short(text: str) -> str:
    for marker in ("/instruct_assets/", "/site-packages/", "/bench/"):
        if marker in text:
            head, _, tail = text.partition(marker)
            prefix = head.rsplit(" ", 1)[0] + " " if " " in head else ""
            return prefix + marker.strip("/") + "/" + tail
    return text


def profile_stage(data_dir: Path, stage: str, rows: int) -> Path:
    target = OUT / f"profile_{rows}_{stage}.txt"
    spy = Path(PY).with_name("py-spy")
    log = OUT / "logs" / f"profile_{rows}_{stage}.log"
    if spy.exists():
        raw = OUT / f"profile_{rows}_{stage}.pyspy.txt"
        cmd = [str(spy), "record", "--idle", "-r", "50", "-f", "raw", "-o", str(raw), "--",
               PY, str(HERE / "stages.py"), "--data-dir", str(data_dir), "--stage", stage]
        child = run_child(cmd, log)
        if child.rc == 0 and raw.exists():
            target.write_text(f"py-spy, {stage} at {rows} rows, stage body "
                              f"{child.info.get('seconds')}s\n\n" + summarize_pyspy(raw),
                              encoding="utf-8")
            return target
        print(f"py-spy failed for {stage} (rc {child.rc}); falling back to cProfile",
              file=sys.stderr)
    child = run_stage(data_dir, stage, log, profile=target.with_suffix(""))
    return target


# -- reporting -------------------------------------------------------------------------------

def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def summary(res: Result) -> dict[str, Any]:
    """The figures of one N as the JSON the last line carries."""
    seconds = {s: c.info.get("seconds") for s, c in res.stages.items() if c.rc == 0}
    complete = len(seconds) == len(STAGES)
    total = round(sum(seconds.values()), 3) if seconds else None
    floor = res.floor
    base = res.baseline.info.get("seconds") if res.baseline and res.baseline.rc == 0 else None
    base_wall = round(res.baseline.wall, 3) if res.baseline and res.baseline.rc == 0 else None
    cli = round(res.cli.wall, 3) if res.cli and res.cli.rc == 0 else None
    cpu = {s: c.info.get("cpu_seconds") for s, c in res.stages.items() if c.rc == 0}
    cpu_total = round(sum(v for v in cpu.values() if v), 3) if cpu else None
    groups = {g: round(sum(seconds[s] for s in members), 3)
              for g, members in GROUPS.items() if all(s in seconds for s in members)}
    return {
        "rows": res.rows,
        "input_mb": round(res.input_bytes / 1e6, 1),
        "seconds": seconds,
        "seconds_total": total,
        "all_stages_ran": complete,
        "cpu_seconds": cpu,
        "cpu_seconds_total": cpu_total,
        "stage_wall_seconds": {s: round(c.wall, 3) for s, c in res.stages.items()},
        "peak_rss_mb": {s: round(c.rss_mb) for s, c in res.stages.items()},
        "parse_floor_seconds": floor,
        "parse_floor_rss_mb": round(res.floor_rss) if res.floor_rss else None,
        "parse_floor_cpu_seconds": res.floor_cpu,
        "ratio_vs_parse_floor_cpu": _ratio(cpu_total, res.floor_cpu) if complete else None,
        "baseline_datasets_seconds": base_wall,
        "baseline_datasets_body_seconds": base,
        "baseline_datasets_peak_rss_mb": round(res.baseline.rss_mb) if base_wall else None,
        "baseline_datasets_cpu_seconds": round(res.baseline.cpu, 3) if base_wall else None,
        "ratio_vs_datasets_cpu": (_ratio(res.baseline.cpu, cpu_total)
                                  if base_wall and complete else None),
        "ratio_vs_datasets": _ratio(base_wall, total) if complete else None,
        "ratio_vs_parse_floor": _ratio(total, floor) if complete else None,
        "ratio_vs_parse_floor_per_stage": {s: _ratio(v, floor) for s, v in seconds.items()},
        "ratio_vs_parse_floor_per_group": {g: _ratio(v, floor) for g, v in groups.items()},
        "cli_seconds": cli,
        "cli_peak_rss_mb": round(res.cli.rss_mb) if cli else None,
        "cli_cpu_seconds": round(res.cli.cpu, 3) if cli else None,
        "ratio_cli_vs_datasets": _ratio(cli, base_wall),
        "stage_failures": {s: c.rc for s, c in res.stages.items() if c.rc != 0},
        "peak_rss_mb_max": round(max(c.rss_mb for c in res.stages.values()))
        if res.stages else None,
        "rows_per_second": {s: round(res.rows / v) for s, v in seconds.items() if v},
        "parse_floor_note": res.floor_note or None,
        **required_work(res),
        "settings": res.settings,
        "profiles": {s: str(p) for s, p in res.profiles.items()},
    }


#: Which floor of ``floors.py`` bounds which target (a floor above its target's budget means
#: no implementation with these libraries meets it on this machine).
FLOOR_TARGETS = {"normalize": "normalize", "exports": "complexity+splits+exports"}


def required_work(res: Result) -> dict[str, Any]:
    """``floors.py``'s figures: the least each stage's required outputs cost here, as
    seconds and as multiples of the parse floor (wall, and CPU over the 2 cores: the best
    any parallel implementation could do with that CPU)."""
    if res.required is None or res.required.rc != 0 or not res.floor:
        return {"required_work_floor": None}
    groups = res.required.info.get("groups", {})
    out: dict[str, Any] = {}
    cores = os.cpu_count() or 1
    for name in ("normalize", "exports"):
        if name not in groups:
            continue
        wall, cpu = groups[name]["seconds"], groups[name]["cpu_seconds"]
        best = min(wall, cpu / cores)
        out[name] = {"seconds": wall, "cpu_seconds": cpu, "x_floor": _ratio(wall, res.floor),
                     "x_floor_best_parallel": _ratio(best, res.floor),
                     "target_group": FLOOR_TARGETS[name],
                     "target_x_floor": TARGETS_VS_FLOOR[FLOOR_TARGETS[name]]}
    both = [out[k] for k in ("normalize", "exports") if k in out]
    if len(both) == 2:
        best = sum(min(b["seconds"], b["cpu_seconds"] / cores) for b in both)
        out["normalize+exports"] = {"x_floor_best_parallel": _ratio(best, res.floor),
                                    "seconds_best_parallel": round(best, 3),
                                    "target_group": "total",
                                    "target_x_floor": TARGETS_VS_FLOOR["total"]}
        if res.baseline is not None and res.baseline.rc == 0:
            # at least TARGET_VS_DATASETS times faster: a budget of the baseline's share
            out["normalize+exports"]["datasets_budget_seconds"] = round(
                res.baseline.wall / TARGET_VS_DATASETS, 3)
    return {"required_work_floor": out, "required_work_parts": res.required.info.get("parts")}


def print_report(res: Result, s: dict[str, Any]) -> None:
    n = res.rows
    print(f"\n=== {n:,} rows ({s['input_mb']} MB JSONL) ===")
    print(f"{'stage':<26}{'seconds':>9}{'wall':>8}{'cpu s':>8}{'rows/s':>11}"
          f"{'peak RSS MB':>13}{'x floor':>9}")

    def row(name: str, sec: float | None, wall: float | None, cpu: float | None,
            rss: float | None, xf: float | None) -> None:
        def fmt(v: float | None, f: str) -> str:
            return "-".rjust(int(f.split(".")[0].split(",")[0])) if v is None else format(v, f)
        rate = n / sec if sec else None
        print(f"{name:<26}{fmt(sec, '9.2f')}{fmt(wall, '8.1f')}{fmt(cpu, '8.1f')}"
              f"{fmt(rate, '11,.0f')}{fmt(rss, '13,.0f')}{fmt(xf, '9.2f')}")

    if res.floor_note:
        print(f"{'parse floor (read_ndjson)':<26}  ({res.floor_note})")
    else:
        row("parse floor (read_ndjson)", res.floor, None, res.floor_cpu, res.floor_rss,
            1.0 if res.floor else None)
    for stage, child in res.stages.items():
        sec = s["seconds"].get(stage)
        row(stage if child.rc == 0 else f"{stage} FAILED", sec, child.wall,
            child.info.get("cpu_seconds"), child.rss_mb, _ratio(sec, res.floor))
    row("total data work", s["seconds_total"], None, s["cpu_seconds_total"],
        max((c.rss_mb for c in res.stages.values()), default=None), s["ratio_vs_parse_floor"])
    if res.baseline:
        row("datasets baseline" + ("" if res.baseline.rc == 0 else " FAILED"),
            s["baseline_datasets_body_seconds"], res.baseline.wall, res.baseline.cpu,
            res.baseline.rss_mb, _ratio(s["baseline_datasets_seconds"], res.floor))
    elif res.baseline_note:
        print(f"{'datasets baseline':<26}  ({res.baseline_note})")
    if res.cli:
        row("CLI end to end" + ("" if res.cli.rc == 0 else " FAILED"), None, res.cli.wall,
            res.cli.cpu, res.cli.rss_mb, _ratio(s["cli_seconds"], res.floor))
    elif res.cli_note:
        print(f"{'CLI end to end':<26}  ({res.cli_note})")
    print("(seconds: stage body in its process, imports excluded; wall: the whole process;"
          " cpu s: CPU of the body, or of the whole process for the baseline and the CLI)")

    for stage, child in res.stages.items():
        parts = child.info.get("parts") or {}
        if parts:
            top = sorted(parts.items(), key=lambda kv: -kv[1])[:4]
            print(f"  {stage:<16} " + ", ".join(f"{k} {v:.2f}s" for k, v in top))
        if child.rc != 0:
            print(f"  {stage} failed (exit {child.rc}), log {child.log}:\n{child.tail()}")

    print("targets:")
    groups = s["ratio_vs_parse_floor_per_group"]
    for g, limit in TARGETS_VS_FLOOR.items():
        got = s["ratio_vs_parse_floor"] if g == "total" else groups.get(g)
        print(f"  {g:<28} {_show(got)} x floor (target <= {limit:g}x) {_verdict(got, limit)}")
    speed = s["ratio_vs_datasets"]
    print(f"  {'vs datasets baseline':<28} {_show(speed)} x faster (target >= "
          f"{TARGET_VS_DATASETS:g}x) {_verdict(speed, TARGET_VS_DATASETS, at_least=True)}")
    cli_share = s["ratio_cli_vs_datasets"]
    print(f"  {'CLI vs datasets baseline':<28} {_show(cli_share)} of the baseline (target < "
          f"{TARGET_CLI_SHARE:.2f}) {_verdict(cli_share, TARGET_CLI_SHARE)}")
    floors = s.get("required_work_floor")
    if floors:
        print("required-work floors (floors.py: the stage's required outputs alone, one native"
              " call each):")
        for name, f in floors.items():
            got = f["x_floor_best_parallel"]
            seconds = f.get("seconds", f.get("seconds_best_parallel"))
            print(f"  {name:<28} {seconds:6.2f} s, {_show(got)} x floor at best (target for "
                  f"{f['target_group']} <= {f['target_x_floor']:g}x) "
                  + ("reachable" if got is not None and got <= f["target_x_floor"]
                     else "UNREACHABLE: the floor alone is above the target"))
            budget = f.get("datasets_budget_seconds")
            if budget is not None:
                print(f"  {'':<28} vs datasets: {seconds:.2f} s at best against a budget of "
                      f"{budget:.2f} s (baseline / {TARGET_VS_DATASETS:g}) "
                      + ("reachable" if seconds <= budget else "UNREACHABLE"))
    for stage, path in res.profiles.items():
        print(f"profile of {stage}: {path}")


def _show(v: float | None) -> str:
    return "   -" if v is None else f"{v:6.2f}"


def _verdict(v: float | None, limit: float, at_least: bool = False) -> str:
    if v is None:
        return "(not measured)"
    ok = v >= limit if at_least else v <= limit
    return "met" if ok else "NOT met"


def print_growth(results: list[tuple[Result, dict[str, Any]]]) -> None:
    """Seconds per stage for each N, and how each grows relative to the rows."""
    if len(results) < 2:
        return
    print("\n=== growth with N (seconds; last column: time growth / row growth, 1.0 = linear)"
          " ===")
    ns = [r.rows for r, _ in results]
    print(f"{'stage':<22}" + "".join(f"{n:>12,}" for n in ns) + f"{'growth':>10}")
    names = ["parse_floor", *STAGES, "total", "baseline", "cli"]
    for name in names:
        vals = []
        for _, s in results:
            vals.append({"parse_floor": s["parse_floor_seconds"], "total": s["seconds_total"],
                         "baseline": s["baseline_datasets_seconds"],
                         "cli": s["cli_seconds"]}.get(name, s["seconds"].get(name)))
        pairs = [(n, v) for n, v in zip(ns, vals, strict=True) if v]
        growth = ((pairs[-1][1] / pairs[0][1]) / (pairs[-1][0] / pairs[0][0])
                  if len(pairs) >= 2 else None)
        print(f"{name:<22}" + "".join("           -" if v is None else f"{v:12.2f}"
                                      for v in vals) + f"{_show(growth):>10}")


# -- main ------------------------------------------------------------------------------------

def bench_one(rows: int, args: argparse.Namespace) -> Result:
    jsonl = input_file(rows, args.seed)
    res = Result(rows=rows, input_bytes=jsonl.stat().st_size)
    work = OUT / f"run_{rows}"
    work.mkdir(parents=True, exist_ok=True)
    logs = OUT / "logs"

    big = rows > BIG_ROWS
    res.settings = bench_settings(rows, args)
    if big and not args.floor_anyway:
        res.floor_note = f"skipped above {BIG_ROWS:,} rows (--floor-anyway)"
    else:
        floor = min((run_child([PY, "-c", FLOOR_CODE, str(jsonl)], logs / f"floor_{rows}.log")
                     for _ in range(args.floor_repeat)),
                    key=lambda c: c.info.get("seconds", 1e9))
        if floor.rc == 0:
            res.floor, res.floor_rss = floor.info["seconds"], floor.rss_mb
            res.floor_cpu = floor.info.get("cpu_seconds")
    print(f"[{rows:,}] parse floor {res.floor or res.floor_note}", file=sys.stderr)

    data_dir = work / "data"
    stages = [s for s in STAGES if s in args.stages]
    if "normalize" in stages or not (data_dir / "normalized").is_dir():
        if "normalize" not in stages:
            stages = ["normalize", *stages]
        fresh_data_dir(data_dir, jsonl, res.settings)
    for stage in stages:
        child = run_stage(data_dir, stage, logs / f"stage_{rows}_{stage}.log",
                          chunk_rows=args.chunk_rows)
        res.stages[stage] = child
        print(f"[{rows:,}] {stage}: {child.info.get('seconds')}s (wall {child.wall:.1f}s, "
              f"rss {child.rss_mb:.0f} MB, rc {child.rc})", file=sys.stderr)
        if child.rc != 0:
            print(child.tail(), file=sys.stderr)
            break

    if not args.skip_floors and res.floor and "exports" in res.stages:
        res.required = run_child([PY, str(HERE / "floors.py"), "--input", str(jsonl),
                                  "--splits", str(data_dir / "splits"),
                                  "--work", str(work / "floors")],
                                 logs / f"floors_{rows}.log")
        print(f"[{rows:,}] required-work floors: {res.required.info.get('groups')} "
              f"(rc {res.required.rc})", file=sys.stderr)

    if args.skip_baseline:
        res.baseline_note = "skipped (--skip-baseline)"
    elif rows > BASELINE_MAX_ROWS and not args.baseline_anyway:
        res.baseline_note = f"skipped above {BASELINE_MAX_ROWS:,} rows (--baseline-anyway)"
    else:
        res.baseline = run_baseline(jsonl, work, rows)
        print(f"[{rows:,}] datasets baseline: wall {res.baseline.wall:.1f}s "
              f"(rc {res.baseline.rc})", file=sys.stderr)
        if res.baseline.rc != 0:
            print(res.baseline.tail(), file=sys.stderr)

    if args.skip_cli:
        res.cli_note = "skipped (--skip-cli)"
    elif big and not args.cli_anyway:
        res.cli_note = f"skipped above {BIG_ROWS:,} rows (--cli-anyway)"
    else:
        res.cli = run_cli(jsonl, work, rows, res.settings)
        print(f"[{rows:,}] CLI run: {res.cli.wall:.1f}s (rc {res.cli.rc})", file=sys.stderr)
        if res.cli.rc != 0:
            print(res.cli.tail(), file=sys.stderr)
        if not args.keep:
            shutil.rmtree(work / "cli_data", ignore_errors=True)

    if args.profile is not None:
        ok = {s: c.info["seconds"] for s, c in res.stages.items() if c.rc == 0}
        targets = args.profile or sorted(ok, key=lambda s: -ok[s])[:3]
        for stage in targets:
            print(f"[{rows:,}] profiling {stage} ...", file=sys.stderr)
            res.profiles[stage] = profile_stage(data_dir, stage, rows)
    return res


def bench_settings(rows: int, args: argparse.Namespace) -> dict[str, Any]:
    """The ``settings.yaml`` sections of the bench data dir: the chunk size when given, and
    the exports of ``--export-formats`` (default: all below BIG_ROWS, else BIG_EXPORTS)."""
    out: dict[str, Any] = {}
    if args.chunk_rows is not None:
        out["memory"] = {"chunk_rows": args.chunk_rows}
    if args.export_formats is not None:
        out["exports"] = {"formats": args.export_formats, "templates": args.export_templates}
    elif rows > BIG_ROWS:
        out["exports"] = BIG_EXPORTS
    return out


def main() -> None:
    global OUT  # every helper writes under it: one run, one folder (--out)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000])
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                    help="stages to run (earlier stages' outputs are reused when present)")
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--skip-floors", action="store_true",
                    help="skip floors.py (the required-work floors of normalize and exports)")
    ap.add_argument("--baseline-anyway", action="store_true",
                    help=f"run the datasets baseline above {BASELINE_MAX_ROWS:,} rows too")
    ap.add_argument("--profile", nargs="*", choices=STAGES, default=None,
                    help="profile these stages afterwards (no names: the three slowest)")
    ap.add_argument("--floor-repeat", type=int, default=2,
                    help="parse-floor runs, the fastest counts (the first may read cold)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the CLI run's data dir")
    ap.add_argument("--chunk-rows", type=int, default=None,
                    help="rows per chunk for every stage (MemorySettings.chunk_rows)")
    ap.add_argument("--export-formats", nargs="*", default=None,
                    help=f"export formats (default: all; above {BIG_ROWS:,} rows: openai)")
    ap.add_argument("--export-templates", nargs="*", default=[],
                    help="chat templates, with --export-formats (default: none)")
    ap.add_argument("--floor-anyway", action="store_true",
                    help=f"measure the parse floor above {BIG_ROWS:,} rows too")
    ap.add_argument("--cli-anyway", action="store_true",
                    help=f"run the CLI above {BIG_ROWS:,} rows too")
    ap.add_argument("--out", type=Path, default=OUT,
                    help="where inputs, runs and logs go (default: bench/out)")
    args = ap.parse_args()
    OUT = args.out

    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}",
          file=sys.stderr)
    results = []
    for rows in args.rows:
        res = bench_one(rows, args)
        s = summary(res)
        print_report(res, s)
        results.append((res, s))
    print_growth(results)
    last = dict(results[-1][1])
    if len(results) > 1:
        last["runs"] = [s for _, s in results]
    last["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(last))


if __name__ == "__main__":
    main()
