"""Decode thread pools shared by a process's readers (slide tiles and stored tiles)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def decode_pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of ``threads`` decode threads, made on first use (in the worker
    process that decodes, so nothing is pickled) and shared by its task threads."""
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="pathopipe-decode")
        return pool
