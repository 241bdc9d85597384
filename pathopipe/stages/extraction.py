"""The extraction stage: features of the tiles, written next to them in the slide store.

Tiles come from the store, or, when it holds none (``store.codec: none``), straight from the
slide with the geometry the store records (streaming mode).

``features/<model_key>/features`` (N, D) is row-aligned with ``coords``; the group has its own
``complete`` flag, written last. The model is built once per worker process (a small cache
keyed by the settings; :mod:`pathopipe.stages._batches`) and tile decoding of the next batch
overlaps the model on this one.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import wait
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pathopipe import fileio
from pathopipe.config import SlideConfig, StorageConfig, StoreConfig
from pathopipe.errors import StoreError
from pathopipe.features.settings import ExtractionSettings
from pathopipe.slide import cached_slide
from pathopipe.stages._batches import (
    batch_buffers,
    decode_threads,
    get_extractors,
    prefetch_pool,
    task_batches,
)
from pathopipe.stages.tiling import SlideJob, check_all_written
from pathopipe.store import StoreStatus, read_status
from pathopipe.store.layout import (
    COORDS,
    FEATURES,
    TILES,
    attrs_of,
    check_codecs,
    child_array,
    feature_array,
    feature_group,
    open_store_array,
    open_store_group,
    shard_ranges,
)
from pathopipe.store.shards import read_tiles
from pathopipe.tiling import TileSpec
from pathopipe.tiling import read_tiles as read_slide_tiles


def combined_hash(models: tuple[ExtractionSettings, ...]) -> str:
    """One hash for a set of models (a single model's own hash when there is one)."""
    hashes = sorted(settings.output_hash() for settings in models)
    return hashes[0] if len(hashes) == 1 else hashlib.sha256("+".join(hashes).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TileSource:
    """Where streaming extraction reads tiles: the slide, with the geometry the store records."""

    path: str
    backend: str
    assume_mpp: float | None
    spec: TileSpec
    reader_options: dict[str, dict[str, Any]] | None = field(default=None, repr=False)  # may hold credentials

    def with_threads(self, threads: int) -> TileSource:
        """The same source decoding a batch on ``threads`` threads (tiff backend)."""
        options = {name: dict(values) for name, values in (self.reader_options or {}).items()}
        options.setdefault("tiff", {})["threads"] = threads
        return replace(self, reader_options=options)

    def single_threaded(self) -> TileSource:
        """The same source decoding on one thread: beside a model that keeps every CPU core
        busy, more decode threads only contend with the model's threads."""
        return self.with_threads(1)

    def read(self, coords: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        reader = cached_slide(
            self.path, backend=self.backend, assume_mpp=self.assume_mpp, options=self.reader_options
        )
        return read_slide_tiles(reader, self.spec, coords, out=out)


@dataclass(frozen=True)
class FeaturePlan:
    """One slide's extraction: the models still to compute, and where tiles come from."""

    job: SlideJob
    models: tuple[ExtractionSettings, ...]
    dims: tuple[int, ...]
    source: TileSource | None  # None: tiles are read from the store
    n_tiles: int
    rows_per_task: int
    seconds: float
    warnings: tuple[str, ...] = ()
    build_seconds: float = 0.0  # of the models, when this task built them (else ~0: cached)

    def ranges(self) -> list[tuple[int, int]]:
        return shard_ranges(self.n_tiles, self.rows_per_task) if self.models else []

    def metrics(self) -> dict[str, Any]:
        return {"tiles": 0, "steps": {"prepare": self.seconds, "model_build": self.build_seconds}}


@dataclass(frozen=True)
class FeatureResult:
    slide_id: str
    start: int
    stop: int
    read_seconds: float  # waiting for decoded tiles
    model_seconds: float
    write_seconds: float
    worker_pid: int = field(default_factory=os.getpid)
    device: str = "cpu"
    bytes_written: int = 0
    threads: int = 1
    gpu_peak_memory_bytes: int = 0  # CUDA: torch's peak allocation during the task
    decode_threads: int = 1
    decode_seconds: float = 0.0  # wall time of the batch reads in the prefetch thread (beside the model)

    @property
    def n_tiles(self) -> int:
        return self.stop - self.start

    def metrics(self) -> dict[str, Any]:
        steps = {
            "wait_tiles": self.read_seconds,
            "model": self.model_seconds,
            "write_features": self.write_seconds,
        }
        on_gpu = self.device == "cuda"
        return {
            "tiles": self.n_tiles,
            "device": self.device,
            "threads": self.threads,  # torch's: the cores a CPU task holds (core-seconds in the report)
            "bytes_written": self.bytes_written,
            "steps": steps,
            # the model calls return host arrays, so each one ends when the GPU is done with it
            "gpu_busy_seconds": self.model_seconds if on_gpu else 0.0,
            "gpu_peak_memory_bytes": self.gpu_peak_memory_bytes,
            # tile decoding overlapped with the model, on decode_threads threads (an upper bound
            # when they are not all busy): CPU work the task's wall time does not show
            "background_core_seconds": self.decode_seconds * self.decode_threads,
        }


def feature_status(job: SlideJob, key: str) -> StoreStatus:
    return read_status(feature_group(job.store, key), job.storage_options)


def features_status(job: SlideJob, models: tuple[ExtractionSettings, ...]) -> StoreStatus:
    """Complete only when every model's features are complete for its own hash."""
    states = [feature_status(job, settings.model.key) for settings in models]
    done = all(
        st.complete and st.config_hash == m.output_hash() for st, m in zip(states, models, strict=True)
    )
    if done:
        return StoreStatus(True, True, combined_hash(models), states[0].n_tiles)
    return StoreStatus(any(st.exists for st in states), False, None, None)


def prepare_features(
    job: SlideJob, models: tuple[ExtractionSettings, ...], force: bool = False
) -> FeaturePlan:
    """Check the tile store, build the models and create empty (incomplete) feature arrays.

    Models whose features are already complete for the same hash are kept (not recomputed)
    unless ``force``; complete features of another configuration are refused unless ``force``.
    """
    t0 = time.perf_counter()
    tiles_status = read_status(job.store, job.storage_options)
    if not tiles_status.complete:
        raise StoreError(
            f"slide store {job.store} is missing or incomplete; run `pathopipe tile` on the slide first"
        )
    group = open_store_group(job.store, job.storage_options, mode="r+")
    attrs = attrs_of(group)
    streaming = TILES not in group  # store.codec none: read the tiles from the slide
    n_tiles = int(child_array(group, COORDS).shape[0])
    if streaming:
        if not fileio.exists(attrs["source_path"], job.storage_options):
            raise StoreError(
                f"slide store {job.store} holds no tiles and its slide {attrs['source_path']!r} is gone; "
                "streaming extraction reads tiles from the slide"
            )
        tile_size = int(attrs["tile_size"])
        rows = StoreConfig.model_validate(attrs["config"]["store"]).shard_size(n_tiles)
    else:
        tiles = check_codecs(group[TILES], fileio.join(job.store, TILES))  # type: ignore[arg-type]
        tile_size = int(tiles.shape[1])
        rows = int(tiles.shards[0]) if tiles.shards else int(tiles.chunks[0])
    todo = []
    for settings in models:
        state = feature_status(job, settings.model.key)
        if state.complete and not force:
            if state.config_hash == settings.output_hash():
                continue
            raise StoreError(
                f"features/{settings.model.key} of {job.slide_id} are complete for another configuration "
                f"(hash {state.config_hash}, this run {settings.output_hash()}); "
                "use --force to overwrite them"
            )
        todo.append(settings)
    t_build = time.perf_counter()
    extractors = get_extractors(tuple(todo))  # built once per worker process: a start-up cost
    build_seconds = time.perf_counter() - t_build
    features = group.require_group(FEATURES)
    warnings = []
    for settings, extractor in zip(todo, extractors, strict=True):
        key = settings.model.key
        if tile_size != settings.model.input_size:
            warnings.append(
                f"{key}: tiles of {tile_size} px resized to the model's {settings.model.input_size} px"
            )
        warnings += settings.model.card_mismatches(
            tile_size, attrs.get("effective_mpp") or attrs.get("target_mpp")
        )
        if key in features:
            del features[key]
        target = features.create_group(key)
        target.update_attributes(
            {
                **extractor.describe(),
                "feature_dtype": settings.feature_dtype,
                "config_hash": settings.output_hash(),
                "tiles_config_hash": tiles_status.config_hash,
                "n_tiles": n_tiles,
                "tile_size": tile_size,
                "streamed_from_slide": streaming,
                "complete": False,
            }
        )
        target.create_array(
            FEATURES,
            shape=(n_tiles, extractor.embedding_dim),
            dtype=settings.feature_dtype,
            chunks=(max(1, min(rows, max(n_tiles, 1))), extractor.embedding_dim),
            dimension_names=("tile", "feature"),
        )
    source = None
    if streaming:
        stored = attrs["tile_spec"]  # stores from before "resample" existed were all "area"
        spec = TileSpec(**{f: stored[f] for f in TileSpec.__dataclass_fields__ if f in stored})
        source = TileSource(
            attrs["source_path"], attrs["backend"], attrs["config"]["slide"]["assume_mpp"], spec,
            SlideConfig.model_validate(attrs["config"]["slide"]).reader_options(
                StorageConfig(options=job.storage_options)
            ),
        )  # fmt: skip
    return FeaturePlan(
        job=job,
        models=tuple(todo),
        dims=tuple(e.embedding_dim for e in extractors),
        source=source,
        n_tiles=n_tiles,
        rows_per_task=rows,
        seconds=time.perf_counter() - t0,
        warnings=tuple(warnings),
        build_seconds=build_seconds,
    )


def extract_rows(plan: FeaturePlan, start: int, stop: int) -> FeatureResult:
    """Features of tiles [start, stop) for every model: each tile is decoded once, and the
    next batch decodes while the models run on this one."""
    extractors = get_extractors(plan.models)
    cuda = extractors[0].device if extractors and extractors[0].device.type == "cuda" else None
    if cuda is not None:
        import torch

        torch.cuda.reset_peak_memory_stats(cuda)
    batch_size = min(settings.batch_size for settings in plan.models)
    batches = task_batches(start, stop, batch_size, short_first=not any(e.compiled for e in extractors))
    threads = decode_threads(plan.models, cuda is not None)
    source = plan.source
    if source is not None:
        coords = np.asarray(open_store_array(plan.job.store, COORDS, plan.job.storage_options)[start:stop])
        tile_size = source.spec.tile_size
        source = source.with_threads(threads)
    else:
        tiles = open_store_array(plan.job.store, TILES, plan.job.storage_options)
        tile_size = int(tiles.shape[1])
    # two batch buffers, alternating: the next batch decodes into one while the models read the
    # other (the models' calls return host arrays, so a GPU is done copying a buffer when reused)
    buffers = batch_buffers((batch_size, tile_size, tile_size, 3), pinned=cuda is not None)

    decoding = [0.0]  # seconds in read(); one read runs at a time

    def read(i: int) -> np.ndarray:
        t = time.perf_counter()
        a, b = batches[i]
        out = buffers[i % 2][: b - a]
        if source is not None:
            batch = source.read(coords[a - start : b - start], out=out)
        else:
            batch = read_tiles(tiles, a, b, out=out, threads=threads)
        decoding[0] += time.perf_counter() - t
        return batch

    outs = [np.empty((stop - start, dim), dtype=np.float32) for dim in plan.dims]
    waited = modelled = 0.0
    pool = prefetch_pool()
    pending = pool.submit(read, 0) if batches else None
    try:
        for i, (a, b) in enumerate(batches):
            t0 = time.perf_counter()
            batch = pending.result()  # type: ignore[union-attr]
            t1 = time.perf_counter()
            if i + 1 < len(batches):  # its buffer is free: the models are done with batch i - 1
                pending = pool.submit(read, i + 1)
            for extractor, out in zip(extractors, outs, strict=True):
                out[a - start : b - start] = extractor(batch)
            waited += t1 - t0
            modelled += time.perf_counter() - t1
    finally:
        if pending is not None:  # a failing model: the read in flight must not outlive the task
            wait([pending])
    t2 = time.perf_counter()
    written = 0
    for settings, out in zip(plan.models, outs, strict=True):
        rows = out.astype(settings.feature_dtype)
        name = feature_array(settings.model.key)
        open_store_array(plan.job.store, name, plan.job.storage_options, mode="r+")[start:stop] = rows
        written += rows.nbytes  # uncompressed feature bytes
    device = extractors[0].device.type if extractors else "cpu"
    import torch  # loaded with the extractors

    peak = int(torch.cuda.max_memory_allocated(cuda)) if cuda is not None else 0
    return FeatureResult(plan.job.slide_id, start, stop, waited, modelled, time.perf_counter() - t2,
                         device=device, bytes_written=written, threads=torch.get_num_threads(),
                         gpu_peak_memory_bytes=peak, decode_threads=threads,
                         decode_seconds=decoding[0])  # fmt: skip


def finish_features(plan: FeaturePlan, results: list[FeatureResult]) -> dict[str, Any]:
    """Check every row was written, then mark each model's features complete (their last write)."""
    check_all_written(plan.job.slide_id, results, plan.n_tiles if plan.models else 0, "feature rows")
    summary = {
        "seconds_prepare": plan.seconds,
        "seconds_wait_tiles": sum(r.read_seconds for r in results),
        "seconds_models": sum(r.model_seconds for r in results),
        "seconds_write": sum(r.write_seconds for r in results),
        "models_in_pass": [settings.model.key for settings in plan.models],
        "decode_threads": max((r.decode_threads for r in results), default=1),
        "worker_pids": sorted({r.worker_pid for r in results}),
        "warnings": list(plan.warnings),
    }
    size = 0
    for settings in plan.models:
        path = feature_group(plan.job.store, settings.model.key)
        group = open_store_group(path, plan.job.storage_options, mode="r+")
        group.update_attributes({**summary, "complete": False})
        group.update_attributes({"complete": True})
        size += fileio.total_bytes(path, plan.job.storage_options)
    return summary | {"n_tiles": plan.n_tiles, "bytes": size}
