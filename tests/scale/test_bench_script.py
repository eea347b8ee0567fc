"""The benchmark script runs end to end on a small input and reports what the issues ask.

Not a timing test: it asserts no speed. It keeps ``bench/run.py`` (and ``stages.py``,
``make_data.py``, ``floors.py``) working, so a benchmark run after a change measures the
change instead of failing on a renamed function.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from instruct_assets.defs.settings import ExportSettings
from instruct_assets.lib.export.writers import export_path

REPO = Path(__file__).resolve().parents[2]


def test_bench_run_reports_stages_floors_and_ratios(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--rows", "3000", "--skip-cli",
         "--skip-baseline", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    stages = ["normalize", "quality", "complexity", "decontamination", "curation", "splits",
              "exports"]
    assert report["rows"] == 3000
    assert report["all_stages_ran"] and report["stage_failures"] == {}
    assert sorted(report["seconds"]) == sorted(stages)
    assert report["parse_floor_seconds"] > 0
    assert report["seconds_total"] == pytest.approx(sum(report["seconds"].values()), abs=0.01)
    assert report["ratio_vs_parse_floor"] == pytest.approx(
        report["seconds_total"] / report["parse_floor_seconds"], rel=0.01)

    floors = report["required_work_floor"]
    assert set(floors) == {"normalize", "exports", "normalize+exports"}
    for name in ("normalize", "exports"):
        assert floors[name]["seconds"] > 0 and floors[name]["cpu_seconds"] > 0
    parts = report["required_work_parts"]
    assert parts["normalize.write"]["bytes"] > 0
    # The exports floor wrote every default kind of both splits: about the bytes ours did
    # (a floor that wrote less would understate what the target has to pay for).
    exports = tmp_path / "run_3000" / "data" / "exports"
    kinds = ExportSettings().kinds()
    ours = sum(export_path(exports, kind, split).stat().st_size
               for kind in kinds for split in ("train", "eval"))
    assert parts["exports.write"]["bytes"] == pytest.approx(ours, rel=0.05)
    assert "required-work floors" in proc.stdout
