"""Starting and connecting to Dask clusters: the registry of cluster kinds (``cluster.kind``,
``--cluster``), each a context manager yielding a connected client."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

import dask
from distributed import Client, LocalCluster

from pathopipe._registry import Registry
from pathopipe.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    from pathopipe.config import ClusterConfig

WORKER_SETUP = "pathopipe.parallel._worker_setup"  # the preload of workers pathopipe starts


def worker_environment() -> dict[str, str]:
    """Dask's pre-spawn environment for workers, without ``MALLOC_TRIM_THRESHOLD_``, without
    Hugging Face progress bars.

    Setting any glibc malloc threshold turns off glibc's dynamic mmap threshold, so every
    region buffer of a few hundred kB is mmapped and page-faulted afresh: slide reads in
    workers measured ~30 % slower (benchmarks/tiling.py). Without it, glibc keeps its defaults.
    """
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    # no Hugging Face progress bars (a transformers model's weight loading) on workers' stderr,
    # which is the user's terminal: pathopipe shows its own progress
    environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return environ


def diagnostics_config(config: ClusterConfig) -> dict[str, Any]:
    """Dask's self-monitoring at rates that cost compute-bound workers nothing measurable.

    Dask's defaults sample every worker thread's stack every 10 ms (the Profile page), time
    the event loop every 20 ms and read psutil's process, network and disk counters every
    500 ms, in the scheduler, every nanny and every worker. With torch on all cores that took
    ~6 % of the CPU and stalled the model's threads: extraction ran at 0.86-0.90 of the model
    alone (benchmarks/extraction.py). Stack sampling is on only with ``cluster.profile`` (and
    ``--perf-report``); the tick and the system monitor run at 200 ms and 2 s, still plenty
    for the dashboard's plots and Dask's warnings about a blocked event loop.
    """
    return {
        "distributed.worker.profile.enabled": config.profile,
        "distributed.admin.tick.interval": "200ms",
        "distributed.admin.system-monitor.interval": "2s",
        "distributed.admin.system-monitor.disk": False,
    }


def dask_environment(settings: dict[str, Any]) -> dict[str, str]:
    """Dask settings as the ``DASK_*`` variables a worker started elsewhere reads at import."""
    return {
        "DASK_" + key.upper().replace(".", "__").replace("-", "_"): repr(value)
        if not isinstance(value, str)
        else value
        for key, value in settings.items()
    }


def _scheduler_config(config: ClusterConfig) -> dict[str, Any]:
    """Dask settings for a scheduler pathopipe starts (it runs in this process) and, through
    the nannies or the job environment, for its workers."""
    return {
        **diagnostics_config(config),
        "distributed.nanny.pre-spawn-environ": worker_environment(),
        # a task that loses its worker more often than this fails its slide (KilledWorker)
        "distributed.scheduler.allowed-failures": config.allowed_failures,
        # no task waits in a worker's own queue: when a task kills its worker, only that task
        # is charged with the death, not the bystanders queued behind it
        "distributed.scheduler.worker-saturation": 1.0,
    }


@contextmanager
def _serve(make_cluster: Callable[..., Any], config: ClusterConfig, **options: Any) -> Iterator[Client]:
    """Start a local cluster class on loopback with pathopipe's worker settings; yield a client."""
    # kept set while the cluster lives, so that restarted workers get the same environment;
    # the workers preload pathopipe's set-up (warm imports, a quick exit)
    preload = [*(dask.config.get("distributed.worker.preload", default=None) or []), WORKER_SETUP]
    with dask.config.set({**_scheduler_config(config), "distributed.worker.preload": preload}):
        cluster = make_cluster(
            threads_per_worker=config.threads_per_worker,
            host="127.0.0.1",
            # a free port either way: with the dashboard off the scheduler still serves its
            # small HTTP API (health, metrics), which would otherwise try port 8787
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": config.wants_dashboard},
            # task failures are reported per slide in the manifest; keep worker logs quiet
            silence_logs=logging.CRITICAL,
            **options,
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()


def _missing_extra(what: str, extra: str, err: ImportError) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"{what} needs the [{extra}] extra: pip install 'pathopipe[{extra}]' ({err})"
    )


ClusterStarter = Callable[["ClusterConfig"], AbstractContextManager[Client]]
cluster_kinds: Registry[ClusterStarter] = Registry(
    "cluster kind", entry_point_group="pathopipe.cluster_kinds"
)


@cluster_kinds.register("local", description="LocalCluster of worker processes on loopback")
@contextmanager
def local_client(config: ClusterConfig) -> Iterator[Client]:
    """A ``LocalCluster`` of worker processes on loopback, and a client connected to it."""
    n_workers = config.n_workers or os.cpu_count() or 1
    with _serve(
        LocalCluster, config, n_workers=n_workers, processes=True, memory_limit=config.memory_limit
    ) as c:
        yield c


@cluster_kinds.register("local-cuda", description="dask-cuda: one worker per GPU + CPU workers", extra="gpu")
@contextmanager
def local_cuda_client(config: ClusterConfig) -> Iterator[Client]:
    """dask-cuda's ``LocalCUDACluster``: one worker per visible GPU, each offering ``GPU=1``,
    plus ``cpu_workers`` processes offering ``CPU`` (tiling tasks then go to those)."""
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError as err:
        raise _missing_extra("GPU extraction on a local cluster (dask-cuda)", "gpu", err) from err
    with _serve(LocalCUDACluster, config, resources={"GPU": 1}) as client:
        if config.cpu_workers:
            from distributed import Nanny

            cluster = client.cluster
            threads = config.threads_per_worker
            for i in range(config.cpu_workers):
                cluster.worker_spec[f"cpu-{i}"] = {  # type: ignore[union-attr]
                    "cls": Nanny,
                    "options": {
                        "nthreads": threads,
                        "host": "127.0.0.1",
                        "resources": {"CPU": threads},
                        "memory_limit": config.memory_limit,
                        "silence_logs": logging.CRITICAL,
                        "env": {"CUDA_VISIBLE_DEVICES": ""},
                    },
                }
            cluster.sync(cluster._correct_state)  # type: ignore[union-attr]
            client.wait_for_workers(len(cluster.worker_spec))  # type: ignore[union-attr]
        yield client


def _wait_for_first_worker(client: Client, timeout: float, where: str) -> None:
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise ConfigError(
            f"no Dask worker joined within {timeout:.0f} s; {where} "
            "(raise cluster.worker_timeout_s to wait longer)"
        ) from None


@cluster_kinds.register("slurm", description="dask-jobqueue: workers as SLURM jobs", extra="slurm")
@contextmanager
def slurm_client(config: ClusterConfig) -> Iterator[Client]:
    """Workers as SLURM jobs, scaled adaptively between ``minimum_jobs`` and ``maximum_jobs``."""
    try:
        from dask_jobqueue import SLURMCluster  # type: ignore[attr-defined]
    except ImportError as err:
        raise _missing_extra("the slurm cluster profile (dask-jobqueue)", "slurm", err) from err
    s = config.slurm
    env = repr(worker_environment())  # a Python literal, as Dask reads DASK_* variables
    prologue = [f"export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON={shlex.quote(env)}"] + [
        f"export {name}={shlex.quote(value)}"
        for name, value in dask_environment(diagnostics_config(config)).items()
    ]
    extra_args = []
    if s.worker_resources:
        extra_args += ["--resources", ",".join(f"{k}={v:g}" for k, v in s.worker_resources.items())]
    with dask.config.set(_scheduler_config(config)):
        cluster = SLURMCluster(
            queue=s.queue,
            account=s.account,
            cores=s.cores,
            processes=s.processes,
            memory=s.memory,
            walltime=s.walltime,
            job_extra_directives=s.job_extra_directives,
            worker_extra_args=extra_args,
            job_script_prologue=prologue,
            python=sys.executable,
            interface=s.interface,
            log_directory=s.log_directory,
            local_directory=s.local_directory,
            scheduler_options={"dashboard_address": ":0", "dashboard": config.wants_dashboard},
            job_name="pathopipe-worker",
        )
        try:
            cluster.adapt(minimum_jobs=max(1, s.minimum_jobs), maximum_jobs=s.maximum_jobs)
            with Client(cluster) as client:
                _wait_for_first_worker(client, config.worker_timeout_s, "check the jobs with `squeue --me`")
                yield client
        finally:
            cluster.close()


@cluster_kinds.register("kubernetes", description="dask-kubernetes KubeCluster: workers as pods", extra="k8s")
@contextmanager
def kubernetes_client(config: ClusterConfig) -> Iterator[Client]:
    """Workers as pods of the dask-kubernetes operator."""
    try:
        from dask_kubernetes.operator import KubeCluster
    except ImportError as err:
        raise _missing_extra("the kubernetes cluster profile (dask-kubernetes)", "k8s", err) from err
    k = config.kubernetes
    options: dict[str, Any] = {"image": k.image, "n_workers": k.n_workers, "resources": k.resources or None,
                               "env": dask_environment(diagnostics_config(config))}  # fmt: skip
    if k.namespace:
        options["namespace"] = k.namespace
    with dask.config.set(_scheduler_config(config)), KubeCluster(name="pathopipe", **options) as cluster:
        with Client(cluster) as client:
            _wait_for_first_worker(client, config.worker_timeout_s, "check the pods with `kubectl get pods`")
            yield client


@cluster_kinds.register("address", description="a running Dask scheduler (cluster.address)")
@contextmanager
def address_client(config: ClusterConfig) -> Iterator[Client]:
    """Join a scheduler started elsewhere (``dask scheduler`` + ``dask worker``)."""
    if not config.address:
        raise ConfigError(
            "cluster kind 'address' needs cluster.address, e.g. --set cluster.address=tcp://host:8786"
        )
    try:
        client = Client(config.address, timeout="30s")
    except OSError as err:
        raise ConfigError(f"cannot reach the Dask scheduler at {config.address}: {err}") from err
    with client:
        hint = f"start workers with `dask worker {config.address}`"
        _wait_for_first_worker(client, config.worker_timeout_s, hint)
        yield client


def start_cluster(config: ClusterConfig) -> AbstractContextManager[Client]:
    """Start (or join) the cluster ``config.kind`` names; a context manager yielding a client."""
    return cluster_kinds.get(config.kind)(config)


def dashboard_link(client: Client) -> str | None:
    """The dashboard address, when the cluster serves one."""
    cluster = client.cluster
    if cluster is None:
        return None
    try:
        return client.dashboard_link if cluster.dashboard_link else None
    except (AttributeError, KeyError):
        return None
