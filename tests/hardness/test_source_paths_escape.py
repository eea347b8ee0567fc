"""``sources.yaml`` cannot make the pipeline read outside the data dir through a symlink:
a listed link, a glob through a linked folder, or a link that a glob happens to match.
(Absolute and ``..`` paths: tests/ingest/test_sources_and_sensor.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.sources import SourcesConfigError, load_sources_config, source_files
from tests.support import REPO, run_all

SECRET = "the text of a file outside the data dir"


def outside_file(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    path = folder / "secret.jsonl"
    path.write_text(json.dumps({"instruction": SECRET, "output": SECRET}) + "\n")
    return path


def data_dir(tmp_path: Path, files_entry: str) -> DataPaths:
    root = tmp_path / "data"
    (root / "raw").mkdir(parents=True)
    (root / "sources.yaml").write_text(f"sources:\n  listed:\n    files: ['{files_entry}']\n")
    return DataPaths.at(root)


def test_a_listed_symlink_to_a_file_outside_is_refused(tmp_path):
    secret = outside_file(tmp_path)
    paths = data_dir(tmp_path, "link.jsonl")
    (paths.root / "link.jsonl").symlink_to(secret)
    with pytest.raises(SourcesConfigError, match=r"line 3: source 'listed': file 'link.jsonl' "
                                                 r"resolves outside the data dir"):
        load_sources_config(paths)


def test_a_glob_through_a_symlinked_folder_is_refused(tmp_path):
    secret = outside_file(tmp_path)
    paths = data_dir(tmp_path, "linked/*.jsonl")
    (paths.root / "linked").symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(SourcesConfigError, match=r"'linked/\*\.jsonl' resolves outside"):
        load_sources_config(paths)


def test_the_command_line_refuses_it_with_exit_code_2(tmp_path):
    secret = outside_file(tmp_path)
    paths = data_dir(tmp_path, "link.jsonl")
    (paths.root / "link.jsonl").symlink_to(secret)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "instruct_assets.cli", "run", "--data-dir", str(paths.root)],
        capture_output=True, text=True, env={**os.environ, "DAGSTER_HOME": str(home)},
        timeout=300)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "link.jsonl' resolves outside the data dir" in proc.stderr
    assert not paths.normalized.exists()


def glob_matching_a_link(tmp_path: Path) -> DataPaths:
    """``inbox/*.jsonl`` where inbox/ is a real folder holding one good file and one link
    to a file outside the data dir."""
    secret = outside_file(tmp_path)
    paths = data_dir(tmp_path, "inbox/*.jsonl")
    inbox = paths.root / "inbox"
    inbox.mkdir()
    (inbox / "good.jsonl").write_text(
        json.dumps({"instruction": "Say hi.", "output": "Hi."}) + "\n")
    (inbox / "evil.jsonl").symlink_to(secret)
    return paths


def test_a_link_matched_by_a_glob_is_never_read(tmp_path):
    paths = glob_matching_a_link(tmp_path)
    with dg.instance_for_test() as instance:
        run_all(paths, instance)
    outputs = [p for p in paths.root.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix == ".parquet" for p in outputs)
    for path in outputs:
        text = (str(pl.read_parquet(path).rows()) if path.suffix == ".parquet"
                else path.read_bytes().decode("utf-8", "replace"))
        assert SECRET not in text, path


def test_a_link_matched_by_a_glob_is_reported_not_silently_dropped(tmp_path):
    paths = glob_matching_a_link(tmp_path)
    with pytest.raises(SourcesConfigError, match=r"inbox/evil.jsonl.*outside the data dir"):
        source_files(paths, load_sources_config(paths)["listed"])
