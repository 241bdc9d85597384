import numpy as np
import openslide
import pytest
import tiffslide

from pathopipe.testing import write_synthetic_slide


def test_aperio_layout_is_recognised_by_openslide(aperio_slide):
    slide = openslide.OpenSlide(aperio_slide.path)
    assert slide.properties["openslide.vendor"] == "aperio"
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
    assert float(slide.properties["openslide.objective-power"]) == 40
    assert slide.level_dimensions == ((6001, 4003), (1500, 1000), (375, 250))
    # sizes that are not multiples of the downsample give non-integer downsamples
    assert slide.level_downsamples[1] != 4 and slide.level_downsamples[1] == pytest.approx(4, rel=1e-3)
    assert slide.level_downsamples[2] == pytest.approx(16, rel=1e-3)
    first = tiffslide.TiffSlide(aperio_slide.path).properties
    assert first["tiffslide.vendor"] == "aperio"


def test_openslide_and_tiffslide_decode_identical_colours(aperio_slide):
    # RGB-coded JPEG tiles tagged RGB: both readers agree (YCbCr-coded tiles would not)
    a = np.asarray(openslide.OpenSlide(aperio_slide.path).read_region((2000, 1500), 0, (600, 400)))[..., :3]
    b = tiffslide.TiffSlide(aperio_slide.path).read_region((2000, 1500), 0, (600, 400), as_array=True)
    np.testing.assert_array_equal(a, b)


def test_tissue_has_he_colours(aperio_slide):
    slide = openslide.OpenSlide(aperio_slide.path)
    level = slide.level_count - 1
    image = np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]))[..., :3]
    truth = aperio_slide.truth_mask
    # sample tissue and background through the truth mask (16 vs 32 px per mask pixel)
    small = image[::2, ::2][: truth.shape[0], : truth.shape[1]]
    tissue = small[truth[: small.shape[0], : small.shape[1]]].mean(axis=0)
    background = small[~truth[: small.shape[0], : small.shape[1]]].mean(axis=0)
    assert background.min() > 225  # light glass
    assert tissue[1] < tissue[0] - 40 and tissue[1] < tissue[2] - 20  # pink/purple: green lowest


def test_deterministic_by_seed(tmp_path):
    a = write_synthetic_slide(tmp_path / "a.svs", width=1200, height=900, seed=7, workers=1)
    b = write_synthetic_slide(tmp_path / "b.svs", width=1200, height=900, seed=7, workers=2)
    c = write_synthetic_slide(tmp_path / "c.svs", width=1200, height=900, seed=8, workers=1)
    ra = openslide.OpenSlide(a.path).read_region((0, 0), 0, (1200, 900))
    rb = openslide.OpenSlide(b.path).read_region((0, 0), 0, (1200, 900))
    rc = openslide.OpenSlide(c.path).read_region((0, 0), 0, (1200, 900))
    assert np.array_equal(np.asarray(ra), np.asarray(rb))
    assert not np.array_equal(np.asarray(ra), np.asarray(rc))


def test_generic_and_options(generic_slide, nompp_slide, blank_slide):
    generic = openslide.OpenSlide(generic_slide.path)
    assert generic.properties["openslide.vendor"] == "generic-tiff"
    assert float(generic.properties["openslide.mpp-x"]) == pytest.approx(0.25)
    assert generic.level_count == 3
    assert "openslide.mpp-x" not in openslide.OpenSlide(nompp_slide.path).properties
    assert not blank_slide.truth_mask.any()


def test_rejects_bad_downsamples(tmp_path):
    with pytest.raises(ValueError, match="downsamples"):
        write_synthetic_slide(tmp_path / "x.svs", width=512, height=512, downsamples=(4, 6))
