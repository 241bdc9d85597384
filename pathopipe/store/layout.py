"""Names, arrays and attributes of a slide store, and its ``complete`` flag."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BytesCodec, ZstdCodec

from pathopipe.store.codecs import JpegCodec

SCHEMA_VERSION = 1
TILES, COORDS, TISSUE_FRACTION, MASK, THUMBNAIL = "tiles", "coords", "tissue_fraction", "mask", "thumbnail"
IMAGE_CHUNK = 1024


def slide_store_path(out: str | Path, slide_id: str) -> Path:
    return Path(out) / "slides" / f"{slide_id}.zarr"


@dataclass(frozen=True)
class StoreStatus:
    exists: bool
    complete: bool
    config_hash: str | None
    n_tiles: int | None


def read_status(path: str | Path) -> StoreStatus:
    """Whether a store exists, is complete, and for which config (reads only zarr.json)."""
    meta = Path(path) / "zarr.json"
    if not meta.exists():
        return StoreStatus(Path(path).exists(), False, None, None)
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return StoreStatus(True, False, None, None)
    return StoreStatus(True, attrs.get("complete") is True, attrs.get("config_hash"), attrs.get("n_tiles"))


def _tile_codecs(codec: str, *, jpeg_quality: int, jpeg_subsampling: str, zstd_level: int) -> dict[str, Any]:
    if codec == "jpeg":
        return {
            "serializer": JpegCodec(quality=jpeg_quality, subsampling=jpeg_subsampling),
            "compressors": None,
        }  # type: ignore[arg-type]
    if codec == "zstd":
        return {"serializer": BytesCodec(), "compressors": ZstdCodec(level=zstd_level)}
    raise ValueError(f"unknown tile codec {codec!r}; allowed: jpeg, zstd, none")


def create_slide_store(
    path: str | Path,
    *,
    n_tiles: int,
    tile_size: int,
    codec: str,
    tiles_per_shard: int,
    jpeg_quality: int = 90,
    jpeg_subsampling: str = "444",
    zstd_level: int = 3,
    attrs: dict[str, Any],
) -> zarr.Group:
    """Create an empty store (removing any previous one) with ``complete`` set to False."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.update_attributes({**attrs, "schema_version": SCHEMA_VERSION, "complete": False})
    if codec != "none":
        shard = max(1, min(tiles_per_shard, max(n_tiles, 1)))
        group.create_array(
            TILES,
            shape=(n_tiles, tile_size, tile_size, 3),
            dtype="uint8",
            chunks=(1, tile_size, tile_size, 3),
            shards=(shard, tile_size, tile_size, 3),
            fill_value=255,
            dimension_names=("tile", "y", "x", "channel"),
            **_tile_codecs(
                codec, jpeg_quality=jpeg_quality, jpeg_subsampling=jpeg_subsampling, zstd_level=zstd_level
            ),
        )
    return group


def write_image(group: zarr.Group, name: str, image: np.ndarray, *, attrs: dict[str, Any]) -> None:
    """Write a small 2-D/3-D image array (mask, thumbnail) zstd-compressed."""
    chunks = (IMAGE_CHUNK, IMAGE_CHUNK, *image.shape[2:])
    dims = ("y", "x", "channel")[: image.ndim]
    array = group.create_array(
        name,
        shape=image.shape,
        dtype=image.dtype,
        chunks=tuple(min(c, max(s, 1)) for c, s in zip(chunks, image.shape, strict=True)),
        compressors=ZstdCodec(level=3),
        dimension_names=dims,
    )
    array[...] = image
    array.update_attributes(attrs)


def open_tiles_for_write(path: str | Path) -> zarr.Array:
    return zarr.open_array(Path(path) / TILES, mode="r+")


def mark_complete(path: str | Path, summary: dict[str, Any]) -> None:
    """Record the summary, then set ``complete`` (the last write to the store)."""
    group = zarr.open_group(path, mode="r+")
    group.update_attributes({**summary, "complete": False})
    group.update_attributes({"complete": True})
