"""Orchestration on Dask: the only package that imports ``dask.distributed``."""

from pathopipe.parallel._driver import ProgressEvent, SlideStage, run_slides
from pathopipe.parallel.cluster import dashboard_link, local_client
from pathopipe.parallel.run import RunResult, plan_jobs
from pathopipe.parallel.tiling import run_tiling
from pathopipe.parallel.workflow import run_workflow, tile_slides

__all__ = [
    "ProgressEvent",
    "RunResult",
    "SlideStage",
    "dashboard_link",
    "local_client",
    "plan_jobs",
    "run_slides",
    "run_tiling",
    "run_workflow",
    "tile_slides",
]
