"""Starting and connecting to Dask clusters."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dask
from distributed import Client, LocalCluster

from pathopipe.config import ClusterConfig
from pathopipe.errors import BackendUnavailableError


def worker_environment() -> dict[str, str]:
    """Dask's pre-spawn environment for workers, without ``MALLOC_TRIM_THRESHOLD_``.

    Setting any glibc malloc threshold turns off glibc's dynamic mmap threshold, so every
    region buffer of a few hundred kB is mmapped and page-faulted afresh: slide reads in
    workers measured ~30 % slower (benchmarks/tiling.py). Without it, glibc keeps its defaults.
    """
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return environ


@contextmanager
def _serve(make_cluster: Callable[..., Any], config: ClusterConfig, **options: Any) -> Iterator[Client]:
    """Start a local cluster class on loopback with pathopipe's worker settings; yield a client."""
    # kept set while the cluster lives, so that restarted workers get the same environment
    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environment()}):
        cluster = make_cluster(
            threads_per_worker=config.threads_per_worker,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0" if config.dashboard else None,
            # task failures are reported per slide in the manifest; keep worker logs quiet
            silence_logs=logging.CRITICAL,
            **options,
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()


@contextmanager
def local_client(config: ClusterConfig) -> Iterator[Client]:
    """A ``LocalCluster`` of worker processes on loopback, and a client connected to it."""
    n_workers = config.n_workers or os.cpu_count() or 1
    with _serve(
        LocalCluster, config, n_workers=n_workers, processes=True, memory_limit=config.memory_limit
    ) as c:
        yield c


@contextmanager
def local_cuda_client(config: ClusterConfig) -> Iterator[Client]:
    """dask-cuda's ``LocalCUDACluster``: one worker per visible GPU, each offering ``GPU=1``."""
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError as err:
        raise BackendUnavailableError(
            "GPU extraction on a local cluster needs dask-cuda: pip install 'pathopipe[gpu]'"
        ) from err
    with _serve(LocalCUDACluster, config, resources={"GPU": 1}) as client:
        yield client


def dashboard_link(client: Client) -> str | None:
    """The dashboard address, when the cluster serves one."""
    try:
        return client.dashboard_link if client.cluster and client.cluster.dashboard_link else None
    except (AttributeError, KeyError):
        return None
