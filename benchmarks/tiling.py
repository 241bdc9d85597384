#!/usr/bin/env python
"""Tiling throughput: pathopipe vs the bare limits on the same machine, in one run.

On a generated 40,000 x 30,000 px Aperio slide at 0.25 µm/px (cached under
benchmarks/.cache), for each target resolution (0.5 µm/px, resized from level 0; and the
native 0.25 µm/px) this measures over the *same tile coordinates*:

- pathopipe: ``tile_slides`` on a LocalCluster of 1 and of 2 worker processes (one thread
  each, and one slide-decoding thread each unless ``--decode-threads``), end to end (prepare +
  tissue + all shards + finish; cluster start-up and worker imports excluded), with the
  task-side split (prepare, read+resize, encode+write);
- bare openslide: a loop of ``read_region`` (+ RGBA->RGB, + resize when needed) storing
  nothing, in 1 process (and in 2 processes, for the scaling reference);
- raw work: the source JPEG tiles those regions cover, read with tifffile and decoded with
  imagecodecs (each source tile once), 1 process.

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


def run_pathopipe(slide: Path, overrides: list[str], workers: int) -> tuple[float, dict, np.ndarray]:
    """Seconds for ``tile_slides`` on a fresh LocalCluster (started and warmed before timing)."""
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
        return elapsed, dict(group.attrs), group["coords"][:]
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
        "--decode-threads", type=int, default=1,
        help="slide.decode_threads per worker (1: one worker uses one core, as the bare loop)",
    )  # fmt: skip
    parser.add_argument(
        "--resample", default="auto", choices=["auto", "area"],
        help="tiling.resample (auto: JPEG tiles decoded pre-scaled where the shrink is 2, 4 or 8)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    slide = cached_slide(
        f"bench-{args.width}x{args.height}.svs", width=args.width, height=args.height, seed=2024
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
        "statistic": "median of repeats",
        "runs": [],
    }
    for target in (float(t) for t in args.targets.split(",")):
        overrides = [f"tiling.target_mpp={target}", "tiling.tile_size=224", f"store.codec={args.codec}",
                     f"slide.decode_threads={args.decode_threads}",
                     f"tiling.resample={args.resample}"]  # fmt: skip
        seconds: dict[str, list[float]] = {}
        for _ in range(args.repeat):  # interleaved, so drifting machine load hits every variant
            for n in workers:
                elapsed, attrs, coords = run_pathopipe(slide, overrides, n)
                seconds.setdefault(f"pathopipe_{n}w", []).append(elapsed)
                for part in ("prepare", "read", "write"):  # task-side sums recorded in the store
                    seconds.setdefault(f"pathopipe_{n}w_{part}", []).append(attrs[f"seconds_{part}"])
            read_size = attrs["read_size"]
            seconds.setdefault("bare_openslide_1p", []).append(
                bare_openslide(str(slide), coords, read_size, 224)
            )
            seconds.setdefault("bare_openslide_2p", []).append(
                bare_openslide_processes(str(slide), coords, read_size, 224, 2)
            )
            raw_s, raw_tiles = raw_decode(str(slide), coords, read_size)
            seconds.setdefault("raw_decode_1p", []).append(raw_s)
        median = {k: float(np.median(v)) for k, v in seconds.items()}
        n_tiles = len(coords)
        rate = {k: n_tiles / v for k, v in median.items() if not k.endswith(("prepare", "read", "write"))}
        one = rate.get("pathopipe_1w")
        row = {
            "target_mpp": target,
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
            },
        }
        results["runs"].append(row)
        print(
            f"\n== target {target} µm/px: {n_tiles} tiles of 224 px, read {read_size} px at level "
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
        for name, value in row["ratios"].items():
            print(f"  {name:40s} {value:.2f}" if value is not None else f"  {name}: n/a")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
