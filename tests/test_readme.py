"""The README documents what the code defines (columns, relations, reasons, commands)."""

from __future__ import annotations

import pytest

from instruct_assets.cli import build_parser
from instruct_assets.lib.quality.signals import QUALITY_COLUMNS
from instruct_assets.lib.schema import NORMALIZED_SCHEMA, REJECT_REASONS
from instruct_assets.lib.warehouse import RELATIONS
from tests.support import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [*QUALITY_COLUMNS, *RELATIONS, *REJECT_REASONS,
                                  *NORMALIZED_SCHEMA.names()])
def test_readme_documents(name):
    assert f"`{name}`" in README


def test_readme_commands_exist():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command in sub.choices:
        assert f"instruct-assets {command}" in README


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    command = next(line.strip() for line in README.splitlines()
                   if "pytest" in line and "pip install" in line)
    assert command in ci
