"""Resources shared by every stage: where the data lives, and the pipeline's settings.

The data dir comes from one place: ``DataDir.path``, which ``definitions.build_defs`` fills
from ``--data-dir`` / ``INSTRUCT_ASSETS_DATA`` (default ``./data``).
"""


from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from instruct_assets.lib.chunks import DEFAULT_CHUNK_ROWS
from instruct_assets.lib.paths import DataPaths
from instruct_assets.lib.warehouse import connect_for_write


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


class MemorySettings(dg.ConfigurableResource):
    """How much of the data a stage holds in memory at once.

    ``chunk_rows``: every stage walks its wide inputs (the conversations) in chunks of at
    most this many rows and keeps only narrow columns across chunks. One million by default:
    about 3.5 GB of peak memory per stage; lower it on a small machine (memory falls, time
    grows a little per extra chunk), raise it to trade memory for fewer passes.
    """

    chunk_rows: int = DEFAULT_CHUNK_ROWS


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse for writers: waits a bounded time for another process's lock.

    ``lock_timeout_s``: how long a run waits for a user's read-write DuckDB session to close
    before failing with the holder's name (120 s: long enough for an interactive query,
    short enough that a forgotten session is reported, not waited on forever).
    """

    lock_timeout_s: float = 120.0

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        log = dg.get_dagster_logger().warning
        con = connect_for_write(Path(self.database), self.lock_timeout_s, log,
                                dict(self.connection_config))
        try:
            yield con
        finally:
            con.close()


def warehouse_resource(paths: DataPaths) -> WarehouseResource:
    """The DuckDB warehouse (``<data dir>/warehouse.duckdb``) for writers."""
    return WarehouseResource(database=str(paths.warehouse))
