"""A whole tiling run on an output folder: lock, run.json, cluster, manifest."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
from distributed import Client

from pathopipe import fileio
from pathopipe.config import ClusterConfig
from pathopipe.discovery import find_slide_entries
from pathopipe.ids import assign_ids
from pathopipe.output import SlideRecord, run_lock, write_run_json
from pathopipe.output.layout import RunLayout
from pathopipe.output.metrics import phase_rows
from pathopipe.output.runinfo import host_facts
from pathopipe.parallel._driver import ProgressEvent, SlideRun, SlideStage
from pathopipe.parallel._worker_setup import WARM_MODULES_KEY, warm_worker
from pathopipe.parallel.cluster import dashboard_link, start_cluster
from pathopipe.regions import find_annotations
from pathopipe.stages import WARM_MODULES
from pathopipe.stages.tiling import SlideJob


@dataclass
class RunResult:
    """Outcome of a run: one record per slide, and what went into run.json."""

    out: str | Path  # a local folder or a URL
    records: list[SlideRecord]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[SlideRecord]:
        return [r for r in self.records if r.status == "failed"]


def plan_jobs(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    storage_options: fileio.Options = None,
    *,
    annotations: str | os.PathLike[str] | None = None,
) -> list[SlideJob]:
    """Find the slides under ``inputs`` (paths, URLs, slide lists) and give each a stable id (the
    slide list's where it gives one), its store path and its per-slide settings; a slide the
    list gives no annotations gets its file in the ``annotations`` folder, if there is one."""
    opts = dict(storage_options or {})
    layout = RunLayout(out)
    return [
        SlideJob(slide_id=sid, source=str(path), store=layout.slide_store(sid), storage_options=opts,
                 settings=settings)
        for sid, path, settings in slide_settings(inputs, storage_options, annotations)
    ]  # fmt: skip


def slide_settings(
    inputs: Sequence[str | os.PathLike[str]],
    storage_options: fileio.Options,
    annotations: str | os.PathLike[str] | None,
) -> list[tuple[str, Path | str, dict[str, Any]]]:
    """(slide id, path, settings) of every slide found, annotations resolved from the folder."""
    entries = find_slide_entries(inputs, storage_options)
    ids = assign_ids([e.path for e in entries], [e.slide_id for e in entries])
    found = []
    for sid, entry in zip(ids, entries, strict=True):
        settings = dict(entry.settings)
        path = find_annotations(str(entry.path), sid, settings, annotations)
        if path:
            settings["annotations"] = path
        found.append((sid, entry.path, settings))
    return found


def cluster_info(client: Client, *, dashboard: bool = True) -> dict[str, Any]:
    """The cluster's shape: workers with their threads, memory and resources, and each host's
    hardware (CPU model, cores, memory, GPUs). ``dashboard``: whether pathopipe asked the
    cluster it started for one (its HTTP API alone is no dashboard)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    try:
        facts = client.run(host_facts)
    except Exception:  # noqa: BLE001 (hardware facts are informative only)
        facts = {}
    hosts = {f["hostname"]: {k: v for k, v in f.items() if k != "pid"} for f in facts.values()}
    return {
        "address": client.scheduler.address if client.scheduler else None,
        "dashboard": dashboard_link(client) if dashboard else None,
        "workers": len(workers),
        "threads": sum(w["nthreads"] for w in workers.values()),
        "memory_limit_bytes": sum(w["memory_limit"] or 0 for w in workers.values()),
        "gpus": sum(len(f["gpus"]) for f in hosts.values()),
        "worker_list": [_worker_entry(address, w, facts) for address, w in sorted(workers.items())],
        "hosts": hosts,
    }


def _worker_entry(address: str, worker: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": address,
        "host": facts.get(address, {}).get("hostname", worker.get("host")),
        "pid": facts.get(address, {}).get("pid"),
        "nthreads": worker["nthreads"],
        "memory_limit_bytes": worker["memory_limit"],
        "resources": worker.get("resources", {}),
    }


@contextmanager
def _performance_report(out: str | Path, options: fileio.Options, *, enabled: bool) -> Iterator[None]:
    """Dask's performance report of the block (task stream, worker profiles, bandwidth), saved
    under ``OUT/report/`` when the block ends, also when it fails."""
    if not enabled:
        yield
        return
    from distributed import performance_report

    with tempfile.TemporaryDirectory(prefix="pathopipe-perf-") as folder:
        local = os.path.join(folder, RunLayout.PERFORMANCE_REPORT)
        try:
            with performance_report(filename=local):
                yield
        finally:
            if os.path.exists(local):
                with open(local, "rb") as fh:
                    target = RunLayout(out).report_file(RunLayout.PERFORMANCE_REPORT)
                    fileio.write_bytes(target, fh.read(), options)


def _record_end(
    ended: list[SlideRun], info: dict[str, Any], run_json: str | Path, options: fileio.Options
) -> None:
    """The run's end in run.json: when it finished (cluster closed), its start-up (its start to
    the first task) and shutdown (the last task's end to the cluster closed), also as phase rows
    of the metrics. A run that failed or was interrupted keeps what run.json had."""
    if not ended:
        return
    closed = time.time()
    info |= {"finished": closed, "seconds": closed - info["started"]}
    writer = ended[0].writer
    if writer.task_rows:
        first = min(row.start for row in writer.task_rows)
        last = max(row.end for row in writer.task_rows)
        info |= {"startup_seconds": first - info["started"], "shutdown_seconds": closed - last}
        writer.task_rows += phase_rows(info["started"], first, last, closed)
        writer.save(flush=True)
    write_run_json(run_json, info, options)


def warm_stages(client: Client, stages: Sequence[SlideStage]) -> None:
    """Start each stage's ``warm`` (a model build) on the workers that can take its tasks,
    without waiting: it overlaps the earlier stages' first tasks."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    for stage in stages:
        if stage.warm is None:
            continue
        needed = stage.resources or {}
        able = [address for address, w in workers.items()
                if all(w.get("resources", {}).get(k, 0) >= v for k, v in needed.items())]  # fmt: skip
        if able:
            client.run(stage.warm, workers=able)  # returns at once: the work runs in the background


StageBuilder = Callable[[Client], "SlideStage | list[SlideStage]"]


def run_stage_on_out(
    out: str | Path,
    jobs: list[SlideJob],
    stage: SlideStage | list[SlideStage] | StageBuilder,
    info: dict[str, Any],
    *,
    run_json: str | Path,
    manifest: str | Path,
    client: Client | None,
    cluster: ClusterConfig,
    force: bool,
    on_event: Callable[[ProgressEvent], None] | None,
    on_start: Callable[[dict[str, Any]], None] | None,
    storage_options: fileio.Options = None,
    lease_seconds: float = 60.0,
    perf_report: bool = False,
    warm: Sequence[str] = (),
) -> RunResult:
    """Run the stage(s) over ``jobs`` holding the lock on ``out``, on ``client`` or on the cluster
    ``cluster`` describes (started through the cluster registry); ``info`` (plus cluster, times,
    status counts) goes to ``run_json``.

    ``stage`` may be a function of the client (to choose task resources from the workers).
    ``out`` may be a URL (``s3://...``): ``storage_options`` reach it (never written anywhere), and
    the run lock there is a lease of ``lease_seconds``.
    ``perf_report``: also save Dask's performance report of the run as
    ``OUT/report/dask-performance.html``. ``warm``: modules the workers of a cluster started
    here import in the background as they start (torch and timm for a run with features).
    """
    with ExitStack() as stack:
        stack.enter_context(run_lock(out, storage_options, lease_seconds=lease_seconds))
        write_run_json(run_json, info, storage_options)
        ended: list[SlideRun] = []  # the run, once it has ended without an error
        # after the cluster has closed and before the lock is released: the run's end and its
        # start-up and shutdown, in run.json and as the metrics' phase rows
        stack.callback(_record_end, ended, info, run_json, storage_options)
        if client is None:
            cluster = cluster.for_slides(len(jobs))
            with dask.config.set({WARM_MODULES_KEY: [*WARM_MODULES, *warm]}):  # read as nannies start
                client = stack.enter_context(start_cluster(cluster))
            kind, dashboard = cluster.kind, cluster.wants_dashboard
        else:
            kind, dashboard = "external", True
        info["cluster"] = {"kind": kind, **cluster_info(client, dashboard=dashboard)}
        client.run(warm_worker)  # module imports: a start-up cost, not the first slides' (see stages)
        stages = stage(client) if callable(stage) else stage
        info["stages"] = [s.name for s in stages] if isinstance(stages, list) else [stages.name]
        warm_stages(client, stages if isinstance(stages, list) else [stages])
        write_run_json(run_json, info, storage_options)
        if on_start:
            on_start(info)
        run = SlideRun(client, jobs, stages, manifest=manifest, force=force, on_event=on_event,
                       metrics=RunLayout(out).metrics, storage_options=storage_options)  # fmt: skip
        with _performance_report(out, storage_options, enabled=perf_report):
            records = run.run()
        info["status_counts"] = {
            s: sum(r.status == s for r in records) for s in ("done", "skipped", "failed")
        }
        ended.append(run)
    return RunResult(out=out if fileio.is_url(out) else Path(out), records=records, info=info)
