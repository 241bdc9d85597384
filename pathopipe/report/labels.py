"""Human labels for the machine keys of ``summary.json``: what a figure is, its unit, the scale
it is shown at (bytes as MB, shares as %) and its provenance. One table, so ``report.md``,
``report.html`` and their tests read every figure the same way.

Keys are paths into the summary written with dots; ``*`` stands for any one key or list index
(a stage, a model, a worker, a profile). The dotted keys live here only: the documents show
labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pathopipe.report.numbers import format_number

__all__ = ["LABELS", "STAGE_FIGURES", "Label", "humanize", "label_for", "scaled", "shown"]

MB, GB, TB = 1e-6, 1e-9, 1e-12


@dataclass(frozen=True)
class Label:
    text: str
    unit: str = ""
    scale: float = 1.0
    provenance: str = "measured"


ACRONYMS = {"gpu": "GPU", "cpu": "CPU", "co2": "CO2", "mpp": "mpp", "id": "ID"}


def humanize(key: str) -> str:
    """A readable name for a key no label names (a plug-in's step): ``read_decode`` -> ``Read decode``."""
    words = [ACRONYMS.get(w, w) for w in key.replace("_", " ").split()]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


STAGE_FIGURES = {
    "device": Label("Device"),
    "slides": Label("Slides that finished the stage", "slides"),
    "tasks": Label("Tasks (prepare, work, finish)", "tasks"),
    "work_tasks": Label("Work tasks", "tasks"),
    "tiles": Label("Tiles", "tiles"),
    "workers": Label("Workers that ran it", "workers"),
    "busy_seconds": Label("Busy time, summed over tasks", "s"),
    "startup_seconds": Label("Of which model start-up (once per worker)", "s"),
    "core_seconds": Label("CPU core-seconds", "core-s"),
    "background_core_seconds": Label("Of which tile decoding beside the model", "core-s"),
    "gpu_seconds": Label("GPU-seconds", "GPU-s"),
    "wall_seconds": Label("Wall time, first task to last", "s"),
    "tiles_per_second": Label("Tiles per second, whole run", "tiles/s"),
    "tiles_per_busy_second": Label("Tiles per second of one task slot", "tiles/s"),
    "tiles_per_core_second": Label("Tiles per CPU core-second", "tiles/core-s"),
    "tiles_per_gpu_second": Label("Tiles per GPU-second", "tiles/GPU-s"),
    "core_seconds_per_slide": Label("CPU core-seconds per slide", "core-s"),
    "gpu_seconds_per_slide": Label("GPU-seconds per slide", "GPU-s"),
    "bytes_written": Label("Written", "MB", MB),
    "gpu_busy_seconds": Label("GPU busy in model calls", "s"),
    "gpu_peak_memory_bytes": Label("Peak GPU memory", "GB", GB),
    "model_core_seconds_per_tile": Label("Model core-seconds per tile", "core-s"),
    "wait_share": Label("Share of task time waiting for tiles", "%", 100),
}
_STATS = {
    "count": Label("Slides", "slides"),
    "mean": Label("Mean"),
    "median": Label("Median"),
    "min": Label("Smallest"),
    "max": Label("Largest"),
}
_BASIS = {
    "core_seconds": Label("CPU core-seconds per slide", "core-s", 1, "derived"),
    "gpu_seconds": Label("GPU-seconds per slide", "GPU-s", 1, "derived"),
    "stored_bytes": Label("Stored per slide", "MB", MB, "derived"),
    "tiles": Label("Tiles per slide", "tiles", 1, "derived"),
}
_HARDWARE = {
    "peak_slides_per_hour": Label("Peak rate to sustain", "slides/hour", 1, "derived"),
    "cpu_cores": Label("CPU cores needed", "cores", 1, "derived"),
    "gpus": Label("GPUs needed", "GPUs", 1, "derived"),
}
_PRICES = {
    "price_per_slide": "Buy: price per slide",
    "minimum_per_year": "Buy: minimum per year",
    "gpu_hour": "Rent: one GPU, per hour",
    "core_hour": "Rent: one CPU core, per hour",
    "tb_month": "Rent: one TB stored, per month",
    "egress_per_tb": "Rent: one TB leaving the cloud",
    "egress_fraction": "Rent: share of stored bytes downloaded per year",
    "server_price": "Own: one server",
    "gpus_per_server": "Own: GPUs per server",
    "cores_per_server": "Own: CPU cores per server",
    "amortisation_years": "Own: years written off over",
    "power_kw": "Own: average draw of a server (kW)",
    "kwh_price": "Own: one kWh",
    "operations_share": "Own: yearly operations, share of hardware",
    "storage_tb_price": "Own: one TB of storage",
    "core_watts": "Energy: one busy CPU core (W)",
    "gpu_watts": "Energy: one busy GPU (W)",
    "pue": "Energy: power usage effectiveness",
    "grid_gco2_per_kwh": "Energy: grid, g CO2 per kWh",
}

LABELS: dict[str, Label] = {
    "schema_version": Label("Summary schema version"),
    "run.slides": Label("Slides given", "slides"),
    "run.status_counts.done": Label("Slides done", "slides"),
    "run.status_counts.skipped": Label("Slides skipped (already complete)", "slides"),
    "run.status_counts.failed": Label("Slides failed", "slides"),
    "run.wall_seconds": Label("Wall time, first task to last", "s"),
    "run.startup_seconds": Label("Command start-up: start to first task (imports, cluster)", "s"),
    "run.shutdown_seconds": Label("Command shutdown: last task to cluster closed", "s"),
    "run.workers": Label("Worker processes", "workers"),
    "run.threads": Label("Task slots (worker threads)", "slots"),
    "run.gpus": Label("GPUs", "GPUs"),
    "workflow.tile_size": Label("Tile size", "px"),
    "workflow.stride": Label("Tile stride", "px"),
    "workflow.target_mpp": Label("Target resolution", "µm/px"),
    "workflow.gflops": Label("Model compute per tile, all models", "GFLOPs", 1, "derived"),
    "workflow.models.*.gflops": Label("Model compute per tile", "GFLOPs", 1, "derived"),
    **{f"stages.*.{k}": v for k, v in STAGE_FIGURES.items()},
    "stages.*.steps_seconds.*": Label("{key}", "s"),
    "utilisation.*": Label("Busy share of {name}", "%", 100),
    "gpu_idle_fraction": Label("GPU idle share of the run", "%", 100),
    **{
        f"slides.tiles_per_slide.{k}": Label(
            f"Tiles per slide: {v.text.lower()}", "tiles" if k != "count" else "slides"
        )
        for k, v in _STATS.items()
    },
    **{
        f"slides.seconds_per_slide.{k}": Label(
            f"Seconds per slide: {v.text.lower()}", "s" if k != "count" else "slides"
        )
        for k, v in _STATS.items()
    },
    "storage.slides": Label("Complete slides measured", "slides"),
    "storage.tiles": Label("Tiles in them", "tiles"),
    "storage.source_bytes_per_slide": Label("Source slide file, per slide", "MB", MB),
    "storage.tile_store_bytes_total": Label("Tile stores (all but features), total", "MB", MB),
    "storage.tile_store_bytes_per_slide": Label("Tile store per slide", "MB", MB),
    "storage.tile_store_bytes_per_tile": Label("Tile store per tile", "KB", 1e-3),
    "storage.feature_bytes_per_slide.*": Label("Features of {name}, per slide", "MB", MB),
    "storage.stored_bytes_total": Label("Stored, total", "MB", MB),
    "storage.stored_bytes_per_slide": Label("Stored per slide", "MB", MB),
    "object_storage.slides": Label("Slides that used object storage", "slides"),
    "object_storage.requests_per_slide": Label("Requests per slide", "requests"),
    "object_storage.bytes_read_per_slide": Label("Read per slide", "MB", MB),
    "object_storage.bytes_written_per_slide": Label("Written per slide", "MB", MB),
    "object_storage.requests_total": Label("Requests, total", "requests"),
    "object_storage.bytes_read_total": Label("Read, total", "MB", MB),
    "object_storage.bytes_written_total": Label("Written, total", "MB", MB),
    **{f"per_slide.{k}": Label(v.text, v.unit, v.scale, "measured") for k, v in _BASIS.items()},
    "assumptions.peak_factor": Label("Peak hour over the average rate", "×", 1, "assumed"),
    "assumptions.target_utilisation": Label("Busy share of hardware at the peak", "%", 100, "assumed"),
    "assumptions.retention_years": Label("Outputs kept for", "years", 1, "assumed"),
    "assumptions.gpu_tflops": Label("One GPU's effective speed (for GPU estimates)", "TFLOP/s", 1, "assumed"),
    "assumptions.clinical_tissue_cm2": Label("Tissue on a clinical slide", "cm²", 1, "assumed"),
    "assumptions.cores_per_gpu": Label("CPU cores per GPU in a GPU server", "cores", 1, "assumed"),
    "small_slides.median_tiles": Label("Median tiles per slide measured", "tiles"),
    "small_slides.clinical_tiles": Label("Tiles of a clinical slide at this geometry", "tiles", 1, "derived"),
    "small_slides.clinical_tissue_cm2": Label("Tissue on a clinical slide", "cm²", 1, "assumed"),
    "capacity.cpu_cores": Label("CPU cores (task slots) of this run", "cores"),
    "capacity.gpus": Label("GPUs of this run", "GPUs"),
    "capacity.slides_per_day": Label("Slides a day this run's cluster sustains", "slides/day", 1, "derived"),
    "sizing.slides_per_day": Label("Target volume", "slides/day", 1, "assumed"),
    "sizing.basis.slides": Label("Slides the sizing rests on", "slides", 1, "measured"),
    "sizing.basis.median_tiles": Label("Their median tiles per slide", "tiles", 1, "measured"),
    **{f"sizing.per_slide.{k}": v for k, v in _BASIS.items()},
    **{f"sizing.per_slide_as_measured.{k}": v for k, v in _BASIS.items()},
    **{f"sizing.clinical.per_slide.{k}": v for k, v in _BASIS.items()},
    **{f"sizing.hardware.{k}": v for k, v in _HARDWARE.items()},
    **{f"sizing.hardware_as_measured.{k}": v for k, v in _HARDWARE.items()},
    **{f"sizing.clinical.hardware.{k}": v for k, v in _HARDWARE.items()},
    "sizing.clinical.tiles": Label("Tiles of a clinical slide", "tiles", 1, "derived"),
    "sizing.storage.bytes_per_year": Label("Storage per year", "TB", TB, "derived"),
    "sizing.storage.bytes_retained": Label("Storage over the retention period", "TB", TB, "derived"),
    "costs.*.slides_per_day": Label("Volume priced", "slides/day", 1, "assumed"),
    "costs.*.per_year.*": Label("{key}, per year", "", 1, "derived"),
    "costs.*.per_slide.*": Label("{key}, per slide", "", 1, "derived"),
    "costs.*.servers": Label("Servers to own", "servers", 1, "derived"),
    "costs.*.break_evens.*.slides_per_day": Label("Break-even", "slides/day", 1, "derived"),
    "costs.*.energy_per_slide.kwh": Label("Energy per slide", "Wh", 1000, "derived"),
    "costs.*.energy_per_slide.gco2": Label("CO2 per slide", "g", 1, "derived"),
    **{f"costs.*.prices.*.{k}": Label(v, "", 1, "given") for k, v in _PRICES.items()},
    "comparison.median_tiles": Label("Median tiles of the reference slides", "tiles"),
    "comparison.runs.*.hardware.workers": Label("Worker processes", "workers"),
    "comparison.runs.*.hardware.cpu_cores": Label("Task slots (CPU cores)", "cores"),
    "comparison.runs.*.hardware.gpus": Label("GPUs", "GPUs"),
    **{
        f"comparison.runs.*.stages.*.{k}": Label(
            "{stage}: " + STAGE_FIGURES[k].text[:1].lower() + STAGE_FIGURES[k].text[1:], STAGE_FIGURES[k].unit
        )
        for k in ("tiles_per_busy_second", "tiles_per_core_second", "tiles_per_gpu_second")
    },
    **{f"comparison.runs.*.per_slide.{k}": v for k, v in _BASIS.items()},
    "comparison.runs.*.capacity_slides_per_day": Label(
        "Slides a day its cluster sustains", "slides/day", 1, "derived"
    ),
    **{f"comparison.runs.*.hardware_needed.{k}": v for k, v in _HARDWARE.items()},
    "comparison.runs.*.cost_per_slide.*.*": Label("{profile}: {key}, per slide", "", 1, "derived"),
    "what_if.measured_gflops": Label("Measured model, GFLOPs per tile", "GFLOPs", 1, "derived"),
    "what_if.measured_tiles_per_busy_second": Label(
        "Measured model, tiles per second of one slot", "tiles/s"
    ),
    "what_if.estimated_tiles_per_busy_second.*": Label(
        "{name}, tiles per second of one slot", "tiles/s", 1, "estimate"
    ),
    "what_if.gflops.*": Label("{name}, GFLOPs per tile", "GFLOPs", 1, "derived"),
    "bench.trial_slides": Label("Slides each trial ran", "slides"),
    "bench.best.*": Label("Best trial: {key}"),
    "bench.trials.*.*": Label("{key}"),
    "bench.generated_slides.*": Label("Generated slides: {key}"),
}


_NAMED = {"{stage}": "stages", "{profile}": "cost_per_slide"}  # placeholder: the key after this one


def _match(pattern: str, path: tuple[str, ...]) -> bool:
    parts = pattern.split(".")
    return len(parts) == len(path) and all(p in ("*", k) for p, k in zip(parts, path, strict=True))


def label_for(path: tuple[str, ...] | list[Any]) -> Label | None:
    """The label of the figure at ``path`` (keys and list indices), the most specific pattern
    first; ``{key}`` in its text becomes the last key, humanized; ``{stage}`` / ``{profile}``
    the key after ``stages`` / ``cost_per_slide``. None when no label names it."""
    keys = tuple(str(k) for k in path)
    found = LABELS.get(".".join(keys))
    if found is None:
        matches = [p for p in LABELS if "*" in p and _match(p, keys)]
        if not matches:
            return None
        found = LABELS[min(matches, key=lambda p: p.count("*"))]
        text = found.text
        for placeholder, parent in _NAMED.items():
            if placeholder in text and parent in keys[:-1]:
                text = text.replace(placeholder, keys[keys.index(parent) + 1])
        found = Label(text, found.unit, found.scale, found.provenance)
    if "{name}" in found.text:
        found = Label(found.text.replace("{name}", keys[-1]), found.unit, found.scale, found.provenance)
    if "{key}" in found.text:
        found = Label(
            found.text.replace("{key}", humanize(keys[-1])), found.unit, found.scale, found.provenance
        )
    return found


def scaled(path: tuple[Any, ...] | list[Any], value: Any) -> Any:
    """``value`` at its label's scale (bytes as MB, shares as %); as it is without a label."""
    label = label_for(path)
    if (
        label is not None
        and label.scale != 1
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ):
        return value * label.scale
    return value


def shown(path: tuple[Any, ...] | list[Any], value: Any) -> str:
    """The figure at ``path`` as the documents print it (scaled to its label's unit)."""
    return format_number(scaled(path, value))
