"""``pathopipe run``: tiling + extraction over a cohort as one computation, failure isolation,
resume after a killed client, a killed worker, the run lock, ``pathopipe status``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.config import ClusterConfig, load_config
from pathopipe.output import RunLock, lock_holder, read_manifest_records, run_status
from pathopipe.parallel import local_client
from pathopipe.parallel._driver import SlideStage, run_slides
from pathopipe.parallel.run import plan_jobs
from pathopipe.parallel.stages import tiling_stage
from pathopipe.parallel.workflow import run_workflow
from pathopipe.testing import write_synthetic_slide

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
SMALL = ["tiling.target_mpp=0.5", "tiling.min_tissue_fraction=0.3", "cluster.dashboard=false"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """20 slides: 17 readable, 2 corrupt files, 1 without resolution metadata."""
    folder = tmp_path_factory.mktemp("cohort")
    for i in range(17):
        write_synthetic_slide(
            folder / f"case-{i:02d}.svs", width=1400, height=1100, seed=100 + i, downsamples=(4,), workers=1
        )
    good = (folder / "case-00.svs").read_bytes()
    (folder / "corrupt-truncated.svs").write_bytes(good[: len(good) // 4])
    (folder / "corrupt-text.svs").write_text("not a slide\n")
    write_synthetic_slide(folder / "no-mpp.svs", width=1400, height=1100, seed=99, mpp=None, workers=1)
    return folder


def _workflow(tmp_path: Path, models: str = "[noop]", extra: str = "") -> Path:
    path = tmp_path / "workflow.yaml"
    path.write_text(
        "tiling: {target_mpp: 0.5, min_tissue_fraction: 0.3}\n"
        f"features: {{models: {models}, device: cpu, batch_size: 8}}\n"
        f"cluster: {{n_workers: 2, dashboard: false}}\n{extra}"
    )
    return path


def test_cohort_with_bad_slides_finishes_17_done_3_failed(cohort, tmp_path, dask_client):
    out = tmp_path / "out"
    cfg = load_config(_workflow(tmp_path))
    result = run_workflow([cohort], out, cfg, client=dask_client)
    by_status: dict[str, list] = {}
    for r in result.records:
        by_status.setdefault(r.status, []).append(r)
    assert len(by_status["done"]) == 17 and len(by_status["failed"]) == 3
    failed = {r.slide_id: r for r in by_status["failed"]}
    assert set(failed) == {"corrupt-truncated", "corrupt-text", "no-mpp"}
    assert "corrupt-text.svs" in failed["corrupt-text"].error and failed["corrupt-text"].stage == "tiles"
    assert "mpp" in failed["no-mpp"].error and "assume_mpp" in failed["no-mpp"].error
    for r in by_status["done"]:  # tiles and features, row-aligned, both complete
        group = zarr.open_group(out / "slides" / f"{r.slide_id}.zarr", mode="r")
        assert group.attrs["complete"] and group["features/noop"].attrs["complete"]
        assert group["features/noop/features"].shape == (group["coords"].shape[0], 3) == (r.n_tiles, 3)
        assert "tiles=" in r.timings and "features=" in r.timings
    manifest = {r.slide_id: r for r in read_manifest_records(out / "manifest.csv")}
    assert manifest["corrupt-truncated"].status == "failed" and manifest["corrupt-truncated"].error
    status = run_status(out)
    assert status.state == "finished" and status.counts == {"done": 17, "failed": 3}
    assert status.stages == ["tiles", "features"]
    again = run_workflow([cohort], out, cfg, client=dask_client)  # resume: nothing redone
    assert sorted(r.status for r in again.records) == ["failed"] * 3 + ["skipped"] * 17


def _store_arrays(out: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for store in sorted((out / "slides").glob("*.zarr")):
        group = zarr.open_group(store, mode="r")
        assert group.attrs["complete"] is True, store
        for name in ("coords", "tiles", "features/noop/features"):
            arrays[f"{store.name}/{name}"] = group[name][:]
    return arrays


def _complete_store_stamps(out: Path) -> dict[str, int]:
    """zarr.json modification times of complete slides (changed if a slide were redone)."""
    stamps = {}
    for store in (out / "slides").glob("*.zarr"):
        meta = store / "zarr.json"
        features = store / "features" / "noop" / "zarr.json"
        if not (meta.exists() and features.exists()):
            continue
        tiles_done = zarr.open_group(store, mode="r").attrs.get("complete")
        if tiles_done and zarr.open_group(features.parent, mode="r").attrs.get("complete"):
            stamps[store.name] = meta.stat().st_mtime_ns + features.stat().st_mtime_ns
    return stamps


@pytest.mark.slow
def test_sigkill_client_then_rerun_completes_identically(cohort, tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    for i in range(12):
        (slides / f"case-{i:02d}.svs").symlink_to(cohort / f"case-{i:02d}.svs")
    workflow = _workflow(tmp_path, extra="")
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "pathopipe", "run", str(workflow), "--slides", str(slides),
               "--out", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # kill once some, not all, slides are complete
            if (out / "slides").exists() and len(_complete_store_stamps(out)) >= 2:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no slide finished in time")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert run_status(out).state == "interrupted"
    before = _complete_store_stamps(out)
    assert 2 <= len(before) < 12
    args = ["run", str(workflow), "--slides", str(slides), "--out", str(out), "--no-progress"]
    rerun = runner.invoke(app, args)
    assert rerun.exit_code == 0, rerun.output
    records = {r.slide_id: r for r in read_manifest_records(out / "manifest.csv")}
    for slide_id in before:  # complete slides are not processed twice
        assert records[slide_id.removesuffix(".zarr")].status == "skipped"
    after = _complete_store_stamps(out)
    assert {k: after[k] for k in before} == before and len(after) == 12
    clean = tmp_path / "clean"
    assert (
        runner.invoke(
            app, ["run", str(workflow), "--slides", str(slides), "--out", str(clean), "--no-progress"]
        ).exit_code
        == 0
    )
    resumed, reference = _store_arrays(out), _store_arrays(clean)
    assert resumed.keys() == reference.keys()
    for key, value in reference.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)
    assert run_status(out).state == "finished"


def test_killed_worker_process_loses_no_slide(cohort, tmp_path):
    slides = sorted(cohort.glob("case-0*.svs"))[:6]
    cfg = load_config(None, SMALL)
    killed: list[int] = []
    with local_client(ClusterConfig(n_workers=2, dashboard=False)) as client:
        pids = list(client.run(os.getpid).values())

        def kill_one(event) -> None:
            if event.kind == "tiles" and not killed:
                killed.append(pids[0])
                os.kill(pids[0], signal.SIGKILL)  # mid-run: tasks are queued on it

        result = run_workflow(slides, tmp_path / "out", cfg, client=client, on_event=kill_one)
        assert killed and pids[0] not in client.run(os.getpid).values()  # replaced by the nanny
    assert [r.status for r in result.records] == ["done"] * 6, [r.error for r in result.records]


def _crash_on(slide_id: str, work):
    """A stage's work function that kills its worker process for one slide."""

    def work_or_crash(plan, start, stop):
        if plan.job.slide_id == slide_id:
            os._exit(13)
        return work(plan, start, stop)

    return work_or_crash


def test_task_killing_its_worker_twice_fails_only_its_slide(cohort, tmp_path):
    slides = sorted(cohort.glob("case-0*.svs"))[:3]
    cfg = load_config(None, SMALL)
    jobs = plan_jobs(slides, tmp_path)
    base = tiling_stage(cfg, "h")
    stage = SlideStage(**{**vars(base), "work": _crash_on("case-01", base.work)})
    with local_client(ClusterConfig(n_workers=2, dashboard=False, allowed_failures=1)) as client:
        records = run_slides(client, jobs, stage, manifest=tmp_path / "manifest.csv")
    status = {r.slide_id: r for r in records}
    assert status["case-00"].status == status["case-02"].status == "done"
    assert status["case-01"].status == "failed" and "KilledWorker" in status["case-01"].error


def test_run_lock_refuses_a_second_run_and_takes_over_a_killed_one(tmp_path, cohort):
    workflow = _workflow(tmp_path)
    args = ["run", str(workflow), "--slides", str(cohort / "case-00.svs"), "--out", str(tmp_path)]
    with RunLock(tmp_path):
        assert lock_holder(tmp_path)["pid"] == os.getpid()
        refused = runner.invoke(app, args)
    assert refused.exit_code == 3 and "in use by another pathopipe run" in refused.output
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathopipe.output import RunLock; "
         "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    assert lock_holder(tmp_path)["pid"] == holder.pid
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_holder(tmp_path) is None  # released by the kernel
    lock = RunLock(tmp_path)
    with lock:
        assert lock.previous_owner["pid"] == holder.pid


def test_status_command_and_slide_lists(cohort, tmp_path):
    listing = tmp_path / "slides.csv"
    listing.write_text(f"path\n{cohort / 'case-03.svs'}\ncase-04.svs\n")
    (tmp_path / "case-04.svs").symlink_to(cohort / "case-04.svs")
    out = tmp_path / "out"
    workflow = _workflow(tmp_path, models="[]")
    result = runner.invoke(
        app, ["run", str(workflow), "--slides", str(listing), "--slides", str(cohort / "no-*.svs"),
              "--out", str(out), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 1  # no-mpp failed
    shown = runner.invoke(app, ["status", str(out)])
    assert shown.exit_code == 0 and "finished" in shown.output and "2 done" in shown.output
    assert "no-mpp" in shown.output and "1 failed" in shown.output
    missing = runner.invoke(app, ["status", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no run.json" in missing.output
    bad = runner.invoke(app, ["run", str(workflow), "--slides", str(cohort), "--out", str(out),
                              "--cluster", "slurmm"])  # fmt: skip
    assert bad.exit_code == 2 and "did you mean 'slurm'" in bad.output


@pytest.mark.slow
def test_address_profile_joins_a_running_scheduler(cohort, tmp_path):
    """A real `dask scheduler` and `dask worker` started as processes; pathopipe joins them."""
    bin_dir = Path(sys.executable).parent
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen(
        [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(scheduler_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    procs = [scheduler]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        import json

        address = json.loads(scheduler_file.read_text())["address"]
        procs.append(subprocess.Popen(
            [str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
             "--no-dashboard", "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        result = runner.invoke(
            app, ["run", str(_workflow(tmp_path)), "--slides", str(cohort / "case-05.svs"),
                  "--out", str(tmp_path / "out"), "--cluster", "address",
                  "--set", f"cluster.address={address}", "--no-progress"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "address cluster: 1 workers" in result.output
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def test_missing_extras_and_empty_address_are_clear_errors(tmp_path, cohort):
    workflow = _workflow(tmp_path, models="[]")
    args = ["run", str(workflow), "--slides", str(cohort / "case-00.svs"), "--out", str(tmp_path / "o")]
    no_address = runner.invoke(app, [*args, "--cluster", "address"])
    assert no_address.exit_code == 2 and "cluster.address" in no_address.output
    try:
        import dask_kubernetes  # noqa: F401
    except ImportError:
        k8s = runner.invoke(app, [*args, "--cluster", "kubernetes"])
        assert k8s.exit_code == 2 and "pip install 'pathopipe[k8s]'" in k8s.output


def test_overlap_extraction_starts_before_all_tiling_is_done(cohort, tmp_path, dask_client):
    """Slides are scheduled together: features of early slides are computed while later slides
    are still being tiled (extraction tasks have priority over tiling tasks)."""
    order: list[str] = []

    def record(event) -> None:
        if event.kind == "tiles":
            order.append(event.stage)

    slides = sorted(cohort.glob("case-*.svs"))
    cfg = load_config(_workflow(tmp_path))
    result = run_workflow(slides, tmp_path / "out", cfg, client=dask_client, on_event=record)
    assert all(r.status == "done" for r in result.records)
    first_features, last_tiles = order.index("features"), len(order) - 1 - order[::-1].index("tiles")
    assert first_features < last_tiles, order


def test_metrics_record_every_task_with_steps(cohort, tmp_path, dask_client):
    from pathopipe.output.metrics import read_metrics

    out = tmp_path / "out"
    slides = sorted(cohort.glob("case-0*.svs"))[:3]
    result = run_workflow(slides, out, load_config(_workflow(tmp_path)), client=dask_client)
    table = read_metrics(out / "metrics.parquet")
    assert set(table["stage"]) == {"tiles", "features"}
    assert set(table["role"]) == {"prepare", "work", "finish"}
    assert table["run_id"].nunique() == 1 and (table["end"] >= table["start"]).all()
    for r in result.records:  # per slide and stage, the work tasks' tiles add up to the slide's tiles
        rows = table[(table["slide_id"] == r.slide_id) & (table["role"] == "work")]
        assert rows.groupby("stage")["tiles"].sum().to_dict() == {"tiles": r.n_tiles, "features": r.n_tiles}
    shards = table[(table["stage"] == "tiles") & (table["role"] == "work")]
    assert (shards["step_read_decode_resize"] > 0).all() and (shards["bytes_written"] > 0).all()
    # a worker thread opens each slide once (its first task of the slide, unless an earlier run on
    # this cluster did): later tasks only look the open reader up
    later = shards.sort_values("start").duplicated(subset=["worker", "slide_id"])
    assert (shards["step_open_slide"] >= 0).all() and (shards.loc[later, "step_open_slide"] < 0.005).all()
    stores = sum((p.stat().st_size for p in (out / "slides").rglob("c/*/0/0/0")), 0)
    assert shards["bytes_written"].sum() == stores  # every shard file, as written
    prepares = table[(table["stage"] == "tiles") & (table["role"] == "prepare")]
    assert (prepares["step_tissue"] > 0).all() and (table["peak_rss_bytes"] > 10e6).all()
    # the run's own start-up and shutdown: phase rows beside the tasks, and in run.json
    phases = read_metrics(out / "metrics.parquet", phases=True)
    assert list(phases["role"]) == ["startup", "shutdown"] and set(phases["stage"]) == {"run"}
    assert phases["end"].iloc[0] == pytest.approx(table["start"].min())  # start-up ends at the first task
    assert phases["start"].iloc[1] == pytest.approx(table["end"].max())  # shutdown starts at the last
    run = json.loads((out / "run.json").read_text())
    assert run["startup_seconds"] == pytest.approx(phases["seconds"].iloc[0]) and run["startup_seconds"] > 0
    assert (
        run["shutdown_seconds"] == pytest.approx(phases["seconds"].iloc[1]) and run["shutdown_seconds"] >= 0
    )
    assert run["finished"] == pytest.approx(phases["end"].iloc[1])
    run_workflow(slides, out, load_config(_workflow(tmp_path)), client=dask_client, force=True)
    again = read_metrics(out / "metrics.parquet")
    assert again["run_id"].nunique() == 2 and len(again) == 2 * len(table)


def test_run_json_records_the_cluster_shape(cohort, tmp_path, dask_client):
    import json

    out = tmp_path / "out"
    cfg = load_config(_workflow(tmp_path, models="[]"))
    run_workflow([cohort / "case-06.svs"], out, cfg, client=dask_client)
    cluster = json.loads((out / "run.json").read_text())["cluster"]
    assert cluster["workers"] == 2 == len(cluster["worker_list"]) and cluster["threads"] == 2
    host = next(iter(cluster["hosts"].values()))
    assert host["cpu_count"] == os.cpu_count() and host["memory_bytes"] > 0 and host["cpu_model"]
    assert cluster["gpus"] == len(host["gpus"])
