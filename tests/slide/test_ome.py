"""Brightfield OME-TIFF pyramids (SubIFDs, as bfconvert and raw2ometiff write them) in the tiff
backend: levels, pixels and the OME pixel size; other OME-TIFFs refused in plain words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.errors import SlideOpenError
from pathopipe.slide import open_slide
from pathopipe.testing import write_synthetic_slide


def _ome_pyramid(path: Path, image: np.ndarray, *, mpp: float | None, compression: str, tags: bool) -> None:
    metadata: dict[str, object] = {"axes": "YXS"}
    if mpp is not None:
        metadata |= {
            "PhysicalSizeX": mpp,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": mpp,
            "PhysicalSizeYUnit": "µm",
        }
    options = {"tile": (256, 256), "photometric": "rgb", "compression": compression}
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        base = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"} if tags and mpp else {}
        tif.write(image, subifds=2, metadata=metadata, **base, **options)
        for factor in (2, 4):
            tif.write(image[::factor, ::factor], subfiletype=1, metadata=None, **options)


@pytest.fixture(scope="module")
def he_image(tmp_path_factory) -> np.ndarray:
    slide = write_synthetic_slide(
        tmp_path_factory.mktemp("he") / "he.svs", width=3072, height=2304, seed=9, downsamples=(4,), workers=1
    )
    with open_slide(slide.path) as reader:
        return reader.read_region((0, 0), 0, (3072, 2304))


@pytest.mark.parametrize(("compression", "tags"), [("zlib", False), ("jpeg", True)])
def test_an_ome_pyramid_reads_like_its_levels(tmp_path, he_image, compression, tags):
    path = tmp_path / "scan.ome.tiff"
    _ome_pyramid(path, he_image, mpp=0.2527, compression=compression, tags=tags)
    with open_slide(path) as reader:
        info = reader.info
        assert (info.backend, info.vendor) == ("tiff", "ome")
        assert info.mpp == pytest.approx(0.2527) and info.mpp_source == "read"  # from PhysicalSizeX
        assert info.level_dimensions == ((3072, 2304), (1536, 1152), (768, 576))
        with tifffile.TiffFile(path) as tif:
            levels = [level.asarray() for level in tif.series[0].levels]
        for level, expected in enumerate(levels):
            ds = 2**level
            region = reader.read_region((150 * ds, 100 * ds), level, (500, 400))
            np.testing.assert_array_equal(region, expected[100:500, 150:650])
    result = CliRunner().invoke(
        app,
        [
            "tile",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "1",
            "--set",
            "tiling.tile_size=128",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "slides" / "scan.zarr").exists()  # '.ome.tiff' removed whole from the id


def test_an_ome_pyramid_without_a_pixel_size_has_no_mpp(tmp_path, he_image):
    path = tmp_path / "nosize.ome.tif"
    _ome_pyramid(path, he_image[:1024, :1024], mpp=None, compression="zlib", tags=False)
    with open_slide(path) as reader:
        assert reader.info.mpp is None and "PhysicalSize" in (reader.info.mpp_rejected or "")


def test_multichannel_ome_tiff_is_refused_in_plain_words(tmp_path):
    path = tmp_path / "plex.ome.tif"
    tifffile.imwrite(path, np.zeros((5, 512, 512), np.uint16), tile=(256, 256), metadata={"axes": "CYX"})
    with pytest.raises(SlideOpenError) as refused:
        open_slide(path)
    message = str(refused.value)
    assert "samples per pixel" in message or "not a brightfield" in message or "channels" in message
    assert "Error" not in message.replace("SlideOpenError", "")


def test_an_olympus_vsi_is_refused_not_tiled_as_its_overview(tmp_path):
    from pathopipe.discovery import find_slides

    path = tmp_path / "case.vsi"  # a TIFF holding only the overview, as VSI files do
    tifffile.imwrite(path, np.full((600, 800, 3), 200, np.uint8), photometric="rgb")
    assert find_slides([tmp_path]) == [path]  # found, so that it fails visibly
    with pytest.raises(SlideOpenError, match=r"Olympus VSI.*\.ets files"):
        open_slide(path)
