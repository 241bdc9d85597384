#!/usr/bin/env python
"""Slide reading throughput: openslide, tiffslide and pathopipe's tiff backend, in one run.

On a generated 40,000 x 30,000 px Aperio slide at 0.25 µm/px with ``--source-tile`` px JPEG
source tiles (224 by default; 240 is what most 40x Aperio scans have), cached under
benchmarks/.cache, over a block of output tiles of each of ``--tile-sizes`` (224 by default) in
grid order:

- grids: *aligned* (output tiles start on source-tile corners) and *unaligned* (shifted by
  half a source tile, so every output tile touches four source tiles); with 240 px source tiles
  and 224 or 256 px output tiles the grid never lines up, whatever its origin;
- targets: 0.25 µm/px (level-0 regions of the tile size) and 0.5 µm/px (regions twice the tile
  size, halved);
- readers: bare openslide-python ``read_region`` (+ RGBA->RGB, + resize); bare tiffslide
  ``read_region(as_array=True)`` (+ resize); pathopipe's tiff backend through
  ``pathopipe.tiling.read_tiles`` with 1 decode thread (and with 2, one process only), with
  the default ``tiling.resample: auto`` (at 0.5 µm/px: source tiles decoded at half scale in
  libjpeg's DCT domain) and, at 0.5 µm/px, also with ``resample: area`` (full decode, halved);
- 1 and 2 processes (the block split in two contiguous halves);
- raw work: every source tile the block covers, read with tifffile and decoded with
  imagecodecs, each once, one process, nothing else; at 0.5 µm/px also *raw work + resize*
  (each decoded source tile scaled by half, INTER_AREA), the least work the area path needs,
  and *raw work, scaled decode* (each source tile decoded at half scale by simplejpeg), the
  least work the DCT path needs.

Every reader is timed inside its process, like the raw work: opening the slide and the
round trip to the process pool are left out; with 2 processes the slower one counts.

The file is read once before timing (warm page cache). Each figure is the median of
``--repeat`` interleaved measurements; each ratio is the median of the per-repeat ratios.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import cv2
import imagecodecs
import numpy as np
import tifffile
from _slides import cached_slide

BATCH = 256  # tiles per read_tiles call, into one reused buffer


def _resize(region: np.ndarray, tile: int) -> np.ndarray:
    if region.shape[0] == tile:
        return region
    return cv2.resize(region, (tile, tile), interpolation=cv2.INTER_AREA)


def read_openslide(path: str, coords: np.ndarray, size: int, tile: int, threads: int) -> float:
    import openslide

    slide = openslide.OpenSlide(path)
    t0 = time.perf_counter()
    for x, y in coords:
        _resize(np.asarray(slide.read_region((int(x), int(y)), 0, (size, size)))[..., :3], tile)
    elapsed = time.perf_counter() - t0
    slide.close()
    return elapsed


def read_tiffslide(path: str, coords: np.ndarray, size: int, tile: int, threads: int) -> float:
    import tiffslide

    slide = tiffslide.TiffSlide(path)
    t0 = time.perf_counter()
    for x, y in coords:
        _resize(slide.read_region((int(x), int(y)), 0, (size, size), as_array=True), tile)
    elapsed = time.perf_counter() - t0
    slide.close()
    return elapsed


def read_pathopipe_tiff(
    path: str, coords: np.ndarray, size: int, tile: int, threads: int, resample: str = "auto"
) -> float:
    from pathopipe._process import reset as reset_process_state
    from pathopipe.slide import open_slide
    from pathopipe.tiling import TileSpec, choose_resample, read_tiles

    reset_process_state()  # each measurement starts cold, as a new slide does

    spec = TileSpec(tile_size=tile, stride=tile, target_mpp=0.25 * size / tile, mpp_level0=0.25,
                    level=0, level_downsample=1.0, read_size=size, read_stride=size,
                    tile_size_level0=size)  # fmt: skip
    out = np.zeros((BATCH, tile, tile, 3), np.uint8)  # reused, as the pipeline does
    with open_slide(path, backend="tiff", options={"tiff": {"threads": threads}}) as slide:
        spec = choose_resample(slide, spec, resample)
        t0 = time.perf_counter()
        for start in range(0, len(coords), BATCH):  # batches in grid order, as tasks read them
            part = coords[start : start + BATCH]
            read_tiles(slide, spec, part, out=out[: len(part)])
        return time.perf_counter() - t0


def read_pathopipe_tiff_area(path: str, coords: np.ndarray, size: int, tile: int, threads: int) -> float:
    return read_pathopipe_tiff(path, coords, size, tile, threads, resample="area")


def read_raw(path: str, coords: np.ndarray, size: int, tile: int, threads: int) -> float:
    return raw_work(path, coords, size, tile)[0]


def read_raw_resize(path: str, coords: np.ndarray, size: int, tile: int, threads: int) -> float:
    return raw_work(path, coords, size, tile, resize=True)[0]


def read_raw_scaled(path: str, coords: np.ndarray, size: int, tile: int, threads: int) -> float:
    return raw_work(path, coords, size, tile, scaled_decode=True)[0]


READERS = {"openslide": read_openslide, "tiffslide": read_tiffslide, "tiff": read_pathopipe_tiff,
           "tiff_area": read_pathopipe_tiff_area, "raw": read_raw, "raw_resize": read_raw_resize,
           "raw_scaled": read_raw_scaled}  # fmt: skip


def _part(args: tuple[str, str, np.ndarray, int, int, int]) -> float:
    name, path, coords, size, tile, threads = args
    return READERS[name](path, coords, size, tile, threads)


def timed(
    pool: mp.pool.Pool,
    n: int,
    name: str,
    path: str,
    coords: np.ndarray,
    size: int,
    tile: int,
    threads: int,
) -> float:
    """Seconds for ``n`` processes each reading a contiguous part of ``coords``: the slowest
    process's reading time, timed inside it as the raw work is (opening the slide and the
    round trip to the pool are not reading; they were 5-10 % of the tiff backend's figure)."""
    parts = [(name, path, part, size, tile, threads) for part in np.array_split(coords, n)]
    return max(pool.map(_part, parts, chunksize=1))


def raw_work(
    path: str,
    coords: np.ndarray,
    size: int,
    tile: int,
    *,
    resize: bool = False,
    scaled_decode: bool = False,
) -> tuple[float, int]:
    """Seconds to read and decode each source tile the regions cover, once, in one thread
    (``resize``: and scale each decoded tile by the regions' factor, INTER_AREA: the least work
    a target coarser than the level needs; ``scaled_decode``: decode each tile at that scale
    with libjpeg's DCT scaling instead)."""
    import simplejpeg

    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[0].pages[0]
        tw, th = page.tilewidth, page.tilelength
        across = -(-page.imagewidth // tw)
        needed = sorted({
            ty * across + tx
            for x, y in coords
            for ty in range(int(y) // th, (int(y) + size - 1) // th + 1)
            for tx in range(int(x) // tw, (int(x) + size - 1) // tw + 1)
        })  # fmt: skip
        offsets, counts, tables = page.dataoffsets, page.databytecounts, page.jpegtables
        # a complete stream for simplejpeg: SOI, Adobe marker (these tiles are RGB-coded), tables
        adobe_rgb = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
        prefix = b"\xff\xd8" + adobe_rgb + (tables[2:-2] if tables else b"")
        fd = os.open(path, os.O_RDONLY)
        try:
            t0 = time.perf_counter()
            scaled = (tw * tile // size, th * tile // size)
            for index in needed:
                data = os.pread(fd, counts[index], offsets[index])
                if scaled_decode:
                    simplejpeg.decode_jpeg(prefix + data[2:], min_width=scaled[0], min_height=scaled[1])
                    continue
                decoded = imagecodecs.jpeg8_decode(data, tables=tables)
                if resize and size != tile:
                    cv2.resize(decoded, scaled, interpolation=cv2.INTER_AREA)
            return time.perf_counter() - t0, len(needed)
        finally:
            os.close(fd)


def paired(seconds: dict[str, list[float]], a: str, b: str) -> float:
    """Median over repeats of (tiles/s of a) / (tiles/s of b), each ratio within one repeat."""
    return float(np.median([sb / sa for sa, sb in zip(seconds[a], seconds[b], strict=True)]))


def grid(origin: tuple[int, int], step: int, columns: int, rows: int) -> np.ndarray:
    xs = origin[0] + step * np.arange(columns)
    ys = origin[1] + step * np.arange(rows)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.int64)


def run_geometry(
    args: argparse.Namespace,
    pools: dict[int, mp.pool.Pool],
    path: str,
    corner: tuple[int, int],
    source: int,
    tile: int,
    target: float,
    size: int,
    results: dict,
) -> None:
    """Both grids at one output tile size and target: every reader, repeated, interleaved."""
    n = args.block // size
    for grid_name, shift in (("aligned", 0), ("unaligned", source // 2)):
        coords = grid((corner[0] + shift, corner[1] + shift), size, n, n)
        # (name, processes, reader, decode threads); the tiff backend stands next to each
        # reference it is compared with, and the order reverses every other repeat, so
        # the machine's drifting speed (seconds to minutes here) cancels in the ratios
        plan = [("openslide_1p", 1, "openslide", 1), ("tiff_1p", 1, "tiff", 1),
                ("raw_work_1p", 1, "raw", 1)]  # fmt: skip
        if size != tile:
            plan += [("raw_work_resize_1p", 1, "raw_resize", 1), ("tiff_area_1p", 1, "tiff_area", 1),
                     ("raw_work_scaled_1p", 1, "raw_scaled", 1)]  # fmt: skip
        plan += [("tiffslide_1p", 1, "tiffslide", 1), ("tiff_1p_2threads", 1, "tiff", 2),
                 ("openslide_2p", 2, "openslide", 1), ("tiff_2p", 2, "tiff", 1),
                 ("tiffslide_2p", 2, "tiffslide", 1)]  # fmt: skip
        seconds: dict[str, list[float]] = {}
        for r in range(args.repeat):
            for key, procs, name, threads in plan if r % 2 == 0 else plan[::-1]:
                seconds.setdefault(key, []).append(
                    timed(pools[procs], procs, name, path, coords, size, tile, threads)
                )
        raw_tiles = raw_work(path, coords, size, tile)[1]
        median = {k: float(np.median(v)) for k, v in seconds.items()}
        rate = {k: len(coords) / v for k, v in median.items()}
        pairs = [("tiff_1p", "openslide_1p"), ("tiff_2p", "openslide_2p"),
                 ("tiff_1p", "tiffslide_1p"), ("tiff_1p", "raw_work_1p"),
                 ("openslide_1p", "raw_work_1p"), ("tiff_2p", "tiff_1p")]  # fmt: skip
        if "raw_work_resize_1p" in seconds:
            pairs += [("tiff_area_1p", "raw_work_1p"), ("tiff_area_1p", "raw_work_resize_1p"),
                      ("tiff_1p", "raw_work_scaled_1p"), ("tiff_1p", "tiff_area_1p")]  # fmt: skip
        ratios = {f"{a} / {b}": paired(seconds, a, b) for a, b in pairs}
        results["runs"].append({"target_mpp": target, "grid": grid_name, "tile_size": tile,
                                "read_size": size, "tiles": len(coords), "source_tiles": raw_tiles,
                                "seconds": seconds, "tiles_per_s": rate, "ratios": ratios})  # fmt: skip
        print(f"\n== {grid_name} grid, {target} µm/px: {len(coords)} tiles of {tile} px "
              f"(read {size} px), {raw_tiles} source tiles; median of {args.repeat}, ratios paired "
              "per repeat")  # fmt: skip
        for name, value in rate.items():
            print(f"  {name:22s} {value:8.1f} tiles/s")
        for name, value in ratios.items():
            print(f"  {name:28s} {value:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=40_000)
    parser.add_argument("--height", type=int, default=30_000)
    parser.add_argument("--block", type=int, default=8960, help="side of the level-0 block read (px)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--source-tile", type=int, default=224, help="JPEG tile size of the generated slide")
    parser.add_argument(
        "--tile-sizes", default="224", help="output tile sizes, comma-separated (e.g. 224,256)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    source = args.source_tile
    tiles = [int(t) for t in args.tile_sizes.split(",")]

    slide = cached_slide(f"reader-{args.width}x{args.height}-t{source}.svs", width=args.width,
                         height=args.height, seed=2024, tile_size=source)  # fmt: skip
    with slide.open("rb") as fh:
        while fh.read(1 << 24):
            pass
    path = str(slide)
    # a block at the slide centre, on source-tile corners
    corner = ((args.width // 2 - args.block // 2) // source * source,
              (args.height // 2 - args.block // 2) // source * source)  # fmt: skip
    results: dict = {"slide": path, "size": [args.width, args.height], "source_tile": source,
                     "tile_sizes": tiles, "block": args.block, "cpu_count": os.cpu_count(),
                     "repeat": args.repeat, "statistic": "median of repeats", "runs": []}  # fmt: skip
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool1, ctx.Pool(2) as pool2:
        pools = {1: pool1, 2: pool2}
        for pool in pools.values():  # imports and first opens are start-up cost
            pool.map(_part, [(name, path, grid(corner, 224, 1, 1), 224, 224, 1) for name in READERS] * 2)
        for tile in tiles:
            for target, size in ((0.25, tile), (0.5, 2 * tile)):
                run_geometry(args, pools, path, corner, source, tile, target, size, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
