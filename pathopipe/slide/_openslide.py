"""OpenSlide backend (openslide-python with the openslide-bin wheel)."""

from __future__ import annotations

from ctypes import POINTER, c_uint32

import cv2
import numpy as np

from pathopipe.slide._base import SlideReader, info_from_handle
from pathopipe.slide._registry import BackendOptions, slide_backends


@slide_backends.register(
    "openslide",
    description="OpenSlide C library: most vendor formats",
    priority=20,
    urls=False,  # local files only
    options=BackendOptions,
)
class OpenSlideReader(SlideReader):
    backend = "openslide"

    def __init__(self, path: str, *, options: BackendOptions | None = None) -> None:
        import openslide

        self._slide = openslide.OpenSlide(path)
        info = info_from_handle(path, self.backend, self._slide, dict(self._slide.properties), "openslide")
        super().__init__(path, info)
        # openslide-python's low-level call lets OpenSlide write into our buffer, saving the
        # ARGB->RGBA conversion, the PIL image and its copy (~15 % of a 224 px read)
        from openslide import lowlevel

        raw = getattr(lowlevel, "_read_region", None)
        self._raw_read = raw if raw is not None and hasattr(self._slide, "_osr") else None

    def _read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int], out: np.ndarray | None
    ) -> np.ndarray:
        # OpenSlide fills premultiplied ARGB words; in memory (little-endian) that is B, G, R, A.
        width, height = size
        argb = np.empty((height, width), dtype=np.uint32)
        if self._raw_read is not None:
            self._raw_read(self._slide._osr, argb.ctypes.data_as(POINTER(c_uint32)), *location, level, *size)
            bgra = argb.view(np.uint8).reshape(height, width, 4)
        else:  # public API: RGBA image, un-premultiplied
            rgba = np.asarray(self._slide.read_region(location, level, size))
            bgra = np.asarray(cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA), dtype=np.uint8)
        if self._inside(location, level, size):
            return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB, dst=out)
        # outside the slide the pixels are transparent: composite onto white
        # (premultiplied: rgb + 255 - alpha; the public path's zeros give the same)
        rgb = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB, dst=out)
        rgb += (255 - bgra[..., 3:4]).astype(np.uint8)
        return rgb

    def close(self) -> None:
        self._slide.close()
