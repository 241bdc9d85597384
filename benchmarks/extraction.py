#!/usr/bin/env python
"""Extraction throughput: pathopipe vs the model alone and the data path vs a bare decode loop.

On the stored JPEG tiles of a generated slide (tiled once, cached in a temporary folder), in
one run:

(a) the model alone: preprocessed tensors already in memory, same batch size, device, threads;
(b) pathopipe ``extract_features`` on a LocalCluster of 1 worker using
    the same torch threads (the model is built in the worker before timing: a once-per-worker
    start-up cost, reported separately);
(c) the data path alone, in one process and one thread: pathopipe's tile reading, decoding,
    preprocessing and batching with the ``noop`` model, in tiles/s per core, next to a bare
    loop decoding the same JPEG tiles from memory with imagecodecs.

(c') the same read + decode + batch, and the bare loop, on ``--threads`` decode threads: what
     feeds a GPU (GPU workers decode each batch on several threads).

(b) runs twice: from the stored tiles, and in streaming mode (the slide tiled with
``store.codec=none``, tiles read straight from the slide by the extraction tasks).

Ratios (b)/(a) are the median of the per-repeat ratios (each repeat measures (a) and (b)
back to back, so drifting machine load cancels). On a CPU the model holds every core, so the
data path's own CPU time comes out of the model's: the *CPU-budget bound* of a mode is
``model core-s per tile / (model core-s per tile + data-path core-s per tile)``, the best
(b)/(a) any pipeline reaches on this machine, from (c) and the streaming read rate per core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import imagecodecs
import numpy as np
import torch
import zarr
from _slides import cached_slide

from pathopipe.config import ClusterConfig, load_config
from pathopipe.features import ExtractionSettings, create_extractor, resolve_model
from pathopipe.parallel import local_client, tile_slides
from pathopipe.parallel.extraction import extract_features
from pathopipe.stages._batches import batch_buffers, get_extractor
from pathopipe.store.shards import read_tiles


def model_alone(name: str, tiles: np.ndarray, batch: int, threads: int, device: str, precision: str) -> float:
    torch.set_num_threads(threads)
    extractor = create_extractor(name, device=device, precision=precision)
    batches = [extractor.preprocess(tiles[i : i + batch]) for i in range(0, len(tiles), batch)]
    with torch.inference_mode():
        extractor.forward(batches[0])  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for x in batches:
            result = extractor.forward(x)
        result.float().cpu()  # waits for the device
        return len(tiles) / (time.perf_counter() - t0)


def wait_for_quiet(timeout: float = 60.0) -> None:
    """Wait until the worker processes of clusters closed earlier have exited (they linger for
    seconds and would take CPU from the next measurement)."""
    import psutil

    def workers() -> list:
        found = []
        for child in psutil.Process().children(recursive=True):
            try:
                if "spawn_main" in " ".join(child.cmdline()):  # not multiprocessing's resource tracker
                    found.append(child)
            except psutil.Error:
                pass
        return found

    deadline = time.monotonic() + timeout
    while workers() and time.monotonic() < deadline:
        time.sleep(0.2)


def build_model(settings: ExtractionSettings) -> None:
    get_extractor(settings)  # cached in the worker process; nothing sent back


def pipeline(
    out: Path, name: str, batch: int, threads: int, device: str, precision: str, decode_threads: int = 0
) -> tuple[float, float]:
    settings = ExtractionSettings(
        model=resolve_model(name),
        weights="random",
        device=device,
        precision=precision,  # type: ignore[arg-type]
        batch_size=batch,
        torch_threads=threads,
        gpu_resource=False,  # one local worker that sees the device
        decode_threads=decode_threads,  # 0: pathopipe's default (1 on CPU, cores - 1 on CUDA)
    )
    with local_client(ClusterConfig(n_workers=1, threads_per_worker=1, dashboard=False)) as client:
        t0 = time.perf_counter()
        client.run(build_model, settings)  # build the model in the worker: start-up cost
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = extract_features(out, settings, client=client, force=True)
        elapsed = time.perf_counter() - t0
    n = sum(r.n_tiles or 0 for r in result.records)
    if any(r.status != "done" for r in result.records):
        raise RuntimeError([r.error for r in result.records])
    return n / elapsed, build


def data_path(tiles_array: zarr.Array, batch: int) -> tuple[float, float]:
    """Tiles/s in one thread: (read + decode + batch + preprocess + noop model, read + decode + batch).

    The same calls as ``extract_rows`` (its reused batch buffers included). The second figure is
    the CPU side of a GPU node, where preprocessing runs on the GPU.
    """
    torch.set_num_threads(1)
    extractor = create_extractor("noop", device="cpu")
    n = tiles_array.shape[0]
    buffers = batch_buffers((batch, *tiles_array.shape[1:]))
    t0 = time.perf_counter()
    for i, a in enumerate(range(0, n, batch)):
        b = min(n, a + batch)
        extractor(read_tiles(tiles_array, a, b, out=buffers[i % 2][: b - a]))
    full = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i, a in enumerate(range(0, n, batch)):
        b = min(n, a + batch)
        read_tiles(tiles_array, a, b, out=buffers[i % 2][: b - a])
    return full, n / (time.perf_counter() - t0)


def data_path_threads(tiles_array: zarr.Array, batch: int, threads: int) -> float:
    """Tiles/s of read + decode + batch with each batch decoded on ``threads`` threads."""
    n = tiles_array.shape[0]
    buffers = batch_buffers((batch, *tiles_array.shape[1:]))
    t0 = time.perf_counter()
    for i, a in enumerate(range(0, n, batch)):
        b = min(n, a + batch)
        read_tiles(tiles_array, a, b, out=buffers[i % 2][: b - a], threads=threads)
    return n / (time.perf_counter() - t0)


def bare_decode_threads(encoded: list[bytes], threads: int) -> float:
    """The bare decode loop split into ``threads`` contiguous parts decoded at once."""
    from concurrent.futures import ThreadPoolExecutor

    step = -(-len(encoded) // threads)
    parts = [encoded[i : i + step] for i in range(0, len(encoded), step)]
    with ThreadPoolExecutor(threads) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda part: [imagecodecs.jpeg8_decode(data) for data in part], parts))
        return len(encoded) / (time.perf_counter() - t0)


def streaming_path(streaming_out: Path, batch: int) -> float:
    """Tiles/s in one thread reading tiles from the slide as streaming extraction does (one
    decode thread, the store's geometry) and preprocessing them for the noop model."""
    from pathopipe._process import reset as reset_process_state
    from pathopipe.parallel.extraction import jobs_from_out
    from pathopipe.stages.extraction import prepare_features

    torch.set_num_threads(1)
    job = jobs_from_out(streaming_out)[0]
    noop = ExtractionSettings(model=resolve_model("noop"), device="cpu")
    plan = prepare_features(job, (noop,), force=True)
    source = plan.source.single_threaded()  # type: ignore[union-attr]
    coords = zarr.open_array(Path(job.store) / "coords", mode="r")[:]
    extractor = create_extractor("noop", device="cpu")
    buffer = np.empty((batch, source.spec.tile_size, source.spec.tile_size, 3), np.uint8)
    reset_process_state()  # cold, as a task on a new slide
    t0 = time.perf_counter()
    for a in range(0, len(coords), batch):
        part = coords[a : a + batch]
        extractor(source.read(part, out=buffer[: len(part)]))
    return len(coords) / (time.perf_counter() - t0)


def budget_bound(model_alone_rate: float, threads: int, data_rate_per_core: float) -> float:
    """Best (b)/(a) when the data path's CPU time comes out of the model's cores."""
    model_core_s = threads / model_alone_rate
    return model_core_s / (model_core_s + 1 / data_rate_per_core)


def bare_decode(encoded: list[bytes]) -> float:
    t0 = time.perf_counter()
    for data in encoded:
        imagecodecs.jpeg8_decode(data)
    return len(encoded) / (time.perf_counter() - t0)


def jpeg_chunks(store: Path, tiles_array: zarr.Array) -> list[bytes]:
    """The encoded tiles, taken out of the shard files (for the bare decode loop)."""
    per_shard, n = tiles_array.shards[0], tiles_array.shape[0]
    chunks = []
    for shard in range(-(-n // per_shard)):
        data = (store / "tiles" / "c" / str(shard) / "0" / "0" / "0").read_bytes()
        index = np.frombuffer(data[-(per_shard * 16 + 4) : -4], dtype="<u8").reshape(per_shard, 2)
        for offset, length in index[: min(per_shard, n - shard * per_shard)]:
            chunks.append(data[int(offset) : int(offset + length)])
    return chunks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="timm/resnet18,timm/resnet50")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--width", type=int, default=40_000)
    parser.add_argument("--height", type=int, default=30_000)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--target-mpp", type=float, default=0.5, help="tiling resolution (more tiles: 0.25)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved repeats per model (median)")
    parser.add_argument("--decode-threads", type=int, default=0, help="features.decode_threads (0: auto)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only-data-path", action="store_true", help="skip the models, measure (c) only")
    args = parser.parse_args()

    slide = cached_slide(
        f"bench-{args.width}x{args.height}.svs", width=args.width, height=args.height, seed=2024
    )
    out = Path(tempfile.mkdtemp(prefix="pathopipe-extract-bench-"))
    results: dict = {
        "slide": str(slide),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "models": {},
    }
    try:
        cfg = load_config(None, [f"tiling.target_mpp={args.target_mpp}", "cluster.dashboard=false"])
        tile_slides([slide], out, cfg)
        streaming_out = out / "streaming"  # same tiles, no pixels stored: extract reads the slide
        tile_slides(
            [slide],
            streaming_out,
            cfg.model_copy(update={"store": cfg.store.model_copy(update={"codec": "none"})}),
        )
        store = out / "slides" / f"{slide.stem}.zarr"
        tiles_array = zarr.open_array(store / "tiles", mode="r")
        tiles = tiles_array[:]
        print(
            f"{len(tiles)} stored JPEG tiles of 224 px; batch {args.batch_size}, {args.threads} torch threads"
        )
        # (c) first: measured in a quiet process, before any cluster starts or shuts down
        # (worker processes of a closing cluster left running for seconds skewed it to 0.62)
        chunks = jpeg_chunks(store, tiles_array)
        wait_for_quiet()
        rates = []
        for _ in range(3):  # interleaved: (c) and the bare loop see the same machine load
            rates.append((*data_path(tiles_array, args.batch_size), bare_decode(chunks),
                          streaming_path(streaming_out, args.batch_size)))  # fmt: skip
        path_rate, cpu_side, bare, stream_rate = (
            float(np.median(column)) for column in zip(*rates, strict=True)
        )
        threaded_runs = [(data_path_threads(tiles_array, args.batch_size, args.threads),
                          bare_decode_threads(chunks, args.threads)) for _ in range(3)]  # fmt: skip
        threaded, bare_threaded = (float(np.median(column)) for column in zip(*threaded_runs, strict=True))
        for name in [] if args.only_data_path else args.models.split(","):
            runs: dict[str, list[float]] = {"alone": [], "stored": [], "streaming": [], "build": []}
            for _ in range(args.repeat):  # interleaved, so drifting machine load hits every variant
                wait_for_quiet()
                runs["alone"].append(
                    model_alone(name, tiles, args.batch_size, args.threads, args.device, args.precision)
                )
                piped, build = pipeline(
                    out, name, args.batch_size, args.threads, args.device, args.precision, args.decode_threads
                )
                runs["stored"].append(piped)
                runs["build"].append(build)
                wait_for_quiet()
                runs["streaming"].append(
                    pipeline(
                        streaming_out,
                        name,
                        args.batch_size,
                        args.threads,
                        args.device,
                        args.precision,
                        args.decode_threads,
                    )[0]
                )
            alone, piped, streamed, build = (
                float(np.median(runs[k])) for k in ("alone", "stored", "streaming", "build")
            )
            paired = {mode: float(np.median([b / a for a, b in zip(runs["alone"], runs[mode], strict=True)]))
                      for mode in ("stored", "streaming")}  # fmt: skip
            bounds = {"stored": budget_bound(alone, args.threads, path_rate),
                      "streaming": budget_bound(alone, args.threads, stream_rate)}  # fmt: skip
            results["models"][name] = {"model_alone": alone, "pathopipe": piped, "ratio": paired["stored"],
                                       "pathopipe_streaming": streamed,
                                       "ratio_streaming": paired["streaming"],
                                       "cpu_budget_bound": bounds["stored"],
                                       "cpu_budget_bound_streaming": bounds["streaming"],
                                       "worker_model_build_s": build, "runs": runs}  # fmt: skip
            print(f"  {name:24s} (a) model alone {alone:7.1f} tiles/s   (b) pathopipe {piped:7.1f} tiles/s"
                  f" (stored tiles), {streamed:7.1f} (streaming)   (b)/(a) {paired['stored']:.2f}, "
                  f"{paired['streaming']:.2f} (CPU-budget bounds {bounds['stored']:.2f}, "
                  f"{bounds['streaming']:.2f})   (worker model build {build:.1f} s)")  # fmt: skip
        results["data_path"] = {
            "pathopipe_per_core": path_rate,
            "read_decode_batch_per_core": cpu_side,
            "bare_decode_per_core": bare,
            "ratio": path_rate / bare,
            "ratio_cpu_side": cpu_side / bare,
            "streaming_read_preprocess_per_core": stream_rate,
            "runs": rates,
            "threads": args.threads,
            "read_decode_batch_threaded": threaded,
            "bare_decode_threaded": bare_threaded,
            "ratio_threaded": threaded / bare_threaded,
            "runs_threaded": threaded_runs,
        }
        print(f"  (c) data path, noop model, 1 thread, median of 3: {path_rate:7.1f} tiles/s (read, decode, "
              f"batch, "
              f"preprocess on the CPU); {cpu_side:7.1f} tiles/s (read, decode, batch: the CPU side on a "
              f"GPU node); bare JPEG decode {bare:7.1f} tiles/s; ratios {path_rate / bare:.2f} and "
              f"{cpu_side / bare:.2f}; streaming (read from the slide + preprocess) {stream_rate:7.1f} "
              f"tiles/s")  # fmt: skip
        print(f"  (c') on {args.threads} decode threads, median of 3: read, decode, batch {threaded:7.1f} "
              f"tiles/s "
              f"({threaded / args.threads:.1f} per thread); bare JPEG decode {bare_threaded:7.1f} tiles/s; "
              f"ratio {threaded / bare_threaded:.2f}")  # fmt: skip
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
