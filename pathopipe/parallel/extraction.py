"""Feature extraction over the slide stores of an output folder, as one Dask computation."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from distributed import Client

from pathopipe import storage
from pathopipe.config import ClusterConfig
from pathopipe.errors import ConfigError
from pathopipe.features._extractor import resolve_device
from pathopipe.features._weights import cached_pretrained_file, sha256_file
from pathopipe.output import environment_info
from pathopipe.parallel._driver import ProgressEvent, SlideStage
from pathopipe.parallel.cluster import local_client, local_cuda_client
from pathopipe.parallel.run import RunResult, run_stage_on_out
from pathopipe.stages.extraction import (
    ExtractionSettings,
    combined_hash,
    extract_rows,
    feature_group_path,
    features_status,
    finish_features,
    prepare_features,
)
from pathopipe.stages.tiling import SlideJob, store_bytes


def jobs_from_out(out: str | Path, storage_options: storage.Options = None) -> list[SlideJob]:
    """One job per slide store under ``OUT/slides`` (a folder or a URL)."""
    folder = storage.join(out, "slides")
    names = [n for n in storage.list_names(folder, storage_options) if n.endswith(".zarr")]
    if not names:
        raise ConfigError(f"no slide stores under {folder}; run `pathopipe tile ... --out {out}` first")
    jobs = []
    options = dict(storage_options or {})
    for name in names:
        store = storage.join(folder, name)
        try:
            meta = json.loads(storage.read_bytes(storage.join(store, "zarr.json"), options))
            source = str(meta.get("attributes", {}).get("source_path", ""))
        except (OSError, ValueError):
            source = ""
        jobs.append(SlideJob(name.removesuffix(".zarr"), source, store, storage_options=options))
    return jobs


def extraction_stage(models: tuple[ExtractionSettings, ...], *, force: bool = False) -> SlideStage:
    """All ``models`` in one pass over the tiles (each tile decoded once)."""
    keys = [settings.model.key for settings in models]
    return SlideStage(
        name="features",
        config_hash=combined_hash(models),
        prepare=partial(prepare_features, models=models, force=force),
        work=extract_rows,
        finish=finish_features,
        status=partial(features_status, models=models),
        size=lambda job: sum(
            store_bytes(feature_group_path(job.store, key), job.storage_options) for key in keys
        ),
        resources={"GPU": 1} if any(m.needs_gpu_resource() for m in models) else None,
    )


def check_settings(settings: ExtractionSettings, *, local: bool) -> ExtractionSettings:
    """Check weights exist before any work starts; record a weights file's sha256.

    ``local``: the workers run on this machine and see its devices, so ``auto`` is resolved here.
    """
    if settings.device == "auto" and local:
        settings = replace(settings, device=resolve_device("auto"))
    if settings.weights == "pretrained":
        cached_pretrained_file(settings.model.pretrained_hub_id, settings.model.key)
    elif settings.weights != "random":
        if not Path(settings.weights).is_file():
            raise ConfigError(
                f"weights file {settings.weights!r} does not exist (weights: random, pretrained or a file)"
            )
        if settings.weights_sha256 is None:
            settings = replace(settings, weights=str(Path(settings.weights).resolve()),
                               weights_sha256=sha256_file(settings.weights))  # fmt: skip
    return settings


def extract_features(
    out: str | Path,
    settings: ExtractionSettings | Sequence[ExtractionSettings],
    *,
    client: Client | None = None,
    cluster: ClusterConfig | None = None,
    force: bool = False,
    on_event: Callable[[ProgressEvent], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    storage_options: storage.Options = None,
) -> RunResult:
    """Compute the features of one model, or of several in one pass, for every slide in ``out``
    (a folder or a URL, reached with ``storage_options``).

    Records go to ``OUT/features-<key>[+<key>...].csv``, the run to ``OUT/extract-<keys>.json``.
    """
    out = os.fspath(out)
    jobs = jobs_from_out(out, storage_options)
    listed = [settings] if isinstance(settings, ExtractionSettings) else list(settings)
    keys = [s.model.key for s in listed]
    if not listed or len(set(keys)) != len(keys):
        raise ConfigError(f"give one or more different models, got {keys}")
    models = tuple(check_settings(s, local=client is None) for s in listed)
    stage = extraction_stage(models, force=force)
    key = "+".join(keys)
    info: dict[str, Any] = {
        "stage": "extract",
        "models": [m.model.model_dump(mode="json") for m in models],
        "settings": [{k: v for k, v in vars(m).items() if k != "model"} for m in models],
        "config_hash": stage.config_hash,
        "started": time.time(),
        "slides": len(jobs),
        **environment_info(),
    }
    start = local_cuda_client if stage.resources else local_client
    return run_stage_on_out(
        out, jobs, stage, info,
        run_json=storage.join(out, f"extract-{key}.json"), manifest=storage.join(out, f"features-{key}.csv"),
        client=client, start_cluster=lambda: start(cluster or ClusterConfig()),
        cluster_kind="local-cuda" if stage.resources else "local",
        force=force, on_event=on_event, on_start=on_start, storage_options=storage_options,
    )  # fmt: skip
