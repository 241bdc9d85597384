"""Tile codecs for Zarr v3.

``pathopipe.jpeg`` is an array-to-bytes codec storing each chunk (one RGB tile) as a baseline
JPEG, decoded by libjpeg-turbo through imagecodecs. It is registered with zarr when pathopipe
is imported and through the ``zarr.codecs`` entry point, so plain ``zarr.open`` reads the
tiles of a pathopipe store wherever pathopipe is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import imagecodecs
import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.buffer import Buffer, NDBuffer
from zarr.core.common import JSON, parse_named_configuration
from zarr.registry import register_codec

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.chunk_grids import ChunkGrid
    from zarr.core.dtype import ZDType

JPEG_CODEC_NAME = "pathopipe.jpeg"
Subsampling = Literal["444", "420"]
_SUBSAMPLING = {"444": (1, 1), "420": (2, 2)}


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of a chunk shaped (1, ..., 1, H, W, C)."""
    if len(shape) < 3 or any(d != 1 for d in shape[:-3]) or shape[-1] not in (1, 3):
        raise ValueError(
            f"{JPEG_CODEC_NAME} needs chunks shaped (1, ..., H, W, 1 or 3), got {shape}; "
            "store one tile per chunk"
        )
    return shape[-3], shape[-2], shape[-1]


def encode_jpeg(image: np.ndarray, *, quality: int, subsampling: Subsampling = "444") -> bytes:
    """Baseline JPEG of an (H, W, 3) or (H, W) uint8 image (libjpeg-turbo)."""
    sampling = _SUBSAMPLING[subsampling] if image.ndim == 3 and image.shape[2] == 3 else None
    return bytes(imagecodecs.jpeg8_encode(np.ascontiguousarray(image), level=quality, subsampling=sampling))


@dataclass(frozen=True)
class JpegCodec(ArrayBytesCodec):
    """Lossy JPEG for uint8 RGB (or grey) image chunks."""

    is_fixed_size = False

    quality: int = 90
    subsampling: Subsampling = "444"

    def __init__(self, *, quality: int = 90, subsampling: Subsampling = "444") -> None:
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEG quality must be 1..100, got {quality}")
        if subsampling not in _SUBSAMPLING:
            raise ValueError(f"JPEG subsampling must be one of {sorted(_SUBSAMPLING)}, got {subsampling!r}")
        object.__setattr__(self, "quality", int(quality))
        object.__setattr__(self, "subsampling", subsampling)

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> Self:
        _, configuration = parse_named_configuration(data, JPEG_CODEC_NAME, require_configuration=False)
        return cls(**(configuration or {}))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, JSON]:
        return {
            "name": JPEG_CODEC_NAME,
            "configuration": {"quality": self.quality, "subsampling": self.subsampling},
        }

    def validate(self, *, shape: tuple[int, ...], dtype: ZDType[Any, Any], chunk_grid: ChunkGrid) -> None:
        if dtype.to_native_dtype() != np.dtype("uint8"):
            raise ValueError(f"{JPEG_CODEC_NAME} stores uint8 images, not {dtype}")
        chunk_shape = getattr(chunk_grid, "chunk_shape", None)
        if chunk_shape is not None:
            _image_shape(tuple(chunk_shape))

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        raise NotImplementedError  # variable size

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        h, w, c = _image_shape(chunk_spec.shape)
        image = imagecodecs.jpeg8_decode(chunk_bytes.to_bytes())
        if image.ndim == 2:
            image = image[..., None]
        if image.shape != (h, w, c):
            raise ValueError(f"decoded JPEG tile has shape {image.shape}, expected {(h, w, c)}")
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(image.reshape(chunk_spec.shape))  # type: ignore[arg-type]

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        h, w, c = _image_shape(chunk_spec.shape)
        image = np.ascontiguousarray(chunk_array.as_numpy_array().reshape(h, w, c))
        if c == 1:
            image = image[..., 0]
        encoded = encode_jpeg(image, quality=self.quality, subsampling=self.subsampling)
        return chunk_spec.prototype.buffer.from_bytes(encoded)


register_codec(JPEG_CODEC_NAME, JpegCodec)
