"""Clusters pathopipe starts: Dask's self-monitoring runs at low rates unless asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pathopipe.config import ClusterConfig
from pathopipe.parallel import local_client
from pathopipe.parallel.cluster import dask_environment, diagnostics_config


def _worker_diagnostics(dask_worker) -> dict:
    return {
        "profiling": "profile" in dask_worker.periodic_callbacks,
        "monitor_ms": dask_worker.periodic_callbacks["monitor"].callback_time,
        "tick_s": dask_worker._tick_interval,
    }


def _scheduler_diagnostics(dask_scheduler) -> dict:
    return {
        "monitor_ms": dask_scheduler.periodic_callbacks["monitor"].callback_time,
        "tick_s": dask_scheduler._tick_interval,
    }


def test_local_clusters_sample_no_stacks_unless_profile_is_on() -> None:
    with local_client(ClusterConfig(n_workers=1, dashboard=False)) as client:
        (worker,) = client.run(_worker_diagnostics).values()
        scheduler = client.run_on_scheduler(_scheduler_diagnostics)
    assert worker == {"profiling": False, "monitor_ms": 2000, "tick_s": 0.2}
    assert scheduler == {"monitor_ms": 2000, "tick_s": 0.2}
    with local_client(ClusterConfig(n_workers=1, dashboard=False, profile=True)) as client:
        (worker,) = client.run(_worker_diagnostics).values()
    assert worker["profiling"] is True


def test_job_environment_carries_the_same_settings_to_workers_started_elsewhere() -> None:
    """SLURM and Kubernetes workers get these as DASK_* variables: Dask must read them back."""
    settings = diagnostics_config(ClusterConfig())
    env = {**os.environ, **dask_environment(settings)}
    code = (
        "import dask, distributed, json; keys = json.loads(input()); "
        "print(json.dumps({k: dask.config.get(k) for k in keys}))"
    )
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(list(settings)), env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(done.stdout) == settings


def test_dashboard_auto_is_decided_by_the_run_size() -> None:
    auto = ClusterConfig()
    assert auto.dashboard == "auto" and auto.wants_dashboard  # unresolved: on, as before
    assert auto.for_slides(1).dashboard is False  # one slide: start ~0.3 s sooner
    assert auto.for_slides(5).dashboard is True
    assert ClusterConfig(dashboard=True).for_slides(1).dashboard is True  # a choice is kept
    assert ClusterConfig(dashboard=False).for_slides(9).dashboard is False
