"""``pathopipe run``: tiling and feature extraction for every slide, as one Dask computation.

A slide's extraction starts as soon as its tiling finishes, while later slides are still being
tiled, so the model is never idle between slides. Extraction tasks go to GPU workers where the
cluster has them (Dask resource ``GPU``); tiling tasks to CPU workers where those offer ``CPU``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from distributed import Client

from pathopipe import fileio
from pathopipe.config import FeaturesConfig, RunConfig, config_hash, redact
from pathopipe.features.settings import check_settings, extraction_settings
from pathopipe.output import environment_info
from pathopipe.output.layout import RunLayout
from pathopipe.parallel._driver import ProgressEvent, SlideStage, offered_resources
from pathopipe.parallel.run import RunResult, plan_jobs, run_stage_on_out
from pathopipe.parallel.stages import MODEL_MODULES, extraction_stage, tiling_stage

__all__ = ["run_workflow", "tile_slides"]


def run_workflow(
    slides: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: RunConfig,
    *,
    client: Client | None = None,
    force: bool = False,
    on_event: Callable[[ProgressEvent], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    perf_report: bool = False,
    started: float | None = None,
) -> RunResult:
    """Tile every slide into ``out/slides/<id>.zarr`` and, when ``config.features.models`` is
    set, extract their features, on ``client`` or the cluster ``config.cluster`` describes
    (``perf_report``: Dask's performance report to ``OUT/report/dask-performance.html``).
    ``started``: when the command running it started (epoch seconds; default now), the origin
    of the run's recorded start-up.

    Rerunning skips what is complete for the same configuration and redoes the rest; the
    manifest (``OUT/manifest.csv``) and ``OUT/run.json`` record the run.
    """
    out = os.fspath(out)
    options = config.storage.options
    if fileio.is_url(out):  # wrong endpoint, missing bucket or credentials: fail before any work
        fileio.check_bucket(out, options, write=True)
    jobs = plan_jobs(slides, out, options, annotations=config.regions.folder)
    chash = config_hash(config)
    tiling = tiling_stage(config, chash)
    # fail on unknown models or missing weights before any cluster starts
    for settings in extraction_settings(config):
        check_settings(settings, local=False)

    def stages(client: Client) -> list[SlideStage]:
        if not config.features.models:
            return [tiling]
        gpu = any(r.get("GPU", 0) >= 1 for r in offered_resources(client))
        models = tuple(
            check_settings(s, local=config.cluster.kind == "local")
            for s in extraction_settings(config, gpu_workers=gpu)
        )
        return [tiling, extraction_stage(models, force=force)]

    # the performance report shows the workers' profiles: sample their stacks for it
    cluster = config.cluster.model_copy(update={"profile": True}) if perf_report else config.cluster
    info: dict[str, Any] = {
        "command": redact(sys.argv),  # never a credential given with --set storage.options...
        "config": config.model_dump(mode="json"),
        "config_hash": chash,
        "started": started or time.time(),
        "slides": len(jobs),
        **environment_info(),
    }
    return run_stage_on_out(
        out, jobs, stages, info,
        run_json=RunLayout(out).run_json, manifest=RunLayout(out).manifest, client=client, cluster=cluster,
        force=force, on_event=on_event, on_start=on_start, storage_options=options,
        lease_seconds=config.storage.lock_lease_s, perf_report=perf_report,
        warm=MODEL_MODULES if config.features.models else (),
    )  # fmt: skip


def tile_slides(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: RunConfig | None = None,
    *,
    client: Client | None = None,
    force: bool = False,
    on_event: Callable[[ProgressEvent], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    started: float | None = None,
) -> RunResult:
    """Tile every slide in ``inputs`` into ``out/slides/<slide_id>.zarr`` (the workflow without
    its ``features:``), on ``client`` or the cluster ``config.cluster`` describes."""
    config = config or RunConfig()
    tiles_only = config.model_copy(update={"features": FeaturesConfig()})
    return run_workflow(
        inputs,
        out,
        tiles_only,
        client=client,
        force=force,
        on_event=on_event,
        on_start=on_start,
        started=started,
    )
