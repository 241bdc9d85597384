"""The geometry of one tile: requested, read and level-0 sizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

# how regions are downsampled to tiles: "area" averages the full-resolution region (any
# backend); "jpeg-dct" decodes JPEG source tiles at 1/2, 1/4 or 1/8 scale (libjpeg-turbo's
# DCT scaling, tiff backend) and assembles the region at the tile's resolution
Resample = Literal["area", "jpeg-dct"]


@dataclass(frozen=True)
class TileSpec:
    """How one tile is read and resized."""

    tile_size: int  # pixels at the target mpp (what is stored)
    stride: int  # pixels at the target mpp
    target_mpp: float
    mpp_level0: float
    level: int  # pyramid level read
    level_downsample: float
    read_size: int  # pixels of the level read
    read_stride: int  # pixels of the level read
    tile_size_level0: int  # the tile's side in level-0 pixels (rounded)
    resample: Resample = "area"

    @property
    def integer_factor(self) -> int | None:
        """Read pixels per stored pixel when that is a whole number above 1, else None."""
        if self.read_size > self.tile_size and self.read_size % self.tile_size == 0:
            if self.read_stride % (self.read_size // self.tile_size) == 0:
                return self.read_size // self.tile_size
        return None

    @property
    def resize(self) -> bool:
        """Whether read regions are resized to ``tile_size``."""
        return self.read_size != self.tile_size

    @property
    def resize_factor(self) -> float:
        """Stored pixels per read pixel (< 1 when downsampling)."""
        return self.tile_size / self.read_size

    @property
    def effective_mpp(self) -> float:
        """The actual µm per stored pixel (equals target_mpp within mpp_tolerance)."""
        return self.mpp_level0 * self.level_downsample * self.read_size / self.tile_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "resize": self.resize,
            "resize_factor": self.resize_factor,
            "effective_mpp": self.effective_mpp,
        }
