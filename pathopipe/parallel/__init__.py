"""Orchestration on Dask: the only package that imports ``dask.distributed``."""

from pathopipe.parallel.cluster import dashboard_link, local_client
from pathopipe.parallel.run import RunResult, plan_jobs, tile_slides
from pathopipe.parallel.tiling import ProgressEvent, run_tiling

__all__ = [
    "ProgressEvent",
    "RunResult",
    "dashboard_link",
    "local_client",
    "plan_jobs",
    "run_tiling",
    "tile_slides",
]
