"""Brightfield or fluorescence: the other kind is refused with what was found; a fluorescence run
tiles the bright signal on the dark background."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.config import RunConfig, load_config
from pathopipe.testing import write_synthetic_slide

NDPI = Path(__file__).resolve().parents[3] / "shared" / "slides" / "formats" / "fluorescence-dapi.ndpi"
SMALL = ["--workers", "1", "--set", "tiling.tile_size=128"]


def _fluorescent_tiff(path: Path) -> tuple[int, int, int, int]:
    """A 0.5 µm/px generic TIFF: black, with a rectangle of sparse bright-blue 'nuclei' (x0, y0, x1, y1)."""
    rng = np.random.default_rng(7)
    image = rng.integers(0, 6, (3072, 3072, 3), dtype=np.uint8)  # dark background with noise
    box = (1024, 512, 2560, 2048)
    for _ in range(2500):  # nuclei of ~8 µm, ~30 µm apart
        x, y = rng.integers(box[0], box[2] - 16), rng.integers(box[1], box[3] - 16)
        image[y : y + 16, x : x + 16, 2] = rng.integers(120, 255)
    tifffile.imwrite(
        path,
        image,
        tile=(256, 256),
        photometric="rgb",
        metadata=None,
        resolution=(20_000, 20_000),
        resolutionunit="CENTIMETER",
        compression="zlib",
    )
    return box


def _manifest(out: Path) -> dict[str, str]:
    with (out / "manifest.csv").open() as fh:
        return next(csv.DictReader(fh))


def test_the_background_median_is_numpys():
    from pathopipe.tissue.modality import looks_fluorescent

    rng = np.random.default_rng(3)
    for shape in [(1, 1, 3), (1, 2, 3), (3, 5, 3), (40, 61, 3), (200, 300, 3)]:
        for low, high in [(0, 256), (49, 52)]:  # spread out, and bunched at the threshold
            image = rng.integers(low, high, shape, dtype=np.uint8)
            median = float(np.median(image.max(axis=2)))
            dark, findings = looks_fluorescent(image, {})
            assert dark == (median < 50)
            assert f"median brightness {median:.0f} of 255" in findings


def test_the_hash_of_brightfield_runs_is_unchanged_by_the_setting():
    assert "modality" not in RunConfig().output_relevant()["slide"]
    assert (
        load_config(None, ["slide.modality=fluorescence"]).output_relevant()["slide"]["modality"]
        == "fluorescence"
    )


def test_a_dark_background_slide_is_refused_unless_the_run_is_fluorescence(tmp_path):
    box = _fluorescent_tiff(tmp_path / "dapi.tif")
    refused = CliRunner().invoke(
        app, ["tile", str(tmp_path / "dapi.tif"), "--out", str(tmp_path / "a"), *SMALL]
    )
    assert refused.exit_code == 1
    error = _manifest(tmp_path / "a")["error"]
    assert "looks like fluorescence" in error and "dark background" in error and "slide.modality" in error
    tiled = CliRunner().invoke(
        app,
        [
            "tile",
            str(tmp_path / "dapi.tif"),
            "--out",
            str(tmp_path / "b"),
            *SMALL,
            "--set",
            "slide.modality=fluorescence",
        ],
    )
    assert tiled.exit_code == 0, tiled.output
    store = zarr.open_group(tmp_path / "b" / "slides" / "dapi.zarr", mode="r")
    coords = np.asarray(store["coords"][:])
    centres = coords + 64  # 128 px tiles at the slide's own 0.5 µm/px
    inside = (
        (centres[:, 0] >= box[0])
        & (centres[:, 0] < box[2])
        & (centres[:, 1] >= box[1])
        & (centres[:, 1] < box[3])
    )
    assert len(coords) > 0 and inside.all()  # only where the signal is
    assert len(coords) >= 0.8 * ((box[2] - box[0]) // 128) * ((box[3] - box[1]) // 128)  # and most of it


def test_a_brightfield_slide_in_a_fluorescence_run_is_refused(tmp_path):
    write_synthetic_slide(tmp_path / "he.svs", width=2400, height=1800, seed=5, downsamples=(4,), workers=1)
    result = CliRunner().invoke(
        app,
        [
            "tile",
            str(tmp_path / "he.svs"),
            "--out",
            str(tmp_path / "o"),
            *SMALL,
            "--set",
            "slide.modality=fluorescence",
        ],
    )
    assert result.exit_code == 1
    assert "looks like brightfield" in _manifest(tmp_path / "o")["error"]


@pytest.mark.real_slide
def test_the_real_fluorescence_ndpi(tmp_path):
    if not NDPI.exists():
        pytest.skip(f"{NDPI} not available")
    refused = CliRunner().invoke(app, ["tile", str(NDPI), "--out", str(tmp_path / "a"), "--workers", "1"])
    assert refused.exit_code == 1
    error = _manifest(tmp_path / "a")["error"]
    assert "dark background" in error and "excitation filter (387/11-25)" in error
    tiled = CliRunner().invoke(
        app,
        [
            "tile",
            str(NDPI),
            "--out",
            str(tmp_path / "b"),
            "--workers",
            "1",
            "--set",
            "slide.modality=fluorescence",
        ],
    )
    assert tiled.exit_code == 0, tiled.output
    store = zarr.open_group(tmp_path / "b" / "slides" / "fluorescence-dapi.zarr", mode="r")
    tiles = np.asarray(store["tiles"][:])
    brightness = np.asarray(store["thumbnail"][:]).max(axis=2).astype(float)
    mask = np.asarray(store["mask"][:]).astype(bool)
    assert len(tiles) > 10 and mask.shape == brightness.shape
    # the tissue found is where the signal is: far brighter than what was left out, and so are the tiles
    outside = brightness[~mask].mean()
    assert brightness[mask].mean() > 3 * outside and tiles.max(axis=3).mean() > 3 * outside


@pytest.mark.real_slide
def test_a_backend_warning_reaches_the_manifest_not_the_terminal(tmp_path):
    """tiffslide warns that it parses NDPI metadata only partly: the slide's manifest row says so,
    and nothing is printed raw (workers pathopipe starts route warnings to the slide)."""
    if not NDPI.exists():
        pytest.skip(f"{NDPI} not available")
    out = tmp_path / "out"
    ran = subprocess.run(
        [sys.executable, "-m", "pathopipe", "tile", str(NDPI), "--out", str(out), "--workers", "1",
         "--no-progress", "--set", "slide.backend=tiffslide", "--set", "slide.modality=fluorescence"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    row = _manifest(out)
    assert (
        "tiffslide backend: UserWarning: hamamatsu-format metadata parsing only partially" in row["warnings"]
    )
    assert "tiffslide.py:" not in ran.stderr + ran.stdout  # no raw "FILE:LINE: UserWarning: ..." print
