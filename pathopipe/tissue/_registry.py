"""Registry of tissue detectors: ``fn(image, *, mpp, config) -> bool mask``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pathopipe._registry import Registry

TissueDetector = Callable[..., np.ndarray]
tissue_detectors: Registry[TissueDetector] = Registry("tissue detector")


def detector_config_class(name: str) -> Any:
    return tissue_detectors.entry(name).metadata["config"]
