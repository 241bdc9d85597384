"""Registry of tissue detectors: ``fn(image, *, mpp, config) -> bool mask``, each entry with its
parameters model (``config``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pathopipe._registry import Registry


class TissueParams(BaseModel):
    """What every detector's parameters have: its ``method`` and the mask's resolution (the
    detector runs on the slide read down to ``mask_mpp``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str
    mask_mpp: float = Field(8.0, gt=0, le=256, description="resolution of the mask, µm per pixel")


TissueDetector = Callable[..., np.ndarray]
tissue_detectors: Registry[TissueDetector] = Registry(
    "tissue detector", entry_point_group="pathopipe.tissue_detectors"
)
