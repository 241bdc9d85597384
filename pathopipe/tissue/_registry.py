"""Registry of tissue detectors: ``fn(image, *, mpp, config) -> bool mask``, each entry with its
parameters model (``config``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pathopipe._registry import Registry

TissueDetector = Callable[..., np.ndarray]
tissue_detectors: Registry[TissueDetector] = Registry(
    "tissue detector", entry_point_group="pathopipe.tissue_detectors"
)
