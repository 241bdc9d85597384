"""The pipeline's stages as :class:`~pathopipe.parallel._driver.SlideStage` s: which stage
function runs as prepare, work and finish task, and the resources its tasks need."""

from __future__ import annotations

from functools import partial

from pathopipe import fileio
from pathopipe.config import RunConfig
from pathopipe.features.settings import ExtractionSettings
from pathopipe.parallel._driver import SlideStage
from pathopipe.stages._batches import prebuild_extractors
from pathopipe.stages.extraction import (
    combined_hash,
    extract_rows,
    features_status,
    finish_features,
    prepare_features,
)
from pathopipe.stages.tiling import (
    SlideJob,
    finish_slide,
    prepare_slide,
    tile_store_bytes,
    tile_store_status,
    write_tile_shard,
)
from pathopipe.store.layout import feature_group

__all__ = ["MODEL_MODULES", "extraction_stage", "tiling_stage"]

# what feature extraction imports in a worker (~3 s on a CPU): warmed as workers start
MODEL_MODULES = ("torch", "timm", "pathopipe.features._extractor", "pathopipe.stages.extraction")


def tiling_stage(config: RunConfig, chash: str) -> SlideStage:
    """Slides to tile stores: plan the slide, write each shard, mark the store complete."""
    return SlideStage(
        name="tiles",
        config_hash=chash,
        prepare=partial(prepare_slide, config=config, chash=chash),
        work=write_tile_shard,
        finish=finish_slide,
        status=tile_store_status,
        size=tile_store_bytes,
    )


def _features_bytes(job: SlideJob, keys: tuple[str, ...]) -> int:
    return sum(fileio.total_bytes(feature_group(job.store, key), job.storage_options) for key in keys)


def extraction_stage(models: tuple[ExtractionSettings, ...], *, force: bool = False) -> SlideStage:
    """All ``models`` in one pass over the tiles (each tile decoded once)."""
    keys = tuple(settings.model.key for settings in models)
    return SlideStage(
        name="features",
        config_hash=combined_hash(models),
        prepare=partial(prepare_features, models=models, force=force),
        work=extract_rows,
        finish=finish_features,
        status=partial(features_status, models=models),
        size=partial(_features_bytes, keys=keys),
        resources={"GPU": 1} if any(m.needs_gpu_resource() for m in models) else None,
        warm=partial(prebuild_extractors, models),
    )
