"""A real ``dagster dev`` on loopback, driven over GraphQL as the UI drives it.

``dagster dev`` (webserver + daemon) rather than the webserver alone: the instance's default
run coordinator queues runs and only the daemon dequeues them, and the daemon is also what
runs the source sensor and the automation sensor that a user relies on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.support import REPO

LOCATION = "instruct_assets"
REPOSITORY = "__repository__"
ASSET_JOB = "__ASSET_JOB"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
T = TypeVar("T")

WORKSPACE = f"""\
load_from:
  - python_module:
      module_name: instruct_assets.definitions
      location_name: {LOCATION}
"""


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (free unless someone races for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dagster_command() -> list[str]:
    """The venv's ``dagster`` script beside this interpreter, else ``python -m dagster``."""
    script = shutil.which("dagster", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "dagster"]


class GraphQLError(AssertionError):
    """The server answered, but with GraphQL errors or an unexpected union member."""


@dataclass
class DagsterDev:
    """One ``dagster dev`` process group with its own DAGSTER_HOME, data dir and port."""

    root: Path
    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def log_file(self) -> Path:
        return self.root / "dagster_dev.log"

    def start(self) -> None:
        """Start the README's UI command on a temp instance (the repo's dagster.yaml)."""
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", self.home / "dagster.yaml")
        workspace = self.root / "workspace.yaml"
        workspace.write_text(WORKSPACE, encoding="utf-8")
        env = {**os.environ, "DAGSTER_HOME": str(self.home),
               "INSTRUCT_ASSETS_DATA": str(self.data_dir), "PYTHONUNBUFFERED": "1"}
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(
                [*dagster_command(), "dev", "-h", "127.0.0.1", "-p", str(self.port),
                 "-w", str(workspace)],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        """Interrupt the process group as Ctrl-C would, then kill whatever is left in it.

        The group holds the webserver, the daemon, the code server, run workers and step
        processes; SIGINT lets ``dagster dev`` shut its services down cleanly.
        """
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait(timeout=20)
        self.proc = None

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return text[-chars:]

    # -- GraphQL -------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict[str, Any] | None = None,
                timeout: float = 60.0) -> dict[str, Any]:
        """POST one query to ``/graphql``. Errors in the answer raise at once (not retried by
        ``wait_until``); only a server that does not answer yet is retried."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as exc:
            raise GraphQLError(f"HTTP {exc.code} from /graphql: "
                               f"{exc.read().decode(errors='replace')[:2000]}") from exc
        if payload.get("errors"):
            raise GraphQLError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def wait_until(self, what: str, probe: Callable[[], T | None], timeout: float,
                   interval: float = 1.0) -> T:
        """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the log."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"dagster dev exited ({self.proc.returncode}) while "
                                     f"waiting for {what}\n{self.log_tail()}")
            try:
                value = probe()
                if value:
                    return value
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last_error = exc
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} "
                             f"(last error: {last_error})\n--- runs ---\n{self.runs_summary()}"
                             f"\n--- dagster dev log ---\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until the webserver answers and the code location has loaded (or failed loudly)."""
        def loaded() -> bool:
            data = self.graphql("""{ workspaceOrError { __typename ... on Workspace {
                locationEntries { name loadStatus locationOrLoadError {
                  __typename ... on PythonError { message stack } } } } } }""", timeout=10)
            entries = data["workspaceOrError"].get("locationEntries") or []
            for entry in entries:
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    raise AssertionError(f"code location failed to load: {loaded['message']}\n"
                                         + "".join(loaded.get("stack") or []))
            return any(e["name"] == LOCATION and e["loadStatus"] == "LOADED"
                       and (e["locationOrLoadError"] or {}).get("__typename")
                       == "RepositoryLocation" for e in entries)
        self.wait_until("the webserver and the instruct_assets code location", loaded, timeout)

    # -- queries the tests share ---------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        data = self.graphql("""{ runsOrError { __typename ... on Runs { results {
            runId status creationTime startTime endTime
            tags { key value } assetSelection { path } } } } }""")
        runs = data["runsOrError"]["results"]
        for run in runs:
            run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
            run["assets"] = sorted("/".join(a["path"]) for a in run["assetSelection"] or [])
        return runs

    def runs_summary(self) -> str:
        try:
            return "\n".join(
                f"{r['runId'][:8]} {r['status']:<9} {_seconds(r)} "
                f"partition={r['tags'].get('dagster/partition')} assets={r['assets']} "
                f"by={_trigger(r['tags'])}" for r in reversed(self.runs()))
        except Exception as exc:  # the summary only decorates a failure message
            return f"(runs unavailable: {exc})"

    def partition_keys(self, asset: str) -> list[str]:
        data = self.graphql("""query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
            __typename ... on AssetNode { partitionKeys } } }""", {"key": {"path": [asset]}})
        return data["assetNodeOrError"]["partitionKeys"]

    def materializations(self, asset: str, partition: str | None = None,
                         limit: int = 10) -> list[dict[str, Any]]:
        """Newest first, each with ``metadata`` as {label: value} (text for markdown)."""
        data = self.graphql("""query($key: AssetKeyInput!, $partitions: [String!], $limit: Int) {
            assetOrError(assetKey: $key) { __typename ... on Asset {
              assetMaterializations(partitions: $partitions, limit: $limit) {
                runId partition timestamp metadataEntries { __typename label
                  ... on IntMetadataEntry { intValue }
                  ... on FloatMetadataEntry { floatValue }
                  ... on TextMetadataEntry { text }
                  ... on MarkdownMetadataEntry { mdStr }
                  ... on PathMetadataEntry { path } } } } } }""",
            {"key": {"path": [asset]}, "limit": limit,
             "partitions": [partition] if partition is not None else None})
        asset_or_error = data["assetOrError"]
        if asset_or_error["__typename"] != "Asset":
            return []
        events = asset_or_error["assetMaterializations"]
        for event in events:
            event["metadata"] = {e["label"]: _entry_value(e) for e in event["metadataEntries"]}
        return events

    def check_executions(self, asset: str, check: str, limit: int = 50
                         ) -> list[dict[str, Any]]:
        """Newest first: runId, status and the evaluation's success, severity and metadata.

        Checks declared on a partitioned asset are recorded without their partition
        (partitioned checks are a preview feature), so tests tell them apart by run.
        """
        data = self.graphql("""query($key: AssetKeyInput!, $check: String!, $limit: Int!) {
            assetCheckExecutions(assetKey: $key, checkName: $check, limit: $limit) {
              runId status evaluation { success severity description
                metadataEntries { __typename label ... on IntMetadataEntry { intValue }
                  ... on FloatMetadataEntry { floatValue } } } } }""",
            {"key": {"path": [asset]}, "check": check, "limit": limit})
        return data["assetCheckExecutions"]

    def check_in_run(self, asset: str, check: str, run_id: str) -> dict[str, Any]:
        """The one execution of ``check`` in run ``run_id`` (fails if there is not exactly one)."""
        found = [e for e in self.check_executions(asset, check) if e["runId"] == run_id]
        assert len(found) == 1, f"{len(found)} executions of {asset}:{check} in run {run_id}"
        return found[0]

    def launch_assets(self, assets: list[str], partition: str | None = None,
                      tags: dict[str, str] | None = None,
                      run_config: dict[str, Any] | None = None) -> str:
        """Launch the asset job for ``assets`` (and their checks) as the UI's Materialize does
        (it sends no run config; ``run_config`` is the launchpad's)."""
        all_tags = dict(tags or {})
        if partition is not None:
            all_tags["dagster/partition"] = partition
        data = self.graphql("""mutation($params: ExecutionParams!) {
            launchRun(executionParams: $params) { __typename
              ... on LaunchRunSuccess { run { runId } }
              ... on PythonError { message }
              ... on InvalidSubsetError { message }
              ... on RunConfigValidationInvalid { errors { message } }
              ... on UnauthorizedError { message } } }""", {"params": {
                "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                             "jobName": ASSET_JOB,
                             "assetSelection": [{"path": [a]} for a in assets]},
                "mode": "default", "runConfigData": run_config or {},
                "executionMetadata": {"tags": [{"key": k, "value": v}
                                               for k, v in all_tags.items()]}}})
        result = data["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"launchRun failed: {result}")
        return result["run"]["runId"]

    def wait_for_run(self, run_id: str, timeout: float = 180.0) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            run = next((r for r in self.runs() if r["runId"] == run_id), None)
            return run if run and run["status"] in TERMINAL else None
        return self.wait_until(f"run {run_id} to finish", finished, timeout)


def _entry_value(entry: dict[str, Any]) -> Any:
    for key in ("intValue", "floatValue", "text", "mdStr", "path"):
        if key in entry:
            return entry[key]
    return entry["__typename"]


def _seconds(run: dict[str, Any]) -> str:
    """How long a run waited in the queue and ran, for post-mortems."""
    created, start, end = run["creationTime"], run["startTime"], run["endTime"]
    if not (start and end):
        return "-"
    return f"queued {start - created:.0f}s ran {end - start:.0f}s"


def _trigger(tags: dict[str, str]) -> str | None:
    return tags.get("dagster/sensor_name") or tags.get("dagster/schedule_name")
