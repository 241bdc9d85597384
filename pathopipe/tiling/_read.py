"""Reading tiles from a slide at the planned geometry."""

from __future__ import annotations

import cv2
import numpy as np

from pathopipe.slide import SlideReader
from pathopipe.tiling._spec import TileSpec


def read_tile(
    reader: SlideReader, spec: TileSpec, x: int, y: int, *, out: np.ndarray | None = None
) -> np.ndarray:
    """One tile (tile_size, tile_size, 3) uint8 whose level-0 top-left is (x, y).

    With ``out``, the tile is written there (no extra copy) and returned.
    """
    location, size = (int(x), int(y)), (spec.read_size, spec.read_size)
    if not spec.resize:
        return reader.read_region(location, spec.level, size, out=out)
    region = reader.read_region(location, spec.level, size)
    interpolation = cv2.INTER_AREA if spec.read_size > spec.tile_size else cv2.INTER_LINEAR
    return cv2.resize(region, (spec.tile_size, spec.tile_size), dst=out, interpolation=interpolation)


def read_tiles(
    reader: SlideReader, spec: TileSpec, coords: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Tiles for each level-0 (x, y) in ``coords``, as (N, T, T, 3) uint8 (into ``out`` if given)."""
    if out is None:
        out = np.empty((len(coords), spec.tile_size, spec.tile_size, 3), dtype=np.uint8)
    for i, (x, y) in enumerate(coords):
        read_tile(reader, spec, x, y, out=out[i])
    return out
