"""The source-tile TIFF backend against OpenSlide, pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from pathopipe._process import reset as reset_process_state
from pathopipe.config import RunConfig, config_hash
from pathopipe.errors import SlideReadError
from pathopipe.slide import open_slide


def _whole_level(path: Path | str, level: int) -> np.ndarray:
    """OpenSlide's pixels of a whole level, read from (0, 0): exact on every level."""
    with open_slide(path, backend="openslide") as slide:
        return slide.read_region((0, 0), level, slide.info.level_dimensions[level])


def _crop_white(image: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    """``image[y:y+h, x:x+w]`` with white where the region leaves the image."""
    out = np.full((h, w, 3), 255, np.uint8)
    ih, iw = image.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, iw), min(y + h, ih)
    if x0 < x1 and y0 < y1:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = image[y0:y1, x0:x1]
    return out


def _regions(level_size: tuple[int, int], tile: int, seed: int) -> list[tuple[int, int, int, int]]:
    """Regions (level x, y, w, h): aligned to the source tiles, unaligned, on edges, outside."""
    lw, lh = level_size
    rng = np.random.default_rng(seed)
    regions = [(0, 0, tile, tile), (tile, 0, 2 * tile, tile), (0, 0, lw, lh)]  # aligned, whole level
    for _ in range(12):  # unaligned, anywhere inside
        w, h = (int(v) for v in rng.integers(1, 3 * tile, 2))
        regions.append((int(rng.integers(0, max(1, lw - w))), int(rng.integers(0, max(1, lh - h))), w, h))
    regions += [
        (lw - 100, lh - 80, 224, 224),  # crosses the right and bottom borders
        (lw - 1, 0, 50, 50),  # one column inside
        (lw + 10, lh + 10, 30, 30),  # wholly outside
    ]
    return regions


def _check_level(path: Path | str, level: int, *, seed: int = 0) -> None:
    expected = _whole_level(path, level)
    with open_slide(path, backend="tiff") as slide:
        ds = slide.info.level_downsamples[level]
        tile = slide._levels[level].tile_width
        for x, y, w, h in _regions(slide.info.level_dimensions[level], tile, seed):
            location = (x, y) if level == 0 else (round(x * ds), round(y * ds))
            assert slide._level_origin(location, level) == (x, y)  # nearest level pixel
            got = slide.read_region(location, level, (w, h))
            np.testing.assert_array_equal(got, _crop_white(expected, x, y, w, h), err_msg=f"{(x, y, w, h)}")


@pytest.mark.parametrize("fixture", ["aperio_slide", "generic_slide"])
def test_identical_to_openslide_at_every_level(fixture, request):
    slide = request.getfixturevalue(fixture)
    with open_slide(slide.path, backend="tiff") as reader:
        levels = reader.info.level_count
    assert levels == 3
    for level in range(levels):
        _check_level(slide.path, level, seed=level)


def test_identical_to_openslide_on_the_real_slide(real_slide):
    """The Aperio sample: 240 px JPEG tiles, YCbCr 2x2 subsampled, tagged RGB."""
    _check_level(real_slide, 0)


@pytest.mark.parametrize("compression", ["lzw", "zlib", None, "jpeg-ycbcr"])
def test_other_compressions_identical_to_openslide(tmp_path, generic_slide, compression):
    pixels = _whole_level(generic_slide.path, 0)[:1000, :1200]
    smaller = pixels[::4, ::4].copy()
    path = tmp_path / f"{compression}.tif"
    options: dict = {"photometric": "rgb", "tile": (128, 128), "compression": compression}
    if compression == "jpeg-ycbcr":  # tifffile's default JPEG: YCbCr, chroma halved both ways
        options |= {"photometric": "ycbcr", "compression": "jpeg"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(pixels, **options)
        tif.write(smaller, subfiletype=1, **options)
    with open_slide(path) as slide:
        assert slide.info.backend == "tiff"
    _check_level(path, 0)
    _check_level(path, 1)


def test_batch_reads_decode_each_source_tile_once(aperio_slide):
    # an unaligned 224 px grid over 256 px source tiles: neighbours share source tiles
    xs, ys = np.meshgrid(np.arange(37, 2000, 224), np.arange(11, 1500, 224))
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1)
    reset_process_state()  # the process-wide cache may hold tiles other tests decoded
    with open_slide(aperio_slide.path, backend="tiff", options={"tiff": {"threads": 2}}) as slide:
        batch = slide.read_regions(coords, 0, (224, 224))
        lv = slide._levels[0]
        touched = {
            ty * lv.across + tx
            for x, y in coords
            for ty in range(y // 256, (y + 223) // 256 + 1)
            for tx in range(x // 256, (x + 223) // 256 + 1)
        }
        assert slide.decoded == len(touched)
    with open_slide(aperio_slide.path, backend="openslide") as slide:
        singles = np.stack([slide.read_region((int(x), int(y)), 0, (224, 224)) for x, y in coords])
    np.testing.assert_array_equal(batch, singles)


def test_aligned_batches_decode_straight_into_the_output(aperio_slide):
    # whole source tiles (the last column and row cross the slide border) and a repeated tile
    xs, ys = np.meshgrid(np.arange(0, 6001, 256), np.arange(2048, 4003, 256))
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
    coords = np.concatenate([grid[:3], [[512, 2048]], grid[3:]])  # (512, 2048) twice, close together
    reset_process_state()
    with open_slide(aperio_slide.path, backend="tiff", options={"tiff": {"threads": 2}}) as slide:
        batch = slide.read_regions(coords, 0, (256, 256))
        # every tile decoded once: straight into the output, or (border tiles and the tile asked
        # for twice) through the cache
        assert slide.decoded == xs.size
    with open_slide(aperio_slide.path, backend="openslide") as slide:
        for region, (x, y) in zip(batch, coords, strict=True):
            np.testing.assert_array_equal(region, slide.read_region((int(x), int(y)), 0, (256, 256)))


def test_a_small_cache_still_reads_right(aperio_slide):
    coords = np.array([[x, 100] for x in range(0, 5000, 300)])
    with open_slide(aperio_slide.path, backend="tiff", options={"tiff": {"cache_mb": 0.5}}) as slide:
        small = slide.read_regions(coords, 0, (700, 700))
        assert slide.cache.bytes <= 0.5 * (1 << 20) + 256 * 256 * 3
    with open_slide(aperio_slide.path, backend="tiff") as slide:
        np.testing.assert_array_equal(small, slide.read_regions(coords, 0, (700, 700)))


def test_threads_share_one_small_cache_safely(aperio_slide):
    """Readers on four threads share the process cache; a 2 MiB cache evicts and recycles
    tile memory constantly, and every region must still be right."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(5)
    jobs = [rng.integers(0, 5000, (40, 2)) for _ in range(4)]
    expected = _whole_level(aperio_slide.path, 0)

    def work(coords: np.ndarray) -> np.ndarray:
        with open_slide(
            aperio_slide.path, backend="tiff", options={"tiff": {"cache_mb": 2, "threads": 2}}
        ) as slide:
            return slide.read_regions(coords, 0, (300, 300))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, jobs))
    for coords, regions in zip(jobs, results, strict=True):
        for (x, y), region in zip(coords, regions, strict=True):
            np.testing.assert_array_equal(region, _crop_white(expected, int(x), int(y), 300, 300))


def test_unsupported_layouts_fall_back_to_another_backend(tmp_path, generic_slide):
    pixels = _whole_level(generic_slide.path, 0)[:600, :800]
    path = tmp_path / "stripped.tif"
    tifffile.imwrite(path, pixels, photometric="rgb", rowsperstrip=64)  # strips, not tiles
    with open_slide(path) as slide:
        assert slide.info.backend == "tiffslide"  # openslide does not read stripped TIFFs either
    with pytest.raises(Exception, match="not tiled"):
        open_slide(path, backend="tiff")


def test_a_corrupt_tile_names_the_file_and_tile(tmp_path, aperio_slide):
    path = tmp_path / "corrupt.svs"
    data = bytearray(aperio_slide.path.read_bytes())
    with tifffile.TiffFile(aperio_slide.path) as tif:
        page = tif.series[0].levels[0].pages[0]
        across = -(-page.imagewidth // page.tilewidth)
        index = 8 * across + 10  # a tile in the middle of the slide
        offset = page.dataoffsets[index]
    data[offset : offset + 64] = b"\0" * 64
    path.write_bytes(bytes(data))
    with open_slide(path, backend="tiff") as slide:
        slide.read_region((0, 0), 0, (512, 512))  # other tiles read fine
        with pytest.raises(SlideReadError, match=f"source tile {index}") as caught:
            slide.read_regions([(10 * 256 + 5, 8 * 256 + 5)], 0, (100, 100))
        assert slide.downscale_method(0, 2) == "jpeg-dct"  # decoded pre-scaled: the same error
        with pytest.raises(SlideReadError, match=f"source tile {index}") as scaled:
            slide.read_regions_downscaled([(10 * 256 + 4, 8 * 256 + 4)], 0, (200, 200), 2)
    assert str(path) in str(caught.value) and str(path) in str(scaled.value)


def test_reads_fsspec_urls(aperio_slide):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.pipe("/slides/a.svs", aperio_slide.path.read_bytes())
    coords = np.array([[0, 0], [1234, 567], [5900, 3900]])
    with open_slide("memory://slides/a.svs") as remote, open_slide(aperio_slide.path) as local:
        assert remote.info.backend == "tiff"
        assert remote.info.level_dimensions == local.info.level_dimensions
        np.testing.assert_array_equal(
            remote.read_regions(coords, 0, (300, 300)), local.read_regions(coords, 0, (300, 300))
        )
        np.testing.assert_array_equal(
            remote.read_region((0, 0), 2, (375, 250)), local.read_region((0, 0), 2, (375, 250))
        )
        assert remote.downscale_method(0, 2) == "jpeg-dct"  # its probe reads a tile by range
        np.testing.assert_array_equal(
            remote.read_regions_downscaled(coords, 0, (448, 448), 2),
            local.read_regions_downscaled(coords, 0, (448, 448), 2),
        )
    fs.rm("/slides/a.svs")


def test_cache_and_threads_do_not_change_the_config_hash():
    base = RunConfig()
    tuned = RunConfig.model_validate({"slide": {"cache_mb": 16, "decode_threads": 1}})
    assert config_hash(base) == config_hash(tuned)
    assert config_hash(base) != config_hash(RunConfig.model_validate({"slide": {"backend": "openslide"}}))
