"""Helpers for tests, shipped so users can test their own pipelines: synthetic slides."""

from pathopipe.testing._scene import TissueScene
from pathopipe.testing._tiff import SyntheticSlide, write_synthetic_slide

__all__ = ["SyntheticSlide", "TissueScene", "write_synthetic_slide"]
