"""The tiff backend's cache of decoded source tiles: one per worker process, bounded in bytes."""

from __future__ import annotations

import mmap
import threading
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np

from pathopipe._process import shared


class TileCache:
    """Decoded source tiles, least recently used first out, bounded in bytes; thread-safe.

    One cache per worker process (per size) is shared by every reader, so memory is bounded per
    process whatever the number of threads and open slides. Evicted tiles' memory is kept for
    the next decodes to write into: fresh memory costs a page fault per 4 KiB on first touch,
    about as much as decoding the tile. Readers copy out of cached tiles while holding ``lock``,
    so recycled memory is never still being read.

    :meth:`reserve` (a tiling worker's start-up: :func:`pathopipe.slide.prime_process`) maps
    and touches the budget, plus a read step in flight, at once: decodes then write into memory
    already faulted in, so the first slide a worker tiles pays no page faults inside its tasks
    (~50-90 ms per 128 MiB on the development machine). Without it, evicted tiles' arrays (a
    few) are recycled as they are.
    """

    def __init__(self, max_bytes: int, *, keep_free: int = 64) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.lock = threading.RLock()
        self._tiles: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._free: list[np.ndarray] = []
        self._keep_free = keep_free
        self._shared: set[int] = set()  # ids of arrays shared between keys (never recycled)
        self._arena: np.ndarray | None = None  # reserved memory (reserve), carved from _used on
        self._used = 0
        self._slots: dict[int, tuple[int, int]] = {}  # id of a view into the arena -> (offset, size)
        self._free_slots: list[tuple[int, int]] = []  # arena memory no cached tile uses

    def reserve(self) -> None:
        """Map the budget and a quarter more (the step a reader decodes before its tiles enter
        the cache) and touch every page of it now, for later decodes to use."""
        with self.lock:
            if self._arena is None:
                arena = np.frombuffer(mmap.mmap(-1, max(1, self.max_bytes * 5 // 4)), dtype=np.uint8)
                arena[:: mmap.PAGESIZE] = 0  # fault every page in (anonymous maps are zero already)
                self._arena, self._used = arena, 0

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
                slot = self._slots.pop(id(dropped), None)
                if slot is not None:  # reserved memory: always reused, by a tile of any shape that fits
                    self._free_slots.append(slot)
                elif len(self._free) < self._keep_free and id(dropped) not in self._shared:
                    self._free.append(dropped)

    def recycled(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """Memory for a tile of ``shape`` to be decoded into: an evicted tile's array of that
        shape, else reserved memory (freed by an evicted tile, or not yet used), else None."""
        with self.lock:
            for i in range(len(self._free) - 1, -1, -1):
                if self._free[i].shape == shape:
                    return self._free.pop(i)
            if self._arena is None:
                return None
            size = int(np.prod(shape))
            for i in range(len(self._free_slots) - 1, -1, -1):
                if self._free_slots[i][1] >= size:
                    return self._carve(self._arena, *self._free_slots.pop(i), shape)
            if self._used + size > len(self._arena):
                return None
            self._used += size
            return self._carve(self._arena, self._used - size, size, shape)

    def _carve(self, arena: np.ndarray, offset: int, room: int, shape: tuple[int, ...]) -> np.ndarray:
        tile = arena[offset : offset + int(np.prod(shape))].reshape(shape)
        self._slots[id(tile)] = (offset, room)
        return tile

    def clear(self) -> None:
        with self.lock:
            self._tiles.clear()
            self._free.clear()
            self.bytes = 0
            self._arena, self._used = None, 0  # tiles still in use elsewhere keep theirs
            self._slots.clear()
            self._free_slots.clear()


_caches: dict[int, TileCache] = {}
_caches_lock = threading.Lock()


def shared_cache(max_bytes: int) -> TileCache:
    """This process's tile cache of ``max_bytes`` (made on first use, in the worker; see
    :mod:`pathopipe._process`)."""
    return shared("tile-caches", max_bytes, lambda: TileCache(max_bytes))
