"""The tiff backend's decoded-tile cache: bounded in bytes, and holding only what reads reuse."""

from __future__ import annotations

import numpy as np

from pathopipe.slide._tile_cache import TileCache

TILE = (64, 64, 3)
TILE_BYTES = int(np.prod(TILE))


def _read(cache: TileCache, keys: list[int]) -> int:
    """Read ``keys`` in order as the backend does (decode and store on a miss); returns decodes."""
    decodes = 0
    for key in keys:
        if cache.get(key) is None:
            tile = cache.recycled(TILE)
            cache.put(key, np.full(TILE, key % 251, np.uint8) if tile is None else tile)
            decodes += 1
    return decodes


def test_a_cache_whose_reads_fit_its_first_limit_stays_there():
    cache = TileCache(100 * TILE_BYTES, initial_bytes=10 * TILE_BYTES)
    rows = [list(range(r, r + 8)) for r in range(0, 400, 4)]  # each key read by two neighbouring rows
    decodes = sum(_read(cache, row) for row in rows)
    assert decodes == 404  # every key decoded once
    assert cache.limit == 10 * TILE_BYTES
    assert cache.bytes <= cache.limit


def test_a_cache_grows_to_the_reuse_it_sees_and_then_decodes_each_tile_once():
    """Rows of 30 tiles, each read again by the next row: a 10-tile cache evicts every tile
    before its second read; the first re-decode grows it to what keeps a row (30 tiles, + a
    quarter), and from then on each tile is decoded once."""
    cache = TileCache(100 * TILE_BYTES, initial_bytes=10 * TILE_BYTES)
    width = 30
    rows = [list(range(r * width, (r + 2) * width)) for r in range(50)]  # row r and r + 1
    first = sum(_read(cache, row) for row in rows[:3])
    assert 30 * TILE_BYTES < cache.limit <= 40 * TILE_BYTES  # a row and a quarter, not the bound
    rest = sum(_read(cache, row) for row in rows[3:])
    assert rest == width * (len(rows) - 3)  # one decode per new tile
    assert first == 4 * width + 20  # row 1 re-decodes the 20 tiles evicted before it grew
    assert cache.bytes <= cache.limit


def test_a_single_pass_or_a_reread_long_after_never_grows_the_cache():
    cache = TileCache(100 * TILE_BYTES, initial_bytes=10 * TILE_BYTES)
    keys = list(range(1000))
    assert _read(cache, keys) == 1000
    assert _read(cache, keys[:20]) == 20  # evicted 980 tiles ago: no cache of the bound keeps them
    assert cache.limit == 10 * TILE_BYTES


def test_the_limit_never_passes_the_bound():
    cache = TileCache(25 * TILE_BYTES, initial_bytes=10 * TILE_BYTES)
    for _ in range(3):
        _read(cache, list(range(22)))  # 22 tiles read again and again: 27 with a quarter to spare
    assert cache.limit == 25 * TILE_BYTES
    assert cache.bytes <= cache.limit
