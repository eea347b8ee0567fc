"""Where everything lives under the data directory, defined once.

Every stage asks this module for its paths; nothing else builds paths under the data dir.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "INSTRUCT_ASSETS_DATA"
DEFAULT_DATA_DIR = "data"


@dataclass(frozen=True)
class DataPaths:
    """The layout of one data directory (raw inputs and every output)."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> DataPaths:
        return cls(Path(root).expanduser().resolve())

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def sources_file(self) -> Path:
        return self.root / "sources.yaml"

    @property
    def settings_file(self) -> Path:
        return self.root / "settings.yaml"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def normalized(self) -> Path:
        return self.root / "normalized"

    @property
    def rejects(self) -> Path:
        return self.root / "rejects"

    @property
    def quality(self) -> Path:
        return self.root / "quality"

    @property
    def curation(self) -> Path:
        return self.root / "curation"

    @property
    def splits(self) -> Path:
        return self.root / "splits"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def benchmarks(self) -> Path:
        return self.root / "benchmarks"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    def partition_dir(self, stage: Path, source: str) -> Path:
        """Hive-style folder of one source in a per-source stage (``source=<name>``)."""
        return stage / f"source={source}"

    def normalized_file(self, source: str) -> Path:
        return self.partition_dir(self.normalized, source) / "examples.parquet"

    def rejects_file(self, source: str) -> Path:
        return self.partition_dir(self.rejects, source) / "rejects.parquet"

    def staged_file(self, source: str) -> Path:
        return self.partition_dir(self.staging, source) / "examples.parquet"

    def relative(self, path: Path) -> str:
        """``path`` relative to the data dir, with forward slashes (stable provenance)."""
        path = Path(os.path.abspath(path))
        return path.relative_to(self.root).as_posix()

    def inside(self, path: Path) -> bool:
        """True when ``path`` (after resolving links and ``..``) lies under the data dir."""
        try:
            path.resolve().relative_to(self.root)
        except ValueError:
            return False
        return True
