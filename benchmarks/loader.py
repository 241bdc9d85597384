#!/usr/bin/env python
"""Iterating every bag of a 200-slide run: per-slide stores versus the packed cohort store.

Writes (once, cached under benchmarks/.cache) a run of ``--slides`` slide stores in pathopipe's
layout (coords, tissue fractions, features/<model> with the chunking extraction uses and its
``complete`` flags, a manifest), with random features and a log-normal number of tiles per
slide; no slide is decoded, as only the loader is measured. Then, in one run:

- ``pack``: ``pathopipe.pack_run`` (seconds, once);
- ``stores``: ``FeatureBagDataset(run, model)`` reading the per-slide stores, every bag once;
- ``packed``: the same over ``cohort.zarr``;
- both again through ``DataLoader(num_workers=2)``.

Each figure is the median of ``--repeat`` passes. The files were just written or read, so
the page cache is warm; the gap grows on network file systems and object storage, where each
of the per-slide stores' many small files costs a round trip.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import zarr
from torch.utils.data import DataLoader

from pathopipe.config import StoreConfig
from pathopipe.loader import open_run, pack_run
from pathopipe.loader.torch import FeatureBagDataset
from pathopipe.output.layout import RunLayout
from pathopipe.output.manifest import SlideRecord, write_manifest
from pathopipe.store.layout import COORDS, SCHEMA_VERSION, TISSUE_FRACTION

CACHE = Path(__file__).resolve().parent / ".cache"
MODEL = "bench_vit"


def write_run(out: Path, slides: int, dim: int, mean_tiles: int, seed: int) -> int:
    """Slide stores in pathopipe's layout with random features; returns the total rows."""
    rng = np.random.default_rng(seed)
    counts = np.clip(rng.lognormal(np.log(mean_tiles), 0.6, slides).astype(int), 50, 40 * mean_tiles)
    records = []
    for i, n in enumerate(counts):
        slide_id = f"slide-{i:04d}"
        group = zarr.open_group(out / "slides" / f"{slide_id}.zarr", mode="w", zarr_format=3)
        rows = StoreConfig().shard_size(int(n))
        xy = np.stack(np.divmod(np.arange(n) * 448, 40_000), axis=1)[:, ::-1].astype(np.int64)
        group.create_array(COORDS, shape=(n, 2), dtype="int64", chunks=(rows, 2))[...] = xy
        group.create_array(TISSUE_FRACTION, shape=(n,), dtype="float32", chunks=(rows,))[...] = 1.0
        features = group.require_group("features").create_group(MODEL)
        array = features.create_array("features", shape=(n, dim), dtype="float16", chunks=(rows, dim))
        array[...] = rng.standard_normal((n, dim), dtype=np.float32).astype(np.float16)
        features.update_attributes({"complete": True, "config_hash": "bench", "embedding_dim": dim,
                                    "feature_dtype": "float16", "n_tiles": int(n)})  # fmt: skip
        group.update_attributes({"schema_version": SCHEMA_VERSION, "complete": True, "slide_id": slide_id,
                                 "mpp": 0.25, "tile_size": 224, "tile_size_level0": 448,
                                 "n_tiles": int(n), "source_path": f"/archive/{slide_id}.svs"})  # fmt: skip
        records.append(SlideRecord(slide_id, f"/archive/{slide_id}.svs", "done", n_tiles=int(n)))
    write_manifest(out, records)
    return int(counts.sum())


def iterate(dataset: FeatureBagDataset, workers: int) -> tuple[float, int]:
    """Seconds to read every bag once, and the rows read."""
    rows = 0
    t0 = time.perf_counter()
    if workers:
        for bag in DataLoader(dataset, batch_size=None, num_workers=workers):
            rows += len(bag["features"])
    else:
        for i in range(len(dataset)):
            rows += len(dataset[i]["features"])
    return time.perf_counter() - t0, rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slides", type=int, default=200)
    parser.add_argument("--dim", type=int, default=768, help="feature dimension (768: ViT-B/16)")
    parser.add_argument("--mean-tiles", type=int, default=2000, help="median tiles per slide")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    out = CACHE / f"loader-{args.slides}x{args.mean_tiles}x{args.dim}"
    if not (out / "manifest.csv").exists():
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        rows = write_run(out, args.slides, args.dim, args.mean_tiles, seed=7)
        print(
            f"wrote {args.slides} slide stores, {rows:,} rows x {args.dim} "
            f"in {time.perf_counter() - t0:.0f} s"
        )
    shutil.rmtree(out / RunLayout.COHORT, ignore_errors=True)
    t0 = time.perf_counter()
    pack_run(out)
    pack_s = time.perf_counter() - t0
    run_stores, run_packed = open_run(out, use_cohort="never"), open_run(out)
    stores = FeatureBagDataset(run_stores, MODEL)
    packed = FeatureBagDataset(run_packed, MODEL)
    assert stores.cohort.source == "stores" and packed.cohort.source == "packed"
    seconds: dict[str, list[float]] = {}
    rows = 0
    for _ in range(args.repeat):
        for name, dataset in (("stores", stores), ("packed", packed)):
            for workers in (0, 2):
                elapsed, rows = iterate(dataset, workers)
                seconds.setdefault(f"{name}_{workers}w", []).append(elapsed)
    median = {k: float(np.median(v)) for k, v in seconds.items()}
    nbytes = rows * args.dim * 2
    print(f"\n{args.slides} bags, {rows:,} rows x {args.dim} float16 ({nbytes / 1e9:.2f} GB); "
          f"pack took {pack_s:.1f} s; median of {args.repeat}")  # fmt: skip
    for name, value in median.items():
        print(
            f"  {name:10s} {value:7.2f} s  {args.slides / value:8.1f} bags/s  "
            f"{nbytes / value / 1e9:6.2f} GB/s"
        )
    ratios = {"stores_0w / packed_0w": median["stores_0w"] / median["packed_0w"],
              "stores_2w / packed_2w": median["stores_2w"] / median["packed_2w"]}  # fmt: skip
    for name, value in ratios.items():
        print(f"  {name:24s} {value:.2f}")
    if args.json:
        results = {"slides": args.slides, "rows": rows, "dim": args.dim, "pack_seconds": pack_s,
                   "seconds": seconds, "median": median, "ratios": ratios}  # fmt: skip
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
