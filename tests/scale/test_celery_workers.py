"""The per-source stage on Dagster's Celery executor: two worker processes, Redis, Postgres.

This is the across-hosts shape in miniature: the run process only orchestrates; each step
(``staged_examples``, then ``normalized_examples``, per source) is a Celery task that some
worker picks off a Redis queue and executes against the shared Postgres instance and the
shared data dir. Whichever worker runs which step, the published files must be byte-for-byte
those of the single-process run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app

from instruct_assets.pipeline import sync_partitions
from tests.scale import celery_defs
from tests.scale.reference import PER_SOURCE, SOURCES, digests
from tests.scale.servers import REPO, Postgres, redis_server, stop_group, tail, write_home
from tests.support import make_data_dir

pytestmark = pytest.mark.slow

WORKERS = ("worker_a", "worker_b")
BIN = Path(sys.executable).parent  # the venv's scripts: dagster-celery, celery


def start_worker(name: str, config: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``dagster-celery worker start`` in its own process group (celery and its pool child)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(BIN / "dagster-celery"), "worker", "start",
             "-A", "dagster_celery.app", "-y", str(config), "-n", name, "-l", "INFO",
             "--", "--concurrency=1"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_workers(app, procs: dict[str, subprocess.Popen], logs: dict[str, Path],
                     timeout: float = 90.0) -> set[str]:
    """Block until every worker answers a broadcast ping; the names that answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"worker {name} exited {proc.returncode}:\n{tail(logs[name])}")
        answered = {h.split("@")[0] for reply in app.control.ping(timeout=1.0) for h in reply}
        if answered >= set(procs):
            return answered
        time.sleep(0.5)
    raise RuntimeError("workers did not answer:\n" + "\n".join(tail(p) for p in logs.values()))


def workers_of(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> the Celery worker that executed it, from the run's engine events."""
    out = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        meta = entry.dagster_event.engine_event_data.metadata
        if "Celery worker" in meta:
            out[entry.dagster_event.step_key] = meta["Celery worker"].value.split("@")[0]
    return out


def launch_run(source: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``dagster job execute`` for one source partition: a process that only orchestrates.

    One process per run because Dagster's in-process execution is not thread-safe (two
    ``execute_job`` calls in threads deadlock on the logging lock).
    """
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(BIN / "dagster"), "job", "execute", "-m", "tests.scale.celery_defs",
             "-a", "ingest_on_celery", "--tags", json.dumps({"dagster/partition": source})],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_per_source_stage_on_two_celery_workers(tmp_path, postgres: Postgres, reference,
                                                monkeypatch):
    db = "celery"
    postgres.create_database(db)
    home = write_home(tmp_path / "home")
    paths = make_data_dir(tmp_path / "data", SOURCES)
    with redis_server(tmp_path) as redis_url:
        broker, backend = f"{redis_url}/0", f"{redis_url}/1"
        env = {**postgres.env(db), "DAGSTER_HOME": str(home),
               "INSTRUCT_ASSETS_DATA": str(paths.root),
               celery_defs.BROKER_ENV: broker, celery_defs.BACKEND_ENV: backend}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        # as in an activated venv: `dagster-celery worker start` runs `celery` from PATH
        worker_env = {**os.environ, "PYTHONPATH": str(REPO),
                      "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        config = tmp_path / "celery.yaml"
        # the worker reads the executor's config block, in run-config shape
        config.write_text(yaml.safe_dump({"execution": {"config": celery_defs.executor_config()}}))
        logs = {name: tmp_path / f"{name}.log" for name in WORKERS}
        procs: dict[str, subprocess.Popen] = {}
        try:
            for name in WORKERS:
                procs[name] = start_worker(name, config, worker_env, logs[name])
            app = make_app(CeleryExecutor.for_cli(**celery_defs.executor_config()).app_args())
            assert wait_for_workers(app, procs, logs) == set(WORKERS)

            with dg.DagsterInstance.from_config(str(home)) as instance:
                sync_partitions(instance, list(SOURCES))
            # both sources at once, as a backfill launches them: two runs, two workers
            for source in SOURCES:
                logs[source] = tmp_path / f"run_{source}.log"
                procs[source] = launch_run(source, worker_env, logs[source])
            for source in SOURCES:
                code = procs[source].wait(timeout=240)
                assert code == 0, tail(logs[source], 80)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                assert instance.get_materialized_partitions(
                    dg.AssetKey("normalized_examples")) == set(SOURCES)
                ran_on = {}
                for source in SOURCES:
                    (run,) = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": source}))
                    assert run.status == dg.DagsterRunStatus.SUCCESS
                    ran_on[source] = workers_of(instance, run.run_id)
        finally:
            for proc in procs.values():
                stop_group(proc)
    print(f"steps by worker: {ran_on}")  # who took which step is up to the broker
    # every step ran in one of the two workers, none in this process
    for steps in ran_on.values():
        assert set(steps) == {"staged_examples", "normalized_examples"}
        assert set(steps.values()) <= set(WORKERS)
    # the published per-source files equal the single-process run's, byte for byte
    expected = {k: v for k, v in reference.items() if k.split("/")[0] in PER_SOURCE}
    assert digests(paths.root, under=PER_SOURCE) == expected
    assert len(expected) == 3 * len(SOURCES)  # examples.parquet, report.json, rejects.parquet
