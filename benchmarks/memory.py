#!/usr/bin/env python
"""Worker memory is bounded by configuration, not by slide size.

Generates (once, cached under benchmarks/.cache) a 20,000 x 20,000 px and a 100,000 x 80,000
px Aperio slide (0.25 µm/px), runs the workflow (tiling into JPEG tiles, then ``noop``
features) on each with a fresh LocalCluster of 2 workers at the same settings, and reads each
worker process's peak RSS from ``OUT/metrics.parquet`` (``VmHWM`` after each task). Prints
the largest worker peak per slide and their ratio (target <= 1.25).

What bounds a worker (docs/architecture.md): one shard of tiles in a per-thread buffer
(``store.tiles_per_shard``), the tiff backend's decoded-tile cache (``slide.cache_mb`` per
process), thumbnails read in strips, and features written per task.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from _slides import cached_slide

from pathopipe.config import load_config
from pathopipe.output.layout import RunLayout
from pathopipe.output.metrics import read_metrics
from pathopipe.parallel.workflow import run_workflow

SIZES = {"small": (20_000, 20_000), "large": (100_000, 80_000)}


def peak_per_worker(out: Path) -> dict[int, int]:
    table = read_metrics(RunLayout(out).metrics)
    peaks: dict[int, int] = {}
    for pid, rss in zip(table["pid"], table["peak_rss_bytes"], strict=True):
        peaks[int(pid)] = max(peaks.get(int(pid), 0), int(rss))
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    overrides = ["tiling.target_mpp=0.5", "features.models=[noop]", "features.device=cpu",
                 "cluster.n_workers=2", "cluster.dashboard=false", *args.overrides]  # fmt: skip
    results: dict = {"overrides": overrides, "runs": {}}
    for name, (width, height) in SIZES.items():
        slide = cached_slide(f"memory-{width}x{height}.svs", width=width, height=height, seed=11)
        out = Path(tempfile.mkdtemp(prefix="pathopipe-memory-"))
        try:
            t0 = time.perf_counter()
            (record,) = run_workflow([slide], out, load_config(None, overrides)).records
            seconds = time.perf_counter() - t0
            if record.status != "done":
                raise RuntimeError(f"{slide.name}: {record.error}")
            peaks = peak_per_worker(out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        results["runs"][name] = {"size": [width, height], "tiles": record.n_tiles, "seconds": seconds,
                                 "worker_peak_rss_bytes": sorted(peaks.values())}  # fmt: skip
        rss = ", ".join(f"{v / 2**20:,.0f} MiB" for v in sorted(peaks.values()))
        print(
            f"{name:5s} {width} x {height} px: {record.n_tiles:,} tiles, {seconds:.0f} s; worker peaks {rss}"
        )
    small = max(results["runs"]["small"]["worker_peak_rss_bytes"])
    large = max(results["runs"]["large"]["worker_peak_rss_bytes"])
    results["ratio"] = large / small
    print(f"largest worker peak, large / small slide: {large / 2**20:,.0f} / {small / 2**20:,.0f} MiB = "
          f"{large / small:.2f} (target <= 1.25)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
