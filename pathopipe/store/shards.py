"""Fast writer of whole tile shards in the standard Zarr v3 ``sharding_indexed`` format.

zarr-python encodes sharded chunks one by one through its async codec pipeline, which costs
about a millisecond per chunk, more than JPEG-encoding a tile. A tiling task always writes a
whole shard, so it can encode its tiles and lay out the shard itself: the encoded chunks one
after another, then the index (offset, length) per chunk as little-endian uint64, then the
CRC32C of the index (the default ``index_codecs``: bytes + crc32c). The array metadata is
checked first; any other layout falls back to zarr's own write path. Reading is always zarr's.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from pathopipe.store.codecs import JpegCodec, encode_jpeg

EMPTY = 2**64 - 1


def _chunk_encoder(sharding: ShardingCodec) -> Callable[[np.ndarray], bytes] | None:
    """An encoder for one inner chunk matching the array's codecs, or None if unsupported."""
    codecs = list(sharding.codecs)
    if len(codecs) == 1 and isinstance(codecs[0], JpegCodec):
        jpeg = codecs[0]
        return lambda tile: encode_jpeg(tile, quality=jpeg.quality, subsampling=jpeg.subsampling)
    if (
        len(codecs) == 2
        and isinstance(codecs[0], BytesCodec)
        and isinstance(codecs[1], ZstdCodec)
        and not codecs[1].checksum
    ):
        import numcodecs

        zstd = numcodecs.Zstd(level=codecs[1].level)
        return lambda tile: bytes(zstd.encode(np.ascontiguousarray(tile)))
    return None


def _layout_ok(array: zarr.Array) -> ShardingCodec | None:
    codecs = array.metadata.codecs  # type: ignore[union-attr]
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    sharding = codecs[0]
    index = list(sharding.index_codecs)
    little = len(index) == 2 and isinstance(index[0], BytesCodec) and getattr(index[0].endian, "value", None)
    if little != "little" or not isinstance(index[1], Crc32cCodec) or sharding.index_location.value != "end":
        return None
    if not isinstance(array.store, LocalStore | FsspecStore):
        return None
    if array.metadata.chunk_key_encoding.to_dict().get("configuration", {}).get("separator", "/") != "/":  # type: ignore[union-attr]
        return None
    return sharding


def encode_shard(tiles: np.ndarray, chunks_per_shard: int, encode: Callable[[np.ndarray], bytes]) -> bytes:
    """Shard bytes for ``tiles`` (one tile per chunk) in a shard of ``chunks_per_shard`` chunks."""
    parts = [encode(tile) for tile in tiles]
    index = np.full((chunks_per_shard, 2), EMPTY, dtype="<u8")
    offset = 0
    for i, part in enumerate(parts):
        index[i] = (offset, len(part))
        offset += len(part)
    index_bytes = index.tobytes()
    return b"".join([*parts, index_bytes, struct.pack("<I", google_crc32c.value(index_bytes))])


def _store_key(array: zarr.Array, chunk_key: str) -> str:
    return f"{array.path}/{chunk_key}" if array.path else chunk_key


def write_tiles(array: zarr.Array, start: int, tiles: np.ndarray) -> int | None:
    """Write ``tiles`` at rows ``start:start+len(tiles)``, which must be one whole shard; returns
    the shard's bytes (None when zarr wrote it).

    Uses the fast writer when the layout allows (locally written to a temporary file, then
    renamed; on object storage one PUT: a crash never leaves a half-written shard), else zarr's.
    """
    sharding = _layout_ok(array)
    per_shard = array.shards[0] if array.shards else 0
    stop = start + len(tiles)
    whole = per_shard and start % per_shard == 0 and (stop - start == per_shard or stop == array.shape[0])
    encode = _chunk_encoder(sharding) if sharding is not None and whole else None
    if encode is None:
        array[start:stop] = tiles
        return None
    data = encode_shard(tiles, per_shard, encode)
    key = _store_key(array, array.metadata.encode_chunk_key((start // per_shard, 0, 0, 0)))  # type: ignore[union-attr]
    if isinstance(array.store, FsspecStore):
        try:
            sync(array.store.set(key, default_buffer_prototype().buffer.from_bytes(data)))
        except OSError as err:
            raise OSError(
                err.errno, f"{err.strerror or err}: cannot write shard {key} of {array.store}"
            ) from err
        return len(data)
    target = Path(array.store.root) / key  # type: ignore[attr-defined]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".shard-")
    except OSError as err:  # e.g. a full or read-only disk: say where
        raise OSError(err.errno, f"{err.strerror}: cannot write shard {target}") from err
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(err.errno, f"{err.strerror}: cannot write shard {target}") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)


def _chunk_decoder(sharding: ShardingCodec) -> Callable[[bytes, np.ndarray], None] | None:
    """A function decoding one inner chunk into a given (tile-shaped) output array."""
    codecs = list(sharding.codecs)
    if len(codecs) == 1 and isinstance(codecs[0], JpegCodec):
        import imagecodecs

        def decode_jpeg(data: bytes, out: np.ndarray) -> None:
            if out.shape[-1] == 1:
                out[..., 0] = imagecodecs.jpeg8_decode(data)
            else:
                imagecodecs.jpeg8_decode(data, out=out)

        return decode_jpeg
    if len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and isinstance(codecs[1], ZstdCodec):
        import numcodecs

        zstd = numcodecs.Zstd()

        def decode_zstd(data: bytes, out: np.ndarray) -> None:
            out[...] = np.frombuffer(zstd.decode(data), dtype=np.uint8).reshape(out.shape)

        return decode_zstd
    return None


def read_tiles(array: zarr.Array, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
    """Tiles ``[start, stop)``: shards are read whole and decoded directly when the layout allows.

    Same values as ``array[start:stop]`` (tests check it) without zarr's per-chunk overhead;
    any other layout, or an index that fails its checksum, goes through zarr. ``out`` (reused
    by callers reading many batches) saves page-faulting a fresh batch each time.
    """
    sharding = _layout_ok(array)
    decode = _chunk_decoder(sharding) if sharding is not None else None
    if decode is None or array.chunks[0] != 1:
        if out is None:
            return array[start:stop]
        out[...] = array[start:stop]
        return out
    per_shard = array.shards[0]  # type: ignore[index]
    if out is None:
        out = np.empty((stop - start, *array.shape[1:]), dtype=array.dtype)
    fill = array.fill_value
    for shard in range(start // per_shard, (stop - 1) // per_shard + 1 if stop > start else 0):
        key = _store_key(array, array.metadata.encode_chunk_key((shard, 0, 0, 0)))  # type: ignore[union-attr]
        first, last = max(start, shard * per_shard), min(stop, (shard + 1) * per_shard)
        data = _read_whole(array.store, key)
        if data is None:
            out[first - start : last - start] = fill
            continue
        index_size = per_shard * 16
        index_bytes = data[-(index_size + 4) : -4]
        if struct.pack("<I", google_crc32c.value(index_bytes)) != data[-4:]:
            out[...] = array[start:stop]  # let zarr report the corrupt shard
            return out
        index = np.frombuffer(index_bytes, dtype="<u8").reshape(per_shard, 2)
        for row in range(first, last):
            offset, length = index[row - shard * per_shard]
            if offset == EMPTY:
                out[row - start] = fill
            else:
                decode(data[int(offset) : int(offset + length)], out[row - start])
    return out


def _read_whole(store: LocalStore | FsspecStore, key: str) -> bytes | None:
    """A whole object of the store, None when absent."""
    if isinstance(store, LocalStore):
        path = Path(store.root) / key
        return path.read_bytes() if path.exists() else None
    buffer = sync(store.get(key, default_buffer_prototype()))
    return None if buffer is None else buffer.to_bytes()
