"""What tiling a slide would produce, found from its metadata and a low-resolution image
(no tile is read): the tile geometry, the tissue mask, the kept grid positions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pathopipe.config import RunConfig
from pathopipe.errors import SlideMetadataError
from pathopipe.regions import Regions, RegionTiles, apply_regions
from pathopipe.slide import read_downsampled
from pathopipe.tiling import TileSpec, choose_resample, plan_grid, plan_tile_spec, tissue_fractions
from pathopipe.tissue import detect_tissue
from pathopipe.tissue.modality import check_modality, detection_image

__all__ = ["SlideSurvey", "survey_slide"]


@dataclass(frozen=True)
class SlideSurvey:
    """What tiling a slide would produce, found without reading any tile: geometry, tissue,
    the kept tile coordinates and their tissue fractions."""

    info: Any
    spec: TileSpec
    thumbnail: np.ndarray
    downsample: tuple[float, float]
    mask: np.ndarray
    grid: Any
    coords: np.ndarray
    fractions: np.ndarray
    steps: dict[str, float]
    warnings: list[str]  # for the manifest (e.g. metadata that disagrees with the content)
    regions: RegionTiles | None = None  # when the slide has annotations


def survey_slide(reader: Any, config: RunConfig, regions: Regions | None = None) -> SlideSurvey:
    """Plan the tile spec, read a low-resolution image, detect tissue, lay and filter the grid
    (by tissue, and by ``regions`` when given)."""
    t0 = time.perf_counter()
    info = reader.info
    width, height = info.dimensions
    if width * height > config.slide.max_pixels:
        raise SlideMetadataError(
            f"slide {info.path!r} declares {width} x {height} px ({width * height:.3g} pixels), over "
            f"slide.max_pixels={config.slide.max_pixels:.3g}; refused before reading any pixel "
            "(raise slide.max_pixels if the slide is real)"
        )
    tiling = config.tiling
    spec = plan_tile_spec(
        info,
        target_mpp=tiling.target_mpp,
        tile_size=tiling.tile_size,
        stride=tiling.stride,
        mpp_tolerance=tiling.mpp_tolerance,
    )
    spec = choose_resample(reader, spec, tiling.resample)
    mask_downsample = max(1.0, config.tissue.mask_mpp / spec.mpp_level0)
    thumbnail, (dsx, dsy) = read_downsampled(reader, mask_downsample)
    t_thumb = time.perf_counter()
    modality = config.slide.modality
    warnings = check_modality(thumbnail, info.path, info.properties, modality)
    mpp = spec.mpp_level0 * (dsx + dsy) / 2
    mask = detect_tissue(detection_image(thumbnail, modality, mpp), mpp=mpp, config=config.tissue)
    t_tissue = time.perf_counter()
    grid = plan_grid(info, spec, edge=tiling.edge)
    fractions = tissue_fractions(mask, (dsx, dsy), grid.coords, spec.read_size * spec.level_downsample)
    keep = fractions >= tiling.min_tissue_fraction
    region_tiles = None
    if regions is not None:
        r = config.regions
        size = spec.read_size * spec.level_downsample
        region_tiles = apply_regions(regions, r.include, r.exclude, r.min_fraction, grid.coords[keep], size)
        keep[np.flatnonzero(keep)[~region_tiles.passed]] = False
        warnings += region_tiles.warnings
    steps = {
        "read_thumbnail": t_thumb - t0,
        "tissue": t_tissue - t_thumb,
        "grid": time.perf_counter() - t_tissue,
    }
    return SlideSurvey(
        info, spec, thumbnail, (dsx, dsy), mask, grid, grid.coords[keep], fractions[keep], steps, warnings,
        region_tiles,
    )  # fmt: skip
