import subprocess
import sys

import numpy as np
import pytest
import zarr

from pathopipe.store import JpegCodec, create_slide_store, open_tiles_for_write


def _tiles(n=10, size=64):
    rng = np.random.default_rng(0)
    base = rng.integers(100, 230, (n, size // 8, size // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)  # blocky, JPEG-friendly


def _psnr(a, b):
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-12))


@pytest.mark.parametrize("codec", ["jpeg", "zstd"])
def test_tile_array_roundtrip_and_shards(tmp_path, codec):
    tiles = _tiles(10)
    path = tmp_path / "s.zarr"
    create_slide_store(path, n_tiles=10, tile_size=64, codec=codec, tiles_per_shard=4, attrs={"a": 1})
    open_tiles_for_write(path)[:] = tiles
    back = zarr.open_array(path / "tiles")[:]
    if codec == "zstd":
        np.testing.assert_array_equal(back, tiles)
    else:
        assert _psnr(back, tiles) > 35
    shard_files = list((path / "tiles").rglob("c/*/0/0/0"))
    assert len(shard_files) == 3  # 10 tiles in shards of 4: three files, not ten
    group = zarr.open_group(path, mode="r")
    assert group.attrs["complete"] is False and group.attrs["schema_version"] == 1


def test_jpeg_codec_metadata_roundtrip():
    codec = JpegCodec(quality=80, subsampling="420")
    assert JpegCodec.from_dict(codec.to_dict()) == codec
    with pytest.raises(ValueError, match="quality"):
        JpegCodec(quality=0)


def test_plain_zarr_reads_tiles_through_the_entry_point(tmp_path):
    path = tmp_path / "s.zarr"
    create_slide_store(path, n_tiles=2, tile_size=64, codec="jpeg", tiles_per_shard=2, attrs={})
    open_tiles_for_write(path)[:] = _tiles(2)
    code = (
        "import sys, zarr; assert 'pathopipe' not in sys.modules; "
        "t = zarr.open_array(sys.argv[1])[1]; print(t.shape, t.dtype)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path / "tiles")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "(64, 64, 3) uint8" in out.stdout
