"""Tissue detection on a low-resolution image of the slide.

Detectors are registry entries (``pathopipe backends`` lists them), each with its own parameters
model; the configuration's ``tissue:`` section is :data:`TissueConfig`, the union of those models
told apart by ``method`` (``otsu`` when it is left out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

import numpy as np
from pydantic import BaseModel, Discriminator, Tag

from pathopipe.tissue import _otsu as _otsu
from pathopipe.tissue._otsu import OtsuTissueConfig
from pathopipe.tissue._registry import TissueParams, tissue_detectors

__all__ = [
    "OtsuTissueConfig",
    "TissueConfig",
    "TissueParams",
    "detect_tissue",
    "list_detectors",
    "tissue_detectors",
]

DEFAULT_METHOD = "otsu"


def _method(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("method", DEFAULT_METHOD))
    return str(getattr(value, "method", DEFAULT_METHOD))


def _union() -> Any:
    """The detectors' parameter models as one union discriminated by ``method``."""
    configs = [(entry.name, entry.metadata["config"]) for entry in tissue_detectors]
    members = tuple(Annotated[model, Tag(name)] for name, model in configs)
    return Annotated[Union[members], Discriminator(_method)]  # noqa: UP007 - built from a tuple


if TYPE_CHECKING:
    TissueConfig = TissueParams
else:
    TissueConfig = _union()  # every registered detector's parameters, by ``method``


def list_detectors() -> list[str]:
    return tissue_detectors.names()


def detect_tissue(image: np.ndarray, *, mpp: float, config: BaseModel) -> np.ndarray:
    """Run the detector named by ``config.method`` on an RGB image at ``mpp`` µm/px."""
    method = _method(config)
    detector = tissue_detectors.get(method)
    mask = detector(image, mpp=mpp, config=config)
    if mask.shape != image.shape[:2] or mask.dtype != bool:
        raise TypeError(f"tissue detector {method!r} returned {mask.dtype} {mask.shape}")
    return mask
