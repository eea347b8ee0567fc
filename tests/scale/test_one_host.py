"""One host, several cores: one run per source, all at once, each in its own process.

The first step before any cluster: the product's own definitions, launched with
``dagster asset materialize`` per source partition (as a UI backfill launches them), two runs
in parallel against one SQLite instance (``dagster_home/dagster.yaml``). The published files
must equal those of the single-process run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from instruct_assets.pipeline import sync_partitions
from tests.scale.reference import PER_SOURCE, SOURCES, digests
from tests.scale.servers import REPO, stop_group, tail, write_home
from tests.support import make_data_dir

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def test_one_run_per_source_in_parallel_on_one_host(tmp_path, reference):
    home = write_home(tmp_path / "home", REPO / "dagster_home" / "dagster.yaml")
    paths = make_data_dir(tmp_path / "data", SOURCES)
    env = {**os.environ, "DAGSTER_HOME": str(home), "INSTRUCT_ASSETS_DATA": str(paths.root)}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        sync_partitions(instance, list(SOURCES))  # what the source sensor does
    procs: dict[str, subprocess.Popen] = {}
    logs = {source: tmp_path / f"{source}.log" for source in SOURCES}
    try:
        for source in SOURCES:
            with open(logs[source], "wb") as out:
                procs[source] = subprocess.Popen(
                    [str(BIN / "dagster"), "asset", "materialize",
                     "-m", "instruct_assets.definitions",
                     "--select", "staged_examples,normalized_examples", "--partition", source],
                    cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)
        for source, proc in procs.items():
            assert proc.wait(timeout=300) == 0, tail(logs[source], 80)
    finally:
        for proc in procs.values():
            stop_group(proc)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(SOURCES)
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        # each run was orchestrated by its own process (not this one), and all its steps ran
        pids = {run_pid(instance, run.run_id) for run in runs}
        assert len(pids) == len(SOURCES) and os.getpid() not in pids
        for run in runs:
            starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            assert {e.step_key for e in starts} == {"staged_examples", "normalized_examples"}
    expected = {k: v for k, v in reference.items() if k.split("/")[0] in PER_SOURCE}
    assert digests(paths.root, under=PER_SOURCE) == expected


def run_pid(instance: dg.DagsterInstance, run_id: str) -> int:
    """The pid of the process that orchestrated the run (the one that logged RUN_START)."""
    (start,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_START)
    return start.dagster_event.pid
