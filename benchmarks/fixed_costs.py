#!/usr/bin/env python
"""Fixed costs: a small job's whole commands against a hand-written baseline, in one run.

For each slide (the real CMU-1-Small-Region from ../shared/slides, ~40 tiles at 20x; a
generated 12,000 x 10,000 px Aperio slide with 240 px JPEG tiles at 0.25 µm/px, cached under
benchmarks/.cache), repeated and interleaved so that drifting machine load hits every command:

- the hand-written baseline (benchmarks/_handwritten.py): openslide + a torch DataLoader +
  timm resnet18 (random weights) over the tiles pathopipe keeps, features to one .npy; its whole
  process (interpreter, imports, work, exit);
- ``pathopipe run`` with tiles (224 px at 0.5 µm/px, JPEG) + resnet18 features (random
  weights, CPU): whole command;
- ``pathopipe tile`` alone and ``pathopipe extract`` alone (on that tile run's output).

For each pathopipe command, from its own metrics: start-up (command start to the first task;
to the first tile task for ``tile``), the model build the first feature task waited for, the
slide's prepare task (thumbnail, tissue, store) and shutdown (last task end to process exit).

Every figure is wall-clock seconds on this machine, median of ``--repeat``; the ratios are
taken within the run.

    .venv/bin/python benchmarks/fixed_costs.py --repeat 3 --json benchmarks/results/fixed-costs-DATE.json

``--plan-check``: instead, ``pathopipe plan``'s forecast of a small batch's whole command (3
generated slides, tiles + resnet18, calibrated on a ``pathopipe run`` of 3 others) against
the command's measured wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import zarr
from _slides import cached_slide

HERE = Path(__file__).resolve().parent
REAL_SLIDE = HERE.parents[1] / "shared" / "slides" / "cmu-1-small-region.svs"
GEOMETRY = ["tiling.target_mpp=0.5", "tiling.tile_size=224"]
WORKFLOW = """tiling: {target_mpp: 0.5, tile_size: 224}
store: {codec: jpeg}
features: {models: [timm/resnet18], weights: random, device: cpu, batch_size: 32}
"""


def pathopipe(*args: str) -> list[str]:
    return [sys.executable, "-m", "pathopipe", *args, "--no-progress"]


def timed(command: list[str]) -> tuple[float, float]:
    """(start time, wall seconds) of a command that must succeed."""
    t0 = time.time()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.time() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])}... failed:\n{done.stderr[-3000:]}")
    return t0, wall


def phases(metrics: Path, t0: float, wall: float, stage: str | None = None) -> dict[str, float]:
    """Start-up, model build, prepare and shutdown of one command, from its metrics."""
    m = pd.read_parquet(metrics)
    m = m[m["run_id"] == m.sort_values("start")["run_id"].iloc[-1]]  # this command's run
    recorded = m[m["role"].isin(["startup", "shutdown"])].set_index("role")["seconds"]
    m = m[~m["role"].isin(["startup", "shutdown"])]  # its tasks
    work = m if stage is None else m[m["stage"] == stage]
    out = {
        "wall": wall,
        "startup": float(m["start"].min() - t0),
        "first_work": float(work.loc[work["role"] == "work", "start"].min() - t0),
        "shutdown": float(t0 + wall - m["end"].max()),
    }
    tiles_prepare = m[(m["stage"] == "tiles") & (m["role"] == "prepare")]
    if len(tiles_prepare):
        out["slide_prepare"] = float(tiles_prepare["seconds"].sum())
    if "step_model_build" in m:
        out["model_build"] = float(m["step_model_build"].fillna(0).sum())
    for role, seconds in recorded.items():  # what the run recorded of itself (run.json, metrics)
        out[f"recorded_{role}"] = float(seconds)
    return out


def run_once(slide: Path, workdir: Path, coords_file: Path, geometry: dict, extra: list[str]) -> dict:
    """One repeat of every command on ``slide``, in a fresh folder."""
    row: dict[str, dict[str, float]] = {}
    features = workdir / "baseline.npy"
    _, wall = timed([sys.executable, str(HERE / "_handwritten.py"), str(slide), str(coords_file),
                     str(geometry["read_size"]), str(geometry["tile_size"]), str(features)])  # fmt: skip
    row["baseline"] = {"wall": wall}
    workflow = workdir / "workflow.yaml"
    workflow.write_text(WORKFLOW)
    out = workdir / "run"
    t0, wall = timed(pathopipe("run", str(workflow), "--slides", str(slide), "--out", str(out), *extra))
    row["run"] = phases(out / "metrics.parquet", t0, wall)
    tiled = workdir / "tile"
    sets = [a for s in GEOMETRY for a in ("--set", s)]
    t0, wall = timed(pathopipe("tile", str(slide), "--out", str(tiled), *sets, *extra))
    row["tile"] = phases(tiled / "metrics.parquet", t0, wall, stage="tiles")
    t0, wall = timed(pathopipe("extract", str(tiled), "--model", "timm/resnet18", "--weights", "random",
                               "--device", "cpu", *extra))  # fmt: skip
    row["extract"] = phases(tiled / "metrics.parquet", t0, wall, stage="features")
    return row


def slide_geometry(slide: Path, workdir: Path, extra: list[str]) -> tuple[Path, dict]:
    """Tile once (untimed: warms the page cache, Python's bytecode and timm's spec cache) and
    keep the coordinates pathopipe keeps, for the baseline."""
    out = workdir / "geometry"
    sets = [a for s in GEOMETRY for a in ("--set", s)]
    timed(pathopipe("tile", str(slide), "--out", str(out), *sets, *extra))
    (store,) = (out / "slides").glob("*.zarr")
    group = zarr.open_group(store, mode="r")
    coords_file = workdir / "coords.npy"
    np.save(coords_file, group["coords"][:])
    attrs = group.attrs
    geometry = {"tiles": int(attrs["n_tiles"]), "read_size": int(attrs["read_size"]),
                "tile_size": int(attrs["tile_size"]), "read_level": int(attrs["read_level"])}  # fmt: skip
    return coords_file, geometry


def plan_check(workdir: Path, extra: list[str]) -> dict:
    """``pathopipe plan``'s forecast of a small batch's command, start-up and shutdown included,
    against the command: calibrate with ``pathopipe run`` on 3 generated slides, plan 3 others
    (``plan --json --calibration``), then run them and time the whole command."""
    folders = {}
    for name, sizes, seed in (("calibration", [(6000, 4500), (9000, 6000), (12000, 8000)], 31),
                              ("target", [(7000, 5000), (10000, 7000), (11000, 9000)], 41)):  # fmt: skip
        folders[name] = workdir / name
        folders[name].mkdir()
        for i, (w, h) in enumerate(sizes):
            slide = cached_slide(f"plan-{name}-{w}x{h}.svs", width=w, height=h, seed=seed + i, tile_size=240)
            (folders[name] / slide.name).symlink_to(slide)
    workflow = workdir / "workflow.yaml"
    workflow.write_text(WORKFLOW)
    timed(pathopipe("run", str(workflow), "--slides", str(folders["calibration"]), "--out",
                    str(workdir / "calibration-out"), *extra))  # fmt: skip
    planned = subprocess.run(
        [sys.executable, "-m", "pathopipe", "plan", str(workflow), "--slides", str(folders["target"]),
         "--calibration", str(workdir / "calibration-out"), "--json", *extra],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    forecast = json.loads(planned.stdout)
    _, wall = timed(pathopipe("run", str(workflow), "--slides", str(folders["target"]), "--out",
                              str(workdir / "target-out"), *extra))  # fmt: skip
    run = json.loads((workdir / "target-out" / "run.json").read_text())
    predicted = forecast["predicted_command_seconds"]
    return {"tiles": forecast["tiles"], "predicted_command_seconds": predicted,
            "predicted_wall_seconds": forecast["predicted_wall_seconds"], "measured_command_seconds": wall,
            "measured_startup_seconds": run.get("startup_seconds"),
            "measured_shutdown_seconds": run.get("shutdown_seconds"),
            "error": predicted / wall - 1}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, help="cluster.n_workers (default: pathopipe's own)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plan-check", action="store_true", help="only check plan's forecast of a command")
    args = parser.parse_args()
    extra = ["--set", f"cluster.n_workers={args.workers}"] if args.workers else []

    if args.plan_check:
        with tempfile.TemporaryDirectory(prefix="pathopipe-plan-") as folder:
            checked = plan_check(Path(folder), extra)
        print(json.dumps(checked, indent=2))
        if args.json:
            args.json.write_text(json.dumps(checked, indent=2))
        return
    slides = {"mid-size 12000x10000 (240 px tiles)": cached_slide(
        "fixed-12000x10000-t240.svs", width=12_000, height=10_000, seed=7, tile_size=240)}  # fmt: skip
    if REAL_SLIDE.exists():
        slides = {"CMU-1-Small-Region (real)": REAL_SLIDE, **slides}
    results: dict = {"cpu_count": os.cpu_count(), "repeat": args.repeat, "workers": args.workers,
                     "statistic": "median of repeats", "slides": {}}  # fmt: skip
    for name, slide in slides.items():
        with tempfile.TemporaryDirectory(prefix="pathopipe-fixed-") as folder:
            workdir = Path(folder)
            coords_file, geometry = slide_geometry(slide, workdir, extra)
            runs: list[dict] = []
            for r in range(args.repeat):
                repeat_dir = workdir / f"r{r}"
                repeat_dir.mkdir()
                runs.append(run_once(slide, repeat_dir, coords_file, geometry, extra))
                shutil.rmtree(repeat_dir)
        medians = {command: {key: float(np.median([run[command][key] for run in runs]))
                             for key in runs[0][command]} for command in runs[0]}  # fmt: skip
        ratios = {
            "run / baseline": float(np.median([run["run"]["wall"] / run["baseline"]["wall"] for run in runs]))
        }
        results["slides"][name] = {
            "slide": str(slide),
            **geometry,
            "runs": runs,
            "median": medians,
            "ratios": ratios,
        }
        print(
            f"\n== {name}: {geometry['tiles']} tiles of {geometry['tile_size']} px; median of {args.repeat}"
        )
        for command, figures in medians.items():
            print(f"  {command:9s} " + "  ".join(f"{k} {v:5.2f} s" for k, v in figures.items()))
        for key, value in ratios.items():
            print(f"  {key}: {value:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
