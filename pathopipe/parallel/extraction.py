"""Feature extraction over the slide stores of an output folder, as one Dask computation."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import zarr
from distributed import Client

from pathopipe.config import ClusterConfig
from pathopipe.errors import ConfigError
from pathopipe.features._extractor import resolve_device
from pathopipe.features._weights import cached_pretrained_file, sha256_file
from pathopipe.output import RunLock, environment_info, write_run_json
from pathopipe.parallel._driver import ProgressEvent, SlideStage, run_slides
from pathopipe.parallel.cluster import local_client, local_cuda_client
from pathopipe.parallel.run import RunResult, cluster_info
from pathopipe.stages.extraction import (
    ExtractionSettings,
    extract_rows,
    feature_group_path,
    feature_status,
    finish_features,
    prepare_features,
)
from pathopipe.stages.tiling import SlideJob, store_bytes


def jobs_from_out(out: str | Path) -> list[SlideJob]:
    """One job per slide store under ``OUT/slides``."""
    stores = sorted((Path(out) / "slides").glob("*.zarr"))
    if not stores:
        raise ConfigError(
            f"no slide stores under {Path(out) / 'slides'}; run `pathopipe tile ... --out {out}` first"
        )
    jobs = []
    for store in stores:
        try:
            source = str(zarr.open_group(store, mode="r").attrs.get("source_path", ""))
        except (OSError, ValueError, KeyError):
            source = ""
        jobs.append(SlideJob(slide_id=store.name.removesuffix(".zarr"), source=source, store=str(store)))
    return jobs


def extraction_stage(settings: ExtractionSettings) -> SlideStage:
    chash = settings.output_hash()
    key = settings.model.key
    return SlideStage(
        name="features",
        config_hash=chash,
        prepare=partial(prepare_features, settings=settings, feature_hash=chash),
        work=extract_rows,
        finish=finish_features,
        status=partial(feature_status, key=key),
        size=lambda job: store_bytes(feature_group_path(job.store, key)),
        resources={"GPU": 1} if settings.needs_gpu_resource() else None,
    )


def extract_features(
    out: str | Path,
    settings: ExtractionSettings,
    *,
    client: Client | None = None,
    cluster: ClusterConfig | None = None,
    force: bool = False,
    on_event: Callable[[ProgressEvent], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Compute ``settings.model`` features for every tiled slide in ``out``.

    Records go to ``OUT/features-<model_key>.csv`` and the run to ``OUT/extract-<model_key>.json``.
    """
    out = Path(out)
    jobs = jobs_from_out(out)
    if settings.device == "auto" and client is None:
        settings = replace(settings, device=resolve_device("auto"))  # the local workers see the same devices
    if settings.weights == "pretrained":  # fail before any work when the cache lacks them
        cached_pretrained_file(settings.model.pretrained_hub_id, settings.model.key)
    elif settings.weights != "random":
        if not Path(settings.weights).is_file():
            raise ConfigError(f"weights file {settings.weights!r} does not exist")
        settings = replace(settings, weights=str(Path(settings.weights).resolve()),
                           weights_sha256=sha256_file(settings.weights))  # fmt: skip
    stage = extraction_stage(settings)
    key = settings.model.key
    info: dict[str, Any] = {
        "stage": "extract",
        "model": settings.model.model_dump(mode="json"),
        "settings": {k: v for k, v in vars(settings).items() if k != "model"},
        "config_hash": stage.config_hash,
        "started": time.time(),
        "slides": len(jobs),
        **environment_info(),
    }
    run_json = out / f"extract-{key}.json"
    with ExitStack() as stack:
        stack.enter_context(RunLock(out))
        if client is None and settings.needs_gpu_resource():
            client = stack.enter_context(local_cuda_client(cluster or ClusterConfig()))
        if client is None:
            client = stack.enter_context(local_client(cluster or ClusterConfig()))
            info["cluster"] = {"kind": "local", **cluster_info(client)}
        else:
            info["cluster"] = {"kind": "external", **cluster_info(client)}
        write_run_json(run_json, info)
        if on_start:
            on_start(info)
        records = run_slides(
            client, jobs, stage, manifest=out / f"features-{key}.csv", force=force, on_event=on_event
        )
        info |= {"finished": time.time(), "seconds": time.time() - info["started"]}
        info["status_counts"] = {
            s: sum(r.status == s for r in records) for s in ("done", "skipped", "failed")
        }
        write_run_json(run_json, info)
    return RunResult(out=out, records=records, info=info)
