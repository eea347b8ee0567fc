"""The source sensor: registers source partitions and ingests a source when it changes.

Runs by default. Each tick lists the sources (folders under ``raw/`` and ``sources.yaml``
entries), adds partitions for new ones, deletes partitions of removed ones (their published
files stay on disk but later stages read registered sources only), and requests a run of a
source's ingestion keyed by its content fingerprint, so an unchanged source never runs.
"""


import json

import dagster as dg

from instruct_assets.defs.ingest.assets import CODE_VERSION, NORMALIZED, STAGED
from instruct_assets.defs.partitions import SOURCES_PARTITION
from instruct_assets.defs.resources import DataDir
from instruct_assets.lib.fingerprint import source_fingerprint
from instruct_assets.lib.sources import SourcesConfigError, discover_sources


@dg.sensor(
    name="source_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=[STAGED, NORMALIZED],
    description="Registers sources and ingests a source whenever its files change.",
)
def source_sensor(context: dg.SensorEvaluationContext, data_dir: DataDir) -> dg.SensorResult:
    paths = data_dir.paths
    if not paths.root.is_dir():
        return dg.SensorResult(skip_reason=f"data dir {paths.root} does not exist")
    try:
        specs = discover_sources(paths)
    except SourcesConfigError as exc:
        return dg.SensorResult(skip_reason=str(exc))
    cursor = json.loads(context.cursor) if context.cursor else {}
    cache = cursor.get("files", {})
    registered = set(context.instance.get_dynamic_partitions(SOURCES_PARTITION))
    added = sorted(set(specs) - registered)
    removed = sorted(registered - set(specs))
    requests = []
    for name, spec in specs.items():
        fingerprint = source_fingerprint(paths, spec, cache, CODE_VERSION)
        requests.append(dg.RunRequest(
            run_key=f"{name}:{fingerprint}", partition_key=name,
            tags={"instruct_assets/source": name, "instruct_assets/fingerprint": fingerprint},
        ))
    live = {rel for rel in cache if any(rel.startswith(f"raw/{n}/") for n in specs)} | {
        rel for rel in cache if not rel.startswith("raw/")}
    cursor = {"files": {rel: cache[rel] for rel in sorted(live)}}
    partition_requests: list = []
    if added:
        partition_requests.append(dg.AddDynamicPartitionsRequest(SOURCES_PARTITION, added))
    if removed:
        context.log.info(f"sources removed from disk: {removed}; deleting their partitions")
        partition_requests.append(dg.DeleteDynamicPartitionsRequest(SOURCES_PARTITION, removed))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor),
                           dynamic_partitions_requests=partition_requests)
