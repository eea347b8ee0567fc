"""One real ``dagster dev`` for the e2e tests, started once and left to run the pipeline.

Package-scoped (``__init__.py`` makes this folder a package), so the server stops after the
last e2e test instead of idling through the rest of the suite. Its log, its runs and how
long each phase took are kept under ``tests/artifacts/`` for a failure's post-mortem.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import make_data_dir, real

from .dagster_server import DagsterDev
from .scenario import ARTIFACTS, SOURCES, Pipeline, settle


@pytest.fixture(scope="package")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    root = tmp_path_factory.mktemp("e2e")
    paths = make_data_dir(root / "data", {s: [real(f) for f in files]
                                          for s, files in SOURCES.items()})
    server = DagsterDev(root=root, data_dir=paths.root)
    server.start()
    settled = None
    try:
        settled = settle(server, paths.root)
        yield settled
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        summary = server.runs_summary()
        if settled is not None:
            summary += "\n" + " ".join(f"{k}={v:.0f}s" for k, v in settled.seconds.items())
        (ARTIFACTS / "e2e_runs.txt").write_text(summary + "\n", encoding="utf-8")
        server.stop()
        (ARTIFACTS / "dagster_dev.log").write_text(server.log_tail(500_000), encoding="utf-8")
