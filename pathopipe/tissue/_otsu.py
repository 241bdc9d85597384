"""Classical tissue detector: HSV saturation + Otsu threshold, cleaned morphologically.

Works for H&E and IHC alike: stained tissue is saturated, glass and background are not.
Every size is given in microns so the result does not depend on the mask resolution.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from pathopipe.tissue._registry import TissueParams, tissue_detectors


class OtsuTissueConfig(TissueParams):
    """Parameters of the ``otsu`` detector."""

    method: Literal["otsu"] = "otsu"
    median_blur_um: float = Field(24.0, ge=0, description="median filter size before thresholding, µm")
    min_saturation: int = Field(
        20, ge=0, le=255, description="floor for the Otsu threshold (0-255): blank glass finds no tissue"
    )
    closing_um: float = Field(32.0, ge=0, description="morphological closing size, µm")
    min_object_area_um2: float = Field(20_000.0, ge=0, description="smaller tissue pieces are dropped, µm²")
    min_hole_area_um2: float = Field(
        10_000.0, ge=0, description="smaller holes inside tissue are filled, µm²"
    )


def _odd(size_px: float) -> int:
    k = max(1, round(size_px))
    return k if k % 2 else k + 1


def _drop_small(mask: np.ndarray, min_area_px: float) -> np.ndarray:
    if min_area_px <= 1:
        return mask
    _count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area_px
    keep[0] = False  # background label
    if keep[1:].all():  # nothing to drop: skip the per-pixel lookup
        return mask
    return keep[labels]


def _fill_small_holes(mask: np.ndarray, max_area_px: float) -> np.ndarray:
    if max_area_px <= 1:
        return mask
    inverse = (~mask).astype(np.uint8)
    _count, labels, stats, _ = cv2.connectedComponentsWithStats(inverse, connectivity=4)
    h, w = mask.shape
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    touches_border = (
        (x == 0) | (y == 0) | (x + stats[:, cv2.CC_STAT_WIDTH] >= w) | (y + stats[:, cv2.CC_STAT_HEIGHT] >= h)
    )
    fill = (stats[:, cv2.CC_STAT_AREA] < max_area_px) & ~touches_border
    fill[0] = False  # label 0 is the tissue itself
    if not fill.any():  # no hole to fill: skip the per-pixel lookup
        return mask
    return mask | fill[labels]


@tissue_detectors.register(
    "otsu", description="HSV saturation + Otsu, median blur, closing", config=OtsuTissueConfig
)
def detect_otsu(image: np.ndarray, *, mpp: float, config: OtsuTissueConfig) -> np.ndarray:
    """Tissue mask (bool, same height/width as ``image``) of an RGB image at ``mpp`` µm/px."""
    saturation = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1]
    if config.median_blur_um > 0:
        saturation = cv2.medianBlur(saturation, min(255, _odd(config.median_blur_um / mpp)))
    otsu, _ = cv2.threshold(saturation, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = saturation > max(float(otsu), float(config.min_saturation))
    if config.closing_um > 0:
        k = _odd(config.closing_um / mpp)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    pixel_area = mpp * mpp
    mask = _drop_small(mask, config.min_object_area_um2 / pixel_area)
    return _fill_small_holes(mask, config.min_hole_area_um2 / pixel_area)
