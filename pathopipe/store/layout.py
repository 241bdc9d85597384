"""A slide store: the names of its arrays and groups, its attributes and its ``complete`` flag.

::

    <slide_id>.zarr/            attrs: geometry, source, config hash, complete (last write)
      tiles  coords  tissue_fraction  [region_fraction]  mask  thumbnail
      features/<model_key>/     attrs: model, weights, complete
        features

The packed cohort (``cohort.zarr/<model_key>/``) holds ``features``, ``coords`` and ``offsets``.
Where a store lives in a run folder is :class:`pathopipe.output.layout.RunLayout`'s business.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import ShardingCodec, ZstdCodec

from pathopipe import fileio
from pathopipe.errors import StoreError
from pathopipe.store.codecs import JPEG_CODEC_NAME
from pathopipe.store.tile_codecs import tiles_array_codecs

SCHEMA_VERSION = 1
TILES, COORDS, TISSUE_FRACTION, MASK, THUMBNAIL = "tiles", "coords", "tissue_fraction", "mask", "thumbnail"
REGION_FRACTION = "region_fraction"  # (N, K) float32, attrs region_classes: when the slide has annotations
FEATURES = "features"  # the group of every model's features, and each model's array in it
OFFSETS = "offsets"  # cohort.zarr: slide i owns rows offsets[i]:offsets[i + 1]
METADATA = "zarr.json"  # a group's or array's metadata (attributes included), zarr v3's name
IMAGE_CHUNK = 1024


def shard_ranges(n_tiles: int, per_shard: int) -> list[tuple[int, int]]:
    """The [start, stop) rows of each shard of ``per_shard`` rows over ``n_tiles`` rows (a task
    writes, or reads, one shard)."""
    return [(start, min(start + per_shard, n_tiles)) for start in range(0, n_tiles, per_shard)]


def feature_group(store: str | Path, key: str) -> str:
    """The group of one model's features in a slide store: ``<store>/features/<key>``."""
    return fileio.join(store, FEATURES, key)


def feature_array(key: str) -> str:
    """The features array of one model, relative to its slide store: ``features/<key>/features``."""
    return f"{FEATURES}/{key}/{FEATURES}"


def metadata_path(node: str | Path) -> str:
    """The metadata file of a group or array (``<node>/zarr.json``)."""
    return fileio.join(node, METADATA)


def read_attrs(node: str | Path, options: fileio.Options = None) -> dict[str, Any]:
    """The attributes of a group or array, read from its metadata file alone ({} when absent);
    :class:`StoreError` when the file is unreadable."""
    path = metadata_path(node)
    try:
        return dict(json.loads(fileio.read_bytes(path, options)).get("attributes", {}))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise StoreError(f"{path}: unreadable zarr metadata ({type(err).__name__}: {err})") from err


@dataclass(frozen=True)
class StoreStatus:
    exists: bool
    complete: bool
    config_hash: str | None
    n_tiles: int | None
    slide_identity: str | None = None  # the hash of the per-slide settings it was made with


def read_status(path: str | Path, options: fileio.Options = None) -> StoreStatus:
    """Whether a store exists, is complete, and for which config (reads only zarr.json)."""
    try:
        attrs = json.loads(fileio.read_bytes(metadata_path(path), options)).get("attributes", {})
    except FileNotFoundError:
        return StoreStatus(fileio.exists(path, options), False, None, None)
    except (OSError, ValueError):
        return StoreStatus(True, False, None, None)
    return StoreStatus(
        True,
        attrs.get("complete") is True,
        attrs.get("config_hash"),
        attrs.get("n_tiles"),
        attrs.get("slide_identity"),
    )


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
    options: fileio.Options = None,
) -> zarr.Group:
    """Create an empty store (removing any previous one) with ``complete`` set to False; its
    ``tiles`` array is stored with the tile codec ``codec`` (:mod:`pathopipe.store.tile_codecs`)."""
    codecs = tiles_array_codecs(
        codec, {"jpeg_quality": jpeg_quality, "jpeg_subsampling": jpeg_subsampling, "zstd_level": zstd_level}
    )
    fileio.remove(path, options)
    group = zarr.open_group(
        fileio.zarr_store(path, options), mode="w", zarr_format=3,
        attributes={**attrs, "schema_version": SCHEMA_VERSION, "complete": False},
    )  # fmt: skip
    if codecs is not None:
        shard = max(1, min(tiles_per_shard, max(n_tiles, 1)))
        group.create_array(
            TILES,
            shape=(n_tiles, tile_size, tile_size, 3),
            dtype="uint8",
            chunks=(1, tile_size, tile_size, 3),
            shards=(shard, tile_size, tile_size, 3),
            fill_value=255,
            dimension_names=("tile", "y", "x", "channel"),
            **codecs,
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
        attributes=attrs,
        # every chunk is written: zarr would otherwise compare each with the fill value first
        # (~7 ms for a 1024² RGB chunk, more than compressing it)
        config={"write_empty_chunks": True},
    )
    array[...] = image


# the codecs pathopipe writes (and zarr's standard ones); a store naming any other codec, e.g.
# numcodecs.pickle, whose decoding would run code from the store, is refused before any read
SAFE_CODECS = frozenset(
    {"bytes", "zstd", "blosc", "gzip", "crc32c", "transpose", "sharding_indexed", JPEG_CODEC_NAME}
)


def _codec_names(codecs: Any) -> list[str]:
    names = []
    for codec in codecs:
        names.append(str(codec.to_dict().get("name")))
        if isinstance(codec, ShardingCodec):
            names += _codec_names(codec.codecs) + _codec_names(codec.index_codecs)
    return names


def unsafe_codecs(array: zarr.Array[Any]) -> list[str]:
    """Codecs of ``array`` outside :data:`SAFE_CODECS` (a zarr v2 array counts as unsafe)."""
    if array.metadata.zarr_format != 3:
        return [f"zarr format {array.metadata.zarr_format}"]
    return sorted(set(_codec_names(array.metadata.codecs)) - SAFE_CODECS)


def check_codecs(array: zarr.Array[Any], where: str) -> zarr.Array[Any]:
    """``array``, after checking that decoding it runs no code a store could bring along."""
    unsafe = unsafe_codecs(array)
    if unsafe:
        raise StoreError(
            f"{where}: codec(s) {', '.join(unsafe)} are not among those pathopipe reads "
            f"({', '.join(sorted(SAFE_CODECS))}); refused before decoding anything (a codec such as "
            "numcodecs.pickle would run code from the store)"
        )
    return array


def open_store_array(
    path: str | Path, name: str, options: fileio.Options = None, *, mode: Literal["r", "r+"] = "r"
) -> zarr.Array[Any]:
    """The array ``name`` (e.g. ``coords``, ``features/<key>/features``) of the store at ``path``,
    checked to use only safe codecs."""
    location = fileio.join(path, *name.split("/"))
    return check_codecs(zarr.open_array(fileio.zarr_store(location, options), mode=mode), location)


def open_store_group(
    path: str | Path, options: fileio.Options = None, *, mode: Literal["r", "r+"] = "r"
) -> zarr.Group:
    """The root group of the store at ``path``."""
    return zarr.open_group(fileio.zarr_store(path, options), mode=mode)


def read_array(array: zarr.Array[Any], selection: Any = slice(None)) -> np.ndarray:
    """``array[selection]`` as a numpy array (what zarr returns is typed as any array-like)."""
    return np.asarray(array[selection])


def child_array(group: zarr.Group, name: str) -> zarr.Array[Any]:
    """The array ``name`` of ``group``; :class:`StoreError` when it is a group."""
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise StoreError(f"{group.store_path}/{name} is a group where an array was expected")
    return node


def child_group(group: zarr.Group, name: str) -> zarr.Group:
    """The group ``name`` of ``group``; :class:`StoreError` when it is an array."""
    node = group[name]
    if not isinstance(node, zarr.Group):
        raise StoreError(f"{group.store_path}/{name} is an array where a group was expected")
    return node


def attrs_of(node: zarr.Group | zarr.Array[Any]) -> dict[str, Any]:
    """A group's or array's attributes as a plain dict."""
    return dict(node.attrs)


def open_tiles_for_write(path: str | Path, options: fileio.Options = None) -> zarr.Array[Any]:
    return open_store_array(path, TILES, options, mode="r+")


def mark_complete(path: str | Path, summary: dict[str, Any], options: fileio.Options = None) -> None:
    """Record the summary, then set ``complete`` (the last write to the store)."""
    group = open_store_group(path, options, mode="r+")
    group.update_attributes({**summary, "complete": False})
    group.update_attributes({"complete": True})
