"""A run killed mid-write (SIGKILL of its whole process group) loses nothing: every file a
reader can see stays a complete version, and the next run repairs everything.

The story: a first ``instruct-assets run`` publishes a 200k-row Alpaca source; the file
changes; a second run is killed the moment a temporary file appears (while the staged
examples are written), a third the moment ``quality/`` is being written (its new examples
already promoted). Then an uninterrupted run must finish and give the bytes of a clean run
on the same input in a fresh data dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from tests.support import REPO

ROWS = 200_000
WORDS = ("river", "stone", "cloud", "paper", "window", "garden", "engine", "signal", "number",
         "letter", "music", "planet", "orange", "silver", "quiet", "rapid", "narrow", "gentle")
RUN_TIMEOUT_S = 900


def write_source(path: Path, seed: int, verb: str) -> None:
    """``ROWS`` distinct Alpaca rows (about 25 MB), fixed by ``seed``."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(ROWS):
            words = " ".join(rng.choice(WORDS) for _ in range(8))
            fh.write(json.dumps({"instruction": f"{verb} item {i}: {words}.", "input": "",
                                 "output": f"Item {i} is {words}."}) + "\n")


def dagster_home(root: Path) -> Path:
    home = root / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


def cli(data: Path, home: Path, log: Path) -> subprocess.Popen:
    """``instruct-assets run`` in its own process group (so a kill takes all of it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "instruct_assets.cli", "run", "--data-dir", str(data)],
        cwd=REPO, env={**os.environ, "DAGSTER_HOME": str(home)}, start_new_session=True,
        stdout=log.open("w"), stderr=subprocess.STDOUT)


def run_to_end(data: Path, home: Path, log: Path) -> None:
    proc = cli(data, home, log)
    assert proc.wait(timeout=RUN_TIMEOUT_S) == 0, log.read_text()


def temp_files(data: Path) -> list[str]:
    """Temporary files of atomic writes (``.<name>.<random>.tmp``) outside ``raw/``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(data):
        if Path(dirpath) == data:
            dirnames[:] = [d for d in dirnames if d != "raw"]
        found += [os.path.relpath(os.path.join(dirpath, f), data) for f in filenames
                  if f.startswith(".") and f.endswith(".tmp")]
    return found


def kill_when_writing(data: Path, home: Path, log: Path, under: str) -> str:
    """Start a run; SIGKILL its process group as soon as a temp file appears under ``under``
    (``""``: anywhere). Returns the temp file seen."""
    proc = cli(data, home, log)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        seen = [f for f in temp_files(data) if f.startswith(under)]
        if seen:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return seen[0]
        if proc.poll() is not None:
            pytest.fail(f"the run ended before a temp file appeared under {under!r}:\n"
                        f"{log.read_text()}")
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("no temp file appeared before the deadline")


def published(data: Path) -> dict[str, str]:
    """sha256 of every file a reader can see: all outputs except staging, the raw input,
    temp files and the DuckDB warehouse (not byte-deterministic; checked by querying)."""
    out = {}
    for p in sorted(data.rglob("*")):
        rel = p.relative_to(data)
        if (p.is_file() and rel.parts[0] not in ("raw", "staging")
                and not p.name.startswith(".") and ".duckdb" not in p.name):
            out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_readable(data: Path, files: list[str]) -> None:
    """Every file parses as what its name says, and the warehouse answers a query."""
    for rel in files:
        path = data / rel
        if path.suffix == ".parquet":
            pl.read_parquet(path)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                json.loads(line)
        elif path.suffix == ".yaml":
            yaml.safe_load(path.read_text(encoding="utf-8"))
        else:
            path.read_text(encoding="utf-8")
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM examples").fetchone()[0] == ROWS
    finally:
        con.close()


@dataclass
class KillStory:
    data: Path
    home: Path
    logs: Path
    first: dict[str, str]  # published files after the first, complete run
    after_staging_kill: dict[str, str]
    staging_temp: str
    after_quality_kill: dict[str, str]
    quality_temp: str
    clean: dict[str, str]  # a clean run on the changed input in a fresh data dir
    killed_runs: list[str]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KillStory]:
    root = tmp_path_factory.mktemp("kill")
    logs = root / "logs"
    logs.mkdir()
    data, home = root / "data", dagster_home(root / "main")
    write_source(data / "raw" / "big" / "rows.jsonl", seed=1, verb="Explain")
    run_to_end(data, home, logs / "first.log")
    first = published(data)

    write_source(data / "raw" / "big" / "rows.jsonl", seed=2, verb="Describe")
    staging_temp = kill_when_writing(data, home, logs / "kill1.log", "")
    after_staging_kill = published(data)
    quality_temp = kill_when_writing(data, home, logs / "kill2.log", "quality/")
    after_quality_kill = published(data)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        killed = [r.run_id for r in instance.get_runs(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))]

    fresh = root / "fresh" / "data"
    write_source(fresh / "raw" / "big" / "rows.jsonl", seed=2, verb="Describe")
    run_to_end(fresh, dagster_home(root / "fresh"), logs / "fresh.log")
    yield KillStory(data, home, logs, first, after_staging_kill, staging_temp,
                    after_quality_kill, quality_temp, published(fresh), killed)


@pytest.mark.slow
def test_a_kill_while_staging_leaves_every_published_file_untouched(story: KillStory):
    assert story.staging_temp.startswith("staging/"), story.staging_temp
    assert story.after_staging_kill == story.first
    assert_readable(story.data, list(story.first))


@pytest.mark.slow
def test_a_kill_while_quality_is_written_leaves_only_whole_versions(story: KillStory):
    """Killed mid-``quality/``: the new examples were already promoted (a whole new
    version); every visible file is either its old or its new complete version."""
    assert story.quality_temp.startswith("quality/"), story.quality_temp
    assert set(story.after_quality_kill) == set(story.first) == set(story.clean)
    changed = {f for f, h in story.after_quality_kill.items() if h != story.first[f]}
    assert "normalized/source=big/examples.parquet" in changed
    for f, digest in story.after_quality_kill.items():
        assert digest in (story.first[f], story.clean[f]), f
    assert story.after_quality_kill["quality/quality.parquet"] == story.first[
        "quality/quality.parquet"]
    assert_readable(story.data, list(story.after_quality_kill))


@pytest.mark.slow
def test_the_next_run_repairs_everything_like_a_clean_run(story: KillStory):
    assert story.killed_runs  # the instance still believes the killed runs are running
    proc = cli(story.data, story.home, story.logs / "third.log")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    with dg.DagsterInstance.from_config(str(story.home)) as instance:
        while proc.poll() is None and time.monotonic() < deadline:
            info = instance.event_log_storage.get_concurrency_info("duckdb_write")
            if info.pending_run_ids and info.active_run_ids <= set(story.killed_runs):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                pytest.fail(f"deadlock: the run waits for the duckdb_write slot held by "
                            f"killed run(s) {sorted(info.active_run_ids)}")
            time.sleep(0.5)
    assert proc.wait(timeout=5) == 0, (story.logs / "third.log").read_text()
    assert published(story.data) == story.clean
    assert_readable(story.data, list(story.clean))
