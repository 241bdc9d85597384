#!/usr/bin/env python
"""Tiling throughput: pathopipe vs the bare limits on the same machine, in one run.

On a generated 40,000 x 30,000 px Aperio slide at 0.25 µm/px (cached under
benchmarks/.cache), for each target resolution (0.5 µm/px, resized from level 0; and the
native 0.25 µm/px) this measures over the *same tile coordinates*:

- pathopipe: ``tile_slides`` on a LocalCluster of 1 and of 2 worker processes (one thread
  each, and one slide-decoding thread each unless ``--decode-threads``), started before
  timing: the call's time (the run's own start-up on a running cluster included) and the
  run's *span*, from its metrics: the first tiling task's start (the slide's prepare) to the
  last one's end (prepare + tissue + all shards + finish), what issue 20's target is measured
  on; with the task-side split (prepare, read+resize, encode+write);
- bare openslide: a loop of ``read_region`` (+ RGBA->RGB, + resize when needed) storing
  nothing, in 1 process (and in 2 processes, for the scaling reference);
- raw work: the source JPEG tiles those regions cover, read with tifffile and decoded with
  imagecodecs (each source tile once), 1 process;
- the limit (b): that raw decode plus encoding each output tile once as JPEG q90 (simplejpeg,
  4:4:4, as the store does; the run's own tiles, each once, read with openslide before timing),
  1 process: what tiling must do at the least;
- with ``--end-to-end``: ``pathopipe tile`` as a command (process start, imports, cluster
  start, tiling, shutdown), its wall time, its start-up (command start to the first shard
  task's start, from the run's metrics) and its span (as above).

``--source-tile 240`` generates the slide with 240 px JPEG tiles, as most 40x Aperio scans have
(224 or 256 px output tiles at 0.5 µm/px then never line up with the source tiles);
``--tile-sizes 224,256`` measures both output sizes.

The file is read once before timing, so every figure is with a warm page cache. Ratios are
taken within this run; absolute tiles/s depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import imagecodecs
import numpy as np
import openslide
import tifffile
import zarr
from _slides import cached_slide

from pathopipe.config import load_config
from pathopipe.parallel import local_client, tile_slides


def bare_openslide(path: str, coords: np.ndarray, read_size: int, tile_size: int) -> float:
    """Seconds for read_region (+ resize) over coords, storing nothing."""
    slide = openslide.OpenSlide(path)
    t0 = time.perf_counter()
    for x, y in coords:
        tile = np.asarray(slide.read_region((int(x), int(y)), 0, (read_size, read_size)))[..., :3]
        if read_size != tile_size:
            tile = cv2.resize(tile, (tile_size, tile_size), interpolation=cv2.INTER_AREA)
    elapsed = time.perf_counter() - t0
    slide.close()
    return elapsed


def _bare_part(args: tuple[str, np.ndarray, int, int]) -> float:
    return bare_openslide(*args)


def bare_openslide_processes(path: str, coords: np.ndarray, read_size: int, tile_size: int, n: int) -> float:
    """Wall seconds for the bare loop split into n contiguous parts in n processes."""
    parts = [(path, part, read_size, tile_size) for part in np.array_split(coords, n)]
    with mp.get_context("spawn").Pool(n) as pool:
        pool.map(_bare_part, [(path, p[:1], read_size, tile_size) for p in np.array_split(coords, n)])  # warm
        t0 = time.perf_counter()
        pool.map(_bare_part, parts)
        return time.perf_counter() - t0


def raw_decode(path: str, coords: np.ndarray, read_size: int) -> tuple[float, int]:
    """Seconds to read and decode every level-0 source tile the regions touch, once each."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        th, tw = page.tilelength, page.tilewidth
        across = -(-page.imagewidth // tw)
        needed: set[int] = set()
        for x, y in coords:
            for ty in range(int(y) // th, (int(y) + read_size - 1) // th + 1):
                for tx in range(int(x) // tw, (int(x) + read_size - 1) // tw + 1):
                    needed.add(ty * across + tx)
        offsets, counts = page.dataoffsets, page.databytecounts
        order = sorted(needed)
        fh = tif.filehandle
        t0 = time.perf_counter()
        for index in order:
            fh.seek(offsets[index])
            imagecodecs.jpeg8_decode(fh.read(counts[index]))
        return time.perf_counter() - t0, len(order)


def decode_encode_limit(path: str, coords: np.ndarray, read_size: int, tile_size: int) -> float:
    """Seconds for the least tiling must do in one process: decode each source tile the tiles
    cover once (raw_decode) and encode each output tile once (JPEG q90, 4:4:4). The tiles
    encoded are the run's own (read with openslide before timing): JPEG's cost depends on the
    content, and encoding one tile over and over runs from the CPU's caches."""
    import simplejpeg

    decode_s, _ = raw_decode(path, coords, read_size)
    tiles = np.empty((len(coords), tile_size, tile_size, 3), np.uint8)
    with openslide.OpenSlide(path) as slide:
        for i, (x, y) in enumerate(coords):
            region = np.asarray(slide.read_region((int(x), int(y)), 0, (read_size, read_size)))[..., :3]
            if read_size != tile_size:
                region = cv2.resize(region, (tile_size, tile_size), interpolation=cv2.INTER_AREA)
            tiles[i] = region
    t0 = time.perf_counter()
    for tile in tiles:
        simplejpeg.encode_jpeg(tile, quality=90, colorsubsampling="444")
    return decode_s + time.perf_counter() - t0


def tiling_span(metrics: str | Path) -> float:
    """Seconds from the first tiling task's start to the last one's end, from a run's metrics."""
    import pandas as pd

    rows = pd.read_parquet(metrics)
    tasks = rows[(rows["stage"] == "tiles") & rows["role"].isin(["prepare", "work", "finish"])]
    return float(tasks["end"].max() - tasks["start"].min())


def command_end_to_end(slide: Path, overrides: list[str], workers: int) -> tuple[float, float, float]:
    """``pathopipe tile`` as a user runs it: (wall seconds of the whole command, seconds from
    the command's start to the first shard task's start, the run's span)."""
    import subprocess
    import sys

    import pandas as pd

    out = Path(tempfile.mkdtemp(prefix="pathopipe-cmd-"))
    try:
        command = [
            sys.executable,
            "-m",
            "pathopipe",
            "tile",
            str(slide),
            "--out",
            str(out / "run"),
            "--workers",
            str(workers),
            *[a for o in overrides for a in ("--set", o)],
        ]
        t0 = time.time()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.time() - t0
        if done.returncode != 0:
            raise RuntimeError(f"pathopipe tile failed: {done.stderr[-2000:]}")
        metrics = pd.read_parquet(out / "run" / "metrics.parquet")
        first_work = float(metrics.loc[metrics["role"] == "work", "start"].min())
        return wall, first_work - t0, tiling_span(out / "run" / "metrics.parquet")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_pathopipe(slide: Path, overrides: list[str], workers: int) -> tuple[float, float, dict, np.ndarray]:
    """Seconds for ``tile_slides`` on a fresh LocalCluster (started and its modules imported
    before timing), and the run's span."""
    cfg = load_config(None, [*overrides, f"cluster.n_workers={workers}", "cluster.dashboard=false"])
    out = Path(tempfile.mkdtemp(prefix="pathopipe-bench-"))
    try:
        with local_client(cfg.cluster) as client:
            client.run(importlib.import_module, "pathopipe.stages.tiling")  # imports are start-up cost
            t0 = time.perf_counter()
            result = tile_slides([slide], out, cfg, client=client)
            elapsed = time.perf_counter() - t0
        record = result.records[0]
        if record.status != "done":
            raise RuntimeError(f"pathopipe run failed: {record.error}")
        group = zarr.open_group(out / "slides" / f"{record.slide_id}.zarr", mode="r")
        return elapsed, tiling_span(out / "metrics.parquet"), dict(group.attrs), group["coords"][:]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=40_000)
    parser.add_argument("--height", type=int, default=30_000)
    parser.add_argument("--targets", default="0.5,0.25", help="target mpp values")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--codec", default="jpeg", choices=["jpeg", "zstd", "none"])
    parser.add_argument("--repeat", type=int, default=3, help="measurements per variant (median)")
    parser.add_argument(
        "--decode-threads",
        type=int,
        default=1,
        help="slide.decode_threads per worker (1: one worker uses one core, as the bare loop)",
    )
    parser.add_argument(
        "--resample",
        default="auto",
        choices=["auto", "area"],
        help="tiling.resample (auto: JPEG tiles decoded pre-scaled where the shrink is 2, 4 or 8)",
    )
    parser.add_argument(
        "--source-tile", type=int, default=256, help="px of the slide's JPEG tiles (240: Aperio)"
    )
    parser.add_argument("--tile-sizes", default="224", help="output tile sizes, e.g. 224,256")
    parser.add_argument("--end-to-end", action="store_true", help="also time `pathopipe tile` as a command")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    suffix = "" if args.source_tile == 256 else f"-t{args.source_tile}"
    slide = cached_slide(
        f"bench-{args.width}x{args.height}{suffix}.svs",
        width=args.width,
        height=args.height,
        seed=2024,
        tile_size=args.source_tile,
    )
    with slide.open("rb") as fh:  # warm the page cache once for every measurement
        while fh.read(1 << 24):
            pass
    workers = [int(w) for w in args.workers.split(",")]
    results = {
        "slide": str(slide),
        "size": [args.width, args.height],
        "cpu_count": os.cpu_count(),
        "repeat": args.repeat,
        "decode_threads": args.decode_threads,
        "resample": args.resample,
        "source_tile": args.source_tile,
        "statistic": "median of repeats",
        "runs": [],
    }
    variants = [(float(t), int(s)) for t in args.targets.split(",") for s in args.tile_sizes.split(",")]
    for target, tile_size in variants:
        overrides = [
            f"tiling.target_mpp={target}",
            f"tiling.tile_size={tile_size}",
            f"store.codec={args.codec}",
            f"slide.decode_threads={args.decode_threads}",
            f"tiling.resample={args.resample}",
        ]
        seconds: dict[str, list[float]] = {}
        for _ in range(args.repeat):  # interleaved, so drifting machine load hits every variant
            for n in workers:
                elapsed, span, attrs, coords = run_pathopipe(slide, overrides, n)
                seconds.setdefault(f"pathopipe_{n}w", []).append(elapsed)
                seconds.setdefault(f"pathopipe_{n}w_span", []).append(span)
                for part in ("prepare", "read", "write"):  # task-side sums recorded in the store
                    seconds.setdefault(f"pathopipe_{n}w_{part}", []).append(attrs[f"seconds_{part}"])
            read_size = attrs["read_size"]
            seconds.setdefault("bare_openslide_1p", []).append(
                bare_openslide(str(slide), coords, read_size, tile_size)
            )
            seconds.setdefault("bare_openslide_2p", []).append(
                bare_openslide_processes(str(slide), coords, read_size, tile_size, 2)
            )
            raw_s, raw_tiles = raw_decode(str(slide), coords, read_size)
            seconds.setdefault("raw_decode_1p", []).append(raw_s)
            seconds.setdefault("limit_decode_encode_1p", []).append(
                decode_encode_limit(str(slide), coords, read_size, tile_size)
            )
            if args.end_to_end:
                for n in workers:
                    wall, startup, span = command_end_to_end(slide, overrides, n)
                    seconds.setdefault(f"command_{n}w", []).append(wall)
                    seconds.setdefault(f"command_{n}w_span", []).append(span)
                    seconds.setdefault(f"command_{n}w_startup", []).append(startup)
        median = {k: float(np.median(v)) for k, v in seconds.items()}
        n_tiles = len(coords)
        rate = {
            k: n_tiles / v
            for k, v in median.items()
            if not k.endswith(("prepare", "read", "write", "startup"))
        }
        one = rate.get("pathopipe_1w")
        row = {
            "target_mpp": target,
            "tile_size": tile_size,
            "codec": args.codec,
            "tiles": n_tiles,
            "read_size": read_size,
            "read_level": attrs["read_level"],
            "resample_used": attrs.get("resample") if attrs["resize_factor"] != 1 else "none (no resize)",
            "raw_source_tiles": raw_tiles,
            "seconds": seconds,
            "tiles_per_s": rate,
            "ratios": {
                "pathopipe_1w / bare_openslide_1p": one / rate["bare_openslide_1p"] if one else None,
                "pathopipe_2w / pathopipe_1w": rate["pathopipe_2w"] / one
                if one and "pathopipe_2w" in rate
                else None,
                "pathopipe_1w / raw_decode_1p": one / rate["raw_decode_1p"] if one else None,
                "bare_openslide_2p / bare_openslide_1p": rate["bare_openslide_2p"]
                / rate["bare_openslide_1p"],
                "pathopipe_1w / limit_decode_encode_1p": one / rate["limit_decode_encode_1p"]
                if one
                else None,
                **{
                    f"{name}_span / limit_decode_encode_1p": rate[f"{name}_span"]
                    / rate["limit_decode_encode_1p"]
                    for name in ("pathopipe_1w", "command_1w")
                    if f"{name}_span" in rate
                },
                **{
                    f"command_{n}w / limit_decode_encode_1p x {n}": rate[f"command_{n}w"]
                    / (n * rate["limit_decode_encode_1p"])
                    for n in workers
                    if f"command_{n}w" in rate
                },
                **{
                    f"command_{n}w / bare_openslide_{n}p": rate[f"command_{n}w"]
                    / rate[f"bare_openslide_{n}p"]
                    for n in workers
                    if f"command_{n}w" in rate and f"bare_openslide_{n}p" in rate
                },
            },
        }
        results["runs"].append(row)
        print(
            f"\n== target {target} µm/px: {n_tiles} tiles of {tile_size} px, read {read_size} px at level "
            f"{row['read_level']}, resample {row['resample_used']} ({args.codec} tiles; "
            f"median of {args.repeat})"
        )
        for name, value in rate.items():
            print(f"  {name:22s} {value:8.1f} tiles/s")
        print(
            f"  pathopipe 1 worker, inside tasks: prepare {median['pathopipe_1w_prepare']:.2f} s, "
            f"read+resize {median['pathopipe_1w_read']:.2f} s, "
            f"encode+write {median['pathopipe_1w_write']:.2f} s"
        )
        for n in workers:
            startup = median.get(f"command_{n}w_startup")
            if startup is not None:
                print(f"  command {n}w start-up (command start to first tile task) {startup:.2f} s")
        for name, value in row["ratios"].items():
            print(f"  {name:40s} {value:.2f}" if value is not None else f"  {name}: n/a")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
