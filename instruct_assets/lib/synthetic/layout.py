"""Where synthetic generation reads and writes under the data dir.

Generated rows become an ordinary raw source, ``raw/synthetic_<seed source>/generated.jsonl``,
so ingestion, quality and curation treat them like any other data. What must *not* be
ingested (rejects, the report) lives under ``synthetic/<seed source>/``, and every paid
completion under ``synthetic_cache/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from instruct_assets.lib.paths import DataPaths

#: Prefix of the raw source a seed source's variations become.
SOURCE_PREFIX = "synthetic_"


@dataclass(frozen=True)
class SyntheticPaths:
    """The synthetic layout of one data dir."""

    paths: DataPaths

    @property
    def cache(self) -> Path:
        return self.paths.root / "synthetic_cache"

    @property
    def reports(self) -> Path:
        return self.paths.root / "synthetic"

    @staticmethod
    def source_name(seed_source: str) -> str:
        return f"{SOURCE_PREFIX}{seed_source}"

    def generated_file(self, seed_source: str) -> Path:
        return self.paths.raw / self.source_name(seed_source) / "generated.jsonl"

    def rejects_file(self, seed_source: str) -> Path:
        return self.reports / seed_source / "rejects.parquet"

    def report_file(self, seed_source: str) -> Path:
        return self.reports / seed_source / "report.json"
