"""sources.yaml parsing, path safety, and the source sensor's run requests."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from instruct_assets.defs.ingest.sensors import source_sensor
from instruct_assets.defs.resources import DataDir
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.sources import SourcesConfigError, discover_sources, load_sources_config


def paths_with(tmp_path, yaml_text: str | None = None, folders=("a",)) -> DataPaths:
    for name in folders:
        (tmp_path / "raw" / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "raw" / name / "x.jsonl").write_text(
            json.dumps({"instruction": "i", "output": "o"}) + "\n")
    if yaml_text is not None:
        (tmp_path / "sources.yaml").write_text(yaml_text)
    return DataPaths.at(tmp_path)


def test_malformed_yaml_names_file_and_line(tmp_path):
    paths = paths_with(tmp_path, "sources:\n  a:\n    format: alpaca\n   bad: [\n")
    with pytest.raises(SourcesConfigError, match=r"sources.yaml: line \d+, column \d+"):
        load_sources_config(paths)


def test_unknown_format_and_keys_are_refused_with_their_line(tmp_path):
    paths = paths_with(tmp_path, "sources:\n  a:\n    format: chatml2\n")
    with pytest.raises(SourcesConfigError, match=r"line 3: source 'a': format 'chatml2'"):
        load_sources_config(paths)
    paths = paths_with(tmp_path, "sources:\n  a:\n    colums: {}\n")
    with pytest.raises(SourcesConfigError, match=r"unknown keys \['colums'\]"):
        load_sources_config(paths)


@pytest.mark.parametrize("bad", ["../outside.jsonl", "/etc/passwd", "raw/../../x/*.json"])
def test_listed_files_cannot_escape_the_data_dir(tmp_path, bad):
    paths = paths_with(tmp_path, f"sources:\n  s:\n    files: ['{bad}']\n")
    with pytest.raises(SourcesConfigError, match="outside the data dir"):
        load_sources_config(paths)


def test_sources_are_folders_plus_listed_entries(tmp_path):
    paths = paths_with(tmp_path, "sources:\n  listed:\n    files: ['raw/a/*.jsonl']\n"
                                 "  a:\n    origin: synthetic\n", folders=("a", "b"))
    specs = discover_sources(paths)
    assert sorted(specs) == ["a", "b", "listed"]
    assert specs["a"].origin == "synthetic"


def run_sensor(instance, paths, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor,
                                  resources={"data_dir": DataDir(path=str(paths.root))})
    result = source_sensor(ctx)
    return result, ctx.cursor if result.cursor is None else result.cursor


def test_sensor_registers_sources_and_keys_runs_by_content(tmp_path, instance):
    paths = paths_with(tmp_path, folders=("a", "b"))
    result, cursor = run_sensor(instance, paths)
    (add,) = result.dynamic_partitions_requests
    assert add.partition_keys == ["a", "b"]
    keys = {r.partition_key: r.run_key for r in result.run_requests}
    instance.add_dynamic_partitions("sources", ["a", "b"])
    # unchanged files: the same run keys (Dagster never launches a run key twice)
    again, cursor = run_sensor(instance, paths, cursor)
    assert {r.partition_key: r.run_key for r in again.run_requests} == keys
    # change one file: only its source gets a new key
    (tmp_path / "raw" / "b" / "x.jsonl").write_text(
        json.dumps({"instruction": "changed", "output": "o"}) + "\n")
    changed, cursor = run_sensor(instance, paths, cursor)
    new = {r.partition_key: r.run_key for r in changed.run_requests}
    assert new["a"] == keys["a"] and new["b"] != keys["b"]


def test_sensor_deletes_the_partition_of_a_removed_source(tmp_path, instance):
    paths = paths_with(tmp_path, folders=("a", "b"))
    instance.add_dynamic_partitions("sources", ["a", "b"])
    (tmp_path / "raw" / "b" / "x.jsonl").unlink()
    (tmp_path / "raw" / "b").rmdir()
    result, _ = run_sensor(instance, paths)
    (delete,) = result.dynamic_partitions_requests
    assert isinstance(delete, dg.DeleteDynamicPartitionsRequest)
    assert delete.partition_keys == ["b"]
    assert [r.partition_key for r in result.run_requests] == ["a"]


def test_sensor_skips_with_the_config_error(tmp_path, instance):
    paths = paths_with(tmp_path, "sources: [1, 2\n")
    result, _ = run_sensor(instance, paths)
    assert "invalid YAML" in str(result.skip_reason)
