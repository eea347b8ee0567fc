"""A data dir with real published-shape examples, their quality and a written review queue."""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl
import pytest

from instruct_assets.lib.complexity import ComplexityConfig, score_complexity
from instruct_assets.lib.normalize import normalize_source
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.quality.config import QualityThresholds
from instruct_assets.lib.quality.dedup import DedupConfig
from instruct_assets.lib.quality.table import build_quality
from instruct_assets.lib.review.layout import ReviewPaths
from instruct_assets.lib.review.queue import QueueConfig, select_queue
from instruct_assets.lib.review.tools import review_frame, write_tool_files
from instruct_assets.lib.sources import SourceSpec
from tests.support import make_data_dir, real

EXCLUDE_FLAGS = ("empty_or_trivial_response", "template_placeholder")


@dataclass
class Reviewed:
    paths: DataPaths
    layout: ReviewPaths
    examples: pl.DataFrame
    quality: pl.DataFrame
    frame: pl.DataFrame
    files: dict
    exclude_flags: tuple[str, ...] = EXCLUDE_FLAGS

    def ls_tasks(self) -> list[dict]:
        return json.loads(self.layout.label_studio_tasks.read_text(encoding="utf-8"))

    def argilla_records(self) -> list[dict]:
        return [json.loads(x) for x in self.layout.argilla_records.read_text().splitlines()]

    def prodigy_tasks(self) -> list[dict]:
        return [json.loads(x) for x in self.layout.prodigy_tasks.read_text().splitlines()]

    def drop(self, name: str, text: str) -> None:
        target = self.layout.inbox / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


@pytest.fixture
def reviewed(tmp_path) -> Reviewed:
    paths = make_data_dir(tmp_path, {
        "alpaca": [real("hiyouga__LLaMA-Factory/alpaca_en_demo.json")],
        "identity": [real("hiyouga__LLaMA-Factory/identity.json")]})
    examples = pl.concat([normalize_source(paths, SourceSpec(name=s)).examples
                          for s in ("alpaca", "identity")])
    quality = build_quality(examples, QualityThresholds(), DedupConfig())
    complexity = score_complexity(examples, ComplexityConfig()).with_columns(
        pl.col("complexity_tier").cast(pl.String))
    queue = select_queue(quality, complexity, QueueConfig(
        flagged_per_source=6, borderline_per_source=4, sample_per_stratum=3))
    frame = review_frame(queue, examples, 0.5, EXCLUDE_FLAGS)
    layout = ReviewPaths(paths)
    files = write_tool_files(layout, frame)
    return Reviewed(paths, layout, examples, quality, frame, files)
