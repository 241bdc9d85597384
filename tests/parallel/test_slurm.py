"""The SLURM profile on a real (single-node) SLURM: workers are SLURM jobs, the run finishes.

Needs a running SLURM (``scripts/start_slurm.sh``, which ``.ci/run`` calls). Skipped when there
is none, unless ``PATHOPIPE_REQUIRE_SLURM=1`` (set by CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest
import zarr
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.testing import write_synthetic_slide


def _slurm_up() -> bool:
    if not shutil.which("sbatch") or not shutil.which("scontrol"):
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return "UP" in ping.stdout


@pytest.fixture(scope="module")
def slurm():
    if not _slurm_up():
        if os.environ.get("PATHOPIPE_REQUIRE_SLURM") == "1":
            pytest.fail("SLURM is not running; start it with scripts/start_slurm.sh")
        pytest.skip("no SLURM here (scripts/start_slurm.sh starts one)")


def _job_names() -> set[str]:
    listed = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True).stdout
    return {line.strip() for line in listed.splitlines() if "pathopipe-worker" in line}


def test_slurm_profile_run_completes_with_workers_as_jobs(slurm, tmp_path):
    slides = tmp_path / "slides"
    for i in range(3):
        write_synthetic_slide(
            slides / f"s{i}.svs", width=1400, height=1100, seed=i, downsamples=(4,), workers=1
        )
    profile = tmp_path / "slurm-test.yaml"
    profile.write_text(
        "cluster:\n  kind: slurm\n  dashboard: false\n  slurm:\n"
        "    cores: 1\n    processes: 1\n    memory: 2GiB\n    walltime: '00:15:00'\n"
        f"    minimum_jobs: 1\n    maximum_jobs: 2\n    log_directory: {tmp_path / 'logs'}\n"
    )
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        "tiling: {target_mpp: 0.5, min_tissue_fraction: 0.3}\nfeatures: {models: [noop], device: cpu}\n"
    )
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:  # what squeue shows while the run is going
        while not stop.is_set():
            seen.update(_job_names())
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = CliRunner().invoke(
            app, ["run", str(workflow), "--slides", str(slides), "--out", str(tmp_path / "out"),
                  "--cluster", str(profile), "--no-progress"],
        )  # fmt: skip
    finally:
        stop.set()
        watcher.join()
    assert result.exit_code == 0, result.output
    assert "slurm cluster" in result.output
    assert seen, "no pathopipe-worker job was seen in squeue"
    for i in range(3):
        group = zarr.open_group(tmp_path / "out" / "slides" / f"s{i}.zarr", mode="r")
        assert group.attrs["complete"] and group["features/noop"].attrs["complete"]
    deadline = time.monotonic() + 60  # the worker jobs end with the run
    while _job_names() and time.monotonic() < deadline:
        time.sleep(1)
    assert not _job_names()
