"""Starting and connecting to Dask clusters."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from pathopipe.config import ClusterConfig


@contextmanager
def local_client(config: ClusterConfig) -> Iterator[Client]:
    """A ``LocalCluster`` of worker processes on loopback, and a client connected to it."""
    n_workers = config.n_workers or os.cpu_count() or 1
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=config.threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0" if config.dashboard else None,
        memory_limit=config.memory_limit,
        # task failures are reported per slide in the manifest; keep worker logs quiet
        silence_logs=logging.CRITICAL,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def dashboard_link(client: Client) -> str | None:
    """The dashboard address, when the cluster serves one."""
    try:
        return client.dashboard_link if client.cluster and client.cluster.dashboard_link else None
    except (AttributeError, KeyError):
        return None
