"""OpenSlide backend (openslide-python with the openslide-bin wheel)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pathopipe.slide._base import (
    SlideInfo,
    SlideReader,
    mpp_from_properties,
    parse_float,
)
from pathopipe.slide._registry import slide_backends


@slide_backends.register("openslide", description="OpenSlide C library: most vendor formats")
class OpenSlideReader(SlideReader):
    backend = "openslide"

    def __init__(self, path: str, *, options: dict[str, Any] | None = None) -> None:
        import openslide

        if options:
            raise TypeError(f"openslide backend takes no options, got {sorted(options)}")
        self._slide = openslide.OpenSlide(path)
        props = dict(self._slide.properties)
        mx, my, source = mpp_from_properties(props, "openslide")
        info = SlideInfo(
            path=path,
            backend=self.backend,
            vendor=props.get("openslide.vendor"),
            dimensions=tuple(self._slide.dimensions),
            level_dimensions=tuple(tuple(d) for d in self._slide.level_dimensions),
            level_downsamples=tuple(float(d) for d in self._slide.level_downsamples),
            mpp_x=mx,
            mpp_y=my,
            mpp_source=source,
            objective_power=parse_float(props.get("openslide.objective-power")),
            properties=props,
        )
        super().__init__(path, info)

    def _read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int], out: np.ndarray | None
    ) -> np.ndarray:
        rgba = np.asarray(self._slide.read_region(location, level, size))
        if self._inside(location, level, size):
            return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB, dst=out)
        # outside the slide openslide returns transparent pixels: composite onto white
        alpha = rgba[..., 3:4].astype(np.float32) * (1 / 255)
        rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)
        return np.rint(rgb).astype(np.uint8)

    def close(self) -> None:
        self._slide.close()
