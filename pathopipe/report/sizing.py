"""Sizing a load from per-slide figures: the hardware that processes N slides a day, and the
assumptions it rests on (peak factor, target utilisation, retention, GPU speed).

A *per-slide basis* is a dict ``{"core_seconds", "gpu_seconds", "stored_bytes", "tiles"}``: the
CPU core-seconds, GPU-seconds, stored bytes and tiles of one average slide. It comes from the
run's measurements (:func:`measured_basis`), from a fit of the run's tasks applied to other tile
counts (:func:`fitted_basis`: a cohort's ``pathopipe plan --json``, another run's slides), or
from moving the model of a CPU run onto GPUs at an assumed speed (:func:`gpu_estimate`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SECONDS_PER_DAY",
    "SizingAssumptions",
    "bottleneck",
    "capacity_of",
    "clinical_tiles",
    "fitted_basis",
    "gpu_estimate",
    "hardware_for",
    "measured_basis",
    "stage_cores",
]

SECONDS_PER_DAY = 86_400

FORMULAS = {
    "hardware": "cores = slides per day × peak factor ÷ 86,400 × core-seconds per slide ÷ target "
    "utilisation; GPUs the same with GPU-seconds per slide; both rounded up",
    "capacity": "slides per day = min(cores ÷ core-seconds per slide, GPUs ÷ GPU-seconds per slide) × "
    "86,400 × target utilisation ÷ peak factor",
    "storage": "per year = stored bytes per slide × slides per day × 365; retained = per year × "
    "retention years (each year's slides kept for the retention period)",
    "gpu_estimate": "GPU-seconds per slide = tiles per slide × GFLOPs per tile ÷ (assumed TFLOP/s × "
    "1,000); the model's CPU core-seconds leave the CPU, the rest of the features stage (reading, "
    "decoding, writing) stays there. An estimate, not a measurement",
}


class SizingAssumptions(BaseModel):
    """What sizing assumes beyond the measurements (``pathopipe report`` options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    peak_factor: float = Field(2.0, ge=1, description="peak-hour rate over the day's average rate")
    target_utilisation: float = Field(
        0.7, gt=0, le=1, description="busy share of hardware sized for the peak"
    )
    retention_years: float = Field(10.0, gt=0, description="years the stored outputs are kept")
    gpu_tflops: float = Field(
        200.0, gt=0, description="effective TFLOP/s of one GPU on the model, for GPU estimates of CPU runs"
    )
    clinical_tissue_cm2: float = Field(
        1.5, gt=0, description="tissue area of a typical clinical slide, for the small-slide check"
    )
    cores_per_gpu: float = Field(
        16.0, gt=0, description="CPU cores a GPU server has per GPU, to tell which resource limits a load"
    )


def measured_basis(stages: dict[str, Any], storage: dict[str, Any]) -> dict[str, float]:
    """Per slide, as this run measured it: each stage's steady-state core- and GPU-seconds per
    slide (model builds, a once-per-worker start-up, left out), stored bytes and tiles."""
    return {
        "core_seconds": sum(s["core_seconds_per_slide"] or 0.0 for s in stages.values()),
        "gpu_seconds": sum(s["gpu_seconds_per_slide"] or 0.0 for s in stages.values()),
        "stored_bytes": float(storage["stored_bytes_per_slide"] or 0.0),
        "tiles": float(storage["tiles"]) / storage["slides"] if storage["slides"] else 0.0,
    }


def fitted_basis(out: str | Path, tiles: list[int]) -> dict[str, float]:
    """Per average slide of ``tiles`` (tile counts), from the per-task lines fitted on the run in
    ``out`` (:func:`~pathopipe.report.forecast.calibrate`; model builds left out)."""
    from pathopipe.report.forecast import calibrate, slot_seconds

    calibration = calibrate(out)
    per_stage = slot_seconds(tiles, calibration, slots=calibration.slots, shard_size=calibration.shard_size)
    core, gpu = calibration.resources(per_stage)
    n = max(1, len(tiles))
    return {
        "core_seconds": core / n,
        "gpu_seconds": gpu / n,
        "stored_bytes": sum(calibration.bytes(t) for t in tiles) / n,
        "tiles": sum(tiles) / n,
    }


def gpu_estimate(
    basis: dict[str, float], features: dict[str, Any], gflops: float, assumptions: SizingAssumptions
) -> dict[str, float]:
    """``basis`` with the model of a features stage that ran on CPU moved onto GPUs running at
    ``assumptions.gpu_tflops`` effective on ``gflops`` per tile (an estimate)."""
    per_tile_gpu = gflops / (assumptions.gpu_tflops * 1000)
    model_cores = features["model_core_seconds_per_tile"] * basis["tiles"]
    return {
        **basis,
        "core_seconds": max(0.0, basis["core_seconds"] - model_cores),
        "gpu_seconds": basis["gpu_seconds"] + basis["tiles"] * per_tile_gpu,
    }


def hardware_for(
    slides_per_day: float, basis: dict[str, float], assumptions: SizingAssumptions
) -> dict[str, Any]:
    """CPU cores and GPUs that process ``slides_per_day`` at the peak rate, busy at the target
    utilisation."""
    peak = slides_per_day * assumptions.peak_factor / SECONDS_PER_DAY  # slides per second at peak
    cores = peak * basis["core_seconds"] / assumptions.target_utilisation
    gpus = peak * basis["gpu_seconds"] / assumptions.target_utilisation
    return {
        "peak_slides_per_hour": peak * 3600,
        "cpu_cores": math.ceil(cores) if cores > 0 else 0,
        "gpus": math.ceil(gpus) if gpus > 0 else 0,
    }


def capacity_of(cores: int, gpus: int, basis: dict[str, float], assumptions: SizingAssumptions) -> float:
    """Slides per day that ``cores`` CPU cores and ``gpus`` GPUs sustain under the same
    assumptions as :func:`hardware_for` (its inverse)."""
    rates = [cores / basis["core_seconds"] if basis["core_seconds"] else math.inf]
    rates.append(gpus / basis["gpu_seconds"] if basis["gpu_seconds"] else math.inf)
    rate = min(rates)
    if math.isinf(rate):
        return 0.0
    return rate * SECONDS_PER_DAY * assumptions.target_utilisation / assumptions.peak_factor


def clinical_tiles(workflow: dict[str, Any], assumptions: SizingAssumptions) -> int | None:
    """Tiles of a typical clinical slide at the workflow's geometry: the assumed tissue area over
    one tile's area (stride x target mpp, squared)."""
    side_px = workflow.get("stride") or workflow.get("tile_size")
    mpp = workflow.get("target_mpp")
    if not side_px or not mpp:
        return None
    tile_um2 = (side_px * mpp) ** 2
    return round(assumptions.clinical_tissue_cm2 * 1e8 / tile_um2)


def stage_cores(stages: dict[str, Any], gpu_estimated: bool) -> dict[str, float]:
    """CPU core-seconds per slide of each stage, with the model's CPU time taken out of the
    features stage when its model is estimated on GPUs."""
    cores = {}
    for name, stage in stages.items():
        per_slide = stage["core_seconds_per_slide"] or 0.0
        if gpu_estimated and name == "features" and stage["slides"]:
            model = stage.get("model_core_seconds_per_tile", 0.0) * stage["tiles"] / stage["slides"]
            per_slide = max(0.0, per_slide - model)
        cores[name] = per_slide
    return cores


def bottleneck(
    stages: dict[str, Any], basis: dict[str, float], gpu_estimated: bool, assumptions: SizingAssumptions
) -> dict[str, Any] | None:
    """The resource that limits the load and the stage that spends most of it, with what moves
    it. GPUs limit when a GPU's share of the work needs at most ``assumptions.cores_per_gpu``
    CPU cores beside it; CPU cores limit otherwise (and always without GPUs)."""
    if not stages:
        return None
    gpu_bound = (
        basis["gpu_seconds"] > 0 and basis["core_seconds"] <= assumptions.cores_per_gpu * basis["gpu_seconds"]
    )
    resource = "GPU" if gpu_bound else "CPU"
    if gpu_bound:
        stage = "features" if "features" in stages else max(stages, key=lambda s: stages[s]["gpu_seconds"])
    else:
        cores = stage_cores(stages, gpu_estimated)
        stage = max(cores, key=lambda s: cores[s])
    figures = stages.get(stage, {})
    waiting = figures.get("wait_share") or 0.0
    if stage == "features" and gpu_bound and not gpu_estimated and waiting > 0.3:
        advice = (
            f"the GPU waits for tiles {waiting:.0%} of its task time: more decode threads "
            "(`features.decode_threads`) or more CPU cores per GPU"
        )
    elif stage == "features" and gpu_bound:
        advice = "more GPUs, bf16 precision (`--precision bf16`) or a smaller model"
    elif stage == "features" and figures.get("device") == "cpu" and not gpu_estimated:
        advice = "a GPU for the features stage (`--device cuda`); on CPUs only, more cores"
    elif stage == "features":
        advice = "more CPU cores beside each GPU for reading and decoding tiles (`features.decode_threads`)"
    else:
        advice = (
            "more CPU cores (tiling scales with worker processes); fewer tiles per slide "
            "(`tiling.min_tissue_fraction`, a coarser `tiling.target_mpp`) cuts the work"
        )
    return {"stage": stage, "resource": resource, "advice": advice}
