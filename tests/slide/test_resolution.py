"""A slide's resolution: vendor fields first, TIFF tags only when plausible, placeholders refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.errors import SlideMetadataError
from pathopipe.slide import open_slide, require_mpp
from pathopipe.slide.resolution import read_resolution

PLACEHOLDER_TIFF = (
    Path(__file__).resolve().parents[3] / "shared" / "slides" / "formats" / "pyramid-zstd-72dpi.tiff"
)


def _tags(
    xres: float, unit: str, vendor: str = "generic-tiff", mpp: float | None = None
) -> dict[str, object]:
    props: dict[str, object] = {
        "openslide.vendor": vendor,
        "tiff.XResolution": xres,
        "tiff.YResolution": xres,
        "tiff.ResolutionUnit": unit,
    }
    if mpp is not None:
        props |= {"openslide.mpp-x": mpp, "openslide.mpp-y": mpp}
    return props


@pytest.mark.parametrize(
    ("props", "mpp", "rejected"),
    [
        (_tags(1.0, "inch", "aperio", mpp=0.2527), 0.2527, None),  # the vendor's field
        (_tags(20_000.0, "centimeter"), 0.5, None),  # a real tag: 20,000 px/cm
        (_tags(72.0, "inch", mpp=352.78), None, "72 dpi"),  # OpenSlide's mpp from the placeholder
        (_tags(28.3465, "centimeter", mpp=352.78), None, "72 dpi"),  # the same in centimetres
        (_tags(96.0, "inch"), None, "96 dpi"),
        (_tags(300.0, "inch"), None, "300 dpi"),
        (_tags(4000.0, "none"), None, "no physical unit"),
        (_tags(10.0, "centimeter"), None, "outside the plausible"),  # 1,000 µm/px
        (_tags(1.0, "inch", "hamamatsu", mpp=250.0), None, "hamamatsu metadata says 250"),
        ({"openslide.vendor": "generic-tiff"}, None, None),  # nothing at all
    ],
)
def test_resolution_rules(props, mpp, rejected):
    found = read_resolution(props, "openslide")
    assert found.mpp_x == (pytest.approx(mpp) if mpp else None)
    assert found.source == ("read" if mpp else None)
    assert (found.rejected is None) if rejected is None else (rejected in found.rejected)


def _generic_tiff(path, resolution, unit):
    image = np.full((1024, 1024, 3), 230, np.uint8)
    image[200:800, 200:800] = (150, 60, 140)  # some "tissue"
    tifffile.imwrite(
        path,
        image,
        tile=(256, 256),
        photometric="rgb",
        metadata=None,
        resolution=resolution,
        resolutionunit=unit,
        compression="zlib",
    )


def test_a_placeholder_resolution_is_no_resolution(tmp_path):
    path = tmp_path / "scan.tif"
    _generic_tiff(path, (72, 72), "INCH")
    with open_slide(path) as slide:
        assert slide.info.mpp is None and "72 dpi" in (slide.info.mpp_rejected or "")
        with pytest.raises(SlideMetadataError, match=r"72 dpi.*slide\.assume_mpp"):
            require_mpp(slide.info)
    with open_slide(path, assume_mpp=0.5) as slide:
        assert slide.info.mpp == 0.5 and slide.info.mpp_source == "assumed"
    _generic_tiff(path, (20_000, 20_000), "CENTIMETER")  # 0.5 µm/px, written as a scanner would
    with open_slide(path) as slide:
        assert slide.info.mpp == pytest.approx(0.5) and slide.info.mpp_source == "read"


@pytest.mark.real_slide
def test_the_real_72_dpi_pyramid_tiles_with_an_assumed_mpp(tmp_path):
    if not PLACEHOLDER_TIFF.exists():
        pytest.skip(f"{PLACEHOLDER_TIFF} not available")
    refused = CliRunner().invoke(
        app, ["tile", str(PLACEHOLDER_TIFF), "--out", str(tmp_path / "a"), "--workers", "1"]
    )
    assert refused.exit_code == 1
    manifest = (tmp_path / "a" / "manifest.csv").read_text()
    assert "72 dpi" in manifest and "slide.assume_mpp" in manifest and "352.9" in manifest
    tiled = CliRunner().invoke(
        app,
        [
            "tile",
            str(PLACEHOLDER_TIFF),
            "--out",
            str(tmp_path / "b"),
            "--workers",
            "1",
            "--set",
            "slide.assume_mpp=0.5",
        ],
    )
    assert tiled.exit_code == 0, tiled.output
    import zarr

    attrs = zarr.open_group(tmp_path / "b" / "slides" / "pyramid-zstd-72dpi.zarr", mode="r").attrs
    assert attrs["mpp_source"] == "assumed" and attrs["mpp"] == 0.5 and attrs["n_tiles"] > 0
    assert "72 dpi" in attrs["mpp_rejected"] and any("72 dpi" in w for w in attrs["warnings"])
