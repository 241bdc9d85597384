#!/usr/bin/env python
"""Orchestration cost of ``pathopipe run``: what the Dask computation adds beyond the work.

(1) Overhead per slide: N tiny slides (one small tissue island each) tiled with
    ``run_workflow`` on a LocalCluster of 1 worker (1 thread, started before timing), against
    the same stage functions (prepare, one task per shard, finish) called in a loop in this
    process. Overhead = (pipeline wall time - in-process time) / N, in ms per slide: scheduling,
    task round trips, the manifest, the per-slide status checks on the client.
(2) Wall time of 8 generated slides (tiling + ``noop`` features) with 1 and 2 workers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from pathopipe.config import ClusterConfig, config_hash, load_config
from pathopipe.parallel import local_client
from pathopipe.parallel.run import plan_jobs
from pathopipe.parallel.workflow import run_workflow
from pathopipe.stages.tiling import finish_slide, prepare_slide, write_tile_shard
from pathopipe.testing import write_synthetic_slide

CACHE = Path(__file__).resolve().parent / ".cache"


def tiny_cohort(n: int) -> Path:
    folder = CACHE / f"tiny-{n}"
    if len(list(folder.glob("*.svs"))) != n:
        folder.mkdir(parents=True, exist_ok=True)
        source = CACHE / "tiny.svs"
        if not source.exists():
            write_synthetic_slide(source, width=1400, height=1100, seed=5, downsamples=(4,), workers=1)
        for i in range(n):
            shutil.copyfile(source, folder / f"tiny-{i:04d}.svs")
    return folder


def in_process(slides: Path, out: Path, overrides: list[str]) -> tuple[float, int]:
    """The work alone: the tiling stage's functions called in a loop, no Dask."""
    cfg = load_config(None, overrides)
    chash = config_hash(cfg)
    jobs = plan_jobs([slides], out)
    t0 = time.perf_counter()
    tiles = 0
    for job in jobs:
        plan = prepare_slide(job, cfg, chash)
        results = [write_tile_shard(plan, a, b) for a, b in plan.ranges()]
        tiles += finish_slide(plan, results)["n_tiles"]
    return time.perf_counter() - t0, tiles


def pipelined(slides: Path, out: Path, overrides: list[str], workers: int) -> float:
    cfg = load_config(None, overrides)
    with local_client(ClusterConfig(n_workers=workers, dashboard=False)) as client:
        for module in ("pathopipe.features._extractor", "timm"):  # once per worker: start-up cost
            client.run(importlib.import_module, module)
        t0 = time.perf_counter()
        result = run_workflow([slides], out, cfg, client=client)
        elapsed = time.perf_counter() - t0
    failed = [r for r in result.records if r.status != "done"]
    if failed:
        raise RuntimeError(f"{len(failed)} slides failed: {failed[0].error}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", type=int, default=500, help="tiny slides for the overhead figure")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    CACHE.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pathopipe-orchestration-"))
    results: dict = {"cpus": os.cpu_count()}
    tile_only = ["tiling.target_mpp=0.5", "tiling.min_tissue_fraction=0.3", "cluster.dashboard=false"]
    try:
        slides = tiny_cohort(args.tiny)
        bare, tiles = in_process(slides, work / "bare", tile_only)
        piped = pipelined(slides, work / "piped", tile_only, workers=1)
        overhead_ms = (piped - bare) / args.tiny * 1e3
        results["tiny"] = {"slides": args.tiny, "tiles": tiles, "in_process_s": bare, "pipeline_1w_s": piped,
                           "overhead_ms_per_slide": overhead_ms}  # fmt: skip
        print(f"(1) {args.tiny} tiny slides ({tiles} tiles): in-process {bare:.1f} s, pathopipe run with "
              f"1 worker {piped:.1f} s -> overhead {overhead_ms:.1f} ms per slide "
              f"(work alone {bare / args.tiny * 1e3:.1f} ms per slide)")  # fmt: skip

        eight = CACHE / "eight"
        eight.mkdir(exist_ok=True)
        for i in range(8):
            path = eight / f"slide-{i}.svs"
            if not path.exists():
                write_synthetic_slide(path, width=8000, height=6000, seed=300 + i, workers=os.cpu_count())
        full = [*tile_only, "features.models=[noop]", "features.device=cpu"]
        walls = {w: pipelined(eight, work / f"eight-{w}", full, workers=w) for w in (1, 2)}
        results["eight"] = {"wall_s": walls, "speedup_2w": walls[1] / walls[2]}
        print(
            f"(2) 8 slides of 8000 x 6000 px, tiling + noop features: 1 worker {walls[1]:.1f} s, "
            f"2 workers {walls[2]:.1f} s ({walls[1] / walls[2]:.2f}x)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
