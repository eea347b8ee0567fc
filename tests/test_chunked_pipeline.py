"""The whole pipeline, as ``instruct-assets run`` runs it, gives the same outputs whatever
``memory.chunk_rows`` is: every Parquet table row for row, every other file byte for byte."""

from __future__ import annotations

import filecmp
from pathlib import Path

import polars as pl

from instruct_assets.lib.chunks import SPILL_PREFIX, spill_dir
from instruct_assets.lib.paths import DataPaths
from tests.support import QUALITY_SOURCES, make_data_dir, real, run_all_ok

SOURCES = {
    **QUALITY_SOURCES,
    "fastchat": [real("lm-sys__FastChat/dummy_conversation.json")],
}
#: Written outputs that legitimately differ between two data dirs (none by content).
SKIP = {"raw", "warehouse.duckdb", "settings.yaml"}


def _run(root: Path, instance, chunk_rows: int | None) -> DataPaths:
    paths = make_data_dir(root, SOURCES)
    if chunk_rows is not None:
        (root / "settings.yaml").write_text(f"memory: {{chunk_rows: {chunk_rows}}}\n",
                                            encoding="utf-8")
    outcome = run_all_ok(paths, instance)
    assert all(s.published for s in outcome.sources)
    return paths


def _outputs(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*")
                  if p.is_file() and not p.name.startswith(".")
                  and not SKIP & {p.name, *p.relative_to(root).parts})


def test_small_chunks_give_the_outputs_of_one_chunk(tmp_path, instance):
    one = _run(tmp_path / "one", instance, None).root
    many = _run(tmp_path / "many", instance, 97).root
    files = _outputs(one)
    assert files == _outputs(many)
    kinds = {f.suffix for f in files}
    assert {".parquet", ".jsonl", ".json"} <= kinds and len(files) > 40
    for rel in files:
        if rel.suffix == ".parquet":
            a, b = pl.read_parquet(one / rel), pl.read_parquet(many / rel)
            assert a.equals(b), rel
        else:
            assert filecmp.cmp(one / rel, many / rel, shallow=False), rel
    rows = pl.read_parquet(one / "quality" / "quality.parquet").height
    assert rows > 97 * 10  # the small run really was chunked many times


def test_a_spill_folder_left_by_a_killed_run_is_removed(tmp_path):
    stale = tmp_path / f"{SPILL_PREFIX}killed"
    (stale / "000001").mkdir(parents=True)
    (stale / "000001" / "rows.parquet").write_bytes(b"PAR1")
    with spill_dir(tmp_path) as spill:
        assert spill.is_dir() and spill.name.startswith(SPILL_PREFIX)
        assert not stale.exists()
        (spill / "piece.parquet").write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []
