"""Tile geometry at a physical resolution: which pyramid level to read, the grid, tissue fractions.

Three sizes are kept apart (wsidata's TileSpec is the model): the *requested* tile in pixels at
the target mpp, the *read* region in pixels of the pyramid level used, and the *level-0* size
used for coordinates. Coordinates are level-0 ``(x, y)`` of each tile's top-left corner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pathopipe.errors import TilingError
from pathopipe.slide import SlideInfo, require_mpp
from pathopipe.tiling._read import choose_resample, read_tile, read_tiles
from pathopipe.tiling._spec import TileSpec

__all__ = [
    "TileGrid",
    "TileSpec",
    "choose_resample",
    "plan_grid",
    "plan_tile_spec",
    "read_tile",
    "read_tiles",
    "tissue_fractions",
]


def plan_tile_spec(
    info: SlideInfo,
    *,
    target_mpp: float,
    tile_size: int,
    stride: int | None = None,
    mpp_tolerance: float = 0.02,
) -> TileSpec:
    """Choose the level closest to but not coarser than ``target_mpp`` and the read size.

    A level within ``mpp_tolerance`` of the target is read as is; otherwise the read region
    is resized (e.g. 0.5 µm/px from a 0.25 µm/px slide reads 448 px and halves it). A scale
    within ``mpp_tolerance`` of a whole number is taken as that number (0.5 µm/px from a
    0.2527 µm/px scan reads 448 px, not 443), like a level within tolerance is read as is.
    """
    mpp0 = require_mpp(info)
    stride = tile_size if stride is None else stride
    limit = target_mpp * (1 + mpp_tolerance)
    if mpp0 > limit:
        raise TilingError(
            f"slide {info.path!r} is scanned at {mpp0:.4g} µm/px, coarser than tiling.target_mpp="
            f"{target_mpp} (tolerance {mpp_tolerance}); tiles would be upsampled. "
            f"Set tiling.target_mpp to {mpp0:.4g} or more"
        )
    levels = [i for i, d in enumerate(info.level_downsamples) if mpp0 * d <= limit]
    level = max(levels, key=lambda i: info.level_downsamples[i])
    ds = info.level_downsamples[level]
    scale = target_mpp / (mpp0 * ds)  # read pixels per stored pixel
    factor = round(scale)
    if abs(scale - 1) <= mpp_tolerance:
        read_size, read_stride = tile_size, stride
    elif factor >= 2 and abs(scale / factor - 1) <= mpp_tolerance:
        # a whole factor within tolerance (e.g. 0.5 µm/px from 0.2527): read exactly 2x, 3x...
        # pixels, so resizing is a plain block average (and JPEG tiles can decode pre-scaled)
        read_size, read_stride = tile_size * factor, stride * factor
    else:
        read_size = max(1, round(tile_size * scale))
        read_stride = max(1, round(stride * scale))
    return TileSpec(
        tile_size=tile_size,
        stride=stride,
        target_mpp=target_mpp,
        mpp_level0=mpp0,
        level=level,
        level_downsample=ds,
        read_size=read_size,
        read_stride=read_stride,
        tile_size_level0=round(read_size * ds),
    )


@dataclass(frozen=True)
class TileGrid:
    """The full grid of candidate tiles (row-major) before tissue selection."""

    coords: np.ndarray  # int64 (M, 2) level-0 (x, y)
    columns: int
    rows: int


def _positions(extent: int, size: int, step: int, edge: Literal["drop", "pad"]) -> int:
    if edge == "drop":
        return (extent - size) // step + 1 if extent >= size else 0
    return math.ceil(max(0, extent - size) / step) + 1 if extent > 0 else 0


def plan_grid(info: SlideInfo, spec: TileSpec, *, edge: Literal["drop", "pad"] = "drop") -> TileGrid:
    """Grid positions on the read level, converted to level-0 coordinates."""
    lw, lh = info.level_dimensions[spec.level]
    nx = _positions(lw, spec.read_size, spec.read_stride, edge)
    ny = _positions(lh, spec.read_size, spec.read_stride, edge)
    xs = np.rint(np.arange(nx) * spec.read_stride * spec.level_downsample).astype(np.int64)
    ys = np.rint(np.arange(ny) * spec.read_stride * spec.level_downsample).astype(np.int64)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    coords = np.stack([gx.ravel(), gy.ravel()], axis=1) if nx and ny else np.zeros((0, 2), np.int64)
    return TileGrid(coords=coords, columns=nx, rows=ny)


def _area_table(mask: np.ndarray) -> np.ndarray:
    """The summed-area table of a boolean mask, (H + 1, W + 1) float64 (exact: integer sums)."""
    import cv2

    return cv2.integral(np.ascontiguousarray(mask, dtype=bool).view(np.uint8), sdepth=cv2.CV_64F)


def _integral(table: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact mask area over [0, x) x [0, y) for real x, y (bilinear in the summed-area table)."""
    h, w = table.shape[0] - 1, table.shape[1] - 1
    x = np.clip(x, 0, w)
    y = np.clip(y, 0, h)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 1) if w else np.zeros_like(x, np.int64)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 1) if h else np.zeros_like(y, np.int64)
    fx, fy = x - x0, y - y0
    s00, s01 = table[y0, x0], table[y0, x0 + 1]
    s10, s11 = table[y0 + 1, x0], table[y0 + 1, x0 + 1]
    return s00 + fx * (s01 - s00) + fy * (s10 - s00) + fx * fy * (s11 - s10 - s01 + s00)


def tissue_fractions(
    mask: np.ndarray,
    mask_downsample: tuple[float, float],
    coords: np.ndarray,
    tile_size_level0: float,
) -> np.ndarray:
    """Fraction of each tile's area covered by tissue (float32 in [0, 1]).

    The mask is a piecewise-constant image (one value per mask pixel); the covered area is
    integrated exactly, including partial mask pixels at the tile edges.
    """
    if len(coords) == 0:
        return np.zeros(0, dtype=np.float32)
    if mask.size == 0:
        return np.zeros(len(coords), dtype=np.float32)
    table = _area_table(mask)
    dsx, dsy = mask_downsample
    x0 = coords[:, 0] / dsx
    y0 = coords[:, 1] / dsy
    x1 = (coords[:, 0] + tile_size_level0) / dsx
    y1 = (coords[:, 1] + tile_size_level0) / dsy
    area = (
        _integral(table, x1, y1)
        - _integral(table, x0, y1)
        - _integral(table, x1, y0)
        + _integral(table, x0, y0)
    )
    fractions = area / ((x1 - x0) * (y1 - y0))
    return np.clip(fractions, 0.0, 1.0).astype(np.float32)
