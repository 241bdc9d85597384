import numpy as np
import pytest
import zarr

from pathopipe.store import create_slide_store, open_tiles_for_write
from pathopipe.store.shards import _chunk_encoder, _layout_ok, read_tiles, write_tiles


def _tiles(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 250, (n, size // 4, size // 4, 3), dtype=np.uint8)
    return np.repeat(np.repeat(base, 4, axis=1), 4, axis=2)


@pytest.mark.parametrize("codec", ["jpeg", "zstd"])
def test_fast_shards_read_back_like_zarr_written_ones(tmp_path, codec):
    tiles = _tiles(10)
    tiles[2] = 255  # equals the fill value: zarr leaves that chunk out of its shard
    fast, slow = tmp_path / "fast.zarr", tmp_path / "slow.zarr"
    for path in (fast, slow):
        create_slide_store(path, n_tiles=10, tile_size=32, codec=codec, tiles_per_shard=4, attrs={})
    array = open_tiles_for_write(fast)
    sharding = _layout_ok(array)
    assert sharding is not None and _chunk_encoder(sharding) is not None  # the fast path applies
    for start in (0, 4, 8):  # the last shard is partial (2 of 4 tiles)
        write_tiles(array, start, tiles[start : start + 4])
    open_tiles_for_write(slow)[:] = tiles
    np.testing.assert_array_equal(zarr.open_array(fast / "tiles")[:], zarr.open_array(slow / "tiles")[:])
    if codec == "zstd":
        np.testing.assert_array_equal(zarr.open_array(fast / "tiles")[:], tiles)
    assert not list((fast / "tiles").rglob(".shard-*"))  # no temporary files left
    # the fast reader gives exactly what zarr gives, across shard boundaries
    for path in (fast, slow):
        array = zarr.open_array(path / "tiles")
        for a, b in ((0, 10), (3, 9), (8, 10), (5, 6)):
            np.testing.assert_array_equal(read_tiles(array, a, b), array[a:b])


def test_unaligned_writes_fall_back_to_zarr(tmp_path):
    tiles = _tiles(6)
    path = tmp_path / "s.zarr"
    create_slide_store(path, n_tiles=6, tile_size=32, codec="zstd", tiles_per_shard=4, attrs={})
    array = open_tiles_for_write(path)
    write_tiles(array, 1, tiles[1:3])  # not a whole shard
    np.testing.assert_array_equal(zarr.open_array(path / "tiles")[1:3], tiles[1:3])
