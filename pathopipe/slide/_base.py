"""The slide reader interface shared by every backend.

Coordinate convention (openslide's): locations ``(x, y)`` in level-0 pixels, sizes
``(width, height)`` in pixels of the level read, arrays ``(H, W, 3)`` uint8 RGB.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from pathopipe.errors import SlideReadError
from pathopipe.slide.resolution import MppSource, parse_float, read_resolution

BACKGROUND_VALUE = 255  # pixels outside the slide read as white glass


@dataclass(frozen=True)
class SlideInfo:
    """Slide metadata, independent of the backend that read it."""

    path: str
    backend: str
    vendor: str | None
    dimensions: tuple[int, int]  # level-0 (width, height)
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp_x: float | None
    mpp_y: float | None
    mpp_source: MppSource | None
    objective_power: float | None
    properties: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    mpp_rejected: str | None = None  # a resolution found in the metadata and not trusted, and why

    @property
    def mpp(self) -> float | None:
        """Level-0 microns per pixel (mean of x and y), or None when unknown."""
        if self.mpp_x is None or self.mpp_y is None:
            return None
        return (self.mpp_x + self.mpp_y) / 2

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def with_mpp(self, mpp: float, source: MppSource) -> SlideInfo:
        """The same slide at a resolution given for it (``given``) or for the run (``assumed``)."""
        return replace(self, mpp_x=mpp, mpp_y=mpp, mpp_source=source)

    def with_assumed_mpp(self, mpp: float) -> SlideInfo:
        return self.with_mpp(mpp, "assumed")

    def to_dict(self, *, with_properties: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["properties"] = dict(self.properties) if with_properties else None
        if not with_properties:
            del data["properties"]
        data["mpp"] = self.mpp
        data["level_dimensions"] = [list(d) for d in self.level_dimensions]
        data["dimensions"] = list(self.dimensions)
        data["level_downsamples"] = list(self.level_downsamples)
        return data


def info_from_handle(
    path: str, backend: str, handle: Any, props: Mapping[str, Any], prefix: str
) -> SlideInfo:
    """SlideInfo from an openslide-like handle (dimensions, level_dimensions, level_downsamples)
    and its properties, whose own keys start with ``prefix`` ("openslide" or "tiffslide")."""
    resolution = read_resolution(props, prefix)
    return SlideInfo(
        path=path,
        backend=backend,
        vendor=props.get(f"{prefix}.vendor"),
        dimensions=tuple(handle.dimensions),
        level_dimensions=tuple(tuple(d) for d in handle.level_dimensions),
        level_downsamples=tuple(float(d) for d in handle.level_downsamples),
        mpp_x=resolution.mpp_x,
        mpp_y=resolution.mpp_y,
        mpp_source=resolution.source,
        objective_power=parse_float(props.get(f"{prefix}.objective-power")),
        properties={k: str(v) for k, v in props.items() if v is not None},
        mpp_rejected=resolution.rejected,
    )


# regions read per step when they are resized: a few, so that the step's decoded source tiles
# and its region buffer (~2.4 MB for 448 px regions) are still in the CPU caches when they are
# copied and resized (32 regions made ~19 MB round trips to memory: 8 % slower)
RESIZE_STEP = 4


class SlideReader(abc.ABC):
    """An open slide. Not picklable: open it where it is used (each worker/thread)."""

    backend: ClassVar[str]

    def __init__(self, path: str, info: SlideInfo) -> None:
        self.path = path
        self.info = info

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError(
            f"{type(self).__name__} holds an open file and cannot be pickled; "
            "pass the path and open the slide inside the task"
        )

    def read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int], *, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Read ``size`` pixels of ``level`` whose top-left is level-0 ``location``.

        Returns (H, W, 3) uint8 RGB; pixels outside the slide are white. With ``out`` (a
        C-contiguous (H, W, 3) uint8 array) the pixels are written there and it is returned.
        """
        if not 0 <= level < self.info.level_count:
            raise IndexError(f"level {level} out of range 0..{self.info.level_count - 1} for {self.path}")
        width, height = size
        if width <= 0 or height <= 0:
            raise ValueError(f"region size must be positive, got {size}")
        try:
            region = self._read_region(location, level, size, out)
        except Exception as err:
            raise SlideReadError(
                f"cannot read {size[0]}x{size[1]} px at {location} (level {level}) of slide {self.path!r} "
                f"with {self.backend}: {type(err).__name__}: {err}"
            ) from err
        if out is not None and region is not out:
            out[...] = region
            return out
        return region

    def read_regions(
        self,
        locations: np.ndarray | list[tuple[int, int]],
        level: int,
        size: tuple[int, int],
        *,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Many regions of one ``level`` and ``size`` at once, as (N, H, W, 3) uint8.

        Backends that read source tiles plan them over the whole batch (each decoded once);
        the default reads region by region. ``out`` (N, H, W, 3) receives the pixels if given.
        """
        if not 0 <= level < self.info.level_count:
            raise IndexError(f"level {level} out of range 0..{self.info.level_count - 1} for {self.path}")
        width, height = size
        if width <= 0 or height <= 0:
            raise ValueError(f"region size must be positive, got {size}")
        locations = np.asarray(locations, dtype=np.int64).reshape(-1, 2)
        if out is None:
            out = np.empty((len(locations), height, width, 3), dtype=np.uint8)
        elif out.shape != (len(locations), height, width, 3) or out.dtype != np.uint8:
            raise ValueError(f"out must be ({len(locations)}, {height}, {width}, 3) uint8, got {out.shape}")
        if len(locations) == 0:
            return out
        try:
            self._read_regions(locations, level, size, out)
        except Exception as err:
            first, last = tuple(int(v) for v in locations[0]), tuple(int(v) for v in locations[-1])
            raise SlideReadError(
                f"cannot read {len(locations)} regions of {width}x{height} px from {first} to {last} "
                f"(level {level}) of slide {self.path!r} with {self.backend}: {type(err).__name__}: {err}"
            ) from err
        return out

    def _read_regions(
        self, locations: np.ndarray, level: int, size: tuple[int, int], out: np.ndarray
    ) -> np.ndarray:
        for i, (x, y) in enumerate(locations):
            dst = out[i]
            region = self._read_region((int(x), int(y)), level, size, dst)
            if region is not dst:
                dst[...] = region
        return out

    def downscale_method(self, level: int, factor: int) -> str:
        """How ``read_regions_downscaled`` shrinks regions of ``level`` by ``factor``: "area"
        (full-resolution pixels block-averaged) or "jpeg-dct" (source tiles decoded pre-scaled)."""
        return "area"

    def read_regions_downscaled(
        self,
        locations: np.ndarray | list[tuple[int, int]],
        level: int,
        size: tuple[int, int],
        factor: int,
        *,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Regions of ``size`` pixels of ``level`` shrunk by the whole ``factor``, as
        (N, H / factor, W / factor, 3) uint8, the way ``downscale_method`` says."""
        width, height = size
        if factor < 1 or width % factor or height % factor:
            raise ValueError(f"region size {size} is not a multiple of the factor {factor}")
        locations = np.asarray(locations, dtype=np.int64).reshape(-1, 2)
        shape = (len(locations), height // factor, width // factor, 3)
        if out is None:
            out = np.empty(shape, dtype=np.uint8)
        elif out.shape != shape or out.dtype != np.uint8:
            raise ValueError(f"out must be {shape} uint8, got {out.shape}")
        if len(locations) == 0:
            return out
        try:
            self._read_regions_downscaled(locations, level, size, factor, out)
        except SlideReadError:
            raise
        except Exception as err:
            first = tuple(int(v) for v in locations[0])
            raise SlideReadError(
                f"cannot read {len(locations)} regions of {width}x{height} px shrunk {factor}x from {first} "
                f"(level {level}) of slide {self.path!r} with {self.backend}: {type(err).__name__}: {err}"
            ) from err
        return out

    def _read_regions_downscaled(
        self, locations: np.ndarray, level: int, size: tuple[int, int], factor: int, out: np.ndarray
    ) -> np.ndarray:
        shrunk = (size[0] // factor, size[1] // factor)
        return self.read_regions_resized(locations, level, size, shrunk, out=out)

    def read_regions_resized(
        self,
        locations: np.ndarray | list[tuple[int, int]],
        level: int,
        size: tuple[int, int],
        out_size: tuple[int, int],
        *,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Regions of ``size`` pixels of ``level`` resized to ``out_size`` (w, h): read at full
        resolution a few at a time, then area-averaged (bilinear when enlarging)."""
        import cv2

        locations = np.asarray(locations, dtype=np.int64).reshape(-1, 2)
        shape = (len(locations), out_size[1], out_size[0], 3)
        if out is None:
            out = np.empty(shape, dtype=np.uint8)
        elif out.shape != shape or out.dtype != np.uint8:
            raise ValueError(f"out must be {shape} uint8, got {out.shape}")
        shrink = size[0] > out_size[0]
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        buffer = np.empty((min(RESIZE_STEP, len(locations)), size[1], size[0], 3), np.uint8)
        for start in range(0, len(locations), RESIZE_STEP):
            part = locations[start : start + RESIZE_STEP]
            regions = self.read_regions(part, level, size, out=buffer[: len(part)])
            for i, region in enumerate(regions):
                cv2.resize(region, out_size, dst=out[start + i], interpolation=interpolation)
        return out

    @abc.abstractmethod
    def _read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int], out: np.ndarray | None
    ) -> np.ndarray:
        """Backend read; may fill and return ``out`` to save a copy."""

    def _inside(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> bool:
        x, y = location
        ds = self.info.level_downsamples[level]
        lw, lh = self.info.level_dimensions[level]
        return x >= 0 and y >= 0 and x / ds + size[0] <= lw and y / ds + size[1] <= lh

    @abc.abstractmethod
    def close(self) -> None:
        """Release the file handle."""
