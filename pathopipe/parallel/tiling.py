"""Tiling many slides as one Dask computation (see :mod:`pathopipe.parallel._driver`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from distributed import Client

from pathopipe import storage
from pathopipe.config import RunConfig
from pathopipe.output import SlideRecord
from pathopipe.parallel._driver import ProgressEvent, SlideStage, run_slides
from pathopipe.stages.tiling import (
    SlideJob,
    finish_slide,
    prepare_slide,
    store_bytes,
    tile_store_status,
    write_tile_shard,
)

__all__ = ["ProgressEvent", "run_tiling", "tiling_stage"]


def tiling_stage(config: RunConfig, chash: str) -> SlideStage:
    return SlideStage(
        name="tiles",
        config_hash=chash,
        prepare=partial(prepare_slide, config=config, chash=chash),
        work=write_tile_shard,
        finish=finish_slide,
        status=tile_store_status,
        size=lambda job: store_bytes(job.store, job.storage_options),
    )


def run_tiling(
    client: Client,
    jobs: list[SlideJob],
    config: RunConfig,
    chash: str,
    *,
    out: str | Path,
    force: bool = False,
    on_event: Callable[[ProgressEvent], None] | None = None,
) -> list[SlideRecord]:
    """Tile every job's slide into its store; records also go to ``OUT/manifest.csv``."""
    stage = tiling_stage(config, chash)
    return run_slides(
        client, jobs, stage, manifest=storage.join(out, "manifest.csv"), force=force, on_event=on_event,
        storage_options=config.storage.options,
    )  # fmt: skip
