"""Process state: everything pathopipe keeps alive in a process between calls, in one place.

A Dask worker runs many tasks. Reopening a slide, rebuilding a model or page-faulting fresh
buffers in every task would cost more than the work, so a few things are kept per process or
per task thread. They are kept here and nowhere else, each with its bound:

=================  =======  ===========================================  ==========================
kind               scope    what                                         bound
=================  =======  ===========================================  ==========================
decode-pools       process  thread pools decoding tiles (slide, store)   one pool per thread count
tile-caches        process  decoded source tiles of the tiff backend     ``slide.cache_mb`` MiB per
                                                                         size asked (one in a run)
filesystems        process  fsspec filesystems for URLs                  one per protocol + options
io-counters        process  object-storage requests and bytes            a few integers
extractors         process  feature models of the running extraction     the models of one pass;
                                                                         others are released
open-slides        thread   open slide readers                           4 per task thread
open-stores        thread   tile coordinates and tile array of the       4 per task thread
                            stores being written (one per slide plan)
batch-buffers      thread   two uint8 batches for extraction             2 batches per task thread
prefetch-pool      thread   the thread decoding the next batch           1 thread per task thread
shard-buffer       thread   the tiles of a shard being read and encoded  64 tiles (a whole shard
                                                                         where zarr writes it)
=================  =======  ===========================================  ==========================

Nothing here is pickled or sent: each process builds its own on first use. :func:`reset`
forgets all of it (tests; freeing memory): objects in use keep working, the next call builds
anew.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

__all__ = ["KINDS", "decode_pool", "lru_entry", "process_dict", "reset", "shared", "thread_dict"]

T = TypeVar("T")

KINDS: dict[str, Literal["process", "thread"]] = {
    "decode-pools": "process",
    "tile-caches": "process",
    "filesystems": "process",
    "io-counters": "process",
    "extractors": "process",
    "open-slides": "thread",
    "open-stores": "thread",
    "batch-buffers": "thread",
    "prefetch-pool": "thread",
    "shard-buffer": "thread",
}

_lock = threading.RLock()
_process: dict[str, dict[Any, Any]] = {}
_thread = threading.local()
_generation = 0  # bumped by reset(): every thread's dicts are then made anew


def _check(kind: str, scope: str) -> None:
    if KINDS.get(kind) != scope:
        raise KeyError(f"{kind!r} is not a {scope} kind of pathopipe._process.KINDS ({', '.join(KINDS)})")


def process_dict(kind: str) -> dict[Any, Any]:
    """This process's dict for ``kind`` (made on first use); callers sharing it between threads
    use :func:`shared` or their own lock."""
    _check(kind, "process")
    with _lock:
        return _process.setdefault(kind, {})


def shared(kind: str, key: Hashable, make: Callable[[], T]) -> T:
    """This process's ``kind`` object for ``key``, made by ``make()`` on first use (thread-safe)."""
    _check(kind, "process")
    with _lock:
        found = _process.setdefault(kind, {})
        if key not in found:
            found[key] = make()
        return found[key]  # type: ignore[no-any-return, unused-ignore]


def thread_dict(kind: str) -> dict[Any, Any]:
    """This thread's dict for ``kind`` (made on first use, and again after :func:`reset`)."""
    _check(kind, "thread")
    if getattr(_thread, "generation", None) != _generation:
        _thread.generation, _thread.kinds = _generation, {}
    kinds: dict[str, dict[Any, Any]] = _thread.kinds
    return kinds.setdefault(kind, {})


def lru_entry(
    cache: dict[Any, T], key: Any, make: Callable[[], T], size: int, drop: Callable[[T], Any] | None = None
) -> T:
    """``cache[key]`` (made by ``make`` when missing), now the most recently used; beyond ``size``
    entries the least recently used go (each given to ``drop``, e.g. to close it)."""
    value = cache.pop(key) if key in cache else make()
    while len(cache) >= size:
        old = cache.pop(next(iter(cache)))
        if drop is not None:
            drop(old)
    cache[key] = value
    return value


def reset() -> None:
    """Forget every cached object of this process and of all its threads; what is still in use
    keeps working, and is dropped when its user lets go of it."""
    global _generation
    with _lock:
        _process.clear()
        _generation += 1


def decode_pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of ``threads`` decode threads, shared by its task threads (slide tiles
    and stored tiles; imagecodecs and simplejpeg release the GIL)."""
    return shared("decode-pools", threads,
                  lambda: ThreadPoolExecutor(threads, thread_name_prefix="pathopipe-decode"))  # fmt: skip
