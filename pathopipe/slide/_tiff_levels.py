"""The levels of a TIFF pyramid as the tiff backend reads them: each level's grid of source tiles,
where their bytes are, and how they decode; layouts it does not decode exactly are refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pathopipe.slide._tiff_jpeg import jpeg_colorspaces, jpeg_prefix

__all__ = ["COMPRESSIONS", "Geometry", "Level", "check_page", "read_level"]

COMPRESSIONS = {1: "none", 5: "lzw", 7: "jpeg", 8: "deflate", 32946: "deflate"}
PHOTOMETRICS = {2: "rgb", 6: "ycbcr"}  # ycbcr only inside JPEG, where the decoder converts it


@dataclass(frozen=True)
class Geometry:
    """A level's pixel grid of source tiles, at full resolution or decoded 1/factor."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    across: int

    def tile_shape(self) -> tuple[int, int, int]:
        return (self.tile_height, self.tile_width, 3)


@dataclass(frozen=True)
class Level:
    """Where one pyramid level's source tiles are and how to decode them."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    across: int
    offsets: np.ndarray
    counts: np.ndarray
    decode: Callable[..., Any]
    jpegtables: bytes | None
    jpeg_colorspaces: tuple[Any, Any] | None  # (colorspace, outcolorspace) when JPEG
    jpeg_prefix: bytes | None  # replaces a tile's SOI for simplejpeg (see _jpeg_prefix)

    def geometry(self, factor: int = 1) -> Geometry:
        """The source-tile grid of this level decoded at 1/factor (whole scaled pixels only)."""
        return Geometry(self.width // factor, self.height // factor, self.tile_width // factor,
                         self.tile_height // factor, self.across)  # fmt: skip


def check_page(page: Any, level: int) -> None:
    """Refuse layouts this backend does not decode exactly (another backend then opens the slide)."""
    problems = []
    if not page.is_tiled:
        problems.append("not tiled (stripped pages)")
    if page.compression not in COMPRESSIONS:
        problems.append(f"compression {int(page.compression)} (supported: {sorted(COMPRESSIONS)})")
    if page.photometric not in PHOTOMETRICS or (page.photometric == 6 and page.compression != 7):
        problems.append(f"photometric {int(page.photometric)} with compression {int(page.compression)}")
    if page.samplesperpixel != 3 or page.bitspersample != 8 or page.planarconfig != 1:
        problems.append(
            f"{page.samplesperpixel} samples of {page.bitspersample} bits, planar config "
            f"{int(page.planarconfig)} (need 3 x 8-bit interleaved RGB)"
        )
    if getattr(page, "imagedepth", 1) != 1:
        problems.append("volumetric tiles")
    if problems:
        raise ValueError(f"level {level}: " + "; ".join(problems))


def read_level(series: Any, index: int) -> Level:
    level = series.levels[index]
    if len(level.pages) != 1:
        raise ValueError(f"level {index} has {len(level.pages)} pages (need one page per level)")
    page = level.pages[0]
    check_page(page, index)
    return Level(
        width=int(page.imagewidth),
        height=int(page.imagelength),
        tile_width=int(page.tilewidth),
        tile_height=int(page.tilelength),
        across=-(-int(page.imagewidth) // int(page.tilewidth)),
        offsets=np.asarray(page.dataoffsets, dtype=np.int64),
        counts=np.asarray(page.databytecounts, dtype=np.int64),
        decode=page.decode,
        jpegtables=page.jpegtables,
        jpeg_colorspaces=jpeg_colorspaces(page),
        jpeg_prefix=jpeg_prefix(page.jpegtables, jpeg_colorspaces(page)),
    )
