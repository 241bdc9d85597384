"""Orchestration on Dask: the only package that imports ``dask.distributed``."""

from pathopipe.parallel._driver import ProgressEvent, SlideRun, SlideStage, run_slides
from pathopipe.parallel.cluster import cluster_kinds, dashboard_link, local_client, start_cluster
from pathopipe.parallel.run import RunResult, plan_jobs
from pathopipe.parallel.workflow import run_workflow, tile_slides

__all__ = [
    "ProgressEvent",
    "RunResult",
    "SlideRun",
    "SlideStage",
    "cluster_kinds",
    "dashboard_link",
    "local_client",
    "plan_jobs",
    "run_slides",
    "run_workflow",
    "start_cluster",
    "tile_slides",
]
