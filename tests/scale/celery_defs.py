"""A test-only job: the per-source stage (staged + normalized) on Dagster's Celery executor.

The run process and every Celery worker rebuild the job from this module (the workers find it
through the run's code pointer, ``tests.scale.celery_defs:ingest_on_celery``), so it takes
everything from the environment both sides share: the data dir (``INSTRUCT_ASSETS_DATA``) and
the broker/result backend (``INSTRUCT_ASSETS_CELERY_BROKER``/``..._BACKEND``). The product's
own definitions are used unchanged: only the executor differs from ``instruct-assets run``.
"""

from __future__ import annotations

import os

import dagster as dg
from dagster_celery import celery_executor

from instruct_assets.definitions import build_defs
from instruct_assets.defs.ingest.assets import NORMALIZED, STAGED

JOB = "ingest_on_celery"
BROKER_ENV = "INSTRUCT_ASSETS_CELERY_BROKER"
BACKEND_ENV = "INSTRUCT_ASSETS_CELERY_BACKEND"
#: Celery settings shared by the run and the workers (``config_source``): a task is
#: acknowledged when it finishes, so a busy worker reserves nothing more (the idle one gets
#: the next step) and a worker that dies mid-step leaves its step to be redelivered; our
#: steps can safely run again (staging is rewritten, promotion is an atomic rename).
CONFIG_SOURCE = {"task_acks_late": True, "worker_prefetch_multiplier": 1}


def executor_config() -> dict:
    """The executor's config block, the same for the run and ``dagster-celery worker -y``."""
    return {"broker": os.environ[BROKER_ENV], "backend": os.environ[BACKEND_ENV],
            "config_source": CONFIG_SOURCE}


def ingest_on_celery() -> dg.JobDefinition:
    """The job, bound to the data dir and broker of this process's environment."""
    product = build_defs()
    job = dg.define_asset_job(
        JOB, selection=[STAGED, NORMALIZED],
        executor_def=celery_executor.configured(executor_config()),
    )
    defs = dg.Definitions(assets=product.assets, resources=product.resources, jobs=[job])
    return defs.resolve_job_def(JOB)
