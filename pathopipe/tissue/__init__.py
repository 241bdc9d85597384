"""Tissue detection on a low-resolution image of the slide."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from pathopipe.tissue import _otsu as _otsu
from pathopipe.tissue._otsu import OtsuTissueConfig
from pathopipe.tissue._registry import tissue_detectors

__all__ = ["OtsuTissueConfig", "TissueConfig", "detect_tissue", "list_detectors", "tissue_detectors"]

# The union of detector configs, discriminated by ``method`` (one member per detector).
TissueConfig = OtsuTissueConfig


def list_detectors() -> list[str]:
    return tissue_detectors.names()


def detect_tissue(image: np.ndarray, *, mpp: float, config: BaseModel) -> np.ndarray:
    """Run the detector named by ``config.method`` on an RGB image at ``mpp`` µm/px."""
    detector = tissue_detectors.get(config.method)  # type: ignore[attr-defined]
    mask = detector(image, mpp=mpp, config=config)
    if mask.shape != image.shape[:2] or mask.dtype != bool:
        raise TypeError(f"tissue detector {config.method!r} returned {mask.dtype} {mask.shape}")  # type: ignore[attr-defined]
    return mask
