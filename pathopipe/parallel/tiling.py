"""Tiling many slides as one Dask computation.

Per slide: a ``prepare`` task (metadata, tissue, grid, empty store), one task per tile shard
(each reads its tiles from the slide and writes its own shard file), and a ``finish`` task
that checks every tile landed and sets ``complete``. The client only sees small results:
tile pixels never pass through the scheduler. A failing slide is marked failed; the others go on.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distributed import Client, Future, as_completed

from pathopipe.config import RunConfig
from pathopipe.output import SlideRecord, read_manifest_records, write_manifest
from pathopipe.stages.tiling import (
    SlideJob,
    TilePlan,
    finish_slide,
    prepare_slide,
    store_bytes,
    write_tile_shard,
)
from pathopipe.store import read_status

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    """Something the progress display may show."""

    kind: str  # "planned" | "tiles" | "done" | "failed" | "skipped"
    slide_id: str
    tiles: int = 0  # tiles planned ("planned") or written ("tiles")
    message: str = ""


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text.count("\n") > 5 else text


@dataclass
class _SlideState:
    job: SlideJob
    record: SlideRecord
    started: float
    plan: TilePlan | None = None
    pending: int = 0
    results: list | None = None
    futures: list[Future] | None = None


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
    """Tile every job's slide into its store; returns the manifest records (also written to OUT)."""
    emit = on_event or (lambda event: None)
    states: dict[str, _SlideState] = {}
    records: list[SlideRecord] = []
    roles: dict[str, tuple[str, str]] = {}  # future key -> (role, slide_id)
    queue = as_completed()
    this_run = {job.slide_id for job in jobs}
    earlier = [r for r in read_manifest_records(out) if r.slide_id not in this_run]

    def save() -> None:
        write_manifest(out, earlier + records)

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
        status = read_status(job.store)
        if status.complete and not force:
            if status.config_hash == chash:
                record.status, record.n_tiles = "skipped", status.n_tiles
                record.bytes = store_bytes(job.store)
                emit(ProgressEvent("skipped", job.slide_id, tiles=status.n_tiles or 0))
                continue
            record.status = "failed"
            record.error = (
                f"store {job.store} is complete for another configuration (config hash "
                f"{status.config_hash}, this run {chash}); use --force to overwrite it "
                "or choose another --out"
            )
            emit(ProgressEvent("failed", job.slide_id, message=record.error))
            continue
        record.status = "running"
        states[job.slide_id] = _SlideState(job=job, record=record, started=time.perf_counter())
        fut = client.submit(
            prepare_slide, job, config, chash, key=f"prepare-{job.slide_id}-{chash}", pure=False
        )
        roles[fut.key] = ("prepare", job.slide_id)
        queue.add(fut)
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
            plan: TilePlan = result
            state.plan, state.results, state.futures = plan, [], []
            emit(ProgressEvent("planned", slide_id, tiles=plan.n_tiles))
            for i, (start, stop) in enumerate(plan.shards()):
                shard = client.submit(
                    write_tile_shard,
                    plan,
                    start,
                    stop,
                    key=f"tiles-{slide_id}-{i}-{chash}",
                    pure=False,
                    retries=1,
                )
                roles[shard.key] = ("tiles", slide_id)
                state.futures.append(shard)
                queue.add(shard)
            state.pending = len(state.futures)
        elif role == "tiles":
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
            done = client.submit(
                finish_slide, state.plan, state.results, key=f"finish-{slide_id}-{chash}", pure=False
            )
            roles[done.key] = ("finish", slide_id)
            queue.add(done)
            state.pending = -1
    save()
    return records
