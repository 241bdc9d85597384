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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, help="cluster.n_workers (default: pathopipe's own)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    extra = ["--set", f"cluster.n_workers={args.workers}"] if args.workers else []

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
