"""A reconstructable job over the real definitions, for multiprocess-executor tests.

The data dir comes from ``INSTRUCT_ASSETS_DATA`` (set by the test before launching), like
the UI code location.
"""

import dagster as dg

from instruct_assets.definitions import build_defs

defs = build_defs()
downstream_job = dg.define_asset_job(
    "downstream_multiprocess",
    selection=dg.AssetSelection.groups("quality", "curation", "splits", "exports"),
    executor_def=dg.multiprocess_executor,
)
repo_defs = dg.Definitions(assets=defs.assets, resources=defs.resources, jobs=[downstream_job])


def get_job() -> dg.JobDefinition:
    return repo_defs.resolve_job_def("downstream_multiprocess")
