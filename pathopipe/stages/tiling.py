"""The tiling stage: plan a slide (metadata, tissue, grid, empty store), write tile shards, finish.

Each function takes small picklable values (paths, specs) and opens what it needs itself, so
orchestration can run them anywhere; tile pixels go from the slide straight to the store.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import pathopipe
from pathopipe import fileio
from pathopipe._process import lru_entry, thread_dict
from pathopipe._warnings import collected_warnings
from pathopipe.config import RunConfig
from pathopipe.discovery import source_bytes
from pathopipe.errors import IncompleteStoreError
from pathopipe.regions import slide_regions
from pathopipe.slide import cached_slide, open_slide
from pathopipe.slide_list import settings_identity
from pathopipe.stages._survey import survey_slide
from pathopipe.store import (
    StoreStatus,
    create_slide_store,
    mark_complete,
    open_tiles_for_write,
    read_status,
    write_image,
)
from pathopipe.store.layout import (
    COORDS,
    MASK,
    REGION_FRACTION,
    THUMBNAIL,
    TILES,
    TISSUE_FRACTION,
    open_store_array,
    shard_ranges,
)
from pathopipe.store.shards import shard_encoder, write_encoded_shard, write_tiles
from pathopipe.tiling import TileSpec, read_tiles

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlideJob:
    """One slide to process: where it is and where its store goes."""

    slide_id: str
    source: str
    store: str
    # fsspec options for URL sources and stores (may hold credentials: never printed or written)
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # the slide list's settings for this slide (pathopipe.slide_list): mpp, annotations, label, ...
    settings: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def identity(self) -> str | None:
        """The hash of the settings that change this slide's tiles (None without them)."""
        return settings_identity(self.settings)


@dataclass(frozen=True)
class TilePlan:
    """What the workers need to fill a slide store (small and picklable)."""

    job: SlideJob
    spec: TileSpec
    backend: str  # the backend that opened the slide, reused by every task
    assume_mpp: float | None
    reader_options: dict[str, dict[str, Any]] = field(repr=False)  # may hold storage credentials
    n_tiles: int
    tiles_per_shard: int
    write_tiles: bool
    seconds: float
    warnings: tuple[str, ...] = ()
    steps: tuple[tuple[str, float], ...] = ()  # (step, seconds) of the prepare task
    # this plan's store as prepare made it: tasks keep it open under this name (_shard_inputs)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def ranges(self) -> list[tuple[int, int]]:
        """Tile ranges, one per shard (one task each)."""
        return shard_ranges(self.n_tiles, self.tiles_per_shard) if self.write_tiles else []

    def metrics(self) -> dict[str, Any]:
        return {"tiles": 0, "steps": dict(self.steps)}


@dataclass(frozen=True)
class ShardResult:
    """What one shard task did, with its timings."""

    slide_id: str
    start: int
    stop: int
    read_seconds: float
    write_seconds: float
    worker_pid: int = field(default_factory=os.getpid)
    bytes_written: int = 0
    open_seconds: float = 0.0  # opening the slide in this worker thread (~0 when already open)

    @property
    def n_tiles(self) -> int:
        return self.stop - self.start

    def metrics(self) -> dict[str, Any]:
        steps = {"open_slide": self.open_seconds, "read_decode_resize": self.read_seconds,
                 "encode_write": self.write_seconds}  # fmt: skip
        return {"tiles": self.n_tiles, "bytes_written": self.bytes_written, "steps": steps}


def _store_attrs(
    job: SlideJob, reader_info: Any, spec: TileSpec, config: RunConfig, chash: str
) -> dict[str, Any]:
    info = reader_info
    return {
        "slide_id": job.slide_id,
        "source_path": job.source if fileio.is_url(job.source) else os.path.abspath(job.source),
        "source_bytes": source_bytes(job.source, job.storage_options),
        "backend": info.backend,
        "vendor": info.vendor,
        "dimensions": list(info.dimensions),
        "level_dimensions": [list(d) for d in info.level_dimensions],
        "level_downsamples": list(info.level_downsamples),
        "objective_power": info.objective_power,
        "mpp": info.mpp,
        "mpp_x": info.mpp_x,
        "mpp_y": info.mpp_y,
        "mpp_source": info.mpp_source,
        "mpp_assumed": info.mpp_source == "assumed",
        "mpp_rejected": info.mpp_rejected,  # a resolution in the metadata not trusted, and why
        "target_mpp": spec.target_mpp,
        "effective_mpp": spec.effective_mpp,
        "tile_size": spec.tile_size,
        "stride": spec.stride,
        "read_level": spec.level,
        "read_level_downsample": spec.level_downsample,
        "read_size": spec.read_size,
        "resize_factor": spec.resize_factor,
        "resample": spec.resample,
        "tile_size_level0": spec.tile_size_level0,
        "tile_spec": spec.to_dict(),
        "min_tissue_fraction": config.tiling.min_tissue_fraction,
        "edge": config.tiling.edge,
        "tissue_detector": config.tissue.model_dump(mode="json"),
        "tile_codec": config.store.model_dump(mode="json"),
        "config_hash": chash,
        "config": config.output_relevant(),
        "slide_settings": dict(job.settings),  # from the slide list (mpp, annotations, label, ...)
        "regions": config.regions.model_dump(mode="json", exclude={"folder"}),
        "slide_identity": job.identity,
        "pathopipe_version": pathopipe.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def reader_args(config: RunConfig) -> dict[str, Any]:
    """How the configuration opens slides (keyword arguments of ``open_slide``)."""
    slide = config.slide
    options = slide.reader_options(config.storage)
    return {"backend": slide.backend, "assume_mpp": slide.assume_mpp, "options": options}


def apply_settings(reader: Any, settings: Mapping[str, Any]) -> list[str]:
    """A slide list's mpp replaces the slide's own (recorded as ``given``); warnings when the
    slide's metadata said otherwise."""
    given = settings.get("mpp")
    if given is None:
        return []
    read = reader.info.mpp if reader.info.mpp_source == "read" else None
    reader.info = reader.info.with_mpp(float(given), "given")
    if read is not None and abs(read - given) > 0.02 * given:
        return [f"the slide list's mpp {given:g} µm/px used; the slide's metadata says {read:.4g}"]
    return []


def count_tiles(source: str, config: RunConfig, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Tiles the slide would give, without writing anything (for ``pathopipe plan``)."""
    t0 = time.perf_counter()
    with open_slide(source, **reader_args(config)) as reader:
        apply_settings(reader, settings or {})
        regions = slide_regions(source, settings or {}, reader.info.dimensions, config.regions)
        survey = survey_slide(reader, config, regions)
    size = source_bytes(source, config.storage.options)
    return {"source": source, "n_tiles": len(survey.coords), "source_bytes": size,
            "seconds": time.perf_counter() - t0}  # fmt: skip


def prepare_slide(job: SlideJob, config: RunConfig, chash: str) -> TilePlan:
    """Open the slide, find tissue, plan the grid and create the (incomplete) store."""
    t0 = time.perf_counter()
    warnings: list[str] = []
    with collected_warnings() as raised, open_slide(job.source, **reader_args(config)) as reader:
        t_open = time.perf_counter()
        warnings += apply_settings(reader, job.settings)
        regions = slide_regions(job.source, job.settings, reader.info.dimensions, config.regions)
        survey = survey_slide(reader, config, regions)
        info, spec, grid = survey.info, survey.spec, survey.grid
        thumbnail, mask, (dsx, dsy) = survey.thumbnail, survey.mask, survey.downsample
        coords, fractions = survey.coords, survey.fractions
        warnings += survey.warnings
        if info.mpp_source == "assumed":
            why = f" ({info.mpp_rejected})" if info.mpp_rejected else ""
            warnings.append(f"no usable resolution metadata{why}; assumed {info.mpp} µm/px")
        if len(coords) == 0:
            warnings.append("no tissue tiles found (blank slide or tissue below min_tissue_fraction)")
        attrs = _store_attrs(job, info, spec, config, chash)
    warnings += [f"{info.backend} backend: {text}" for text in raised]
    t_grid = time.perf_counter()
    attrs |= {"grid": {"columns": grid.columns, "rows": grid.rows}, "n_tiles": len(coords)}
    store_cfg = config.store
    per_shard = store_cfg.shard_size(len(coords))
    group = create_slide_store(
        job.store,
        n_tiles=len(coords),
        tile_size=spec.tile_size,
        codec=store_cfg.codec,
        tiles_per_shard=per_shard,
        jpeg_quality=store_cfg.jpeg_quality,
        jpeg_subsampling=store_cfg.jpeg_subsampling,
        zstd_level=store_cfg.zstd_level,
        attrs=attrs,
        options=job.storage_options,
    )
    shard = max(1, min(65536, len(coords)))
    # attributes given at creation: each later update rewrites the array's metadata (~3 ms)
    coords_array = group.create_array(
        COORDS, shape=coords.shape, dtype="int64", chunks=(shard, 2), dimension_names=("tile", "xy"),
        attributes={"axis": ["x", "y"], "units": "level-0 pixels", "origin": "top-left corner",
                    "tile_size_level0": spec.tile_size_level0},
    )  # fmt: skip
    coords_array[...] = coords
    fraction_array = group.create_array(
        TISSUE_FRACTION, shape=fractions.shape, dtype="float32", chunks=(shard,), dimension_names=("tile",)
    )
    fraction_array[...] = fractions
    if survey.regions is not None:
        covered = survey.regions.fractions
        region_array = group.create_array(
            REGION_FRACTION, shape=covered.shape, dtype="float32", chunks=(shard, max(1, covered.shape[1])),
            dimension_names=("tile", "class"), attributes={"region_classes": survey.regions.classes},
        )  # fmt: skip
        region_array[...] = covered
    image_attrs = {"downsample": [dsx, dsy], "mpp": [spec.mpp_level0 * dsx, spec.mpp_level0 * dsy]}
    write_image(group, MASK, mask, attrs=image_attrs)
    write_image(group, THUMBNAIL, thumbnail, attrs=image_attrs)
    return TilePlan(
        job=job,
        spec=spec,
        backend=info.backend,
        assume_mpp=config.slide.assume_mpp,
        reader_options=config.slide.reader_options(config.storage),
        n_tiles=len(coords),
        tiles_per_shard=per_shard,
        write_tiles=store_cfg.codec != "none",
        seconds=time.perf_counter() - t0,
        warnings=tuple(warnings),
        steps=(
            ("open", t_open - t0),
            *survey.steps.items(),
            ("create_store", time.perf_counter() - t_grid),
        ),
    )


READ_BATCH = 64  # tiles read, then encoded, at a time in a task: ~10 MB of pixels at 224 px


def shard_buffer(n: int, tile_size: int) -> np.ndarray:
    """An (n, T, T, 3) uint8 buffer for this task thread, reused across its tasks (fresh memory
    costs a page fault per 4 KiB)."""
    slot = thread_dict("shard-buffer")
    buffer: np.ndarray | None = slot.get("array")
    if buffer is None or buffer.shape[1] != tile_size or buffer.shape[0] < n:
        buffer = slot["array"] = np.empty((n, tile_size, tile_size, 3), dtype=np.uint8)
    return buffer[:n]


def _shard_inputs(plan: TilePlan) -> tuple[np.ndarray, Any]:
    """The slide's tile coordinates and its tile array, opened once per task thread and plan
    (opening them costs ~3 ms of zarr's metadata work, each task)."""
    job = plan.job

    def opened() -> tuple[np.ndarray, Any]:
        coords = np.asarray(open_store_array(job.store, COORDS, job.storage_options)[:])
        return coords, open_tiles_for_write(job.store, job.storage_options)

    return lru_entry(thread_dict("open-stores"), (job.store, plan.token), opened, 4)


def write_tile_shard(plan: TilePlan, start: int, stop: int) -> ShardResult:
    """Read tiles [start, stop) from the slide and write them (one whole shard).

    Where pathopipe writes the shard itself, tiles are read and encoded ``READ_BATCH`` at a
    time: a task needs a 10 MB buffer instead of one for a whole shard (150 MB for 1,024 tiles
    of 224 px), at the same speed (docs/benchmarks.md, "Session 12").
    """
    t0 = time.perf_counter()
    reader = cached_slide(
        plan.job.source, backend=plan.backend, assume_mpp=plan.assume_mpp, options=plan.reader_options
    )
    t_open = time.perf_counter()
    job, size = plan.job, plan.spec.tile_size
    all_coords, array = _shard_inputs(plan)
    coords = all_coords[start:stop]
    encode = shard_encoder(array, start, stop)
    if encode is None:  # zarr writes it, as a whole
        tiles = read_tiles(reader, plan.spec, coords, out=shard_buffer(stop - start, size))
        t1 = time.perf_counter()
        written = write_tiles(array, start, tiles) or 0
        read_s, write_s = t1 - t_open, time.perf_counter() - t1
    else:
        parts: list[bytes] = []
        read_s, write_s = time.perf_counter() - t_open, 0.0  # opening the store counts as reading
        for first in range(0, stop - start, READ_BATCH):
            t1 = time.perf_counter()
            batch = coords[first : first + READ_BATCH]
            tiles = read_tiles(reader, plan.spec, batch, out=shard_buffer(len(batch), size))
            t2 = time.perf_counter()
            parts += [encode(tile) for tile in tiles]
            read_s, write_s = read_s + t2 - t1, write_s + time.perf_counter() - t2
        t3 = time.perf_counter()
        written = write_encoded_shard(array, start, parts)
        write_s += time.perf_counter() - t3
    return ShardResult(job.slide_id, start, stop, read_seconds=read_s, write_seconds=write_s,
                       bytes_written=written, open_seconds=t_open - t0)  # fmt: skip


def tile_store_status(job: SlideJob) -> StoreStatus:
    """The store's status; not complete when it was made with other per-slide settings (a
    changed mpp or annotations file redoes that slide)."""
    status = read_status(job.store, job.storage_options)
    if status.complete and status.slide_identity != job.identity:
        return replace(status, complete=False)
    return status


def tile_store_bytes(job: SlideJob) -> int:
    """Bytes of a slide's store (on disk or object storage)."""
    return fileio.total_bytes(job.store, job.storage_options)


def check_all_written(slide_id: str, results: list[Any], expected: int, what: str) -> None:
    """Before a stage marks its output complete: its tasks together wrote every row."""
    written = sum(r.n_tiles for r in results)
    if written != expected:
        raise IncompleteStoreError(f"{slide_id}: {written} of {expected} {what} written; left incomplete")


def finish_slide(plan: TilePlan, results: list[ShardResult]) -> dict[str, Any]:
    """Check every tile was written, record the summary and mark the store complete."""
    check_all_written(plan.job.slide_id, results, plan.n_tiles if plan.write_tiles else 0, "tiles")
    summary: dict[str, Any] = {
        "n_tiles": plan.n_tiles,
        "seconds_prepare": plan.seconds,
        "seconds_open_slide": sum(r.open_seconds for r in results),
        "seconds_read": sum(r.read_seconds for r in results),
        "seconds_write": sum(r.write_seconds for r in results),
        "warnings": list(plan.warnings),
    }
    removed = remove_stale_shard_files(plan.job.store)
    if removed:
        summary["warnings"].append(f"removed {removed} temporary shard file(s) left by a killed worker")
    mark_complete(plan.job.store, summary, plan.job.storage_options)
    return summary | {"bytes": tile_store_bytes(plan.job)}


def remove_stale_shard_files(store: str) -> int:
    """Delete temporary shard files (``.shard-*``) a killed writer left in a local store; once
    every shard task has finished, any left are a dead writer's. Object stores have none."""
    if fileio.is_url(store):
        return 0
    stale = list(Path(store, TILES, "c").glob("**/.shard-*"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
