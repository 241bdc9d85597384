"""Drive one stage over many slides: per slide a prepare task, one task per tile range, a finish task.

The client only sees small results; the tasks read and write the stores themselves. A failing
slide is marked failed with its error and the other slides go on. Used by tiling and extraction.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import Client, Future, as_completed

from pathopipe.errors import ConfigError
from pathopipe.output import SlideRecord, read_manifest_records, write_manifest
from pathopipe.stages.tiling import SlideJob
from pathopipe.store import StoreStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    """Something the progress display may show."""

    kind: str  # "planned" | "tiles" | "done" | "failed" | "skipped"
    slide_id: str
    tiles: int = 0  # tiles planned ("planned") or processed ("tiles")
    message: str = ""


@dataclass(frozen=True)
class SlideStage:
    """A stage as picklable functions (module-level functions or partials of them).

    ``prepare(job) -> plan`` where ``plan.ranges()`` lists (start, stop) tile ranges and
    ``plan.n_tiles`` counts tiles; ``work(plan, start, stop) -> result`` with ``result.n_tiles``;
    ``finish(plan, results) -> dict`` with ``n_tiles``, ``bytes`` and ``warnings``;
    ``status(job) -> StoreStatus`` of the stage's output, and ``size(job) -> bytes`` of it.
    """

    name: str
    config_hash: str
    prepare: Callable[[SlideJob], Any]
    work: Callable[[Any, int, int], Any]
    finish: Callable[[Any, list], dict]
    status: Callable[[SlideJob], StoreStatus]
    size: Callable[[SlideJob], int]
    resources: dict[str, float] | None = None  # Dask resources of prepare and work tasks, e.g. {"GPU": 1}


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text.count("\n") > 5 else text


@dataclass
class _SlideState:
    job: SlideJob
    record: SlideRecord
    started: float
    plan: Any = None
    pending: int = 0
    results: list | None = None
    futures: list[Future] | None = None


def run_slides(
    client: Client,
    jobs: list[SlideJob],
    stage: SlideStage,
    *,
    manifest: str | Path,
    force: bool = False,
    on_event: Callable[[ProgressEvent], None] | None = None,
) -> list[SlideRecord]:
    """Run ``stage`` for every job; returns the records, also written to ``manifest`` (CSV)."""
    emit = on_event or (lambda event: None)
    if stage.resources:
        offered = [w.get("resources", {}) for w in client.scheduler_info(n_workers=-1)["workers"].values()]
        for name, amount in stage.resources.items():
            if not any(r.get(name, 0) >= amount for r in offered):
                raise ConfigError(
                    f"{stage.name} tasks need the Dask resource {name}={amount:g} but no worker offers "
                    f"it; start one worker per GPU with `--resources {name}=1` (or dask-cuda), "
                    "or use --device cpu"
                )
    chash = stage.config_hash
    states: dict[str, _SlideState] = {}
    records: list[SlideRecord] = []
    roles: dict[str, tuple[str, str]] = {}  # future key -> (role, slide_id)
    queue = as_completed()
    this_run = {job.slide_id for job in jobs}
    earlier = [r for r in read_manifest_records(manifest) if r.slide_id not in this_run]

    def save() -> None:
        write_manifest(manifest, earlier + records)

    def submit(role: str, slide_id: str, fn: Callable, *args: Any, name: str, retries: int = 0) -> Future:
        resources = stage.resources if role in ("prepare", "work") else None
        key = f"{stage.name}-{name}-{slide_id}-{chash}"
        fut = client.submit(fn, *args, key=key, pure=False, retries=retries, resources=resources)
        roles[fut.key] = (role, slide_id)
        queue.add(fut)
        return fut

    def fail(state: _SlideState, message: str) -> None:
        state.record.status = "failed"
        state.record.error = message
        state.record.seconds = time.perf_counter() - state.started
        for fut in state.futures or []:
            fut.cancel()
        emit(ProgressEvent("failed", state.job.slide_id, message=message))
        save()

    for job in jobs:
        record = SlideRecord(slide_id=job.slide_id, source=job.source, config_hash=chash)
        try:
            record.source_bytes = Path(job.source).stat().st_size
        except OSError:
            record.source_bytes = None
        records.append(record)
        status = stage.status(job)
        if status.complete and not force:
            if status.config_hash == chash:
                record.status, record.n_tiles, record.bytes = "skipped", status.n_tiles, stage.size(job)
                emit(ProgressEvent("skipped", job.slide_id, tiles=status.n_tiles or 0))
                continue
            record.status = "failed"
            record.error = (
                f"{stage.name} of {job.slide_id} are complete for another configuration (hash "
                f"{status.config_hash}, this run {chash}); use --force to overwrite them "
                "or choose another --out"
            )
            emit(ProgressEvent("failed", job.slide_id, message=record.error))
            continue
        record.status = "running"
        states[job.slide_id] = _SlideState(job=job, record=record, started=time.perf_counter())
        submit("prepare", job.slide_id, stage.prepare, job, name="prepare")
    save()

    for fut in queue:
        role, slide_id = roles.pop(fut.key)
        state = states[slide_id]
        if state.record.status == "failed":
            continue
        if fut.status != "finished":
            exc = fut.exception() if fut.status == "error" else None
            if exc is not None:
                logger.debug("%s of %s failed:\n%s", role, slide_id, "".join(traceback.format_exception(exc)))
            fail(state, _describe(exc) if exc else f"{role} task {fut.status}")
            continue
        result = fut.result()
        if role == "prepare":
            state.plan, state.results, state.futures = result, [], []
            emit(ProgressEvent("planned", slide_id, tiles=result.n_tiles))
            for i, (start, stop) in enumerate(result.ranges()):
                state.futures.append(
                    submit("work", slide_id, stage.work, result, start, stop, name=str(i), retries=1)
                )
            state.pending = len(state.futures)
        elif role == "work":
            state.results.append(result)  # type: ignore[union-attr]
            state.pending -= 1
            emit(ProgressEvent("tiles", slide_id, tiles=result.n_tiles))
        elif role == "finish":
            state.record.status = "done"
            state.record.n_tiles = result["n_tiles"]
            state.record.bytes = result["bytes"]
            state.record.warnings = "; ".join(result["warnings"])
            state.record.seconds = time.perf_counter() - state.started
            emit(ProgressEvent("done", slide_id, tiles=result["n_tiles"], message=state.record.warnings))
            save()
            continue
        if state.plan is not None and state.pending == 0:
            submit("finish", slide_id, stage.finish, state.plan, state.results, name="finish")
            state.pending = -1
    save()
    return records
