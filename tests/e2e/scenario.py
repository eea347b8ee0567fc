"""The e2e scenario: what is in the data dir, and how to tell the pipeline has settled.

Two good sources and one bad one, linked from the real public files. Nothing is launched by
the tests to get the pipeline going: the daemon's source sensor registers the partitions and
ingests each source, and the automation sensor refreshes the downstream assets, exactly as
for a user who starts the UI beside a data folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import REPO

from .dagster_server import TERMINAL, DagsterDev

SOURCES = {
    "identity": ["hiyouga__LLaMA-Factory/identity.json"],
    "glaive": ["hiyouga__LLaMA-Factory/glaive_toolcall_en_demo.json"],
    # one ShareGPT object whose assistant turn is empty: its only record is rejected
    "missing_turns": ["axolotl-ai-cloud__axolotl/conversation.missingturns.json"],
}
GOOD = ("glaive", "identity")
BAD = "missing_turns"
INGEST = ["normalized_examples", "staged_examples"]
DOWNSTREAM = ["annotations", "benchmark_contamination", "complexity_scores",
              "curated_examples", "quality_scores", "review_queue", "split_assignments",
              "training_exports"]
SOURCE_SENSOR = "source_sensor"
AUTOMATION_SENSOR = "downstream_automation"
ARTIFACTS = REPO / "tests" / "artifacts"


@dataclass
class Pipeline:
    """The server once the sensors have ingested every source and refreshed downstream."""

    server: DagsterDev
    data_dir: Path
    ingest_runs: dict[str, dict[str, Any]]
    downstream_run: dict[str, Any]
    seconds: dict[str, float]  # since start: ready, ingested, downstream


def ingest_runs(server: DagsterDev) -> dict[str, dict[str, Any]] | None:
    """The source sensor's run per source, once there is one for each and all have ended."""
    runs = [r for r in server.runs() if r["tags"].get("dagster/sensor_name") == SOURCE_SENSOR]
    by_source = {r["tags"].get("dagster/partition"): r for r in runs}
    if set(by_source) != set(SOURCES) or any(r["status"] not in TERMINAL for r in runs):
        return None
    return by_source


def downstream_run(server: DagsterDev, after: float) -> dict[str, Any] | None:
    """The automation's newest run created after ``after``, once every run has ended.

    Fails at once (not at the timeout) when that run did not succeed.
    """
    runs = server.runs()
    if any(r["status"] not in TERMINAL for r in runs):
        return None
    ours = [r for r in runs if r["tags"].get("dagster/sensor_name") == AUTOMATION_SENSOR
            and r["creationTime"] >= after and "quality_scores" in r["assets"]]
    if not ours:
        return None
    latest = max(ours, key=lambda r: r["creationTime"])
    if latest["status"] != "SUCCESS":
        raise AssertionError(f"the automation's downstream run {latest['runId']} ended "
                             f"{latest['status']}\n{server.runs_summary()}")
    return latest


def settle(server: DagsterDev, data_dir: Path) -> Pipeline:
    """Wait, as a user would, for the sensors to do their work on a fresh server.

    The downstream run to wait for is one requested after the last source was published:
    compared with that materialization, not with the end of its run, because the automation
    may request it while the ingestion run is still winding down.
    """
    started = time.monotonic()
    server.wait_ready()
    seconds = {"ready": time.monotonic() - started}
    ingest = server.wait_until("the source sensor's ingestion run for every source",
                               lambda: ingest_runs(server), timeout=300)
    seconds["ingested"] = time.monotonic() - started
    published = [float(e["timestamp"]) / 1000 for source in GOOD
                 for e in server.materializations("normalized_examples", source, limit=1)]
    if len(published) != len(GOOD):
        raise AssertionError(f"not every good source was published\n{server.runs_summary()}")
    downstream = server.wait_until(
        "the automation sensor's downstream run (quality, curation, splits, exports)",
        lambda: downstream_run(server, after=max(published)), timeout=300)
    seconds["downstream"] = time.monotonic() - started
    return Pipeline(server, data_dir, ingest, downstream, seconds)
