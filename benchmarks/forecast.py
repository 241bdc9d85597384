#!/usr/bin/env python
"""Forecast check: does ``pathopipe plan`` predict a run?

A calibration run over 4 generated slides, then ``plan`` over 12 other generated slides of
different sizes (the forecast), then the real run of those 12 on the same kind of cluster
(each on a fresh LocalCluster, as ``pathopipe run`` starts one). Prints the
predicted and measured wall time (first task to last, from metrics.parquet) and stored bytes.
Targets: within 15 % for time and 5 % for bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from pathopipe.config import ClusterConfig, load_config
from pathopipe.fileio import total_bytes as store_bytes
from pathopipe.output.metrics import read_metrics
from pathopipe.parallel import local_client
from pathopipe.parallel.plan import plan_workflow
from pathopipe.parallel.workflow import run_workflow
from pathopipe.testing import write_synthetic_slide

CACHE = Path(__file__).resolve().parent / ".cache" / "forecast"
CALIBRATION_SIZES = [(6000, 4500), (9000, 6000), (12000, 8000), (15000, 10000)]
TARGET_SIZES = [(5000 + 1500 * i, 4000 + 900 * i) for i in range(12)]


def slides(folder: Path, sizes: list[tuple[int, int]], seed: int, scale: float = 1.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate((int(w * scale), int(h * scale)) for w, h in sizes):
        path = folder / f"s{i:02d}-{w}x{h}.svs"
        if not path.exists():
            write_synthetic_slide(path, width=w, height=h, seed=seed + i, workers=os.cpu_count())
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", default="", help="comma-separated feature models (default: tiles only)")
    parser.add_argument(
        "--scale", type=float, default=2.0,
        help="slide sides x this (1: 1,775 target tiles, a 1.3 s calibration whose per-tile cost varied "
        "27 %% between identical runs here; 2: 4x the tiles)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    suffix = "" if args.scale == 1 else f"-x{args.scale:g}"
    calibration_slides = slides(CACHE / f"calibration{suffix}", CALIBRATION_SIZES, 500, args.scale)
    target_slides = slides(CACHE / f"target{suffix}", TARGET_SIZES, 600, args.scale)
    overrides = ["tiling.target_mpp=0.5", "cluster.dashboard=false", f"cluster.n_workers={args.workers}"]
    if args.models:
        overrides += [f"features.models=[{args.models}]", "features.weights=random", "features.device=cpu"]
    cfg = load_config(None, overrides)
    work = Path(tempfile.mkdtemp(prefix="pathopipe-forecast-"))
    try:
        cluster = ClusterConfig(n_workers=args.workers, dashboard=False)
        with local_client(cluster) as client:  # each run on a fresh cluster, as `pathopipe run` does
            run_workflow([calibration_slides], work / "calibration", cfg, client=client)
        with local_client(cluster) as client:
            planned = plan_workflow([target_slides], cfg, calibration=work / "calibration", client=client)
        with local_client(cluster) as client:
            run_workflow([target_slides], work / "target", cfg, client=client)
        metrics = read_metrics(work / "target" / "metrics.parquet")
        measured_wall = float(metrics["end"].max() - metrics["start"].min())
        measured_bytes = sum(store_bytes(p) for p in (work / "target" / "slides").glob("*.zarr"))
        results = {
            "scale": args.scale,
            "workers": args.workers,
            "models": args.models,
            "tiles": planned["tiles"],
            "survey_seconds": planned["survey_seconds"],
            "predicted_wall_seconds": planned["predicted_wall_seconds"],
            "measured_wall_seconds": measured_wall,
            "wall_error": planned["predicted_wall_seconds"] / measured_wall - 1,
            "predicted_bytes": planned["predicted_bytes"],
            "measured_bytes": measured_bytes,
            "bytes_error": planned["predicted_bytes"] / measured_bytes - 1,
            "calibration": planned["calibration"],
        }
        survey = planned["survey_seconds"]
        print(f"scale {args.scale:g}: 12 slides, {planned['tiles']} tiles (survey {survey:.1f} slot-s); "
              f"calibration on 4 slides, {args.workers} workers")  # fmt: skip
        wall_error, bytes_error = results["wall_error"], results["bytes_error"]
        print(f"  wall time: predicted {results['predicted_wall_seconds']:.1f} s, "
              f"measured {measured_wall:.1f} s ({wall_error:+.1%}; target within 15 %)")  # fmt: skip
        print(f"  bytes:     predicted {planned['predicted_bytes'] / 1e6:.1f} MB, "
              f"measured {measured_bytes / 1e6:.1f} MB ({bytes_error:+.1%}; target within 5 %)")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
