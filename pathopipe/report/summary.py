"""``summary.json``: everything the report shows, as one JSON document with machine keys
(schema :data:`SUMMARY_SCHEMA_VERSION`), from what a run measured (:mod:`pathopipe.report.measure`),
sized for a load (:mod:`~pathopipe.report.sizing`), priced (:mod:`~pathopipe.report.costs`),
compared with other runs (:mod:`~pathopipe.report.compare`) and read as a decision
(:mod:`~pathopipe.report.decision`). Both documents render from it alone.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from pathopipe import fileio
from pathopipe.errors import ConfigError
from pathopipe.report import measure
from pathopipe.report.checks import SMALL_SLIDE_SHARE
from pathopipe.report.costs import CostProfile, cost_model
from pathopipe.report.decision import build_decision
from pathopipe.report.sizing import (
    FORMULAS,
    SizingAssumptions,
    bottleneck,
    capacity_of,
    clinical_tiles,
    fitted_basis,
    gpu_estimate,
    hardware_for,
)

__all__ = ["SUMMARY_SCHEMA_VERSION", "Cohort", "build_summary", "load_cohort"]

SUMMARY_SCHEMA_VERSION = 1

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

Cohort = dict[str, Any]  # {"source": path, "tiles": [n per slide], "failed": n}


def load_cohort(path: str | Path) -> Cohort:
    """The slides a load is sized for: ``pathopipe plan --json``'s output (its ``per_slide``
    tile counts)."""
    path = Path(path)
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"cohort plan not found: {path} (write one with `pathopipe plan ... --json > {path}`)"
        ) from None
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{path} is not JSON ({err}); give the output of `pathopipe plan ... --json`"
        ) from None
    rows = plan.get("per_slide") if isinstance(plan, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ConfigError(
            f"{path}: field 'per_slide' must be a non-empty list of slides with 'n_tiles' "
            "(the output of `pathopipe plan ... --json`)"
        )
    tiles = []
    for i, row in enumerate(rows):
        value = row.get("n_tiles") if isinstance(row, dict) else None
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{path}: per_slide[{i}].n_tiles must be a tile count (>= 0), got {value!r}")
        tiles.append(value)
    return {"source": str(path), "tiles": tiles, "failed": len(plan.get("failed") or [])}


def _gflops(workflow: dict[str, Any]) -> float | None:
    """GFLOPs per tile of every model of the run together, or None when one cannot be counted."""
    from pathopipe.features import ModelSpec, model_gflops, resolve_model

    total = 0.0
    for model in workflow["models"]:
        try:
            spec = (
                ModelSpec.model_validate(model["spec"]) if model.get("spec") else resolve_model(model["key"])
            )
        except (ConfigError, ValueError):
            return None
        counted = model_gflops(spec)
        if counted is None:
            return None
        model["gflops"] = counted
        total += counted
    return total


def _what_if(features: dict[str, Any] | None, workflow: dict[str, Any]) -> dict[str, Any] | None:
    if not features or not features.get("tiles_per_busy_second") or len(workflow["models"]) != 1:
        return None  # one pass over several models: their shares of the time are not separable
    measured = workflow["models"][0].get("gflops")
    if not measured:
        return None
    rate = features["tiles_per_busy_second"]
    return {
        "estimate": True,
        "measured_model": workflow["models"][0]["key"],
        "measured_gflops": measured,
        "measured_tiles_per_busy_second": rate,
        "device": features["device"],
        "estimated_tiles_per_busy_second": {name: rate * measured / g for name, g in GFLOPS_224.items()},
        "gflops": GFLOPS_224,
        "formula": "rate of a model = measured rate × GFLOPs of the measured model ÷ GFLOPs of the model: "
        "assumes the device is compute-bound at the same efficiency (an estimate, not a measurement)",
    }


def _small_slides(summary: dict[str, Any], assumptions: SizingAssumptions) -> dict[str, Any] | None:
    clinical = clinical_tiles(summary["workflow"], assumptions)
    median = summary["slides"]["tiles_per_slide"].get("median")
    if clinical is None or median is None:
        return None
    return {
        "median_tiles": median,
        "clinical_tiles": clinical,
        "clinical_tissue_cm2": assumptions.clinical_tissue_cm2,
        "small": median < SMALL_SLIDE_SHARE * clinical,
    }


def _sizing(
    summary: dict[str, Any],
    out: str,
    slides_per_day: float,
    assumptions: SizingAssumptions,
    cohort: Cohort | None,
) -> dict[str, Any]:
    stages, gflops = summary["stages"], summary["workflow"].get("gflops")
    if cohort is not None:
        basis = fitted_basis(out, cohort["tiles"])
        described = {
            "kind": "in the cohort plan",
            "slides": len(cohort["tiles"]),
            "median_tiles": statistics.median(cohort["tiles"]),
            "source": cohort["source"],
        }
    else:
        basis = summary["per_slide"]
        described = {
            "kind": "measured here",
            "slides": summary["storage"]["slides"],
            "median_tiles": summary["slides"]["tiles_per_slide"].get("median", 0),
            "source": "",
        }
    features = stages.get("features")
    estimate = bool(features and features["device"] == "cpu" and gflops)

    def load_of(per_slide: dict[str, float]) -> dict[str, float]:
        return gpu_estimate(per_slide, features or {}, gflops or 0.0, assumptions) if estimate else per_slide

    per_slide = load_of(basis)
    per_year = per_slide["stored_bytes"] * slides_per_day * 365
    sizing: dict[str, Any] = {
        "slides_per_day": slides_per_day,
        "scenario": "gpu_estimate" if estimate else "as_measured",
        "basis": described,
        "per_slide": per_slide,
        "hardware": hardware_for(slides_per_day, per_slide, assumptions),
        "storage": {"bytes_per_year": per_year, "bytes_retained": per_year * assumptions.retention_years},
        "bottleneck": bottleneck(stages, per_slide, estimate, assumptions),
        "hardware_curve": [
            {"slides_per_day": n, **hardware_for(n, per_slide, assumptions)}
            for n in (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
        ],
        "formulas": FORMULAS,
    }
    if estimate:
        sizing["per_slide_as_measured"] = basis
        sizing["hardware_as_measured"] = hardware_for(slides_per_day, basis, assumptions)
    small = summary.get("small_slides")
    if cohort is None and small and small["small"] and not fileio.is_url(out):
        clinical = load_of(fitted_basis(out, [small["clinical_tiles"]]))
        sizing["clinical"] = {
            "tiles": small["clinical_tiles"],
            "per_slide": clinical,
            "hardware": hardware_for(slides_per_day, clinical, assumptions),
        }
    return sizing


def build_summary(
    out: str | Path,
    *,
    costs: list[CostProfile] | None = None,
    slides_per_day: float | None = None,
    assumptions: SizingAssumptions | None = None,
    cohort: Cohort | None = None,
    against: list[str | Path] | None = None,
    options: fileio.Options = None,
) -> dict[str, Any]:
    """Everything the report shows, as one JSON-able dict, from the run's own files (``out`` a
    folder or a URL, reached with ``options``): sized for ``slides_per_day`` (of slides like the
    run's, or like the ``cohort``'s), priced with each of ``costs``, compared with the runs in
    ``against``."""
    out = os.fspath(out)
    assumptions = assumptions or SizingAssumptions()
    profiles = list(costs or [])
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise ConfigError(f"two cost profiles share a name ({', '.join(names)}): give each its own file name")
    if profiles and not slides_per_day:
        raise ConfigError("--costs needs --slides-per-day (the volume to price)")
    if cohort is not None and not slides_per_day:
        raise ConfigError("--cohort needs --slides-per-day (the volume of such slides to size for)")
    if cohort is not None and fileio.is_url(out):
        raise ConfigError(
            f"--cohort fits the run's tasks from a local folder; {out} is a URL: copy the run locally"
        )
    summary = {"schema_version": SUMMARY_SCHEMA_VERSION, **measure.run_facts(out, options)}
    workflow = summary["workflow"]
    needs_gflops = any(s["device"] == "cpu" for n, s in summary["stages"].items() if n == "features")
    if workflow["models"] and (needs_gflops or len(workflow["models"]) == 1):
        workflow["gflops"] = _gflops(workflow)
    for model in workflow["models"]:
        model.pop("spec", None)
    summary["what_if"] = _what_if(summary["stages"].get("features"), workflow)
    summary["assumptions"] = assumptions.model_dump(mode="json")
    summary["small_slides"] = _small_slides(summary, assumptions)
    run = summary["run"]
    summary["capacity"] = {"cpu_cores": run["threads"] or 0, "gpus": run["gpus"] or 0}
    capacity_basis = summary["per_slide"]
    if slides_per_day:
        sizing = _sizing(summary, out, slides_per_day, assumptions, cohort)
        capacity_basis = sizing.get("per_slide_as_measured", sizing["per_slide"])  # the slides sized for
        summary["sizing"] = sizing
        summary["costs"] = {
            p.name: cost_model(sizing["per_slide"], p, slides_per_day, assumptions) for p in profiles
        }
    cores, gpus = summary["capacity"]["cpu_cores"], summary["capacity"]["gpus"]
    summary["capacity"]["slides_per_day"] = capacity_of(cores, gpus, capacity_basis, assumptions)
    if against:
        from pathopipe.report.compare import compare_runs

        summary["comparison"] = compare_runs(
            summary, [os.fspath(a) for a in against], profiles, slides_per_day, assumptions, cohort, options
        )
    summary["decision"] = build_decision(summary)
    return summary
