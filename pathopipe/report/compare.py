"""Runs side by side (``pathopipe report OUT --against OTHER``): the same workflow measured on
different hardware (a CPU node, a GPU node, a cloud instance, a ``pathopipe bench``
calibration), each sized for the same slides and priced with the same profiles.

Every run is sized for the *reference slides* (the cohort plan's, else the reported run's own)
from the per-task lines fitted on its own tasks (:func:`~pathopipe.report.sizing.fitted_basis`),
so runs over slides of other sizes compare fairly; a run that cannot be fitted (a URL) is
sized from its own measured per-slide figures, and says so.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from pathopipe import fileio
from pathopipe.errors import ConfigError
from pathopipe.output.manifest import read_manifest_records
from pathopipe.report.costs import CostProfile, annual_costs
from pathopipe.report.measure import run_facts
from pathopipe.report.sizing import SizingAssumptions, capacity_of, fitted_basis, hardware_for

__all__ = ["compare_runs"]

RATES = ("device", "tiles_per_busy_second", "tiles_per_core_second", "tiles_per_gpu_second")


def _names(outs: list[str]) -> list[str]:
    """Short distinct names: the folder's name, with its parent's where two would be equal."""
    short = [PurePosixPath(o.rstrip("/")).name or o for o in outs]
    longer = ["/".join(PurePosixPath(o.rstrip("/")).parts[-2:]) for o in outs]
    names = [longer[i] if short.count(n) > 1 else n for i, n in enumerate(short)]
    return [f"{n} ({i + 1})" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _entry(
    facts: dict[str, Any],
    tiles: list[int],
    profiles: list[CostProfile],
    slides_per_day: float | None,
    assumptions: SizingAssumptions,
) -> dict[str, Any]:
    out = facts["out"]
    try:
        basis, how = (
            (facts["per_slide"], "measured on its own slides")
            if fileio.is_url(out)
            else (fitted_basis(out, tiles), "fitted, for the reference slides")
        )
    except ConfigError:
        basis, how = facts["per_slide"], "measured on its own slides"
    run = facts["run"]
    cores, gpus = int(run["threads"] or 0), int(run["gpus"] or 0)
    entry: dict[str, Any] = {
        "out": out,
        "hardware": {
            "cpu_models": run["cpu_models"],
            "gpu_models": run["gpu_models"],
            "workers": run["workers"],
            "cpu_cores": cores,
            "gpus": gpus,
            "cluster_kind": run["cluster_kind"],
        },
        "stages": {name: {k: stage.get(k) for k in RATES} for name, stage in facts["stages"].items()},
        "models": [m["key"] for m in facts["workflow"]["models"]],
        "per_slide": basis,
        "sized": how,
        "capacity_slides_per_day": capacity_of(cores, gpus, basis, assumptions),
    }
    if slides_per_day:
        entry["hardware_needed"] = hardware_for(slides_per_day, basis, assumptions)
        slides = slides_per_day * 365
        entry["cost_per_slide"] = {
            p.name: {
                k: (v / slides if v is not None else None)
                for k, v in annual_costs(slides_per_day, basis, p, assumptions).items()
            }
            for p in profiles
        }
    return entry


def compare_runs(
    summary: dict[str, Any],
    others: list[str],
    profiles: list[CostProfile],
    slides_per_day: float | None,
    assumptions: SizingAssumptions,
    cohort: dict[str, Any] | None,
    options: fileio.Options = None,
) -> dict[str, Any]:
    """The reported run and each of ``others``, side by side (see the module's docstring)."""
    if cohort is not None:
        n = len(cohort["tiles"])
        tiles, reference = (
            list(cohort["tiles"]),
            f"the {n:,} slide{'s' if n != 1 else ''} of {cohort['source']}",
        )
    else:
        done = [r.n_tiles or 0 for r in read_manifest_records(summary["out"], options) if r.status == "done"]
        tiles, reference = done, f"the {len(done):,} slides of the reported run"
    if not tiles:
        raise ConfigError(f"{summary['out']} has no slide done to compare runs on")
    runs = [summary, *(run_facts(o, options) for o in others)]
    entries = [_entry(facts, tiles, profiles, slides_per_day, assumptions) for facts in runs]
    for name, entry in zip(_names([e["out"] for e in entries]), entries, strict=True):
        entry["name"] = name
        entry["same_workflow"] = entry["models"] == entries[0]["models"] and set(entry["stages"]) == set(
            entries[0]["stages"]
        )
    return {"reference": reference, "median_tiles": sorted(tiles)[len(tiles) // 2], "runs": entries}
