"""Hard faults: the output disk filling up mid-run. The manifest tells the truth, nothing
incomplete is marked complete, the message says what and where, and a rerun finishes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pathopipe.config import load_config
from pathopipe.output import read_manifest_records
from pathopipe.output.layout import RunLayout
from pathopipe.output.verify import verify_run
from pathopipe.parallel.workflow import run_workflow
from pathopipe.store.layout import read_status
from pathopipe.testing import write_synthetic_slide


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs mounted for the test (needs root; skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_fails_slides_truthfully_and_a_rerun_finishes(tmp_path, small_disk, dask_client):
    slides = tmp_path / "slides"
    for i in range(4):
        write_synthetic_slide(
            slides / f"d{i}.svs", width=1400, height=1100, seed=100 + i, downsamples=(4,), workers=1
        )
    out = small_disk / "out"
    cfg = load_config(None, ["store.codec=zstd", "tiling.target_mpp=0.25", "tiling.tile_size=128",
                             "tiling.min_tissue_fraction=0.3", "cluster.dashboard=false"])  # fmt: skip
    first = run_workflow([slides], out, cfg, client=dask_client)
    failed = [r for r in first.records if r.status == "failed"]
    assert failed, "3 MiB should not hold four slides' tiles"
    for r in failed:
        assert (
            "No space left on device" in r.error and "cannot write shard" in r.error and str(out) in r.error
        )
        assert not read_status(RunLayout(out).slide_store(r.slide_id)).complete
    manifest = {r.slide_id: r.status for r in read_manifest_records(out)}
    assert manifest == {r.slide_id: r.status for r in first.records}
    assert verify_run(out).ok  # every slide marked done is whole
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = run_workflow([slides], out, cfg, client=dask_client)
    statuses = {r.slide_id: r.status for r in again.records}
    assert all(statuses[r.slide_id] == "done" for r in failed)
    assert set(statuses.values()) <= {"done", "skipped"}
    report = verify_run(out)
    assert report.ok and report.slides == 4
    assert not list(Path(out).rglob(".shard-*"))  # no temporary shard left behind


def test_a_read_only_output_is_refused_before_anything_runs(tmp_path, small_disk):
    from typer.testing import CliRunner

    from pathopipe.cli.app import app

    slide = write_synthetic_slide(
        tmp_path / "r.svs", width=1400, height=1100, seed=100, downsamples=(4,), workers=1
    )
    (small_disk / "out").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = CliRunner().invoke(app, ["tile", str(slide.path), "--out", str(small_disk / "out"),
                                      "--set", "cluster.dashboard=false"])  # fmt: skip
    assert result.exit_code == 2
    assert "cannot write to the output folder" in result.output and "Read-only file system" in result.output


def _wait_for_a_done_slide(proc: subprocess.Popen, out: Path, timeout: float = 180) -> None:
    """Until the manifest of the running ``proc`` shows a finished slide (it must still run)."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if any(r.status == "done" for r in read_manifest_records(out)):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()


@pytest.mark.slow
def test_ctrl_c_stops_the_run_truthfully_and_a_rerun_finishes(tmp_path, dask_client):
    import signal
    import sys

    slides = tmp_path / "slides"
    n = 24  # enough that the run is still going once the manifest (written each second) shows one done
    for i in range(n):
        write_synthetic_slide(slides / f"c{i:02d}.svs", width=1400, height=1100, seed=100 + i % 7,
                              downsamples=(4,), workers=1)  # fmt: skip
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text(
        "tiling: {target_mpp: 0.5, tile_size: 64, min_tissue_fraction: 0.3}\n"
        "features: {models: [noop], device: cpu}\ncluster: {n_workers: 1, dashboard: false}\n"
    )
    out = tmp_path / "out"
    # a terminal's Ctrl-C reaches the whole process group: the client and its worker processes
    command = [sys.executable, "-m", "pathopipe", "run", str(workflow), "--slides", str(slides),
               "--out", str(out), "--no-progress"]  # fmt: skip
    # a shell's `command &` starts the test run with SIGINT ignored, which children inherit;
    # a terminal's run has it at its default (an installed handler is reset to it on exec)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    _wait_for_a_done_slide(proc, out)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "rerun the same command" in stderr
    records = read_manifest_records(out)
    done = [r for r in records if r.status == "done"]
    assert done and len(done) < n
    for r in done:
        assert read_status(RunLayout(out).slide_store(r.slide_id)).complete
    assert verify_run(out).ok
    cfg = load_config(workflow, ["cluster.dashboard=false"])
    again = run_workflow([slides], out, cfg, client=dask_client)
    assert {r.status for r in again.records} <= {"done", "skipped"} and len(again.records) == n
    assert verify_run(out).ok


def _start_dask(tmp_path: Path, name: str) -> tuple[str, list[subprocess.Popen]]:
    """A real `dask scheduler` and one `dask worker` process on loopback."""
    import json
    import sys
    import time

    bin_dir = Path(sys.executable).parent
    scheduler_file = tmp_path / f"{name}.json"
    scheduler = subprocess.Popen(
        [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not scheduler_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    address = json.loads(scheduler_file.read_text())["address"]
    worker = subprocess.Popen(
        [str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
         "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return address, [scheduler, worker]


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait(timeout=30)


@pytest.mark.slow
def test_losing_the_scheduler_stops_the_run_without_blaming_slides(tmp_path):
    import signal
    import sys

    slides = tmp_path / "slides"
    for i in range(8):
        write_synthetic_slide(slides / f"s{i}.svs", width=1400, height=1100, seed=100 + i % 7,
                              downsamples=(4,), workers=1)  # fmt: skip
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text("tiling: {target_mpp: 0.5, tile_size: 64, min_tissue_fraction: 0.3}\n"
                        "features: {models: [noop], device: cpu}\n")  # fmt: skip
    out = tmp_path / "out"
    address, procs = _start_dask(tmp_path, "first")
    try:
        command = [sys.executable, "-m", "pathopipe", "run", str(workflow), "--slides", str(slides),
                   "--out", str(out), "--cluster", "address", "--set", f"cluster.address={address}",
                   "--no-progress"]  # fmt: skip
        run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_a_done_slide(run, out)
        procs[0].send_signal(signal.SIGKILL)  # the scheduler dies mid-run
        _, stderr = run.communicate(timeout=180)
    finally:
        _stop(procs)
    assert run.returncode == 4, stderr
    assert "lost the connection to the Dask scheduler" in stderr and "rerun the same command" in stderr
    records = read_manifest_records(out)
    assert not [r for r in records if r.status == "failed"]  # the slides are not to blame
    done = [r for r in records if r.status == "done"]
    assert 0 < len(done) < 8
    assert all(read_status(RunLayout(out).slide_store(r.slide_id)).complete for r in done)
    address, procs = _start_dask(tmp_path, "second")
    try:
        command[command.index("--set") + 1] = f"cluster.address={address}"
        again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    finally:
        _stop(procs)
    assert again.returncode == 0, again.stderr
    assert {r.status for r in read_manifest_records(out)} <= {"done", "skipped"}
    assert verify_run(out).ok


def test_a_worker_killed_during_a_shard_write_loses_nothing(tmp_path):
    """SIGKILL lands in a real worker after a shard's bytes are written to their temporary file
    and before the rename: the nanny restarts the worker, the task reruns, the slide completes,
    no temporary file is left and every tile decodes."""
    from pathopipe.config import ClusterConfig
    from pathopipe.parallel import local_client

    slides = tmp_path / "slides"
    for i in range(3):
        write_synthetic_slide(slides / f"k{i}.svs", width=1400, height=1100, seed=100 + i,
                              downsamples=(4,), workers=1)  # fmt: skip
    marker = tmp_path / "killed-once"

    def kill_during_shard_write(marker: str) -> int:
        import os
        import signal

        from pathopipe.store import shards

        real = shards.os.replace

        def replace(src, dst):  # the shard writer's rename: its temporary file is complete
            if os.path.basename(str(src)).startswith(".shard-") and not os.path.exists(marker):
                with open(marker, "w") as fh:
                    fh.write(f"{os.getpid()} {src}")
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst)

        shards.os.replace = replace
        return os.getpid()

    cfg = load_config(None, ["tiling.target_mpp=0.5", "tiling.tile_size=64", "tiling.min_tissue_fraction=0.3",
                             "store.min_shards_per_slide=4", "store.tiles_per_shard=32"])  # fmt: skip
    with local_client(ClusterConfig(n_workers=1, dashboard=False)) as client:
        first_pid = next(iter(client.run(kill_during_shard_write, str(marker)).values()))
        result = run_workflow([slides], tmp_path / "out", cfg, client=client)
    killed_pid, temporary = marker.read_text().split(" ", 1)
    assert int(killed_pid) == first_pid  # the kill happened, in the worker, mid-write
    assert [r.status for r in result.records] == ["done"] * 3, [r.error for r in result.records]
    assert not Path(temporary).exists()
    assert not list((tmp_path / "out").rglob(".shard-*"))
    assert any("temporary shard file" in r.warnings for r in result.records)
    assert verify_run(tmp_path / "out").ok  # every shard present, every tile decodes
