"""Per-worker machinery of the extraction stage: the models (built once per process), the
two alternating batch buffers and the decode thread of each task thread, the batches of a task.
All of it is kept in :mod:`pathopipe._process`."""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import numpy as np

from pathopipe._process import process_dict, thread_dict
from pathopipe.features.settings import ExtractionSettings

logger = logging.getLogger(__name__)

__all__ = [
    "auto_decode_threads",
    "batch_buffers",
    "decode_threads",
    "get_extractor",
    "get_extractors",
    "prebuild_extractors",
    "prefetch_pool",
    "task_batches",
]


def _cache_key(settings: ExtractionSettings) -> str:
    return json.dumps(asdict(settings), sort_keys=True, default=str)


def get_extractors(models: tuple[ExtractionSettings, ...]) -> list[Any]:
    """The extractors for ``models``, each built once per process; others are released. A
    build in progress (another task thread, :func:`prebuild_extractors`) is waited for."""
    with _building:
        return _get_extractors(models)


_building = threading.Lock()  # one build at a time in a process: threads wait, never build twice


def prebuild_extractors(models: tuple[ExtractionSettings, ...]) -> None:
    """Start building ``models`` on a background thread of this worker and return at once, so
    that the imports and the build overlap the slides' tiling; a failure is left for the first
    task needing the models to raise."""

    def build() -> None:
        try:
            get_extractors(models)
        except Exception as err:  # noqa: BLE001 - the tasks build again and report it
            logger.debug("background build of %s failed: %s", [m.model.key for m in models], err)

    threading.Thread(target=build, name="pathopipe-model-build", daemon=True).start()


def _get_extractors(models: tuple[ExtractionSettings, ...]) -> list[Any]:
    wanted = [_cache_key(settings) for settings in models]
    built = process_dict("extractors")  # settings -> FeatureExtractor
    for key in list(built):
        if key not in wanted:
            del built[key]  # keeps memory bounded by the models of the current run
    extractors = []
    for key, settings in zip(wanted, models, strict=True):
        if key not in built:
            import torch

            from pathopipe.features import create_extractor

            if settings.torch_threads:
                torch.set_num_threads(settings.torch_threads)
            built[key] = create_extractor(
                settings.model,
                weights=settings.weights,
                seed=settings.seed,
                device=settings.device,
                precision=settings.precision,
                compile=settings.compile,
            )
        extractors.append(built[key])
    return extractors


def get_extractor(settings: ExtractionSettings) -> Any:
    """The extractor for one model, built once per process."""
    return get_extractors((settings,))[0]


def prefetch_pool() -> ThreadPoolExecutor:
    """This task thread's decode thread. It outlives the task, so the slide readers it opened
    (``cached_slide`` is per thread) and their decoded tiles serve the slide's next tasks:
    a fresh thread per task reopened the slide every time."""
    slot = thread_dict("prefetch-pool")
    if "pool" not in slot:
        slot["pool"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pathopipe-decode")
    pool: ThreadPoolExecutor = slot["pool"]
    return pool


def batch_buffers(shape: tuple[int, ...], *, pinned: bool = False) -> list[np.ndarray]:
    """Two uint8 batch buffers of ``shape`` for this thread, reused across tasks.

    ``pinned`` (CUDA): in page-locked memory, so tiles are decoded straight into memory the
    GPU copies from (no staging copy per batch).
    """
    slot = thread_dict("batch-buffers")
    cached: list[np.ndarray] | None = slot.get("pair")
    if cached is None or cached[0].shape != shape or slot.get("pinned", False) != pinned:
        if pinned:
            import torch

            cached = [torch.empty(shape, dtype=torch.uint8, pin_memory=True).numpy() for _ in range(2)]
        else:
            cached = [np.empty(shape, dtype=np.uint8) for _ in range(2)]
        slot["pair"], slot["pinned"] = cached, pinned
    return cached


def auto_decode_threads() -> int:
    """Decode threads of a task on a GPU worker: this process's CPU cores shared among the
    node's GPUs, less one for the thread driving the model (at most 16). One core decodes
    ~2,500 224 px JPEG tiles/s; an H200 runs ResNet-50 at over 10,000."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(16, cores // max(1, torch.cuda.device_count()) - 1))


def decode_threads(models: tuple[ExtractionSettings, ...], on_cuda: bool) -> int:
    """Threads decoding each batch: the models' setting, or 1 on CPU (the models hold every
    core) and ``auto_decode_threads()`` on CUDA (the CPU must keep the GPU fed)."""
    asked = max((settings.decode_threads for settings in models), default=0)
    if asked:
        return asked
    return auto_decode_threads() if on_cuda else 1


def task_batches(
    start: int, stop: int, batch_size: int, *, short_first: bool = True
) -> list[tuple[int, int]]:
    """The batches of rows [start, stop): a short first one, then full ones.

    Only the first batch is read while the models wait (each later one is read during the
    models' previous batch), so it is a quarter of the batch size: on tasks of a few
    batches (small slides) a full first batch kept the models idle for half their reads.
    ``short_first=False`` (compiled models, which compile once per batch shape): all full.
    """
    first = min(stop, start + (max(1, batch_size // 4) if short_first else batch_size))
    return [(start, first)] * (first > start) + [
        (a, min(a + batch_size, stop)) for a in range(first, stop, batch_size)
    ]
