"""The tiff backend's cache of decoded source tiles: one per worker process, bounded in bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np

from pathopipe._process import shared


class TileCache:
    """Decoded source tiles, least recently used first out, bounded in bytes; thread-safe.

    One cache per worker process (per size) is shared by every reader, so memory is bounded per
    process whatever the number of threads and open slides. Evicted tiles' arrays are kept (a
    few) for the next decodes to write into: fresh memory costs a page fault per 4 KiB on first
    touch, about as much as decoding the tile. Readers copy out of cached tiles while holding
    ``lock``, so a recycled array is never still being read.
    """

    def __init__(self, max_bytes: int, *, keep_free: int = 64) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.lock = threading.RLock()
        self._tiles: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._free: list[np.ndarray] = []
        self._keep_free = keep_free
        self._shared: set[int] = set()  # ids of arrays shared between keys (never recycled)

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
            old = self._tiles.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            self._tiles[key] = tile
            self.bytes += tile.nbytes
            while self.bytes > self.max_bytes and len(self._tiles) > 1:
                _, dropped = self._tiles.popitem(last=False)
                self.bytes -= dropped.nbytes
                if len(self._free) < self._keep_free and id(dropped) not in self._shared:
                    self._free.append(dropped)

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
            self.bytes = 0


_caches: dict[int, TileCache] = {}
_caches_lock = threading.Lock()


def shared_cache(max_bytes: int) -> TileCache:
    """This process's tile cache of ``max_bytes`` (made on first use, in the worker; see
    :mod:`pathopipe._process`)."""
    return shared("tile-caches", max_bytes, lambda: TileCache(max_bytes))
