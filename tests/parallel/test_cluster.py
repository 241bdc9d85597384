"""Clusters pathopipe starts: Dask's self-monitoring runs at low rates unless asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

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


def _freeze_count() -> int:
    import gc

    return gc.get_freeze_count()


def test_workers_started_here_keep_start_up_objects_out_of_the_first_tasks_collections() -> None:
    """Workers pathopipe starts freeze what their start-up imports created (the first tasks'
    garbage collections would walk it all); workers started elsewhere are left as they are."""
    import dask
    from distributed import Client, LocalCluster

    from pathopipe.parallel._worker_setup import warm_worker

    with local_client(ClusterConfig(n_workers=1, dashboard=False)) as client:
        deadline = time.monotonic() + 10  # the preload freezes on a thread, once its imports are done
        while (
            not (at_start := next(iter(client.run(_freeze_count).values()))) and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        client.run(warm_worker)
        (warmed,) = client.run(_freeze_count).values()
    assert at_start > 0  # the preload froze the worker's start-up imports
    assert warmed > at_start  # and a run's warm-up froze the stages' modules it imported
    # no preload, whatever a cluster open in this session (a fixture's) has set
    with (
        dask.config.set({"distributed.worker.preload": []}),
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(warm_worker)
        (elsewhere,) = client.run(_freeze_count).values()
    assert elsewhere == 0
