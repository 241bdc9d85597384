"""``pathopipe bench``: calibrate a cluster on generated slides, before any real data exists.

Generates slides, tries worker layouts (local clusters: worker processes x threads) and
feature batch sizes on a few of them, picks the fastest (tiles per second from the first task
to the last, as the run's own metrics measure it), then runs the whole workflow with it on all
the generated slides into ``OUT``. ``OUT`` is then an ordinary run: ``pathopipe report OUT``
sizes the cluster from it (``summary.json`` carries the trials) and ``pathopipe plan
--calibration OUT`` forecasts real cohorts with it. ``OUT/bench.json`` records every trial.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pathopipe.config import RunConfig
from pathopipe.errors import ConfigError
from pathopipe.output.layout import RunLayout
from pathopipe.output.metrics import read_metrics
from pathopipe.parallel.workflow import run_workflow


@dataclass(frozen=True)
class Trial:
    """One configuration tried, and what its run measured."""

    workers: int | None  # None: the cluster profile's own shape (not a local cluster)
    threads_per_worker: int
    batch_size: int
    tiles: int = 0
    seconds: float = 0.0  # first task start to last task end (cluster start-up excluded)
    error: str = ""

    @property
    def tiles_per_second(self) -> float:
        return self.tiles / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tiles_per_second": self.tiles_per_second}


def parse_layouts(text: str) -> list[tuple[int, int]]:
    """``"2x1,1x2"`` -> [(2, 1), (1, 2)]: worker processes x threads per worker."""
    layouts = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        workers, sep, threads = item.partition("x")
        if not sep or not workers.isdigit() or not threads.isdigit() or "0" in (workers, threads):
            raise ConfigError(f"worker layout {item!r} must look like WORKERSxTHREADS, e.g. 2x1")
        layouts.append((int(workers), int(threads)))
    if not layouts:
        raise ConfigError("give at least one worker layout, e.g. --layouts 2x1,1x2")
    return layouts


def generate_slides(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """``count`` generated Aperio slides (0.25 µm/px, tissue of varied shapes) in ``folder``."""
    from pathopipe.testing import write_synthetic_slide

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"bench-{i:03d}.svs"
        if not path.exists():  # a rerun reuses them
            write_synthetic_slide(path, width=width, height=height, seed=1000 + i, workers=os.cpu_count())
        paths.append(path)
    return paths


def _measure(out: Path) -> tuple[int, float]:
    table = read_metrics(RunLayout(out).metrics)
    rows = table[table["run_id"] == table["run_id"].max()]
    tiles = int(rows.loc[(rows["stage"] == "tiles") & (rows["role"] == "work"), "tiles"].sum())
    return tiles, float(rows["end"].max() - rows["start"].min())


def _with(config: RunConfig, trial: Trial) -> RunConfig:
    cluster = config.cluster
    if trial.workers is not None:
        cluster = cluster.model_copy(
            update={"n_workers": trial.workers, "threads_per_worker": trial.threads_per_worker}
        )
    features = config.features.model_copy(update={"batch_size": trial.batch_size})
    return config.model_copy(update={"cluster": cluster, "features": features})


def run_bench(
    out: str | os.PathLike[str],
    config: RunConfig,
    *,
    slides: int = 4,
    size: tuple[int, int] = (8000, 6000),
    layouts: Sequence[tuple[int, int]] = ((2, 1), (1, 2)),
    batch_sizes: Sequence[int] = (16, 32, 64),
    trial_slides: int = 2,
    on_trial: Callable[[Trial], None] | None = None,
) -> dict[str, Any]:
    """Try layouts x batch sizes on ``trial_slides`` generated slides, then run the workflow with
    the fastest on all ``slides`` into ``out``; returns (and writes to ``OUT/bench.json``) the
    trials, the choice and the final run's figures."""
    out = Path(out)
    if slides < 1 or not 1 <= trial_slides <= slides:
        raise ConfigError(f"need 1 <= trial slides ({trial_slides}) <= slides ({slides})")
    if not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError(f"batch sizes must be positive, got {list(batch_sizes)}")
    if not config.features.models:
        batch_sizes = batch_sizes[:1]  # no model: the batch size changes nothing
    local = config.cluster.kind == "local"
    tried_layouts: list[tuple[int | None, int]] = (
        list(layouts) if local else [(None, config.cluster.threads_per_worker)]
    )
    t0 = time.time()
    paths = generate_slides(out.parent / f"{out.name}-slides", slides, *size)
    trials: list[Trial] = []
    for workers, threads in tried_layouts:
        for batch in batch_sizes:
            trial = Trial(workers, threads, batch)
            target = out.parent / f"{out.name}-trials" / f"{workers or 'profile'}x{threads}-b{batch}"
            result = run_workflow(paths[:trial_slides], target, _with(config, trial), force=True)
            failed = [r for r in result.records if r.status == "failed"]
            if failed:
                trial = Trial(workers, threads, batch, error=f"{failed[0].slide_id}: {failed[0].error}")
            else:
                tiles, seconds = _measure(target)
                trial = Trial(workers, threads, batch, tiles=tiles, seconds=seconds)
            trials.append(trial)
            if on_trial:
                on_trial(trial)
    usable = [t for t in trials if not t.error and t.tiles]
    if not usable:
        raise ConfigError(f"every bench trial failed or found no tiles: {[t.error for t in trials]}")
    best = max(usable, key=lambda t: t.tiles_per_second)
    final = run_workflow(paths, out, _with(config, best), force=True)
    tiles, seconds = _measure(out)
    record = {
        "generated_slides": {
            "count": slides,
            "width": size[0],
            "height": size[1],
            "folder": str(paths[0].parent),
        },
        "trial_slides": trial_slides,
        "trials": [t.to_dict() for t in trials],
        "best": {
            "workers": best.workers,
            "threads_per_worker": best.threads_per_worker,
            "batch_size": best.batch_size,
            "tiles_per_second": best.tiles_per_second,
        },
        "final": {
            "tiles": tiles,
            "seconds": seconds,
            "tiles_per_second": tiles / seconds if seconds else 0.0,
            "failed": sum(r.status == "failed" for r in final.records),
        },
        "seconds_total": time.time() - t0,
    }
    Path(RunLayout(out).bench).write_text(json.dumps(record, indent=2))
    return record
