"""End-to-end tiling on a real LocalCluster, real Zarr stores and generated slides."""

from __future__ import annotations

import cv2
import numpy as np
import openslide
import pytest
import zarr

from pathopipe.config import RunConfig, load_config
from pathopipe.output import read_manifest
from pathopipe.parallel import tile_slides


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def _direct_read(path, attrs, x, y):
    """Independent reference: openslide's pixels of the stored level at the level pixel nearest
    to (x, y), resized with OpenCV. (On a level with a non-integer downsample, openslide's own
    read_region at (x, y) resamples by the fraction of a pixel; pathopipe takes the nearest.)"""
    slide = openslide.OpenSlide(path)
    size, level = attrs["read_size"], attrs["read_level"]
    if level == 0:
        region = np.asarray(slide.read_region((int(x), int(y)), 0, (size, size)))[..., :3]
    else:
        ds = slide.level_downsamples[level]
        lx, ly = round(x / ds), round(y / ds)
        exact = (round(lx * ds), round(ly * ds))  # a level-0 point openslide maps near (lx, ly)
        whole = np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]))[..., :3]
        region = np.full((size, size, 3), 255, np.uint8)
        part = whole[ly : ly + size, lx : lx + size]
        region[: part.shape[0], : part.shape[1]] = part
        resampled = np.asarray(slide.read_region(exact, level, (size, size)))[..., :3]
        assert np.abs(resampled.astype(int) - region).mean() < 2  # a sub-pixel shift, no more
    if size != attrs["tile_size"]:
        region = cv2.resize(region, (attrs["tile_size"],) * 2, interpolation=cv2.INTER_AREA)
    return region


def _config(*overrides: str) -> RunConfig:
    return load_config(None, list(overrides))


@pytest.fixture(scope="module")
def jpeg_run(tmp_path_factory, dask_client, aperio_slide):
    out = tmp_path_factory.mktemp("jpeg-run")
    cfg = _config("store.tiles_per_shard=64")
    return tile_slides([aperio_slide.path], out, cfg, client=dask_client), aperio_slide


def test_store_layout_and_attrs(jpeg_run):
    result, _ = jpeg_run
    assert [r.status for r in result.records] == ["done"]
    group = zarr.open_group(result.out / "slides" / "aperio.zarr", mode="r")
    attrs = dict(group.attrs)
    assert attrs["complete"] is True and attrs["schema_version"] == 1
    assert attrs["vendor"] == "aperio" and attrs["backend"] == "tiff"
    assert attrs["mpp"] == pytest.approx(0.25) and attrs["mpp_source"] == "read"
    assert (attrs["target_mpp"], attrs["tile_size"], attrs["read_level"], attrs["read_size"]) == (
        0.5,
        224,
        0,
        448,
    )
    assert attrs["tile_size_level0"] == 448 and attrs["resize_factor"] == 0.5
    n = attrs["n_tiles"]
    assert n == result.records[0].n_tiles > 10
    assert group["tiles"].shape == (n, 224, 224, 3)
    assert group["coords"].shape == (n, 2) and group["coords"].dtype == np.int64
    assert group["tissue_fraction"].shape == (n,)
    assert group["mask"].dtype == bool and group["thumbnail"].shape[2] == 3
    assert group["mask"].attrs["downsample"][0] == pytest.approx(32, rel=0.02)
    per_shard = group["tiles"].shards[0]
    assert per_shard == RunConfig().store.model_copy(update={"tiles_per_shard": 64}).shard_size(n)
    shards = list((result.out / "slides" / "aperio.zarr" / "tiles" / "c").iterdir())
    assert len(shards) == -(-n // per_shard)  # one file per shard, not one per tile
    run = (result.out / "run.json").read_text()
    assert attrs["config_hash"] in run
    assert read_manifest(result.out)[0]["status"] == "done"


def test_coords_inside_slide_and_on_grid(jpeg_run):
    result, slide = jpeg_run
    group = zarr.open_group(result.out / "slides" / "aperio.zarr", mode="r")
    coords = group["coords"][:]
    assert (coords >= 0).all()
    assert (coords[:, 0] + 448 <= slide.width).all() and (coords[:, 1] + 448 <= slide.height).all()
    assert (coords % 448 == 0).all()  # level 0, stride 448 level-0 px
    assert len(np.unique(coords, axis=0)) == len(coords)
    assert (group["tissue_fraction"][:] >= 0.5).all()


def test_tiles_match_direct_openslide_reads_jpeg(jpeg_run):
    result, slide = jpeg_run
    group = zarr.open_group(result.out / "slides" / "aperio.zarr", mode="r")
    tiles, coords, attrs = group["tiles"][:], group["coords"][:], dict(group.attrs)
    for i in range(len(coords)):
        reference = _direct_read(slide.path, attrs, *coords[i])
        assert _psnr(tiles[i], reference) > 35, i


def test_tile_count_equals_independent_count_from_mask(jpeg_run):
    result, slide = jpeg_run
    group = zarr.open_group(result.out / "slides" / "aperio.zarr", mode="r")
    mask = group["mask"][:]
    dsx, dsy = group["mask"].attrs["downsample"]
    size = group.attrs["tile_size_level0"]
    stored = {tuple(c) for c in group["coords"][:]}
    # every grid position, tissue fraction by point sampling the mask
    selected, ambiguous = set(), set()
    offsets = (np.arange(100) + 0.5) / 100 * size
    for y in range(0, slide.height - size + 1, size):
        for x in range(0, slide.width - size + 1, size):
            px = np.minimum(((x + offsets) / dsx).astype(int), mask.shape[1] - 1)
            py = np.minimum(((y + offsets) / dsy).astype(int), mask.shape[0] - 1)
            fraction = mask[np.ix_(py, px)].mean()
            if abs(fraction - 0.5) < 0.02:
                ambiguous.add((x, y))
            elif fraction > 0.5:
                selected.add((x, y))
    assert selected - stored == set()
    assert stored - selected <= ambiguous
    assert abs(len(stored) - len(selected)) <= len(ambiguous)


@pytest.mark.parametrize(
    ("overrides", "level", "read_size"),
    [
        (("tiling.target_mpp=0.25", "tiling.tile_size=256"), 0, 256),  # native, no resize
        (("tiling.target_mpp=1.0",), 1, 224),  # native level 1 (downsample 4.0018)
        # from level 1, halved by averaging (the default decodes pre-scaled: test below)
        (("tiling.target_mpp=2.0", "tiling.tile_size=128", "tiling.resample=area"), 1, 256),
    ],
)
def test_zstd_tiles_identical_to_direct_reads(
    tmp_path, dask_client, aperio_slide, overrides, level, read_size
):
    cfg = _config("store.codec=zstd", "tiling.min_tissue_fraction=0.25", *overrides)
    result = tile_slides([aperio_slide.path], tmp_path, cfg, client=dask_client)
    assert result.records[0].status == "done"
    group = zarr.open_group(tmp_path / "slides" / "aperio.zarr", mode="r")
    attrs = dict(group.attrs)
    assert (attrs["read_level"], attrs["read_size"]) == (level, read_size)
    tiles, coords = group["tiles"], group["coords"][:]
    assert len(coords) > 0
    picks = np.linspace(0, len(coords) - 1, min(len(coords), 25)).astype(int)
    for i in picks:
        np.testing.assert_array_equal(tiles[int(i)], _direct_read(aperio_slide.path, attrs, *coords[i]))


def test_halved_tiles_decode_pre_scaled_by_default(tmp_path, dask_client, aperio_slide):
    cfg = _config("store.codec=zstd", "tiling.min_tissue_fraction=0.25", "tiling.target_mpp=0.5")
    result = tile_slides([aperio_slide.path], tmp_path, cfg, client=dask_client)
    assert result.records[0].status == "done"
    group = zarr.open_group(tmp_path / "slides" / "aperio.zarr", mode="r")
    attrs = dict(group.attrs)
    assert (attrs["resample"], attrs["tile_spec"]["resample"], attrs["read_size"]) == (
        "jpeg-dct",
        "jpeg-dct",
        448,
    )
    tiles, coords = group["tiles"], group["coords"][:]
    picks = np.linspace(0, len(coords) - 1, min(len(coords), 25)).astype(int)
    got = np.stack([tiles[int(i)] for i in picks]).astype(np.int16)
    expected = np.stack([_direct_read(aperio_slide.path, attrs, *coords[i]) for i in picks])
    diff = np.abs(got - expected)
    assert diff.mean() <= 0.5 and diff.max() <= 48  # the documented tolerance against averaging


def test_bad_slides_fail_alone(tmp_path, dask_client, aperio_slide, corrupt_slide, not_a_slide, nompp_slide):
    inputs = [aperio_slide.path, corrupt_slide, not_a_slide, nompp_slide.path]
    result = tile_slides(inputs, tmp_path, _config("tiling.target_mpp=1.0"), client=dask_client)
    by_id = {r.slide_id: r for r in result.records}
    assert by_id["aperio"].status == "done"
    assert by_id["notes"].status == "failed" and "SlideOpenError" in by_id["notes"].error
    assert "openslide" in by_id["notes"].error and "tiffslide" in by_id["notes"].error
    assert by_id["truncated"].status == "failed"
    assert by_id["nompp"].status == "failed" and "assume_mpp" in by_id["nompp"].error
    # nothing that failed is marked complete
    for sid in ("truncated", "nompp", "notes"):
        store = tmp_path / "slides" / f"{sid}.zarr"
        assert not store.exists() or zarr.open_group(store, mode="r").attrs["complete"] is False
    rows = {row["slide_id"]: row for row in read_manifest(tmp_path)}
    assert rows["truncated"]["status"] == "failed" and rows["truncated"]["error"]


def test_assumed_mpp_is_recorded(tmp_path, dask_client, nompp_slide):
    cfg = _config("slide.assume_mpp=0.25", "tiling.target_mpp=1.0")
    result = tile_slides([nompp_slide.path], tmp_path, cfg, client=dask_client)
    assert result.records[0].status == "done"
    attrs = zarr.open_group(tmp_path / "slides" / "nompp.zarr", mode="r").attrs
    assert attrs["mpp_source"] == "assumed" and attrs["mpp_assumed"] is True and attrs["mpp"] == 0.25
    assert "assumed" in result.records[0].warnings


def test_blank_slide_is_done_with_zero_tiles(tmp_path, dask_client, blank_slide):
    result = tile_slides([blank_slide.path], tmp_path, _config(), client=dask_client)
    record = result.records[0]
    assert record.status == "done" and record.n_tiles == 0 and "no tissue" in record.warnings
    group = zarr.open_group(tmp_path / "slides" / "blank.zarr", mode="r")
    assert group.attrs["complete"] is True and group["tiles"].shape[0] == 0


def test_rerun_skips_refuses_other_config_and_force_redoes(tmp_path, dask_client, generic_slide):
    cfg = _config("tiling.target_mpp=1.0")
    first = tile_slides([generic_slide.path], tmp_path, cfg, client=dask_client)
    assert first.records[0].status == "done"
    again = tile_slides([generic_slide.path], tmp_path, cfg, client=dask_client)
    assert again.records[0].status == "skipped" and again.records[0].n_tiles == first.records[0].n_tiles
    other = tile_slides([generic_slide.path], tmp_path, _config("tiling.target_mpp=2.0"), client=dask_client)
    assert other.records[0].status == "failed" and "--force" in other.records[0].error
    forced = tile_slides(
        [generic_slide.path], tmp_path, _config("tiling.target_mpp=2.0"), client=dask_client, force=True
    )
    assert forced.records[0].status == "done"
    assert zarr.open_group(tmp_path / "slides" / "generic.zarr").attrs["target_mpp"] == 2.0


def test_codec_none_stores_no_tiles(tmp_path, dask_client, generic_slide):
    result = tile_slides([generic_slide.path], tmp_path, _config("store.codec=none"), client=dask_client)
    group = zarr.open_group(tmp_path / "slides" / "generic.zarr", mode="r")
    assert result.records[0].status == "done" and "tiles" not in group and group["coords"].shape[0] > 0


def test_real_slide_tiles_sensibly(tmp_path, dask_client, real_slide):
    result = tile_slides([real_slide], tmp_path, _config(), client=dask_client)
    record = result.records[0]
    assert record.status == "done", record.error
    group = zarr.open_group(tmp_path / "slides" / "cmu-1-small-region.zarr", mode="r")
    attrs = dict(group.attrs)
    assert attrs["mpp"] == pytest.approx(0.499) and attrs["read_size"] == 224  # 0.499 ≈ 0.5: no resize
    n_grid = (2220 // 224) * (2967 // 224)
    assert 0.15 * n_grid < record.n_tiles < 0.7 * n_grid  # skin section covers about a third
    tiles = group["tiles"][:]
    assert tiles.mean() < 220  # tissue, not glass
    coords = group["coords"][:]
    reference = _direct_read(str(real_slide), attrs, *coords[0])
    assert _psnr(tiles[0], reference) > 35
