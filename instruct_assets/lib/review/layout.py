"""Where review files live under the data dir (beside the other stages' folders).

``review/`` holds what the pipeline writes (the queue, the tool import files, the parsed
annotations); ``annotations/`` is the drop folder for what the tools export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from instruct_assets.lib.paths import DataPaths


@dataclass(frozen=True)
class ReviewPaths:
    """The review layout of one data dir."""

    paths: DataPaths

    @property
    def review(self) -> Path:
        return self.paths.root / "review"

    @property
    def inbox(self) -> Path:
        """Drop folder for tool exports (any nesting; hidden files are ignored)."""
        return self.paths.root / "annotations"

    @property
    def queue(self) -> Path:
        return self.review / "queue.parquet"

    @property
    def label_studio_tasks(self) -> Path:
        return self.review / "label_studio" / "tasks.json"

    @property
    def label_studio_config(self) -> Path:
        return self.review / "label_studio" / "labeling_config.xml"

    @property
    def argilla_records(self) -> Path:
        return self.review / "argilla" / "records.jsonl"

    @property
    def prodigy_tasks(self) -> Path:
        return self.review / "prodigy" / "tasks.jsonl"

    @property
    def annotations(self) -> Path:
        return self.review / "annotations.parquet"

    @property
    def annotation_rejects(self) -> Path:
        return self.review / "annotation_rejects.parquet"
