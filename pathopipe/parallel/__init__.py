"""Orchestration on Dask: the only package that imports ``dask.distributed``."""

from pathopipe.parallel._driver import ProgressEvent, SlideStage, run_slides
from pathopipe.parallel.cluster import dashboard_link, local_client
from pathopipe.parallel.run import RunResult, plan_jobs, tile_slides
from pathopipe.parallel.tiling import run_tiling

__all__ = [
    "ProgressEvent",
    "RunResult",
    "SlideStage",
    "dashboard_link",
    "local_client",
    "plan_jobs",
    "run_slides",
    "run_tiling",
    "tile_slides",
]
