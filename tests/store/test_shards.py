import numpy as np
import pytest
import zarr

from pathopipe.store import create_slide_store, open_tiles_for_write
from pathopipe.store.shards import read_tiles, tile_layout, write_tiles


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
    layout = tile_layout(array)
    assert layout is not None and layout.encoder() is not None  # the fast path applies
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


def _jpeg_store(tmp_path, n=40, per_shard=16):
    tiles = _tiles(n, seed=1)
    path = tmp_path / "j.zarr"
    create_slide_store(path, n_tiles=n, tile_size=32, codec="jpeg", tiles_per_shard=per_shard, attrs={})
    array = open_tiles_for_write(path)
    for start in range(0, n, per_shard):
        write_tiles(array, start, tiles[start : start + per_shard])
    return path


@pytest.mark.parametrize("threads", [1, 3])
def test_rows_inside_shards_and_threaded_decode_equal_zarr(tmp_path, threads):
    path = _jpeg_store(tmp_path)
    array = zarr.open_array(path / "tiles")
    for a, b in ((0, 40), (5, 9), (17, 18), (15, 33), (32, 40)):
        out = np.zeros((b - a, 32, 32, 3), np.uint8)
        np.testing.assert_array_equal(read_tiles(array, a, b, out=out, threads=threads), array[a:b])
    # the same store through fsspec (what object storage uses): index and row ranges by request
    store = zarr.storage.FsspecStore.from_url(f"file://{path}", read_only=True)
    remote = zarr.open_array(store, path="tiles")
    assert tile_layout(remote) is not None
    np.testing.assert_array_equal(read_tiles(remote, 15, 33, threads=threads), array[15:33])


def test_corrupt_or_truncated_shards_are_reported_by_zarr(tmp_path):
    path = _jpeg_store(tmp_path)
    array = zarr.open_array(path / "tiles")
    shard = path / "tiles" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # the index checksum no longer matches
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum do not match"):
        read_tiles(array, 16, 20)
    np.testing.assert_array_equal(read_tiles(array, 0, 16), zarr.open_array(path / "tiles")[0:16])
    shard.write_bytes(bytes(data[:100]))  # cut short: smaller than its own index
    with pytest.raises(ValueError, match="checksum do not match"):
        read_tiles(array, 16, 20)
