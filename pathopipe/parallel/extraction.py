"""Feature extraction over the slide stores of an output folder, as one Dask computation."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distributed import Client

from pathopipe import fileio
from pathopipe.config import ClusterConfig, RunConfig
from pathopipe.errors import ConfigError
from pathopipe.features.settings import ExtractionSettings, check_settings
from pathopipe.output import environment_info
from pathopipe.output.layout import RunLayout
from pathopipe.parallel._driver import ProgressEvent
from pathopipe.parallel.run import RunResult, run_stage_on_out
from pathopipe.parallel.stages import MODEL_MODULES, extraction_stage
from pathopipe.stages.tiling import SlideJob
from pathopipe.store.layout import metadata_path

__all__ = ["extract_features", "jobs_from_out"]


def jobs_from_out(out: str | Path, storage_options: fileio.Options = None) -> list[SlideJob]:
    """One job per slide store under ``OUT/slides`` (a folder or a URL)."""
    layout = RunLayout(out)
    named = [(RunLayout.slide_id_of(n), n) for n in fileio.list_names(layout.slides, storage_options)]
    if not any(slide_id for slide_id, _ in named):
        raise ConfigError(
            f"no slide stores under {layout.slides}; run `pathopipe tile ... --out {out}` first"
        )
    jobs = []
    options = dict(storage_options or {})
    for slide_id, _name in named:
        if slide_id is None:
            continue
        store = layout.slide_store(slide_id)
        try:
            meta = json.loads(fileio.read_bytes(metadata_path(store), options))
            source = str(meta.get("attributes", {}).get("source_path", ""))
        except (OSError, ValueError):
            source = ""
        jobs.append(SlideJob(slide_id, source, store, storage_options=options))
    return jobs


def extraction_cluster(cluster: ClusterConfig, *, needs_gpu: bool) -> ClusterConfig:
    """The cluster ``pathopipe extract`` starts: as configured, except that a local cluster for
    models placed on GPUs is dask-cuda's (``local-cuda``: one worker per GPU)."""
    if needs_gpu and cluster.kind == "local":
        return cluster.model_copy(update={"kind": "local-cuda"})
    return cluster


def extract_features(
    out: str | Path,
    settings: ExtractionSettings | Sequence[ExtractionSettings],
    *,
    config: RunConfig | None = None,
    client: Client | None = None,
    force: bool = False,
    on_event: Callable[[ProgressEvent], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    started: float | None = None,
) -> RunResult:
    """Compute the features of one model, or of several in one pass, for every slide in ``out``
    (a folder or a URL), on ``client`` or on the cluster ``config.cluster`` describes (started
    through the cluster registry; default a local one). ``config.storage`` reaches URLs.

    Records go to ``OUT/features-<key>[+<key>...].csv``, the run to ``OUT/extract-<keys>.json``.
    ``settings`` come from a configuration's ``features:`` section through
    :func:`pathopipe.features.settings.extraction_settings` (or are made directly).
    ``started``: when the command running it started (default now), as in ``run_workflow``.
    """
    config = config or RunConfig()
    storage_options = config.storage.options
    out = os.fspath(out)
    layout = RunLayout(out)
    jobs = jobs_from_out(out, storage_options)
    listed = [settings] if isinstance(settings, ExtractionSettings) else list(settings)
    keys = [s.model.key for s in listed]
    if not listed or len(set(keys)) != len(keys):
        raise ConfigError(f"give one or more different models, got {keys}")
    models = tuple(check_settings(s, local=client is None) for s in listed)
    stage = extraction_stage(models, force=force)
    info: dict[str, Any] = {
        "stage": "extract",
        "models": [m.model.model_dump(mode="json") for m in models],
        "settings": [{k: v for k, v in vars(m).items() if k != "model"} for m in models],
        "config_hash": stage.config_hash,
        "started": started or time.time(),
        "slides": len(jobs),
        **environment_info(),
    }
    chosen = extraction_cluster(config.cluster, needs_gpu=bool(stage.resources))
    return run_stage_on_out(
        out, jobs, stage, info,
        run_json=layout.extraction_run_json(keys), manifest=layout.extraction_manifest(keys),
        client=client, cluster=chosen,
        force=force, on_event=on_event, on_start=on_start, storage_options=storage_options,
        lease_seconds=config.storage.lock_lease_s, warm=MODEL_MODULES,
    )  # fmt: skip
