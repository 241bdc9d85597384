"""Slides from and output to S3, against a real S3 API server (moto) on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pathopipe import fileio, open_run
from pathopipe.config import load_config
from pathopipe.errors import BackendUnavailableError, StoreError
from pathopipe.output import read_manifest_records
from pathopipe.parallel.workflow import run_workflow
from pathopipe.testing import s3_server, write_synthetic_slide

pytest.importorskip("s3fs")
pytest.importorskip("moto")

SECRET = "pathopipe-secret-4f1c9e"  # must never appear in anything written
WORKFLOW = (
    "tiling: {target_mpp: 0.5, tile_size: 64, min_tissue_fraction: 0.3}\n"
    "store: {tiles_per_shard: 64}\n"
    "features: {models: [noop], device: cpu}\n"
    "cluster: {n_workers: 1, dashboard: false}\n"
)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server(key="pathopipe-test-key", secret=SECRET) as server:
        server.create_bucket("archive")
        server.create_bucket("results")
        slides = tmp_path_factory.mktemp("s3-slides")
        for i in range(3):
            slide = write_synthetic_slide(slides / f"s{i}.svs", width=1400, height=1100, seed=100 + i,
                                          downsamples=(4,), workers=1)  # fmt: skip
            server.upload(slide.path, f"s3://archive/cohort-a/{slide.path.name}")
        yield server, slides


def _config(tmp_path, server, *overrides):
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text(WORKFLOW)
    cfg = load_config(workflow, list(overrides))
    return cfg.model_copy(
        update={"storage": cfg.storage.model_copy(update={"options": server.storage_options})}
    )


def _all_objects(server, prefix: str) -> dict[str, bytes]:
    fs, inner = fileio.filesystem(prefix, server.storage_options)
    fs.invalidate_cache()
    return {name: fs.cat_file(name) for name in fs.find(inner)}


@pytest.mark.slow
def test_s3_slides_to_s3_output_match_a_local_run(tmp_path, s3, dask_client):
    server, local_slides = s3
    cfg = _config(tmp_path, server)
    result = run_workflow(["s3://archive/cohort-a/"], "s3://results/run1", cfg, client=dask_client)
    assert [r.status for r in result.records] == ["done"] * 3, [r.error for r in result.records]
    local = run_workflow([local_slides], tmp_path / "local", cfg, client=dask_client)
    assert [r.status for r in local.records] == ["done"] * 3

    remote_run = open_run("s3://results/run1", storage_options=server.storage_options)
    local_run = open_run(tmp_path / "local")
    assert remote_run.slide_ids == local_run.slide_ids == ["s0", "s1", "s2"]
    assert remote_run.models == ["noop"]
    for slide_id in remote_run.slide_ids:
        remote_ds, local_ds = remote_run.features(slide_id, "noop"), local_run.features(slide_id, "noop")
        np.testing.assert_array_equal(remote_ds["features"].values, local_ds["features"].values)
        np.testing.assert_array_equal(remote_run.coords(slide_id), local_run.coords(slide_id))
        np.testing.assert_array_equal(remote_run.tiles(slide_id)[:40].compute(),
                                      local_run.tiles(slide_id)[:40].compute())  # fmt: skip
        assert remote_run.slide_attrs(slide_id)["source_path"] == f"s3://archive/cohort-a/{slide_id}.svs"
    cohort = remote_run.cohort("noop")
    assert cohort.source == "stores" and cohort.n_rows == sum(
        len(remote_run.coords(s)) for s in cohort.slide_ids
    )

    # a packed cohort (written locally by `pathopipe pack`, then copied to the bucket) is read
    # lazily from object storage too
    from pathopipe.loader import pack_run

    pack_run(tmp_path / "local")
    fs, _ = fileio.filesystem("s3://results/", server.storage_options)
    fs.put(str(tmp_path / "local"), "results/copied", recursive=True)
    copied = open_run("s3://results/copied", storage_options=server.storage_options, use_cohort="always")
    packed = copied.cohort("noop")
    assert packed.source == "packed" and packed.slide_ids == cohort.slide_ids
    np.testing.assert_array_equal(packed.features.compute(), cohort.features.compute())
    np.testing.assert_array_equal(packed.bag("s1")[0], cohort.bag("s1")[0])

    # everything the run wrote is on object storage, and no credential is in any of it
    objects = _all_objects(server, "s3://results/run1")
    names = {name.split("/", 2)[2] for name in objects}
    assert {"manifest.csv", "run.json", "metrics.parquet", ".pathopipe.lock"} <= names
    assert any(n.startswith("slides/s0.zarr/tiles/c/") for n in names)
    for name, data in objects.items():
        assert SECRET.encode() not in data and b"pathopipe-test-key" not in data, name
    assert not (tmp_path / "results").exists()

    # object-storage traffic per task is measured (tile shards written, slide bytes read)
    from pathopipe.output.metrics import read_metrics

    table = read_metrics("s3://results/run1/metrics.parquet", server.storage_options)
    work = table[(table.stage == "tiles") & (table.role == "work")]
    assert (work.storage_requests > 0).all() and (work.storage_bytes_written > 0).all()
    # every slide's shards read its bytes; one shard may read none, its source tiles all decoded
    # by the worker's previous shard (the store's coordinates are opened once per plan)
    assert (work.groupby("slide_id").storage_bytes_read.sum() > 0).all()

    # the report is written beside the run, with the object-storage traffic per slide
    from pathopipe.report import write_report

    paths = write_report("s3://results/run1", options=server.storage_options).paths
    summary = json.loads(fileio.read_bytes(paths["json"], server.storage_options))
    traffic = summary["object_storage"]
    assert traffic["slides"] == 3
    assert traffic["requests_total"] == int(table.storage_requests[table.run_id == table.run_id.max()].sum())
    assert traffic["bytes_read_per_slide"] > 0 and traffic["bytes_written_per_slide"] > 0
    markdown = fileio.read_bytes(paths["md"], server.storage_options).decode()
    assert "## Object storage" in markdown and "| Requests per slide |" in markdown
    assert fileio.exists("s3://results/run1/report/tiles_per_slide.csv", server.storage_options)
    assert summary["storage"]["stored_bytes_total"] == sum(
        fileio.total_bytes(f"s3://results/run1/slides/{s}.zarr", server.storage_options)
        for s in remote_run.slide_ids
    )

    # verify reads the stores on object storage: all well, then a deleted shard object is found
    from pathopipe.output.verify import verify_run

    checked = verify_run("s3://results/run1", options=server.storage_options)
    assert checked.ok and checked.slides == 3 and checked.arrays >= 9, checked.problems
    shard = sorted(n for n in objects if "/slides/s1.zarr/tiles/c/" in n)[0]
    fs.rm(shard)
    damaged = verify_run("s3://results/run1", options=server.storage_options)
    assert not damaged.ok and any(p.slide_id == "s1" and "missing" in p.message for p in damaged.problems)
    fs.pipe_file(shard, objects[shard])  # put it back for the rerun below

    from pathopipe.output import run_status

    status = run_status("s3://results/run1", server.storage_options)
    assert status.state == "finished" and status.counts == {"done": 3} and status.owner is None

    # a rerun skips everything complete
    again = run_workflow(["s3://archive/cohort-a/"], "s3://results/run1", cfg, client=dask_client)
    assert {r.status for r in again.records} == {"skipped"}


def test_wrong_endpoint_or_missing_bucket_fails_before_any_work(tmp_path, s3, dask_client):
    server, _ = s3
    cfg = _config(tmp_path, server)
    with pytest.raises(StoreError, match="bucket 'nope' does not exist"):
        run_workflow(["s3://archive/cohort-a/"], "s3://nope/run", cfg, client=dask_client)
    with pytest.raises(StoreError, match="bucket 'missing' does not exist"):
        run_workflow(["s3://missing/slides/"], "s3://results/run-x", cfg, client=dask_client)
    assert not _all_objects(server, "s3://results/run-x")
    wrong = server.storage_options | {"endpoint_url": "http://127.0.0.1:9"}
    bad = cfg.model_copy(update={"storage": cfg.storage.model_copy(update={"options": wrong})})
    with pytest.raises(StoreError, match=r"not reachable.*check the endpoint") as err:
        run_workflow(["s3://archive/cohort-a/"], "s3://results/run-y", bad, client=dask_client)
    assert SECRET not in str(err.value)


@pytest.mark.slow
def test_a_killed_s3_run_is_finished_by_a_rerun(tmp_path, s3):
    """Credentials from the environment; the client and its workers are SIGKILLed mid-run."""
    server, _ = s3
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text(WORKFLOW.replace("models: [noop]", "models: []"))
    env = os.environ | server.environment
    command = [sys.executable, "-m", "pathopipe", "run", str(workflow), "--slides", "s3://archive/cohort-a/",
               "--out", "s3://results/killed", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(command, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    fs, _ = fileio.filesystem("s3://results/", server.storage_options)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:  # kill it once a tile shard is written
        records = read_manifest_records("s3://results/killed", server.storage_options)
        fs.invalidate_cache()
        if any(r.status in ("running", "done") for r in records) and any(
            "/tiles/c/" in path for path in fs.find("results/killed/slides")
        ):
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    records = read_manifest_records("s3://results/killed", server.storage_options)
    assert any(r.status == "running" for r in records)  # the manifest says it did not finish

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "taking over" in done.stderr  # the killed run's lease, owned by a dead pid here
    records = read_manifest_records("s3://results/killed", server.storage_options)
    assert {r.status for r in records} <= {"done", "skipped"} and len(records) == 3
    run = open_run("s3://results/killed", storage_options=server.storage_options)
    assert run.slide_ids == ["s0", "s1", "s2"]
    for slide_id in run.slide_ids:
        assert run.tiles(slide_id).compute().shape[0] == len(run.coords(slide_id))
    from pathopipe.output.verify import verify_run

    assert verify_run("s3://results/killed", options=server.storage_options).ok  # every tile decodes
    # features for the tiles on S3, by the standalone extract command (credentials from the environment)
    extract = [sys.executable, "-m", "pathopipe", "extract", "s3://results/killed", "-m", "noop",
               "--device", "cpu", "--workers", "1", "--no-progress"]  # fmt: skip
    extracted = subprocess.run(extract, env=env, capture_output=True, text=True, timeout=300)
    assert extracted.returncode == 0, extracted.stderr
    run = open_run("s3://results/killed", storage_options=server.storage_options)
    assert run.models == ["noop"] and run.slides_with("noop") == ["s0", "s1", "s2"]
    assert (
        read_manifest_records("s3://results/killed/features-noop.csv", server.storage_options)[0].status
        == "done"
    )
    for name, data in _all_objects(server, "s3://results/killed").items():
        assert SECRET.encode() not in data, name
    assert SECRET not in done.stdout + done.stderr + extracted.stdout + extracted.stderr


def test_a_second_run_on_the_same_s3_output_is_refused(tmp_path, s3):
    from pathopipe.output import RunLockedError, lock_holder, run_lock

    server, _ = s3
    with run_lock("s3://results/locked", server.storage_options) as held:
        assert lock_holder("s3://results/locked", server.storage_options)["token"] == held.token
        with pytest.raises(RunLockedError, match="held by another pathopipe run"):
            run_lock("s3://results/locked", server.storage_options).acquire()
    assert lock_holder("s3://results/locked", server.storage_options) is None


def test_missing_s3_extra_is_a_clear_error():
    code = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from pathopipe import fileio\n"
        "try:\n    fileio.filesystem('s3://bucket/x')\n"
        "except Exception as err:\n    print(type(err).__name__, err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "BackendUnavailableError" in done.stdout and "pip install 'pathopipe[s3]'" in done.stdout
    assert issubclass(BackendUnavailableError, ImportError)
