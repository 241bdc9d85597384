"""``pathopipe plan``: a tissue-only pass over the slides (tile counts, seconds per slide) on
the cluster, and with a calibration, the forecast wall time and bytes of running the workflow."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distributed import Client, as_completed

from pathopipe.config import RunConfig
from pathopipe.errors import ConfigError
from pathopipe.parallel.cluster import start_cluster
from pathopipe.parallel.run import slide_settings
from pathopipe.report.costs import CostProfile, forecast_cost
from pathopipe.report.forecast import calibrate, forecast
from pathopipe.stages.tiling import count_tiles


def _count(
    client: Client, slides: Sequence[tuple[str, Any, dict[str, Any]]], config: RunConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    futures = {client.submit(count_tiles, str(path), config, settings, pure=False): sid
               for sid, path, settings in slides}  # fmt: skip
    counts, failed = [], []
    for fut in as_completed(futures):
        sid = futures[fut]
        if fut.status == "finished":
            counts.append({"slide_id": sid, **fut.result()})
        else:
            failed.append({"slide_id": sid, "error": f"{type(fut.exception()).__name__}: {fut.exception()}"})
    return sorted(counts, key=lambda c: c["slide_id"]), failed


def plan_workflow(
    slides: Sequence[str | os.PathLike[str]],
    config: RunConfig,
    *,
    calibration: str | Path | None = None,
    client: Client | None = None,
    costs: CostProfile | None = None,
) -> dict[str, Any]:
    """Tile counts per slide, and with ``calibration`` (the OUT of an earlier run of the same
    workflow) the forecast of running it on this cluster (with ``costs``: and its rent cost)."""
    if costs is not None and calibration is None:
        raise ConfigError("a cost forecast needs --calibration (the run whose figures it prices)")
    found = slide_settings(slides, config.storage.options, config.regions.folder)
    stages = ["tiles", "features"] if config.features.models else ["tiles"]
    model = calibrate(calibration) if calibration else None
    if model is not None:
        missing = set(stages) - set(model.stages)
        extra = set(model.stages) - set(stages)
        if missing or extra:
            raise ConfigError(
                f"calibration {calibration} ran stages {sorted(model.stages)}, this workflow runs {stages}; "
                "calibrate with a run of the same workflow"
            )

    def run(c: Client) -> dict[str, Any]:
        counts, failed = _count(c, found, config)
        slots = sum(w["nthreads"] for w in c.scheduler_info(n_workers=-1)["workers"].values())
        result: dict[str, Any] = {
            "slides": len(counts),
            "failed": failed,
            "tiles": sum(x["n_tiles"] for x in counts),
            "per_slide": counts,
            "survey_seconds": sum(x["seconds"] for x in counts),
            "slots": slots,
        }
        if model is not None:
            result |= forecast(counts, model, slots=slots, shard_size=config.store.shard_size)
            if costs is not None:
                result["predicted_cost"] = forecast_cost(result, model, costs)
        return result

    if client is not None:
        return run(client)
    with start_cluster(config.cluster) as started:
        return run(started)
