"""tiffslide backend (pure Python over tifffile; also reads fsspec URLs)."""

from __future__ import annotations

import numpy as np

from pathopipe import fileio
from pathopipe.slide._base import BACKGROUND_VALUE, SlideReader, info_from_handle
from pathopipe.slide._registry import RemoteOptions, slide_backends


@slide_backends.register(
    "tiffslide",
    description="tiffslide over tifffile: TIFF-based formats",
    priority=30,
    urls=True,
    options=RemoteOptions,
)
class TiffSlideReader(SlideReader):
    backend = "tiffslide"

    def __init__(self, path: str, *, options: RemoteOptions | None = None) -> None:
        import tiffslide

        options = options or RemoteOptions()
        storage_options, block_size = dict(options.storage_options), options.block_size
        # over a URL, every read goes through a block cache on our (request-counting) filesystem
        self._file = (
            fileio.open_file(path, storage_options, block_size=block_size) if fileio.is_url(path) else None
        )
        try:
            self._slide = tiffslide.TiffSlide(self._file or path)
        except Exception:
            self.close_file()
            raise
        axes = self._slide.properties.get("tiffslide.series-axes")
        if axes != "YXS":
            self._slide.close()
            self.close_file()
            raise ValueError(f"unsupported image axes {axes!r} (need RGB pages, axes YXS)")
        info = info_from_handle(path, self.backend, self._slide, dict(self._slide.properties), "tiffslide")
        super().__init__(path, info)

    def _read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int], out: np.ndarray | None
    ) -> np.ndarray:
        if self._inside(location, level, size):
            region = self._slide.read_region(location, level, size, as_array=True)
        else:
            # locations are never negative here, so the valid part is the top-left corner
            part = self._slide.read_region(location, level, size, as_array=True, padding=False)
            region = np.full(
                (size[1], size[0], part.shape[2] if part.ndim == 3 else 3), BACKGROUND_VALUE, np.uint8
            )
            region[: part.shape[0], : part.shape[1]] = part
        if region.dtype != np.uint8:
            raise ValueError(f"{self.path}: unsupported sample type {region.dtype} (need 8-bit RGB)")
        if region.shape[2] == 4:
            region = region[..., :3]
        return np.ascontiguousarray(region)

    def close_file(self) -> None:
        if self._file is not None:
            self._file.close()

    def close(self) -> None:
        self._slide.close()
        self.close_file()
