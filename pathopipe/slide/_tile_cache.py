"""The tiff backend's cache of decoded source tiles: one per worker process, bounded in bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np

from pathopipe._process import shared

INITIAL_BYTES = 16 << 20  # a cache's first limit; it grows when it proves too small


class TileCache:
    """Decoded source tiles, least recently used first out, bounded in bytes; thread-safe.

    One cache per worker process (per size) is shared by every reader, so memory is bounded per
    process whatever the number of threads and open slides. Evicted tiles' arrays are kept (a
    few) for the next decodes to write into: fresh memory costs a page fault per 4 KiB on first
    touch, about as much as decoding the tile. Readers copy out of cached tiles while holding
    ``lock``, so a recycled array is never still being read.

    The cache holds at most ``limit`` bytes, which starts at ``initial_bytes`` and grows (up to
    ``max_bytes``) when a tile is decoded again soon after its eviction (among the last evicted
    tiles a cache of ``max_bytes`` would still hold) to what would have kept it: a decode a
    bigger cache saves. So a worker holds, and page-faults in, the memory its reads reuse
    rather than the whole bound: tiling the benchmark's 40,000 px wide slide reuses ~33 MiB at
    native resolution, ~18 MiB at 0.5 µm/px.
    """

    def __init__(self, max_bytes: int, *, keep_free: int = 64, initial_bytes: int = INITIAL_BYTES) -> None:
        self.max_bytes = max_bytes
        self.limit = min(max_bytes, initial_bytes)
        self.bytes = 0
        self.lock = threading.RLock()
        self._tiles: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._free: list[np.ndarray] = []
        self._keep_free = keep_free
        self._shared: set[int] = set()  # ids of arrays shared between keys (never recycled)
        # evicted key -> (its bytes, bytes evicted until then, the limit then); while limit < max
        self._evicted: OrderedDict[Hashable, tuple[int, int, int]] = OrderedDict()
        self._evicted_bytes = self._evicted_total = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        with self.lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def peek(self, key: Hashable) -> np.ndarray | None:
        """The tile of ``key`` without touching the LRU order; call it holding ``lock``."""
        return self._tiles.get(key)

    def __contains__(self, key: Hashable) -> bool:
        with self.lock:
            return key in self._tiles

    def put(self, key: Hashable, tile: np.ndarray, *, shared: bool = False) -> None:
        with self.lock:
            if shared:
                self._shared.add(id(tile))
            elif key in self._evicted:  # decoded again since its eviction
                self._grow_to_keep(key, tile.nbytes)
            old = self._tiles.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            self._tiles[key] = tile
            self.bytes += tile.nbytes
            while self.bytes > self.limit and len(self._tiles) > 1:
                dropped_key, dropped = self._tiles.popitem(last=False)
                self.bytes -= dropped.nbytes
                self._evicted_total += dropped.nbytes
                if self.limit < self.max_bytes:
                    self._evicted[dropped_key] = (dropped.nbytes, self._evicted_total, self.limit)
                    self._evicted_bytes += dropped.nbytes
                    self._forget_evicted()
                if len(self._free) < self._keep_free and id(dropped) not in self._shared:
                    self._free.append(dropped)

    def _grow_to_keep(self, key: Hashable, nbytes: int) -> None:
        """Raise the limit (with a quarter to spare, up to the bound) to what would have kept
        ``key`` until now: its limit then plus the bytes evicted after it."""
        size, stamp, limit_then = self._evicted.pop(key)
        self._evicted_bytes -= size
        needed = limit_then + self._evicted_total - stamp + nbytes
        if needed > self.limit:
            self.limit = min(self.max_bytes, needed + needed // 4)
            self._forget_evicted()

    def _forget_evicted(self) -> None:
        """Keep only the keys of the last evicted tiles a cache of ``max_bytes`` would hold."""
        while self._evicted and self._evicted_bytes > self.max_bytes - self.limit:
            size, _, _ = self._evicted.popitem(last=False)[1]
            self._evicted_bytes -= size

    def recycled(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """An evicted tile's array of ``shape`` to decode into, if one is free."""
        with self.lock:
            for i in range(len(self._free) - 1, -1, -1):
                if self._free[i].shape == shape:
                    return self._free.pop(i)
            return None

    def clear(self) -> None:
        with self.lock:
            self._tiles.clear()
            self._free.clear()
            self._evicted.clear()
            self.bytes = self._evicted_bytes = 0


_caches: dict[int, TileCache] = {}
_caches_lock = threading.Lock()


def shared_cache(max_bytes: int) -> TileCache:
    """This process's tile cache of ``max_bytes`` (made on first use, in the worker; see
    :mod:`pathopipe._process`)."""
    return shared("tile-caches", max_bytes, lambda: TileCache(max_bytes))
