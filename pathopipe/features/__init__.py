"""Feature extractors: timm models and pathology foundation-model presets.

>>> extractor = create_extractor("resnet50_trunc", weights="random")   # doctest: +SKIP
>>> features = extractor(tiles)                                        # (N, 1024) float32

What a run computes is :class:`ExtractionSettings`, made from its configuration by
:func:`extraction_settings`; presets are entries of :data:`model_presets`.
"""

from __future__ import annotations

from typing import Any

from pathopipe.errors import WeightsError
from pathopipe.features._spec import ModelSpec, list_presets, model_presets, resolve_model
from pathopipe.features._weights import WeightsSource
from pathopipe.features.flops import model_gflops
from pathopipe.features.settings import ExtractionSettings, check_settings, extraction_settings

__all__ = [
    "ExtractionSettings",
    "ModelSpec",
    "WeightsError",
    "WeightsSource",
    "check_settings",
    "create_extractor",
    "extraction_settings",
    "list_extractors",
    "model_gflops",
    "model_presets",
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
