"""Reading tiles from a slide at the planned geometry."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pathopipe.errors import TilingError
from pathopipe.slide import SlideReader
from pathopipe.tiling._spec import Resample, TileSpec


def choose_resample(reader: SlideReader, spec: TileSpec, mode: str) -> TileSpec:
    """``spec`` with the downsampling this reader will use: with ``mode`` "auto", "jpeg-dct" where
    the shrink is a whole factor the backend decodes in the DCT domain; otherwise "area"."""
    factor = spec.integer_factor
    method: Resample = "area"
    if mode == "auto" and factor is not None and reader.downscale_method(spec.level, factor) == "jpeg-dct":
        method = "jpeg-dct"
    return replace(spec, resample=method)


def read_tile(
    reader: SlideReader, spec: TileSpec, x: int, y: int, *, out: np.ndarray | None = None
) -> np.ndarray:
    """One tile (tile_size, tile_size, 3) uint8 whose level-0 top-left is (x, y).

    With ``out``, the tile is written there (no extra copy) and returned.
    """
    return read_tiles(reader, spec, np.array([[x, y]]), out=None if out is None else out[None])[0]


def read_tiles(
    reader: SlideReader, spec: TileSpec, coords: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Tiles for each level-0 (x, y) in ``coords``, as (N, T, T, 3) uint8 (into ``out`` if given).

    Reads go through the reader's batch call, so a source-tile backend decodes each source
    tile once for the whole batch.
    """
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    if out is None:
        out = np.empty((len(coords), spec.tile_size, spec.tile_size, 3), dtype=np.uint8)
    size = (spec.read_size, spec.read_size)
    if not spec.resize:
        return reader.read_regions(coords, spec.level, size, out=out)
    if spec.resample == "jpeg-dct":
        factor = spec.integer_factor
        if factor is None or reader.downscale_method(spec.level, factor) != "jpeg-dct":
            raise TilingError(
                f"these tiles are cut with resample 'jpeg-dct' (JPEG tiles decoded at 1/{factor}), which "
                f"the {reader.backend} backend cannot do for level {spec.level} of {reader.path!r}; "
                "read the slide with backend 'tiff', or tile again with tiling.resample: area"
            )
        return reader.read_regions_downscaled(coords, spec.level, size, factor, out=out)
    return reader.read_regions_resized(coords, spec.level, size, (spec.tile_size, spec.tile_size), out=out)
