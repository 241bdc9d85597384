"""Forecasts before a run (``pathopipe plan``): tile counts from a tissue-only pass, and wall
time and bytes from a calibration (an earlier run's metrics and stores).

Model, fitted per stage on the calibration run's tasks by least squares:

- slot-seconds of a slide in a stage = its prepare and finish tasks, a + b x tiles (per slide),
  plus its work tasks, each c + d x the tiles of that task (a task holds one worker slot). The
  work tasks of a slide to plan are laid out as the run will (``store.shard_size``), so a fixed
  cost per task weighs right on slides of every size;
- bytes stored for a slide = c + d x tiles;
- model builds (``step_model_build``) are a start-up cost once per worker, not per slide: in
  the simulation below, the first prepare of that stage on each slot takes that much longer,
  while the other slots go on;
- wall time = the span (first task to last; cluster start-up not included) of those
  tasks list-scheduled on ``slots`` worker slots the way the driver submits them (all slides'
  prepares first, a slide's work tasks when its prepare ends, later stages first), plus what
  that simulation leaves out of the calibration's own measured span (the driver's round trips
  between a slide's tasks, dispatch), in seconds. Earlier models did worse on
  benchmarks/forecast.py: scaling by the calibration's utilisation (+16 %), adding its idle
  time (ramp-up and tail of 4 slides: +10 to +27 % on 12), multiplying the simulated span by
  the calibration's measured/simulated ratio (+20 to +80 %: the round trips do not grow with
  the run), and per-slide instead of per-task costs.
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pathopipe import fileio
from pathopipe.errors import ConfigError
from pathopipe.output.layout import RunLayout
from pathopipe.output.manifest import read_manifest_records
from pathopipe.output.metrics import model_build_seconds, read_metrics, task_core_seconds
from pathopipe.store.layout import shard_ranges


@dataclass(frozen=True)
class Line:
    """y = intercept + slope x tiles."""

    intercept: float
    slope: float

    def __call__(self, tiles: float) -> float:
        return self.intercept + self.slope * tiles


def fit_task(tiles: np.ndarray, first: np.ndarray, seconds: np.ndarray) -> tuple[Line, float]:
    """Work-task seconds = c + d x tiles + e x (first task of its slide on that worker): the line,
    and e, the cost of opening a slide on a worker (0 when the data cannot tell it apart)."""
    if first.any() and (~first).any() and len(set(tiles.tolist())) > 1:
        design = np.column_stack([np.ones_like(tiles), tiles, first.astype(float)])
        (c, d, e), *_ = np.linalg.lstsq(design, seconds, rcond=None)
        if c >= 0 and d >= 0 and e >= 0:
            return Line(float(c), float(d)), float(e)
    return fit_line(tiles.tolist(), seconds.tolist()), 0.0


def fit_line(tiles: list[float], values: list[float]) -> Line:
    """Least squares, kept non-negative; a single distinct tile count gives a pure per-tile rate."""
    x, y = np.asarray(tiles, float), np.asarray(values, float)
    if len(x) == 0:
        return Line(0.0, 0.0)
    if len(set(x.tolist())) < 2:
        return Line(0.0, float(y.sum() / max(x.sum(), 1.0)))
    slope, intercept = np.polyfit(x, y, 1)
    if intercept < 0:  # no negative fixed cost: refit through the origin
        return Line(0.0, float((x * y).sum() / (x * x).sum()))
    if slope < 0:
        return Line(float(y.mean()), 0.0)
    return Line(float(intercept), float(slope))


def fit_work_tasks(work: Any, first: Any) -> tuple[Line, float]:
    """The work-task line and the slide-open cost of a stage's work tasks (a metrics frame).

    Where the tasks timed opening the slide (``step_open_slide``), the open cost is that
    measured mean over the worker's first task of each slide, and the line is fitted on the
    tasks' seconds without it; otherwise both are fitted (:func:`fit_task`), which a short
    calibration with tasks of nearly one size cannot always tell apart."""
    tiles = work["tiles"].astype(float).to_numpy()
    seconds = work["work_seconds"].to_numpy()
    if "step_open_slide" in work and work["step_open_slide"].notna().all() and len(work):
        opened = work["step_open_slide"].to_numpy(dtype=float)
        opening = float(opened[first.to_numpy()].mean()) if first.any() else 0.0
        return fit_line(tiles.tolist(), (seconds - opened).tolist()), opening
    return fit_task(tiles, first.to_numpy(), seconds)


@dataclass(frozen=True)
class StageModel:
    """Slot-seconds of one stage's tasks: prepare and finish per slide, and each work task."""

    prepare: Line  # over the slide's tiles
    finish: Line  # over the slide's tiles
    task: Line  # one work task, over the tiles it handles
    has_tasks: bool = True  # False when the calibration's stage had no work task (e.g. codec none)
    open_seconds: float = 0.0  # extra for a slot's first work task of a slide (opening it there)

    def durations(self, tiles: int, task_sizes: list[int]) -> tuple[float, list[float], float]:
        work = [self.task(n) for n in task_sizes] if self.has_tasks else []
        return self.prepare(tiles), work, self.finish(tiles)

    def seconds(self, tiles: int, task_sizes: list[int]) -> float:
        prepare, work, finish = self.durations(tiles, task_sizes)
        return prepare + sum(work) + finish


SlideTasks = list[tuple[float, list[float], float]]  # per stage: prepare, work tasks, finish


def simulate_span(
    slides: list[SlideTasks],
    slots: int,
    first_prepare: dict[int, float] | None = None,
    first_work: dict[int, float] | None = None,
) -> float:
    """Seconds from the first task to the last when ``slots`` worker slots run these tasks as
    the driver submits them: every slide's first prepare at once, a slide's work tasks when its
    prepare ends, its finish when they all end, its next stage after that; a free slot takes the
    ready task of the latest stage first (the driver's priority), then the earliest submitted.
    ``first_prepare``: extra seconds of the first prepare of a stage each slot runs (a model
    build, once per worker; the other slots go on meanwhile). ``first_work``: extra seconds of
    the first work task of a slide's stage on each slot (opening the slide there)."""
    extra, opens = first_prepare or {}, first_work or {}
    warmed: set[tuple[int, int]] = set()  # (slot, stage) that paid its first-prepare extra
    opened: set[tuple[int, int, int]] = set()  # (slot, slide, stage) that paid its first-work extra
    ready: list[tuple[int, int, float, int, int, str]] = []  # (-stage, order, seconds, slide, stage, role)
    running: list[tuple[float, int, int, int, int, str]] = []  # (end, order, slot, slide, stage, role)
    pending: dict[tuple[int, int], int] = {}
    order = itertools.count()

    def submit(slide: int, stage: int, role: str, seconds: float) -> None:
        heapq.heappush(ready, (-stage, next(order), seconds, slide, stage, role))

    def start_stage(slide: int, stage: int) -> None:
        if stage < len(slides[slide]):
            submit(slide, stage, "prepare", slides[slide][stage][0])

    for i in range(len(slides)):
        start_stage(i, 0)
    now, free = 0.0, list(range(max(1, slots)))
    while ready or running:
        while free and ready:
            _, n, seconds, slide, stage, role = heapq.heappop(ready)
            slot = free.pop(0)
            if role == "prepare" and stage in extra and (slot, stage) not in warmed:
                warmed.add((slot, stage))
                seconds += extra[stage]
            if role == "work" and stage in opens and (slot, slide, stage) not in opened:
                opened.add((slot, slide, stage))
                seconds += opens[stage]
            heapq.heappush(running, (now + seconds, n, slot, slide, stage, role))
        now, _, slot, slide, stage, role = heapq.heappop(running)
        free.append(slot)
        _, work, finish = slides[slide][stage]
        if role == "prepare":
            pending[slide, stage] = len(work)
            for seconds in work:
                submit(slide, stage, "work", seconds)
            if not work:
                submit(slide, stage, "finish", finish)
        elif role == "work":
            pending[slide, stage] -= 1
            if pending[slide, stage] == 0:
                submit(slide, stage, "finish", finish)
        else:
            start_stage(slide, stage + 1)
    return now


@dataclass(frozen=True)
class Calibration:
    """Per-stage slot-seconds and per-slide bytes as functions of the tile count."""

    source: str
    stages: dict[str, StageModel]
    bytes: Line
    utilisation: float  # busy slot-seconds / (span x slots) of the calibration run
    idle_seconds: float  # span - busy slot-seconds / slots - start-up, of the calibration run
    startup_seconds: float  # model builds: once per worker process (the slowest worker's)
    slots: int
    slides: int
    devices: dict[str, str] = field(default_factory=dict)  # per stage: "cpu" or "cuda"
    # per stage: CPU core-seconds per slot-second (the cores a task keeps busy, helper threads
    # included; beside a GPU, its time outside the model calls)
    cores_per_slot: dict[str, float] = field(default_factory=dict)
    unexplained_seconds: float = 0.0  # the calibration's measured span - its simulated span
    startup_stage: str | None = None  # the stage whose first prepare on a worker builds the models
    store: dict[str, Any] = field(default_factory=dict)  # the run's store settings (its shard sizes)
    # the calibration command's own fixed costs (run.json; 0 for runs recorded before them):
    # its start to the first task (interpreter, imports, cluster), the last task to the end
    command_startup_seconds: float = 0.0
    command_shutdown_seconds: float = 0.0

    def shard_size(self, n_tiles: int) -> int:
        """Tiles per work task for a slide of ``n_tiles`` tiles, as the calibration run laid them out."""
        from pathopipe.config import StoreConfig

        return StoreConfig.model_validate(self.store).shard_size(n_tiles)

    def resources(self, slot_seconds: dict[str, float]) -> tuple[float, float]:
        """CPU core-seconds and GPU-seconds of per-stage slot-seconds."""
        cores = sum(s * self.cores_per_slot.get(stage, 1.0) for stage, s in slot_seconds.items())
        gpus = sum(s for stage, s in slot_seconds.items() if self.devices.get(stage) == "cuda")
        return cores, gpus

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "stages": {k: asdict(v) for k, v in self.stages.items()},  # nested lines as dicts
            "bytes": asdict(self.bytes),
            "utilisation": self.utilisation,
            "idle_seconds": self.idle_seconds,
            "startup_seconds": self.startup_seconds,
            "slots": self.slots,
            "slides": self.slides,
            "devices": self.devices,
            "cores_per_slot": self.cores_per_slot,
            "unexplained_seconds": self.unexplained_seconds,
            "startup_stage": self.startup_stage,
            "store": self.store,
            "command_startup_seconds": self.command_startup_seconds,
            "command_shutdown_seconds": self.command_shutdown_seconds,
        }


def calibrate(out: str | Path) -> Calibration:
    """Fit the forecast model on the latest run in ``out`` (its metrics, manifest and stores)."""
    out = Path(out)
    layout = RunLayout(out)
    if not Path(layout.metrics).is_file() or not Path(layout.run_json).is_file():
        raise ConfigError(
            f"calibration {out} has no {layout.METRICS} or {layout.RUN_JSON}; "
            "give the --out of a finished run"
        )
    table = read_metrics(layout.metrics)
    rows = table[table["run_id"] == table["run_id"].max()]
    tiles = {r.slide_id: r.n_tiles for r in read_manifest_records(out) if r.status == "done"}
    if not tiles:
        raise ConfigError(f"calibration {out} has no slide done in its manifest")
    rows = rows.copy()
    # model builds happen once per worker process, not per slide: a start-up cost of its own
    build = model_build_seconds(rows)
    rows["work_seconds"] = rows["seconds"] - build
    startup = float(build.groupby(rows["worker"]).sum().max()) if len(rows) else 0.0
    built = rows.loc[build > 0, "stage"]
    startup_stage = str(built.iloc[0]) if len(built) else None
    stages, devices, cores = {}, {}, {}
    done = rows[rows["slide_id"].isin(list(tiles))]
    for stage in done.sort_values("start")["stage"].unique():  # in the order the run ran them
        group = done[done["stage"] == stage]
        lines = {}
        for role in ("prepare", "finish"):
            per_slide = group[group["role"] == role].groupby("slide_id")["work_seconds"].sum()
            lines[role] = fit_line([tiles[s] or 0 for s in per_slide.index], per_slide.tolist())
        work = group[group["role"] == "work"].sort_values("start")
        first = ~work.duplicated(subset=["worker", "slide_id"])  # a worker's first task of the slide
        task, opening = fit_work_tasks(work, first)
        stages[str(stage)] = StageModel(
            prepare=lines["prepare"], finish=lines["finish"], task=task, has_tasks=len(work) > 0,
            open_seconds=opening,
        )  # fmt: skip
        device = str(work["device"].mode().iloc[0]) if len(work) else "cpu"
        devices[str(stage)] = device
        steady = float((task_core_seconds(group, device == "cuda") - model_build_seconds(group)).sum())
        slot_seconds = float(group["work_seconds"].sum())
        cores[str(stage)] = steady / slot_seconds if slot_seconds > 0 else 1.0
    sizes = [(n or 0, fileio.total_bytes(layout.slide_store(sid))) for sid, n in tiles.items()]
    run = json.loads(Path(layout.run_json).read_text())
    slots = int(run.get("cluster", {}).get("threads") or 1)
    span = float(rows["end"].max() - rows["start"].min())
    busy = float(rows["work_seconds"].sum())
    utilisation = busy / (span * slots) if span else 1.0
    # the calibration's own slides, laid out as they ran, through the same simulation: what it leaves
    # out (the driver's round trips between a slide's tasks, dispatch) is the difference, in seconds
    laid_out = [
        [model.durations(tiles[sid] or 0, done.loc[(done["slide_id"] == sid) & (done["stage"] == name)
                                                   & (done["role"] == "work"), "tiles"].astype(int).tolist())
         for name, model in stages.items()]
        for sid in tiles
    ]  # fmt: skip
    stage_index = list(stages)
    first = {stage_index.index(startup_stage): startup} if startup_stage in stage_index else {}
    opens = {i: m.open_seconds for i, m in enumerate(stages.values()) if m.open_seconds}
    simulated = simulate_span(laid_out, slots, first, opens)
    return Calibration(
        source=str(out),
        stages=stages,
        bytes=fit_line([t for t, _ in sizes], [b for _, b in sizes]),
        utilisation=min(1.0, max(utilisation, 1e-3)),
        idle_seconds=max(0.0, span - busy / slots - startup),
        startup_seconds=startup,
        slots=slots,
        slides=len(tiles),
        devices=devices,
        cores_per_slot=cores,
        unexplained_seconds=max(0.0, span - simulated),
        startup_stage=startup_stage,
        store=dict(run.get("config", {}).get("store", {})),
        command_startup_seconds=float(run.get("startup_seconds") or 0.0),
        command_shutdown_seconds=float(run.get("shutdown_seconds") or 0.0),
    )


def slot_seconds(
    tiles: list[int], calibration: Calibration, *, slots: int, shard_size: Callable[[int], int]
) -> dict[str, float]:
    """Predicted slot-seconds per stage of slides with these tile counts (model builds left out),
    their work tasks laid out ``shard_size`` tiles each; each slide is opened on at most
    min(its tasks, ``slots``) slots."""
    tasks = [[b - a for a, b in shard_ranges(t, shard_size(t))] for t in tiles]
    return {
        name: float(sum(model.seconds(t, sizes) + model.open_seconds * min(len(sizes), max(1, slots))
                        for t, sizes in zip(tiles, tasks, strict=True)))
        for name, model in calibration.stages.items()
    }  # fmt: skip


def forecast(
    counts: list[dict[str, Any]],
    calibration: Calibration,
    *,
    slots: int,
    shard_size: Callable[[int], int] | None = None,
) -> dict[str, Any]:
    """Predicted slot-seconds per stage, wall time and bytes for slides with known tile counts;
    ``shard_size`` (tiles per work task for a slide of n tiles; default one task per slide) is
    the run's ``store.shard_size``."""
    tiles = [int(c["n_tiles"]) for c in counts]
    size = shard_size or (lambda n: max(n, 1))
    tasks = [[b - a for a, b in shard_ranges(t, size(t))] for t in tiles]
    per_stage = slot_seconds(tiles, calibration, slots=slots, shard_size=size)
    laid_out = [[model.durations(t, sizes) for model in calibration.stages.values()]
                for t, sizes in zip(tiles, tasks, strict=True)]  # fmt: skip
    names = list(calibration.stages)
    first = (
        {names.index(calibration.startup_stage): calibration.startup_seconds}
        if calibration.startup_stage in names
        else {}
    )
    opens = {i: m.open_seconds for i, m in enumerate(calibration.stages.values()) if m.open_seconds}
    simulated = simulate_span(laid_out, slots, first, opens)
    wall = simulated + calibration.unexplained_seconds if slots else None
    fixed = calibration.command_startup_seconds + calibration.command_shutdown_seconds
    return {
        "slides": len(counts),
        "tiles": sum(tiles),
        "tiles_per_slide": tiles,
        "predicted_slot_seconds": per_stage,
        "predicted_wall_seconds": wall,
        "predicted_command_seconds": wall + fixed if wall is not None else None,
        "predicted_bytes": float(sum(calibration.bytes(t) for t in tiles)),
        "slots": slots,
        "calibration": calibration.to_dict(),
        "simulated_span_seconds": simulated,
        "formula": "slot-seconds = sum over slides and stages of prepare (a + b x tiles) + finish (c + d x "
        "tiles) + each work task (e + f x task tiles, + o for a slot's first task of the slide); wall = the "
        "span of those tasks list-scheduled on the "
        "slots as the driver submits them (a slot's first prepare of the model stage also builds the models) "
        "+ the calibration's measured span less its own simulated span; command = wall + the calibration "
        "command's start-up (start to first task) and shutdown (last task to end); bytes = sum of (g + h x "
        "tiles)",
    }
