"""Drive stages over many slides: per slide and stage a prepare task, one task per tile range,
a finish task; a slide's stages run in order, different slides' stages overlap.

The client only sees small results; the tasks read and write the stores themselves. A failing
slide is marked failed with its error and the other slides go on. Used by tile, extract and run.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from distributed import Client, Future, as_completed

from pathopipe import fileio
from pathopipe.discovery import source_bytes
from pathopipe.errors import ClusterLostError, ConfigError
from pathopipe.output import SlideRecord, read_manifest_records, write_manifest
from pathopipe.output.metrics import Measured, TaskMetrics, warm_parquet, write_metrics
from pathopipe.slide_list import settings_json
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
    stage: str = ""  # the stage a "planned"/"tiles" event belongs to


@dataclass(frozen=True)
class SlideStage:
    """A stage as picklable functions (module-level functions or partials of them).

    ``prepare(job) -> plan`` where ``plan.ranges()`` lists (start, stop) tile ranges and
    ``plan.n_tiles`` counts tiles; ``work(plan, start, stop) -> result`` with ``result.n_tiles``;
    ``finish(plan, results) -> dict`` with ``n_tiles``, ``bytes`` and ``warnings``;
    ``status(job) -> StoreStatus`` of the stage's output, and ``size(job) -> bytes`` of it.
    ``warm()``, when given, runs on every worker that can take the stage's tasks as the run
    starts, and returns at once: it starts what the first task would otherwise wait for (a
    model build) in the background.
    """

    name: str
    config_hash: str
    prepare: Callable[[SlideJob], Any]
    work: Callable[[Any, int, int], Any]
    finish: Callable[[Any, list[Any]], dict[str, Any]]
    status: Callable[[SlideJob], StoreStatus]
    size: Callable[[SlideJob], int]
    resources: dict[str, float] | None = None  # Dask resources of prepare and work tasks, e.g. {"GPU": 1}
    warm: Callable[[], Any] | None = None


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0] if text.count("\n") > 5 else text


@dataclass
class _SlideState:
    job: SlideJob
    record: SlideRecord
    started: float
    stage: int = 0  # index of the stage running now
    stage_started: float = 0.0
    ran: bool = False  # some stage ran (not every stage skipped)
    plan: Any = None
    pending: int = 0
    results: list[Any] | None = None
    futures: dict[str, Future[Any]] | None = None  # work tasks still running
    timings: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def offered_resources(client: Client) -> list[dict[str, float]]:
    return [w.get("resources", {}) for w in client.scheduler_info(n_workers=-1)["workers"].values()]


def _check_resources(stages: Sequence[SlideStage], offered: list[dict[str, float]]) -> None:
    for stage in stages:
        for name, amount in (stage.resources or {}).items():
            if not any(r.get(name, 0) >= amount for r in offered):
                raise ConfigError(
                    f"{stage.name} tasks need the Dask resource {name}={amount:g} but no worker offers "
                    f"it; start one worker per GPU with `--resources {name}=1` (or dask-cuda), "
                    "or use --device cpu"
                )


class _ManifestWriter:
    """Rewrites the manifest at most every second, and the task metrics at most every 30 s
    (both also when told to flush)."""

    def __init__(
        self,
        path: str | Path,
        earlier: list[SlideRecord],
        records: list[SlideRecord],
        metrics: str | Path | None,
        options: fileio.Options = None,
    ) -> None:
        self.path, self.earlier, self.records = path, earlier, records
        self.metrics_path = metrics
        self.options = options
        if metrics:  # pyarrow's first Parquet write costs ~0.5 s: pay it beside the first tasks
            threading.Thread(target=warm_parquet, name="pathopipe-warm-parquet", daemon=True).start()
        self.task_rows: list[TaskMetrics] = []
        self.run_id = datetime.now().strftime("%Y%m%dT%H%M%S.%f")  # sorts by time, unique
        self.last = self.last_metrics = time.monotonic()

    def save(self, flush: bool = False) -> None:
        now = time.monotonic()
        if flush or now - self.last >= 1.0:
            write_manifest(self.path, self.earlier + self.records, self.options)
            self.last = now
        if self.metrics_path and self.task_rows and (flush or now - self.last_metrics >= 30.0):
            write_metrics(self.metrics_path, self.task_rows, run_id=self.run_id, options=self.options)
            self.last_metrics = now


class SlideRun:
    """One computation of ``stages`` over ``jobs``: the per-slide states, the tasks in flight,
    and the manifest and metrics they are recorded in (see :func:`run_slides`)."""

    def __init__(
        self,
        client: Client,
        jobs: list[SlideJob],
        stages: SlideStage | Sequence[SlideStage],
        *,
        manifest: str | Path,
        force: bool = False,
        on_event: Callable[[ProgressEvent], None] | None = None,
        metrics: str | Path | None = None,
        storage_options: fileio.Options = None,
    ) -> None:
        self.client, self.jobs, self.force = client, jobs, force
        self.stages = [stages] if isinstance(stages, SlideStage) else list(stages)
        self.emit = on_event or (lambda event: None)
        offered = offered_resources(client)
        _check_resources(self.stages, offered)
        # workers that offer CPU (local-cuda's CPU workers, ...) take the stages that need no GPU
        self.default_resources = {"CPU": 1.0} if any("CPU" in r for r in offered) else None
        self.chash = "+".join(stage.config_hash for stage in self.stages)
        self.states: dict[str, _SlideState] = {}
        self.records: list[SlideRecord] = []
        self.roles: dict[str, tuple[str, str]] = {}  # future key -> (role, slide_id)
        # results are gathered in the background as each task finishes, so a worker that dies
        # just after finishing a task does not take the finished result with it
        self.queue = as_completed(with_results=True, raise_errors=False)
        this_run = {job.slide_id for job in jobs}
        earlier = [r for r in read_manifest_records(manifest, storage_options) if r.slide_id not in this_run]
        self.writer = _ManifestWriter(manifest, earlier, self.records, metrics, storage_options)
        self.storage_options = storage_options
        self.token = uuid.uuid4().hex[:8]

    def run(self) -> list[SlideRecord]:
        """Start every slide, then handle each task as it finishes until all slides are done."""
        for job in self.jobs:
            record = SlideRecord(slide_id=job.slide_id, source=job.source, config_hash=self.chash,
                                 settings=settings_json(job.settings))  # fmt: skip
            try:
                record.source_bytes = source_bytes(job.source, job.storage_options)
            except OSError:
                record.source_bytes = None
            self.records.append(record)
            record.status = "running"
            state = self.states[job.slide_id] = _SlideState(
                job=job, record=record, started=time.perf_counter()
            )
            self.advance(state)
        self.writer.save(flush=True)
        for fut, value in self.queue:
            self.finished(fut, value)
        self.writer.save(flush=True)
        return self.records

    def submit(
        self, state: _SlideState, role: str, fn: Callable[..., Any], *args: Any, name: str, retries: int = 0
    ) -> Future[Any]:
        stage = self.stages[state.stage]
        resources = (stage.resources or self.default_resources) if role in ("prepare", "work") else None
        slide_id = state.job.slide_id
        fut = self.client.submit(
            Measured(fn, stage.name, role), *args,
            # unique per run: Dask hands back a finished result held under the same key, so a
            # second run (another OUT, same slide names) must never share keys with the first
            key=f"{stage.name}-{name}-{slide_id}-{stage.config_hash}-{self.token}",
            pure=False, retries=retries, resources=resources,
            priority=state.stage,  # later stages first: finish started slides, bound what waits
        )  # fmt: skip
        self.roles[str(fut.key)] = (role, slide_id)
        self.queue.add(fut)
        return fut

    def fail(self, state: _SlideState, message: str) -> None:
        record = state.record
        record.status, record.stage = "failed", self.stages[state.stage].name
        record.error = message
        record.seconds = time.perf_counter() - state.started
        record.timings = _format_timings(state.timings)
        for fut in (state.futures or {}).values():
            fut.cancel()
        self.emit(ProgressEvent("failed", state.job.slide_id, message=message, stage=record.stage))
        self.writer.save()

    def complete(self, state: _SlideState) -> None:
        record = state.record
        record.status = "done" if state.ran else "skipped"
        record.stage = self.stages[-1].name
        record.bytes = sum(state.sizes.values())
        record.warnings = "; ".join(state.warnings)
        record.seconds = time.perf_counter() - state.started
        record.timings = _format_timings(state.timings)
        self.emit(ProgressEvent(record.status, state.job.slide_id, tiles=record.n_tiles or 0,
                                message=record.warnings))  # fmt: skip
        self.writer.save()

    def advance(self, state: _SlideState) -> None:
        """Start the slide's next stage that is not already complete; complete the slide at the end."""
        job = state.job
        while state.stage < len(self.stages):
            stage = self.stages[state.stage]
            status = stage.status(job)
            if status.complete and not self.force:
                if status.config_hash != stage.config_hash:
                    return self.fail(state, (
                        f"{stage.name} of {job.slide_id} are complete for another configuration (hash "
                        f"{status.config_hash}, this run {stage.config_hash}); use --force to overwrite "
                        "them or choose another --out"
                    ))  # fmt: skip
                state.sizes[stage.name] = stage.size(job)
                if status.n_tiles is not None:
                    state.record.n_tiles = status.n_tiles
                state.stage += 1
                continue
            state.ran = True
            state.plan, state.results, state.futures, state.pending = None, [], {}, 0
            state.stage_started = time.perf_counter()
            self.submit(state, "prepare", stage.prepare, job, name="prepare")
            return None
        return self.complete(state)

    def finished(self, fut: Future[Any], value: Any) -> None:
        """A task ended (done, failed or cancelled): record it and move its slide on."""
        role, slide_id = self.roles.pop(str(fut.key))
        state = self.states[slide_id]
        if state.record.status == "failed":
            return
        stage = self.stages[state.stage]
        if fut.status != "finished":
            # an error comes as distributed's (type, exception, traceback); cancelled as the exception
            exc = (
                value[1] if isinstance(value, tuple) else value if isinstance(value, BaseException) else None
            )
            if _scheduler_lost(exc):  # the run stops; its slides are not to blame
                self.writer.save(flush=True)
                done = sum(r.status in ("done", "skipped") for r in self.records)
                raise ClusterLostError(
                    f"lost the connection to the Dask scheduler ({_describe(exc)}); {done} of "  # type: ignore[arg-type]
                    f"{len(self.records)} slides are complete and kept; rerun the same command to finish "
                    "the rest"
                )
            if exc is not None:
                logger.debug("%s of %s failed:\n%s", role, slide_id, "".join(traceback.format_exception(exc)))
            self.fail(state, f"{stage.name} {role}: " + (_describe(exc) if exc else f"task {fut.status}"))
            return
        result, row = value
        self.writer.task_rows.append(row)
        if role == "prepare":
            state.plan = result
            self.emit(ProgressEvent("planned", slide_id, tiles=result.n_tiles, stage=stage.name))
            for i, (start, stop) in enumerate(result.ranges()):
                work = self.submit(state, "work", stage.work, result, start, stop, name=str(i), retries=1)
                state.futures[str(work.key)] = work  # type: ignore[index]
            state.pending = len(state.futures)  # type: ignore[arg-type]
        elif role == "work":
            # release the key: a finished shard's result is in hand, so a worker lost later
            # does not make Dask recompute it (and expose it to that worker's next crash)
            state.futures.pop(str(fut.key), None)  # type: ignore[union-attr]
            state.results.append(result)  # type: ignore[union-attr]
            state.pending -= 1
            self.emit(ProgressEvent("tiles", slide_id, tiles=result.n_tiles, stage=stage.name))
        elif role == "finish":
            state.record.n_tiles = result["n_tiles"]
            state.sizes[stage.name] = result["bytes"]
            state.warnings += [f"{stage.name}: {w}" for w in result["warnings"]]
            state.timings[stage.name] = time.perf_counter() - state.stage_started
            state.futures = None
            state.stage += 1
            self.advance(state)
            return
        if state.plan is not None and state.pending == 0:
            self.submit(state, "finish", stage.finish, state.plan, state.results, name="finish")
            state.pending = -1


def run_slides(
    client: Client,
    jobs: list[SlideJob],
    stages: SlideStage | Sequence[SlideStage],
    *,
    manifest: str | Path,
    force: bool = False,
    on_event: Callable[[ProgressEvent], None] | None = None,
    metrics: str | Path | None = None,
    storage_options: fileio.Options = None,
) -> list[SlideRecord]:
    """Run ``stages`` in order for every job, all slides in one computation: a slide's next
    stage starts as soon as its previous one finishes, while other slides are still in earlier
    stages. Returns the records, also written to ``manifest`` (CSV) as slides finish.

    Per slide and stage: complete output of the same configuration is skipped (unless
    ``force``); complete output of another configuration fails the slide; anything else is
    redone from scratch by the stage's prepare task. With ``metrics``, one row per task (see
    :mod:`pathopipe.output.metrics`) is appended to that Parquet file for this run.
    ``storage_options`` reach the manifest and metrics when they are URLs.
    """
    return SlideRun(client, jobs, stages, manifest=manifest, force=force, on_event=on_event,
                    metrics=metrics, storage_options=storage_options).run()  # fmt: skip


def _scheduler_lost(exc: BaseException | None) -> bool:
    """A task cancelled because the client lost its scheduler (not because of the task)."""
    return exc is not None and "scheduler-connection-lost" in str(getattr(exc, "reason", "") or exc)


def _format_timings(timings: dict[str, float]) -> str:
    return " ".join(f"{name}={seconds:.2f}s" for name, seconds in timings.items())
