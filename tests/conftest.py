"""Fixtures shared by every test folder (helpers live in ``tests/support.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A throwaway Dagster instance (SQLite in a temp dir), as Dagster's tests use."""
    with dg.instance_for_test() as inst:
        yield inst
