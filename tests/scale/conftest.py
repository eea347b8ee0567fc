"""Fixtures of the scale-out tests: one PostgreSQL cluster and one reference run per session."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest

from tests.scale.reference import SOURCES, digests
from tests.scale.servers import Postgres, postgres_server
from tests.support import make_data_dir, run_all


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server on 127.0.0.1; each test creates its own database in it."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Output digests of the plain single-process run: in-process executor, SQLite instance."""
    paths = make_data_dir(tmp_path_factory.mktemp("reference"), SOURCES)
    with dg.instance_for_test() as instance:
        outcome = run_all(paths, instance)
    assert outcome.downstream_ok and not outcome.held_back, outcome
    return digests(paths.root)
