"""Registry of tile codecs (``store.codec``): how a slide store keeps its tile pixels.

Each entry turns the store settings (``jpeg_quality``, ``jpeg_subsampling``, ``zstd_level``) into
the zarr codecs of the ``tiles`` array, or None for a store that keeps no pixels (extraction then
reads the tiles from the slide: streaming mode).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from zarr.codecs import BytesCodec, ZstdCodec

from pathopipe._registry import Registry
from pathopipe.store.codecs import JpegCodec

__all__ = ["TileCodec", "tile_codecs", "tiles_array_codecs"]

TileCodec = Callable[[Mapping[str, Any]], dict[str, Any] | None]
tile_codecs: Registry[TileCodec] = Registry("tile codec", entry_point_group="pathopipe.tile_codecs")


@tile_codecs.register(
    "jpeg", description="baseline JPEG per tile, lossy (store.jpeg_quality, jpeg_subsampling)"
)
def _jpeg(options: Mapping[str, Any]) -> dict[str, Any]:
    codec = JpegCodec(
        quality=options.get("jpeg_quality", 90), subsampling=options.get("jpeg_subsampling", "444")
    )
    return {"serializer": codec, "compressors": None}


@tile_codecs.register("zstd", description="lossless zstd (store.zstd_level): ~6x the bytes of JPEG q90")
def _zstd(options: Mapping[str, Any]) -> dict[str, Any]:
    return {"serializer": BytesCodec(), "compressors": ZstdCodec(level=options.get("zstd_level", 3))}


@tile_codecs.register("none", description="no tile pixels: extraction reads the tiles from the slide")
def _none(options: Mapping[str, Any]) -> None:
    return None


def tiles_array_codecs(codec: str, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The zarr codec arguments of a ``tiles`` array stored with ``codec`` (None: no array)."""
    return tile_codecs.get(codec)(options)
