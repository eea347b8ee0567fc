"""Resources shared by every stage: where the data lives, and the pipeline's settings.

The data dir comes from one place: ``DataDir.path``, which ``definitions.build_defs`` fills
from ``--data-dir`` / ``INSTRUCT_ASSETS_DATA`` (default ``./data``).
"""


import dagster as dg
from dagster_duckdb import DuckDBResource

from instruct_assets.lib.paths import DataPaths


class DataDir(dg.ConfigurableResource):
    """The data directory: raw inputs under ``raw/``, every output beside them."""

    path: str = "data"

    @property
    def paths(self) -> DataPaths:
        return DataPaths.at(self.path)


class IngestSettings(dg.ConfigurableResource):
    """Thresholds of the ingestion stage.

    ``max_reject_rate``: a source rejecting more than this share of its records is held
    back (a blocking check). 0.5 by default: a source where most rows fail to parse is
    almost always a wrong format or mapping, not a few bad rows worth training on.
    """

    max_reject_rate: float = 0.5


def warehouse_resource(paths: DataPaths) -> DuckDBResource:
    """The DuckDB warehouse (``<data dir>/warehouse.duckdb``) for writers."""
    return DuckDBResource(database=str(paths.warehouse))
