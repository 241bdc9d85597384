#!/usr/bin/env python
"""Tiling from and to object storage (a loopback S3 API server) versus local disk, in one run.

A generated Aperio slide (cached under benchmarks/.cache) is uploaded to moto's S3 server,
started on loopback by this script. The same tiling workflow then runs on one LocalCluster:

- local: slide on local disk, output on local disk;
- s3: slide read from ``s3://`` (range reads), stores written to ``s3://``.

For each, tiles/s end to end (``run_workflow``, cluster start excluded) and, for the S3 run,
the object-storage requests and bytes read and written per slide, as the workers counted them
(``metrics.parquet``; what the report's "Object storage" section shows).

The server itself is measured too: the mean time of one 50 kB range GET on the slide object
and on a 1 MB object. moto is a Python process on the same machine, sharing its 2 cores with
the workers, whose range GETs cost more the larger the object; so the S3 figures bound a real
object store (serving from other machines) from below.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _slides import cached_slide

from pathopipe import fileio
from pathopipe.config import load_config
from pathopipe.output.metrics import read_metrics
from pathopipe.parallel import local_client
from pathopipe.parallel.workflow import run_workflow
from pathopipe.testing import s3_server


def timed_run(client, slides: str, out: str, cfg) -> tuple[float, int]:
    t0 = time.perf_counter()
    result = run_workflow([slides], out, cfg, client=client)
    elapsed = time.perf_counter() - t0
    record = result.records[0]
    if record.status != "done":
        raise RuntimeError(f"run failed: {record.error}")
    return elapsed, int(record.n_tiles or 0)


def get_latency(url: str, options: dict, size: int, n: int = 20, length: int = 50_000) -> float:
    """Mean seconds of one sequential ``length``-byte range GET on ``url``."""
    fs, inner = fileio.filesystem(url, options)
    rng = random.Random(0)
    t0 = time.perf_counter()
    for _ in range(n):
        start = rng.randrange(0, max(1, size - length))
        fs.cat_file(inner, start=start, end=start + length)
    return (time.perf_counter() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=20_000)
    parser.add_argument("--height", type=int, default=15_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target-mpp", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (median)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    slide = cached_slide(f"s3-{args.width}x{args.height}.svs", width=args.width, height=args.height,
                         seed=7, downsamples=(4, 16))  # fmt: skip
    overrides = [f"tiling.target_mpp={args.target_mpp}", "tiling.tile_size=224",
                 f"cluster.n_workers={args.workers}", "cluster.dashboard=false"]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="pathopipe-s3bench-"))
    results: dict = {"slide": {"width": args.width, "height": args.height, "bytes": slide.stat().st_size},
                     "workers": args.workers, "target_mpp": args.target_mpp, "runs": []}  # fmt: skip
    try:
        with s3_server() as server:
            server.create_bucket("bench")
            server.upload(slide, f"s3://bench/slides/{slide.name}")
            cfg = load_config(None, overrides)
            cfg = cfg.model_copy(
                update={"storage": cfg.storage.model_copy(update={"options": server.storage_options})}
            )
            with local_client(cfg.cluster) as client:
                client.run(importlib.import_module, "pathopipe.stages.tiling")
                client.run(importlib.import_module, "s3fs")
                times: dict[str, list[float]] = {"local": [], "s3": []}
                tiles = 0
                for i in range(args.repeat):
                    for variant in ("local", "s3"):
                        source, out = (
                            (str(slide), str(work / f"local-{i}"))
                            if variant == "local"
                            else ("s3://bench/slides/", f"s3://bench/run-{i}")
                        )
                        seconds, tiles = timed_run(client, source, out, cfg)
                        times[variant].append(seconds)
                        print(f"{variant:5s} run {i}: {tiles} tiles in {seconds:.2f} s "
                              f"({tiles / seconds:,.0f} tiles/s)", flush=True)  # fmt: skip
            last = f"s3://bench/run-{args.repeat - 1}"
            table = read_metrics(f"{last}/metrics.parquet", server.storage_options)
            store_bytes = fileio.total_bytes(f"{last}/slides", server.storage_options)
            fs, _ = fileio.filesystem("s3://bench/", server.storage_options)
            fs.pipe_file("bench/probe-1MB", bytes(1 << 20))
            latency = {
                "slide_object": get_latency(f"s3://bench/slides/{slide.name}", server.storage_options,
                                            slide.stat().st_size),
                "1MB_object": get_latency("s3://bench/probe-1MB", server.storage_options, 1 << 20),
            }  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)

    local_s, s3_s = statistics.median(times["local"]), statistics.median(times["s3"])
    traffic = {
        "requests": int(table.storage_requests.sum()),
        "bytes_read": int(table.storage_bytes_read.sum()),
        "bytes_written": int(table.storage_bytes_written.sum()),
        "stored_bytes": store_bytes,
    }
    columns = ["storage_requests", "storage_bytes_read", "storage_bytes_written"]
    by_step = table.groupby(["stage", "role"])[columns].sum()
    results["runs"] = {"local_seconds": times["local"], "s3_seconds": times["s3"]}
    results["tiles"] = tiles
    results["tiles_per_second"] = {"local": tiles / local_s, "s3": tiles / s3_s}
    results["ratio_s3_over_local"] = local_s / s3_s
    results["range_get_seconds"] = latency
    results["per_slide"] = traffic
    results["per_task_kind"] = {f"{s}/{r}": row.to_dict() for (s, r), row in by_step.iterrows()}
    print()
    print(f"slide {args.width} x {args.height} px ({results['slide']['bytes'] / 1e6:.0f} MB), {tiles} tiles "
          f"at {args.target_mpp} µm/px, {args.workers} workers, median of {args.repeat}")  # fmt: skip
    print(f"  local disk -> local disk : {tiles / local_s:8,.0f} tiles/s")
    print(f"  s3://      -> s3://      : {tiles / s3_s:8,.0f} tiles/s  ({local_s / s3_s:.2f} of local)")
    print(f"  server: one 50 kB range GET takes {latency['slide_object'] * 1e3:.1f} ms on the slide object, "
          f"{latency['1MB_object'] * 1e3:.1f} ms on a 1 MB object")  # fmt: skip
    print(f"  per slide on S3: {traffic['requests']:,} requests, {traffic['bytes_read'] / 1e6:,.1f} MB read "
          f"({traffic['bytes_read'] / results['slide']['bytes']:.2f} of the slide), "
          f"{traffic['bytes_written'] / 1e6:,.1f} MB written "
          f"(store: {store_bytes / 1e6:,.1f} MB)")  # fmt: skip
    for kind, row in results["per_task_kind"].items():
        print(f"    {kind:16s} {int(row['storage_requests']):6,d} requests  "
              f"{row['storage_bytes_read'] / 1e6:8.1f} MB read  "
              f"{row['storage_bytes_written'] / 1e6:8.1f} MB written")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
