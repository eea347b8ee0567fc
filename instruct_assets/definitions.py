"""The one entry point: ``defs`` for the UI/CLI, and ``build_defs`` for tests and the CLI.

The data dir (and the refresh cron) are read here and only here: ``build_defs(data_dir)``
when given, otherwise the ``INSTRUCT_ASSETS_DATA`` environment variable, otherwise ``./data``.
"""

from __future__ import annotations

import os

import dagster as dg

from instruct_assets.defs.automation import (
    DEFAULT_REFRESH_CRON,
    automation_sensor,
    build_refresh_schedule,
)
from instruct_assets.defs.curation.assets import (
    benchmark_contamination,
    complexity_scores,
    curated_examples,
)
from instruct_assets.defs.exports.assets import training_exports
from instruct_assets.defs.ingest.assets import normalized_examples, staged_examples
from instruct_assets.defs.ingest.sensors import source_sensor
from instruct_assets.defs.quality.assets import quality_scores
from instruct_assets.defs.resources import (
    DataDir,
    IngestSettings,
    MemorySettings,
    warehouse_resource,
)
from instruct_assets.defs.review.assets import (
    annotations_sensor,
    human_annotations,
    review_queue,
)
from instruct_assets.defs.settings import CurationSettings, ExportSettings, QualitySettings
from instruct_assets.defs.splits.assets import split_assignments
from instruct_assets.defs.synthetic.assets import synthetic_variations
from instruct_assets.defs.synthetic.resources import synthetic_endpoint_from_env
from instruct_assets.lib.paths import DATA_DIR_ENV, DEFAULT_DATA_DIR, DataPaths
from instruct_assets.lib.settings_file import read_settings

REFRESH_CRON_ENV = "INSTRUCT_ASSETS_REFRESH_CRON"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> DataPaths:
    return DataPaths.at(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def build_defs(data_dir: str | os.PathLike | None = None,
               refresh_cron: str | None = None) -> dg.Definitions:
    """All assets, checks, sensors, the schedule and resources, bound to one data dir.

    The settings resources take their values from ``<data dir>/settings.yaml`` when it
    exists (``lib.settings_file``), else their defaults.

    ``refresh_cron``: when the full refresh runs (else ``$INSTRUCT_ASSETS_REFRESH_CRON``,
    else daily at 03:00).
    """
    paths = resolve_data_dir(data_dir)
    cron = refresh_cron or os.environ.get(REFRESH_CRON_ENV) or DEFAULT_REFRESH_CRON
    settings = read_settings(paths)
    return dg.Definitions(
        # One process per run: steps are small and mostly I/O on shared Parquet; a process
        # per step cost ~45 s per downstream run in the UI. DuckDB writers still take turns
        # through the duckdb_write pool. Jobs that want isolation set their own executor.
        executor=dg.in_process_executor,
        assets=[
            staged_examples, normalized_examples, quality_scores, complexity_scores,
            benchmark_contamination, curated_examples, split_assignments, training_exports,
            human_annotations, review_queue, synthetic_variations,
        ],
        sensors=[source_sensor, automation_sensor, annotations_sensor],
        schedules=[build_refresh_schedule(cron)],
        resources={
            "data_dir": DataDir(path=str(paths.root)),
            "ingest_settings": IngestSettings(**settings["ingest"]),
            "quality_settings": QualitySettings(**settings["quality"]),
            "curation_settings": CurationSettings(**settings["curation"]),
            "export_settings": ExportSettings(**settings["exports"]),
            "memory_settings": MemorySettings(**settings["memory"]),
            "duckdb": warehouse_resource(paths),
            "synthetic_endpoint": synthetic_endpoint_from_env(),
        },
    )


defs = build_defs()
