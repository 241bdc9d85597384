import json

import numpy as np
import pytest

from pathopipe.errors import SlideMetadataError, SlideOpenError, SlideReadError, UnknownNameError
from pathopipe.slide import open_slide, read_downsampled, require_mpp


@pytest.mark.parametrize("backend", ["tiff", "openslide", "tiffslide"])
def test_metadata(aperio_slide, backend):
    with open_slide(aperio_slide.path, backend=backend) as slide:
        info = slide.info
    assert info.backend == backend
    assert info.vendor == "aperio"
    assert info.dimensions == (6001, 4003)
    assert info.level_dimensions == ((6001, 4003), (1500, 1000), (375, 250))
    assert info.mpp == pytest.approx(0.25) and info.mpp_source == "read"
    assert info.objective_power == 40


def test_auto_prefers_the_tiff_backend_and_backends_agree(aperio_slide):
    with open_slide(aperio_slide.path) as a, open_slide(aperio_slide.path, backend="tiffslide") as b:
        assert a.info.backend == "tiff"
        # level-0 positions that fall between pixels of a level with a non-integer downsample
        # are interpolated by openslide and rounded by tiffslide, so compare on exact positions
        for level, location in ((0, (1200, 800)), (1, (0, 0)), (2, (0, 0))):
            ra = a.read_region(location, level, (300, 200))
            rb = b.read_region(location, level, (300, 200))
            assert ra.shape == (200, 300, 3) and ra.dtype == np.uint8
            np.testing.assert_array_equal(ra, rb)


@pytest.mark.parametrize("backend", ["tiff", "openslide", "tiffslide"])
def test_outside_the_slide_is_white(aperio_slide, backend):
    with open_slide(aperio_slide.path, backend=backend) as slide:
        region = slide.read_region((5900, 3900), 0, (200, 200))
    assert region.shape == (200, 200, 3)
    assert (region[150:, :] == 255).all() and (region[:, 150:] == 255).all()
    assert (region[:100, :100] < 255).any()  # the inside is real slide content


def test_generic_tiff_mpp_from_resolution_tags(generic_slide):
    with open_slide(generic_slide.path, backend="tiffslide") as slide:
        assert slide.info.mpp == pytest.approx(0.25)


def test_missing_mpp_is_a_clear_error_unless_assumed(nompp_slide):
    with open_slide(nompp_slide.path) as slide:
        assert slide.info.mpp is None
        with pytest.raises(SlideMetadataError, match="assume_mpp"):
            require_mpp(slide.info)
    with open_slide(nompp_slide.path, assume_mpp=0.5) as slide:
        assert slide.info.mpp == 0.5 and slide.info.mpp_source == "assumed"


def test_unopenable_files_name_file_and_each_backend(corrupt_slide, not_a_slide, tmp_path):
    with pytest.raises(SlideOpenError) as caught:
        open_slide(not_a_slide)
    assert str(not_a_slide) in str(caught.value)
    assert set(caught.value.causes) == {"tiff", "openslide", "tiffslide"}
    # a truncated file fails at open or, at the latest, when its missing tiles are read
    for backend in ("tiff", "openslide", "tiffslide"):
        with pytest.raises((SlideOpenError, SlideReadError)) as caught:
            with open_slide(corrupt_slide, backend=backend) as slide:
                slide.read_region((0, 0), 0, (6001, 4003))
        assert str(corrupt_slide) in str(caught.value)
    with pytest.raises(SlideOpenError, match="no such file"):
        open_slide(tmp_path / "missing.svs")
    with pytest.raises(SlideOpenError, match="directory"):
        open_slide(tmp_path)
    with pytest.raises(UnknownNameError, match="openslide"):
        open_slide(not_a_slide, backend="openslid")


def test_read_downsampled_is_bounded_and_consistent(aperio_slide):
    with open_slide(aperio_slide.path) as slide:
        image, (dsx, dsy) = read_downsampled(slide, 32, max_strip_pixels=1 << 16)  # many strips
        whole, _ = read_downsampled(slide, 32)
    assert image.shape == (round(4003 / 32), round(6001 / 32), 3)
    assert dsx == pytest.approx(32, rel=0.01) and dsy == pytest.approx(32, rel=0.01)
    assert np.abs(image.astype(int) - whole).mean() < 2  # strips join without seams


def test_reader_is_not_picklable(aperio_slide):
    import pickle

    with open_slide(aperio_slide.path) as slide, pytest.raises(TypeError, match="open the slide inside"):
        pickle.dumps(slide)


def test_info_json_roundtrip(aperio_slide):
    with open_slide(aperio_slide.path) as slide:
        data = json.loads(json.dumps(slide.info.to_dict()))
    assert data["mpp"] == pytest.approx(0.25)
    assert data["level_dimensions"][1] == [1500, 1000]
