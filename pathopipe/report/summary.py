"""The report's numbers, all from what a run measured: ``OUT/metrics.parquet`` (one row per
task), ``OUT/manifest.csv``, ``OUT/run.json`` and the bytes of the stores on disk.

Definitions (also printed in the report):

- a stage's *busy seconds*: the summed wall time of its tasks (prepare, work, finish);
- *core-seconds*: busy seconds x the cores a task keeps busy (1 for tiling; the torch threads
  for a CPU model); *GPU-seconds*: busy seconds of tasks running on a GPU;
- *tiles per busy second*: tiles / busy seconds, the rate of one task slot (a worker thread,
  or a GPU);
- *per slide* figures divide by the slides that ran the stage in the reported run.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from pathopipe import fileio
from pathopipe.errors import ConfigError
from pathopipe.output.layout import RunLayout
from pathopipe.output.manifest import SlideRecord, read_manifest_records
from pathopipe.output.metrics import read_metrics
from pathopipe.report.costs import CostProfile, cost_model, hardware_for
from pathopipe.store.layout import FEATURES, METADATA

# FLOPs of one 224 px image (forward pass, 2 x multiply-adds), counted with
# torch.utils.flop_counter on timm's architectures (scripts/count_flops.py).
GFLOPS_224 = {
    "ResNet-18": 3.63,
    "ResNet-50": 8.17,
    "ViT-S/16": 9.20,
    "ViT-B/16": 35.13,
    "ViT-L/16": 123.11,
    "ViT-H/14": 334.59,
    "ViT-g/14": 534.06,
}


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def _stage_summary(rows: Any, stage: str) -> dict[str, Any]:
    work = rows[rows["role"] == "work"]
    device = str(work["device"].mode().iloc[0]) if len(work) else "cpu"
    busy = float(rows["seconds"].sum())
    tiles = int(work["tiles"].sum())
    on_gpu = device == "cuda"
    core_seconds = 0.0 if on_gpu else float((rows["seconds"] * rows["threads"]).sum())
    gpu_seconds = busy if on_gpu else 0.0
    span = float(rows["end"].max() - rows["start"].min()) if len(rows) else 0.0
    slides = int(rows.loc[rows["role"] == "finish", "slide_id"].nunique())
    steps = {
        column.removeprefix("step_"): float(rows[column].sum())
        for column in rows.columns
        if column.startswith("step_") and rows[column].notna().any()
    }
    gpu = (
        {"gpu_busy_seconds": float(rows["gpu_busy_seconds"].sum()),
         "gpu_peak_memory_bytes": int(rows["gpu_peak_memory_bytes"].max())}
        if on_gpu else {}
    )  # fmt: skip
    return {
        **gpu,
        "stage": stage,
        "device": device,
        "slides": slides,
        "tasks": len(rows),
        "tiles": tiles,
        "workers": int(rows["worker"].nunique()),
        "busy_seconds": busy,
        "core_seconds": core_seconds,
        "gpu_seconds": gpu_seconds,
        "wall_seconds": span,
        "tiles_per_second": tiles / span if span else None,
        "tiles_per_busy_second": tiles / busy if busy else None,
        "tiles_per_core_second": tiles / core_seconds if core_seconds else None,
        "tiles_per_gpu_second": tiles / gpu_seconds if gpu_seconds else None,
        "core_seconds_per_slide": core_seconds / slides if slides else None,
        "gpu_seconds_per_slide": gpu_seconds / slides if slides else None,
        "bytes_written": int(work["bytes_written"].sum()),
        "steps_seconds": steps,
    }


def _utilisation(rows: Any, workers: dict[str, int], span: float) -> dict[str, float]:
    """Busy share of each worker's threads over the reported run's span."""
    out = {}
    for worker, group in rows.groupby("worker"):
        threads = workers.get(str(worker), 1)
        out[str(worker)] = float(group["seconds"].sum()) / (span * threads) if span else 0.0
    return out


def _storage(
    out: str, records: list[SlideRecord], slides_per_day: float | None, options: fileio.Options
) -> dict[str, Any]:
    complete = [r for r in records if r.status in ("done", "skipped")]
    tile_bytes: list[int] = []
    feature_bytes: dict[str, list[int]] = {}
    source_bytes: list[int] = []
    stored: list[int] = []
    tiles = 0
    for r in complete:
        store = RunLayout(out).slide_store(r.slide_id)
        whole = fileio.total_bytes(store, options)
        if not whole:
            continue
        features_dir = fileio.join(store, FEATURES)
        per_model = {
            name: fileio.total_bytes(fileio.join(features_dir, name), options)
            for name in fileio.list_names(features_dir, options)
            if name != METADATA
        }
        for key, size in per_model.items():
            feature_bytes.setdefault(key, []).append(size)
        stored.append(whole)
        tile_bytes.append(whole - fileio.total_bytes(features_dir, options))
        if r.source_bytes:
            source_bytes.append(r.source_bytes)
        tiles += r.n_tiles or 0
    n = len(tile_bytes)
    total = sum(stored)  # everything under the stores: tiles, coords, images, features
    per_slide = total / n if n else 0.0
    result = {
        "slides": n,
        "tiles": tiles,
        "source_bytes_per_slide": statistics.fmean(source_bytes) if source_bytes else None,
        "tile_store_bytes_total": sum(tile_bytes),
        "tile_store_bytes_per_slide": sum(tile_bytes) / n if n else None,
        "tile_store_bytes_per_tile": sum(tile_bytes) / tiles if tiles else None,
        "feature_bytes_per_slide": {k: sum(v) / n for k, v in feature_bytes.items()},
        "stored_bytes_total": total,
        "stored_bytes_per_slide": per_slide,
    }
    if slides_per_day:
        result["growth_bytes_per_year"] = per_slide * slides_per_day * 365
    return result


def _object_storage(rows: Any) -> dict[str, Any] | None:
    """Requests and bytes exchanged with object storage, per slide (None when there were none)."""
    columns = ("storage_requests", "storage_bytes_read", "storage_bytes_written")
    if not len(rows) or not rows[list(columns)].to_numpy().any():
        return None
    per_slide = rows[rows["slide_id"] != ""].groupby("slide_id")[list(columns)].sum()
    n = len(per_slide)
    return {
        "slides": n,
        "requests_per_slide": float(per_slide["storage_requests"].mean()),
        "bytes_read_per_slide": float(per_slide["storage_bytes_read"].mean()),
        "bytes_written_per_slide": float(per_slide["storage_bytes_written"].mean()),
        "requests_total": int(rows["storage_requests"].sum()),
        "bytes_read_total": int(rows["storage_bytes_read"].sum()),
        "bytes_written_total": int(rows["storage_bytes_written"].sum()),
    }


def _bench(out: str, options: fileio.Options) -> dict[str, Any] | None:
    """``pathopipe bench``'s trials and choice, when ``out`` is a bench run."""
    try:
        record = json.loads(fileio.read_bytes(RunLayout(out).bench, options))
    except FileNotFoundError:
        return None
    generated = {k: v for k, v in record["generated_slides"].items() if k != "folder"}
    keep = {k: record[k] for k in ("best", "trials", "trial_slides")}
    return {**keep, "generated_slides": generated}


def _what_if(features: dict[str, Any] | None, run: dict[str, Any]) -> dict[str, Any] | None:
    if not features or not features.get("tiles_per_busy_second"):
        return None
    models = run.get("config", {}).get("features", {}).get("models") or []
    if len(models) != 1:
        return None  # one pass over several models: their shares of the time are not separable
    from pathopipe.features import model_gflops, resolve_model

    resolved = resolve_model(models[0])
    spec = resolved.model_dump(mode="json")
    measured = model_gflops(resolved)
    if not measured:
        return None
    rate = features["tiles_per_busy_second"]
    return {
        "estimate": True,
        "measured_model": spec["key"],
        "measured_gflops": measured,
        "measured_tiles_per_busy_second": rate,
        "device": features["device"],
        "estimated_tiles_per_busy_second": {name: rate * measured / g for name, g in GFLOPS_224.items()},
        "gflops": GFLOPS_224,
        "formula": "rate(model) = measured rate x GFLOPs(measured model) / GFLOPs(model): assumes the "
        "device is compute-bound at the same efficiency (an estimate, not a measurement)",
    }


def build_summary(
    out: str | Path,
    *,
    costs: CostProfile | None = None,
    slides_per_day: float | None = None,
    options: fileio.Options = None,
) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able dict, from the run's own files (``out`` a
    folder or a URL, reached with ``options``)."""
    out = os.fspath(out)
    layout = RunLayout(out)
    try:
        run = json.loads(fileio.read_bytes(layout.run_json, options))
        table = read_metrics(layout.metrics, options)
    except FileNotFoundError:
        raise ConfigError(
            f"{out} has no {layout.RUN_JSON} or {layout.METRICS}; give the --out folder of a pathopipe run"
        ) from None
    run_id = str(table["run_id"].max())  # the latest run (a resumed run reports its own tasks)
    rows = table[table["run_id"] == run_id]
    records = read_manifest_records(out, options)
    cluster = run.get("cluster", {})
    span = float(rows["end"].max() - rows["start"].min()) if len(rows) else 0.0
    stages = {
        stage: _stage_summary(rows[rows["stage"] == stage], stage) for stage in sorted(set(rows["stage"]))
    }
    threads = {f"{w['host']}:{w.get('pid')}": w["nthreads"] for w in cluster.get("worker_list", [])}
    utilisation = _utilisation(rows, threads, span)
    features = stages.get("features")
    gpu_idle = None
    if features and features["device"] == "cuda" and span:
        gpu_idle = max(0.0, 1 - features["gpu_busy_seconds"] / (span * max(1, cluster.get("gpus") or 1)))
    stored = _storage(out, records, slides_per_day, options)
    per_slide = {
        "core_seconds": sum(s["core_seconds_per_slide"] or 0 for s in stages.values()),
        "gpu_seconds": sum(s["gpu_seconds_per_slide"] or 0 for s in stages.values()),
        "stored_bytes": stored["stored_bytes_per_slide"],
    }
    bottleneck = max(stages.values(), key=lambda s: s["busy_seconds"])["stage"] if stages else None
    done = [r for r in records if r.status == "done"]
    summary: dict[str, Any] = {
        "out": str(out),
        "run_id": run_id,
        "run": {
            "slides": run.get("slides"),
            "status_counts": {s: sum(r.status == s for r in records) for s in ("done", "skipped", "failed")},
            "wall_seconds": span,
            "workers": cluster.get("workers"),
            "threads": cluster.get("threads"),
            "gpus": cluster.get("gpus"),
            "cluster_kind": cluster.get("kind"),
        },
        "stages": stages,
        "bottleneck_stage": bottleneck,
        "utilisation": utilisation,
        "gpu_idle_fraction": gpu_idle,
        "slides": {
            "tiles_per_slide": _stats(
                [float(r.n_tiles or 0) for r in records if r.status in ("done", "skipped")]
            ),
            "seconds_per_slide": _stats([float(r.seconds) for r in done if r.seconds is not None]),
        },
        "storage": stored,
        "object_storage": _object_storage(rows),
        "per_slide": per_slide,
        "what_if": _what_if(features, run),
        "bench": _bench(out, options),
    }
    if slides_per_day:
        fields = CostProfile.model_fields  # sizing assumptions: the profile's, or its defaults
        peak = costs.peak_factor if costs else fields["peak_factor"].default
        utilisation_target = costs.target_utilisation if costs else fields["target_utilisation"].default
        summary["capacity"] = {
            "slides_per_day": slides_per_day,
            "peak_factor": peak,
            "target_utilisation": utilisation_target,
            **hardware_for(
                slides_per_day, per_slide, peak_factor=peak, target_utilisation=utilisation_target
            ),
            "bottleneck_by_gpus": _bottleneck_by_gpus(per_slide, cluster),
        }
        if costs is not None:
            summary["costs"] = cost_model(per_slide, costs, slides_per_day)
    return summary


def _bottleneck_by_gpus(per_slide: dict[str, float], cluster: dict[str, Any]) -> list[dict[str, Any]]:
    """With the run's CPU cores fixed, the slide rate each number of GPUs allows, and the limit."""
    cores = max(1, int(cluster.get("threads") or 1))
    cpu_rate = cores / per_slide["core_seconds"] if per_slide["core_seconds"] else float("inf")
    rows = []
    for gpus in (1, 2, 4, 8):
        gpu_rate = gpus / per_slide["gpu_seconds"] if per_slide["gpu_seconds"] else float("inf")
        rate = min(cpu_rate, gpu_rate)
        per_hour = rate * 3600 if rate != float("inf") else None
        rows.append({"gpus": gpus, "cpu_cores": cores, "slides_per_hour": per_hour,
                     "limited_by": "CPU" if cpu_rate <= gpu_rate else "GPU"})  # fmt: skip
    return rows
