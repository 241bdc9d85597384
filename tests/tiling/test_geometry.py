import numpy as np
import pytest

from pathopipe.errors import SlideMetadataError, TilingError
from pathopipe.slide import SlideInfo, open_slide
from pathopipe.tiling import plan_grid, plan_tile_spec, tissue_fractions


def _info(mpp=0.25, dims=((40000, 30000), (10000, 7500), (2500, 1875)), ds=(1.0, 4.0, 16.0)):
    return SlideInfo(
        path="x.svs", backend="test", vendor=None, dimensions=dims[0], level_dimensions=dims,
        level_downsamples=ds, mpp_x=mpp, mpp_y=mpp, mpp_source="read" if mpp else None,
        objective_power=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("target", "level", "read_size", "tile_size_level0"),
    [(0.25, 0, 224, 224), (0.5, 0, 448, 448), (1.0, 1, 224, 896), (2.0, 1, 448, 1792), (4.0, 2, 224, 3584)],
)
def test_level_choice_and_read_size(target, level, read_size, tile_size_level0):
    spec = plan_tile_spec(_info(), target_mpp=target, tile_size=224)
    assert (spec.level, spec.read_size, spec.tile_size_level0) == (level, read_size, tile_size_level0)
    assert spec.resize == (read_size != 224)
    assert spec.effective_mpp == pytest.approx(target)


def test_tolerance_reads_near_native_without_resizing():
    spec = plan_tile_spec(_info(mpp=0.499, dims=((2220, 2967),), ds=(1.0,)), target_mpp=0.5, tile_size=224)
    assert not spec.resize and spec.effective_mpp == pytest.approx(0.499)
    strict = plan_tile_spec(
        _info(mpp=0.499, dims=((2220, 2967),), ds=(1.0,)), target_mpp=0.5, tile_size=224, mpp_tolerance=0
    )
    assert strict.read_size == 224 and strict.tile_size_level0 == 224  # 224.45 rounds to 224
    spec = plan_tile_spec(_info(mpp=0.2431), target_mpp=0.5, tile_size=256)  # Hamamatsu-like
    assert spec.read_size == round(256 * 0.5 / 0.2431)


def test_coarser_than_target_and_missing_mpp_are_errors():
    with pytest.raises(TilingError, match="coarser"):
        plan_tile_spec(_info(mpp=1.0), target_mpp=0.5, tile_size=224)
    with pytest.raises(SlideMetadataError, match="assume_mpp"):
        plan_tile_spec(_info(mpp=None), target_mpp=0.5, tile_size=224)


def test_grid_inside_slide_and_on_grid(aperio_slide):
    with open_slide(aperio_slide.path) as slide:
        info = slide.info
    for target in (0.25, 0.5, 1.0, 2.0):
        spec = plan_tile_spec(info, target_mpp=target, tile_size=224)
        grid = plan_grid(info, spec)
        lw, lh = info.level_dimensions[spec.level]
        ds = spec.level_downsample
        assert len(grid.coords) == grid.columns * grid.rows > 0
        level_xy = grid.coords / ds
        assert np.allclose(level_xy / spec.read_stride, np.round(level_xy / spec.read_stride), atol=1e-3)
        assert (grid.coords >= 0).all()
        assert (level_xy[:, 0] + spec.read_size <= lw + 1e-6).all()
        assert (level_xy[:, 1] + spec.read_size <= lh + 1e-6).all()
        assert grid.columns == (lw - spec.read_size) // spec.read_stride + 1


def test_pad_covers_the_whole_slide():
    info = _info(dims=((1000, 700),), ds=(1.0,))
    spec = plan_tile_spec(info, target_mpp=0.25, tile_size=224)
    drop, pad = plan_grid(info, spec, edge="drop"), plan_grid(info, spec, edge="pad")
    assert (drop.columns, drop.rows) == (4, 3)
    assert (pad.columns, pad.rows) == (5, 4)
    assert pad.coords[:, 0].max() + 224 >= 1000 and pad.coords[:, 1].max() + 224 >= 700


def test_overlap_stride():
    info = _info(dims=((1000, 1000),), ds=(1.0,))
    spec = plan_tile_spec(info, target_mpp=0.5, tile_size=100, stride=50)
    assert (spec.read_size, spec.read_stride) == (200, 100)
    grid = plan_grid(info, spec)
    assert grid.columns == 9 and np.unique(grid.coords[:, 0]).tolist() == list(range(0, 801, 100))


def _brute_force_fraction(mask, ds, x, y, size, samples=200):
    """Independent estimate: sample the mask at a fine grid of points inside the tile."""
    offsets = (np.arange(samples) + 0.5) / samples * size
    px = ((x + offsets) / ds[0]).astype(int)
    py = ((y + offsets) / ds[1]).astype(int)
    inside_x = px < mask.shape[1]
    inside_y = py < mask.shape[0]
    sub = np.zeros((samples, samples), bool)
    sub[np.ix_(inside_y, inside_x)] = mask[np.ix_(py[inside_y], px[inside_x])]
    return sub.mean()


def test_tissue_fraction_is_the_exact_area():
    rng = np.random.default_rng(0)
    mask = rng.random((40, 50)) > 0.5
    ds = (7.3, 6.1)
    coords = np.stack([rng.uniform(0, 330, 200), rng.uniform(0, 230, 200)], 1).astype(np.int64)
    size = 37.7
    fast = tissue_fractions(mask, ds, coords, size)
    slow = np.array([_brute_force_fraction(mask, ds, x, y, size, 400) for x, y in coords])
    np.testing.assert_allclose(fast, slow, atol=0.01)
    assert tissue_fractions(np.ones((4, 4), bool), (1.0, 1.0), np.array([[2, 2]]), 4).item() == 0.25


def test_a_scale_near_a_whole_number_reads_exactly_that_many_pixels():
    spec = plan_tile_spec(_info(mpp=0.2527), target_mpp=0.5, tile_size=224)  # Aperio-like 40x
    assert (spec.read_size, spec.read_stride, spec.integer_factor) == (448, 448, 2)
    assert spec.effective_mpp == pytest.approx(0.5054)
    one_level = _info(mpp=0.2527, dims=((40000, 30000),), ds=(1.0,))
    spec = plan_tile_spec(one_level, target_mpp=1.0, tile_size=224, stride=112)
    assert (spec.level, spec.read_size, spec.read_stride) == (0, 896, 448) and spec.integer_factor == 4
    strict = plan_tile_spec(_info(mpp=0.2527), target_mpp=0.5, tile_size=224, mpp_tolerance=0.005)
    assert strict.read_size == 443 and strict.integer_factor is None
