"""A corpus of broken and unusual slide files, made by pathopipe's own tools, for testing that a
batch survives them (``write_bad_slides``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from pathopipe.testing._tiff import write_synthetic_slide

Outcome = Literal["done", "failed"]


@dataclass(frozen=True)
class BadSlide:
    path: Path
    expected: Outcome
    why: str  # what the file is and why that outcome is right


def _tiled(path: Path, image: np.ndarray, **options: Any) -> Path:
    """A two-level tiled pyramid (level 1 = every 4th pixel) with 0.25 µm/px resolution tags."""
    common: dict[str, Any] = {"tile": (256, 256), "resolution": (4e4, 4e4), "resolutionunit": "CENTIMETER",
                              "metadata": None}  # fmt: skip
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, **common, **options)
        tif.write(np.ascontiguousarray(image[::4, ::4]), subfiletype=1, **common, **options)
    return path


def write_bad_slides(folder: str | os.PathLike[str], *, seed: int = 0) -> list[BadSlide]:
    """Write the corpus into ``folder``; each entry says whether a run must finish it (``done``)
    or fail it with a message naming the file (``failed``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = write_synthetic_slide(folder / ".good.svs", width=2400, height=1800, seed=seed, downsamples=(4,),
                                 workers=1)  # fmt: skip
    data = good.path.read_bytes()
    rgb = np.asarray(tifffile.imread(good.path, series=0, level=0))
    slides: list[BadSlide] = []

    def add(name: str, expected: Outcome, why: str) -> Path:
        path = folder / name
        slides.append(BadSlide(path, expected, why))
        return path

    add("zero-bytes.svs", "failed", "an empty file").write_bytes(b"")
    for label, fraction in (("header-only", 0.002), ("a-third", 1 / 3), ("two-thirds", 2 / 3)):
        add(
            f"truncated-{label}.svs", "failed", f"the file cut at {fraction:.0%}: tile data missing"
        ).write_bytes(data[: int(len(data) * fraction)])
    with tifffile.TiffFile(good.path) as tif:
        page: Any = tif.series[0].levels[0].pages[0]
        across = -(-page.imagewidth // page.tilewidth)
        row = -(-page.imagelength // page.tilelength) // 2
        band = range(row * across, (row + 1) * across)  # the middle row of tiles, across the tissue
        spans = [(int(page.dataoffsets[i]), int(page.databytecounts[i])) for i in band]
        entries = [page.tags["TileOffsets"].valueoffset + 4 * i for i in band]  # classic TIFF: LONG
    rng = np.random.default_rng(seed)
    corrupt = bytearray(data)
    for offset, length in spans:
        corrupt[offset : offset + min(length, 600)] = rng.bytes(min(length, 600))
    add(
        "corrupt-jpeg-tiles.svs", "failed", "a band of JPEG tiles mid-slide overwritten with noise"
    ).write_bytes(bytes(corrupt))
    past_end = bytearray(data)
    for entry in entries:
        past_end[entry : entry + 4] = (len(data) + 10_000).to_bytes(4, "little")
    add("tile-offsets-past-end.svs", "failed", "tile offsets pointing past the end of the file").write_bytes(
        bytes(past_end)
    )
    gray = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    _tiled(
        add("grayscale.tif", "done", "8-bit grayscale pages: read as gray RGB"),
        gray,
        photometric="minisblack",
    )
    alpha = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    _tiled(
        add("rgba.tif", "done", "RGBA pages, opaque: alpha dropped"),
        alpha,
        photometric="rgb",
        extrasamples=[2],
    )
    deep = rgb.astype(np.uint16) * 257
    _tiled(add("rgb-16bit.tif", "done", "16-bit RGB: scaled to 8 bits"), deep, photometric="rgb")
    channels = np.stack([rgb[..., 0], rgb[..., 1], rgb[..., 2], rgb[..., 0] // 2, rgb[..., 1] // 2])
    _tiled(add("fluorescence-5ch.tif", "failed", "5-channel fluorescence: pathopipe tiles brightfield RGB"),
           channels, photometric="minisblack", planarconfig="separate")  # fmt: skip
    add("folder.svs", "failed", "a directory named like a slide").mkdir()
    loop = add("loop.svs", "failed", "a symlink pointing at itself")
    if loop.is_symlink() or loop.exists():
        loop.unlink()
    loop.symlink_to(loop.name)
    odd = add("spaced name é 中.svs", "done", "spaces and non-ASCII letters in the file name")
    odd.write_bytes(data)
    good.path.unlink()
    return slides
