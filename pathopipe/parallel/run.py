"""A whole tiling run on an output folder: lock, run.json, cluster, manifest."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed import Client

from pathopipe.config import RunConfig, config_hash
from pathopipe.ids import find_slides, slide_ids
from pathopipe.output import RunLock, SlideRecord, environment_info, write_run_json
from pathopipe.parallel.cluster import dashboard_link, local_client
from pathopipe.parallel.tiling import ProgressEvent, run_tiling
from pathopipe.stages.tiling import SlideJob
from pathopipe.store import slide_store_path


@dataclass
class RunResult:
    """Outcome of a run: one record per slide, and what went into run.json."""

    out: Path
    records: list[SlideRecord]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[SlideRecord]:
        return [r for r in self.records if r.status == "failed"]


def plan_jobs(inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> list[SlideJob]:
    """Find the slides under ``inputs`` and give each a stable id and store path."""
    paths = find_slides(inputs)
    return [
        SlideJob(slide_id=sid, source=str(p), store=str(slide_store_path(out, sid)))
        for sid, p in zip(slide_ids(paths), paths, strict=True)
    ]


def cluster_info(client: Client) -> dict[str, Any]:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {
        "address": client.scheduler.address if client.scheduler else None,
        "dashboard": dashboard_link(client),
        "workers": len(workers),
        "threads": sum(w["nthreads"] for w in workers.values()),
        "memory_limit_bytes": sum(w["memory_limit"] or 0 for w in workers.values()),
    }


def tile_slides(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: RunConfig | None = None,
    *,
    client: Client | None = None,
    force: bool = False,
    on_event: Callable[[ProgressEvent], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Tile every slide in ``inputs`` into ``out/slides/<slide_id>.zarr``.

    Uses ``client`` when given, else starts a LocalCluster from ``config.cluster``. Holds a
    lock on ``out`` for the duration, writes ``run.json`` and ``manifest.csv``.
    """
    config = config or RunConfig()
    out = Path(out)
    jobs = plan_jobs(inputs, out)
    chash = config_hash(config)
    started = time.time()
    info: dict[str, Any] = {
        "command": sys.argv,
        "config": config.model_dump(mode="json"),
        "config_hash": chash,
        "started": started,
        "slides": len(jobs),
        **environment_info(),
    }
    with ExitStack() as stack:
        stack.enter_context(RunLock(out))
        write_run_json(out, info)
        if client is None:
            client = stack.enter_context(local_client(config.cluster))
            info["cluster"] = {"kind": "local", **cluster_info(client)}
        else:
            info["cluster"] = {"kind": "external", **cluster_info(client)}
        write_run_json(out, info)
        if on_start:
            on_start(info)
        records = run_tiling(client, jobs, config, chash, out=out, force=force, on_event=on_event)
        finished = time.time()
        info |= {"finished": finished, "seconds": finished - started}
        info["status_counts"] = {
            s: sum(r.status == s for r in records) for s in ("done", "skipped", "failed")
        }
        write_run_json(out, info)
    return RunResult(out=out, records=records, info=info)
