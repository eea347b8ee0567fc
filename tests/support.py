"""Shared test helpers: the real public files, temporary data dirs, the real pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from instruct_assets.definitions import build_defs
from instruct_assets.lib.paths import DataPaths
from instruct_assets.pipeline import PipelineOutcome, run_pipeline

REPO = Path(__file__).resolve().parents[1]
REAL = (REPO / ".." / "shared" / "data" / "real").resolve()


def real(rel: str) -> Path:
    """A file under ``../shared/data/real`` (fails loudly if the shared data is missing)."""
    path = REAL / rel
    assert path.exists(), f"shared real data missing: {path}"
    return path


#: Five real sources that hold every quality defect the tests look for (empty outputs,
#: placeholders, exact and near duplicates, tool calls, long chain-of-thought answers).
QUALITY_SOURCES = {
    "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")],
    "identity": [real("hiyouga__LLaMA-Factory/identity.json")],
    "code_alpaca": [real("sahil280114__codealpaca/code_alpaca_2k.json")],
    "glaive": [real("hiyouga__LLaMA-Factory/glaive_toolcall_en_demo.json")],
    "cot": [real("KentaNishi__2025_llm_comp_main/"
                 "structured_data_with_cot_dataset_512_v5_validation.jsonl")],
}


def make_data_dir(root: Path, sources: dict[str, list[Path]],
                  sources_yaml: str | None = None) -> DataPaths:
    """A data dir whose ``raw/<source>/`` folders link to the given files."""
    for source, files in sources.items():
        folder = root / "raw" / source
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            os.symlink(f, folder / f.name)
    if sources_yaml is not None:
        (root / "sources.yaml").write_text(sources_yaml, encoding="utf-8")
    return DataPaths.at(root)


def run_all(paths: DataPaths, instance: dg.DagsterInstance) -> PipelineOutcome:
    """The real pipeline (the same function ``instruct-assets run`` calls)."""
    return run_pipeline(build_defs(paths.root), paths, instance)


def run_all_ok(paths: DataPaths, instance: dg.DagsterInstance) -> PipelineOutcome:
    """:func:`run_all`, asserting that every downstream stage succeeded."""
    outcome = run_all(paths, instance)
    assert outcome.downstream_ok, outcome.downstream_failures
    return outcome
