"""One dynamic partition per source; the source sensor adds and removes them."""

from __future__ import annotations

import dagster as dg

SOURCES_PARTITION = "sources"
source_partitions = dg.DynamicPartitionsDefinition(name=SOURCES_PARTITION)
