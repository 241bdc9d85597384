"""Helpers for tests, shipped so users can test their own pipelines: synthetic slides and a
corpus of broken ones."""

from pathopipe.testing._bad import BadSlide, write_bad_slides
from pathopipe.testing._s3 import S3Server, s3_server
from pathopipe.testing._scene import TissueScene
from pathopipe.testing._tiff import SyntheticSlide, write_synthetic_slide

__all__ = [
    "BadSlide",
    "S3Server",
    "SyntheticSlide",
    "TissueScene",
    "s3_server",
    "write_bad_slides",
    "write_synthetic_slide",
]
