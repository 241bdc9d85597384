"""Feature extractors: timm models and pathology foundation-model presets.

>>> extractor = create_extractor("resnet50_trunc", weights="random")   # doctest: +SKIP
>>> features = extractor(tiles)                                        # (N, 1024) float32
"""

from __future__ import annotations

from typing import Any

from pathopipe.features._spec import ModelSpec, list_presets, resolve_model
from pathopipe.features._weights import WeightsError, WeightsSource

__all__ = [
    "ModelSpec",
    "WeightsError",
    "WeightsSource",
    "create_extractor",
    "list_extractors",
    "resolve_model",
]


def list_extractors() -> list[ModelSpec]:
    """The presets (any timm model is also accepted as ``timm/<name>``)."""
    return list(list_presets().values())


def create_extractor(model: str | ModelSpec, **options: Any) -> Any:
    """A :class:`~pathopipe.features._extractor.FeatureExtractor` (imports torch and timm)."""
    from pathopipe.features._extractor import FeatureExtractor

    spec = model if isinstance(model, ModelSpec) else resolve_model(model)
    return FeatureExtractor(spec, **options)
