"""What a run measured, from its own files: ``OUT/metrics.parquet`` (one row per task),
``OUT/manifest.csv``, ``OUT/run.json`` and the bytes and attributes of the stores on disk.

Definitions (also printed in the report):

- a stage's *busy seconds*: the summed wall time of its tasks (prepare, work, finish);
- *start-up seconds*: the part of them spent building models, once per worker process;
- *core-seconds*: CPU time the tasks kept busy (:func:`~pathopipe.output.metrics.task_core_seconds`);
  *GPU-seconds*: busy seconds of tasks holding a GPU;
- rates and per-slide figures are *steady state*: start-up seconds left out;
- *per slide* figures divide by the slides that finished the stage in the reported run.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from pathopipe import fileio
from pathopipe.errors import ConfigError
from pathopipe.output.layout import RunLayout
from pathopipe.output.manifest import SlideRecord, read_manifest_records
from pathopipe.output.metrics import model_build_seconds, read_metrics, task_core_seconds, task_gpu_seconds
from pathopipe.report.sizing import measured_basis
from pathopipe.store.layout import FEATURES, METADATA, feature_group, read_attrs

__all__ = [
    "STAGE_DEFINITIONS",
    "bench_record",
    "failures",
    "object_storage",
    "run_facts",
    "stage_summary",
    "stats",
    "storage",
    "utilisation",
    "workflow_facts",
]


STAGE_DEFINITIONS = (
    "Busy time: the summed wall time of a stage's tasks (prepare, work, finish), start-up included. "
    "Start-up: model builds, once per worker process. CPU core-seconds: busy time × the cores a task keeps "
    "busy (1 for tiling, the torch threads of a CPU model; beside a GPU, its time outside the model calls), "
    "plus tile decoding in helper threads. GPU-seconds: busy time of tasks holding a GPU. Rates and "
    "per-slide figures leave start-up out (steady state); per slide divides by the slides that finished "
    "the stage."
)


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def stage_summary(rows: Any, stage: str) -> dict[str, Any]:
    """One stage's figures from its rows of the metrics table."""
    work = rows[rows["role"] == "work"]
    device = str(work["device"].mode().iloc[0]) if len(work) else "cpu"
    on_gpu = device == "cuda"
    busy = float(rows["seconds"].sum())
    startup = float(model_build_seconds(rows).sum())
    tiles = int(work["tiles"].sum())
    core_seconds = float(task_core_seconds(rows, on_gpu).sum())
    gpu_seconds = float(task_gpu_seconds(rows, on_gpu).sum())
    steady_core = max(0.0, core_seconds - startup)
    steady_gpu = max(0.0, gpu_seconds - startup) if on_gpu else 0.0
    steady = max(0.0, busy - startup)
    span = float(rows["end"].max() - rows["start"].min()) if len(rows) else 0.0
    slides = int(rows.loc[rows["role"] == "finish", "slide_id"].nunique())
    steps = {
        column.removeprefix("step_"): float(rows[column].sum())
        for column in rows.columns
        if column.startswith("step_") and rows[column].notna().any()
    }
    extra: dict[str, Any] = {}
    if on_gpu:
        extra = {
            "gpu_busy_seconds": float(rows["gpu_busy_seconds"].sum()),
            "gpu_peak_memory_bytes": int(rows["gpu_peak_memory_bytes"].max()),
        }
    if "model" in steps:
        model_seconds = float((work["step_model"].fillna(0.0) * work["threads"]).sum())
        extra["model_core_seconds_per_tile"] = 0.0 if on_gpu else _ratio(model_seconds, tiles) or 0.0
        extra["wait_share"] = _ratio(steps.get("wait_tiles", 0.0), float(work["seconds"].sum())) or 0.0
    return {
        "stage": stage,
        "device": device,
        "slides": slides,
        "tasks": len(rows),
        "work_tasks": len(work),
        "tiles": tiles,
        "workers": int(rows["worker"].nunique()),
        "busy_seconds": busy,
        "startup_seconds": startup,
        "core_seconds": core_seconds,
        "background_core_seconds": float(rows["background_core_seconds"].fillna(0.0).sum()),
        "gpu_seconds": gpu_seconds,
        "wall_seconds": span,
        "tiles_per_second": _ratio(tiles, span),
        "tiles_per_busy_second": _ratio(tiles, steady),
        "tiles_per_core_second": _ratio(tiles, steady_core),
        "tiles_per_gpu_second": _ratio(tiles, steady_gpu),
        "core_seconds_per_slide": _ratio(steady_core, slides),
        "gpu_seconds_per_slide": _ratio(steady_gpu, slides),
        "bytes_written": int(work["bytes_written"].sum()),
        "steps_seconds": steps,
        **extra,
    }


def utilisation(rows: Any, threads: dict[str, int], span: float) -> dict[str, float]:
    """Busy share of each worker's threads over the reported run's span."""
    out = {}
    for worker, group in rows.groupby("worker"):
        slots = threads.get(str(worker), 1)
        out[str(worker)] = float(group["seconds"].sum()) / (span * slots) if span else 0.0
    return out


def storage(out: str, records: list[SlideRecord], options: fileio.Options) -> dict[str, Any]:
    """Bytes on disk of the complete stores: all of it, tiles (all but features) and per model."""
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
        for name in fileio.list_names(features_dir, options):
            if name != METADATA:
                feature_bytes.setdefault(name, []).append(
                    fileio.total_bytes(fileio.join(features_dir, name), options)
                )
        stored.append(whole)
        tile_bytes.append(whole - fileio.total_bytes(features_dir, options))
        if r.source_bytes:
            source_bytes.append(r.source_bytes)
        tiles += r.n_tiles or 0
    n = len(tile_bytes)
    total = sum(stored)  # everything under the stores: tiles, coords, images, features
    return {
        "slides": n,
        "tiles": tiles,
        "source_bytes_per_slide": statistics.fmean(source_bytes) if source_bytes else None,
        "tile_store_bytes_total": sum(tile_bytes),
        "tile_store_bytes_per_slide": sum(tile_bytes) / n if n else None,
        "tile_store_bytes_per_tile": sum(tile_bytes) / tiles if tiles else None,
        "feature_bytes_per_slide": {k: sum(v) / n for k, v in feature_bytes.items()},
        "stored_bytes_total": total,
        "stored_bytes_per_slide": total / n if n else 0.0,
    }


def object_storage(rows: Any) -> dict[str, Any] | None:
    """Requests and bytes exchanged with object storage, per slide (None when there were none)."""
    columns = ["storage_requests", "storage_bytes_read", "storage_bytes_written"]
    if not len(rows) or not rows[columns].to_numpy().any():
        return None
    per_slide = rows[rows["slide_id"] != ""].groupby("slide_id")[columns].sum()
    return {
        "slides": len(per_slide),
        "requests_per_slide": float(per_slide["storage_requests"].mean()),
        "bytes_read_per_slide": float(per_slide["storage_bytes_read"].mean()),
        "bytes_written_per_slide": float(per_slide["storage_bytes_written"].mean()),
        "requests_total": int(rows["storage_requests"].sum()),
        "bytes_read_total": int(rows["storage_bytes_read"].sum()),
        "bytes_written_total": int(rows["storage_bytes_written"].sum()),
    }


def bench_record(out: str, options: fileio.Options) -> dict[str, Any] | None:
    """``pathopipe bench``'s trials and choice, when ``out`` is a bench run."""
    try:
        record = json.loads(fileio.read_bytes(RunLayout(out).bench, options))
    except FileNotFoundError:
        return None
    generated = {k: v for k, v in record["generated_slides"].items() if k != "folder"}
    keep = {k: record[k] for k in ("best", "trials", "trial_slides")}
    return {**keep, "generated_slides": generated}


def failures(records: list[SlideRecord]) -> list[dict[str, str]]:
    """Every failed slide: its id, the stage it failed in and the first line of its error."""
    return [
        {"slide_id": r.slide_id, "stage": r.stage, "error": (r.error.strip().splitlines() or [""])[0]}
        for r in records
        if r.status == "failed"
    ]


def workflow_facts(
    out: str, run: dict[str, Any], records: list[SlideRecord], options: fileio.Options
) -> dict[str, Any]:
    """What the run computed: its stages, tile geometry and models, each model with the weights
    its features were computed with (read from a complete store, else the configuration)."""
    config = run.get("config", {})
    tiling = config.get("tiling", {})
    features = config.get("features", {})
    models: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.status not in ("done", "skipped"):
            continue
        store = RunLayout(out).slide_store(r.slide_id)
        names = [n for n in fileio.list_names(fileio.join(store, FEATURES), options) if n != METADATA]
        for key in names:
            attrs = read_attrs(feature_group(store, key), options)
            weights = attrs.get("weights") or {}
            models[key] = {
                "key": key,
                "weights": str(weights.get("kind", "unknown")),
                "spec": attrs.get("model"),
            }
        if names:
            break
    if not models:  # no store with features: what the configuration asked for
        for name in features.get("models") or []:
            models[name] = {"key": name, "weights": str(features.get("weights", "unknown")), "spec": None}
    return {
        "stages": list(run.get("stages") or []),
        "tile_size": tiling.get("tile_size"),
        "stride": tiling.get("stride") or tiling.get("tile_size"),
        "target_mpp": tiling.get("target_mpp"),
        "codec": config.get("store", {}).get("codec"),
        "models": list(models.values()),
    }


def run_facts(out: str, options: fileio.Options = None) -> dict[str, Any]:
    """A run's measured figures (no sizing): the part of the summary every compared run has."""
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
    ran = set(rows["stage"])
    order = [s for s in run.get("stages") or [] if s in ran] + sorted(ran - set(run.get("stages") or []))
    stages = {stage: stage_summary(rows[rows["stage"] == stage], stage) for stage in order}
    threads = {f"{w['host']}:{w.get('pid')}": w["nthreads"] for w in cluster.get("worker_list", [])}
    features = stages.get("features")
    gpu_idle = None
    if features and features["device"] == "cuda" and span:
        gpu_idle = max(0.0, 1 - features["gpu_busy_seconds"] / (span * max(1, cluster.get("gpus") or 1)))
    stored = storage(out, records, options)
    done = [r for r in records if r.status == "done"]
    hosts = cluster.get("hosts") or {}
    return {
        "out": str(out),
        "run_id": run_id,
        "run": {
            "slides": run.get("slides"),
            "status_counts": {s: sum(r.status == s for r in records) for s in ("done", "skipped", "failed")},
            "wall_seconds": span,
            "startup_seconds": run.get("startup_seconds"),  # the command's, before its first task
            "shutdown_seconds": run.get("shutdown_seconds"),  # after its last task
            "workers": cluster.get("workers"),
            "threads": cluster.get("threads"),
            "gpus": cluster.get("gpus"),
            "cluster_kind": cluster.get("kind"),
            "cpu_models": sorted({str(h.get("cpu_model")) for h in hosts.values()})
            or [str(run.get("host", {}).get("cpu_model"))],
            "gpu_models": sorted({str(g) for h in hosts.values() for g in h.get("gpus") or []}),
        },
        "workflow": workflow_facts(out, run, records, options),
        "stages": stages,
        "bottleneck_stage": max(stages.values(), key=lambda s: s["busy_seconds"])["stage"]
        if stages
        else None,
        "utilisation": utilisation(rows, threads, span),
        "gpu_idle_fraction": gpu_idle,
        "slides": {
            "tiles_per_slide": stats(
                [float(r.n_tiles or 0) for r in records if r.status in ("done", "skipped")]
            ),
            "seconds_per_slide": stats([float(r.seconds) for r in done if r.seconds is not None]),
        },
        "storage": stored,
        "object_storage": object_storage(rows),
        "per_slide": measured_basis(stages, stored),
        "failures": failures(records),
        "bench": bench_record(out, options),
    }
