"""Fast writer of whole tile shards in the standard Zarr v3 ``sharding_indexed`` format.

zarr-python encodes sharded chunks one by one through its async codec pipeline, which costs
about a millisecond per chunk, more than JPEG-encoding a tile. A tiling task always writes a
whole shard, so it can encode its tiles and lay out the shard itself: the encoded chunks one
after another, then the index (offset, length) per chunk as little-endian uint64, then the
CRC32C of the index (the default ``index_codecs``: bytes + crc32c). The array metadata is
checked first (:class:`~pathopipe.store.sharding.ShardLayout`, which owns the format); any
other layout falls back to zarr's own write path. ``read_tiles`` reads such shards back directly
too (index, then only the byte range of the wanted rows).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore

from pathopipe._process import decode_pool
from pathopipe.errors import CorruptShardError
from pathopipe.store.layout import read_array
from pathopipe.store.sharding import EMPTY, ChunkDecoder, ShardBytes, ShardLayout, encode_shard


def tile_layout(array: zarr.Array[Any]) -> ShardLayout | None:
    """The shard layout of a tile (or row) array this module reads and writes itself, or None
    (then zarr does: another layout, or a store that is neither local nor fsspec)."""
    if not ShardBytes.supports(array.store):
        return None
    return ShardLayout.of(array.metadata)


def _store_key(array: zarr.Array[Any], key: str) -> str:
    return f"{array.path}/{key}" if array.path else key


def shard_encoder(array: zarr.Array[Any], start: int, stop: int) -> Callable[[np.ndarray], bytes] | None:
    """The encoder of one row (tile) when rows ``start:stop`` are one whole shard the fast writer
    can write (:func:`write_encoded_shard`), else None (then zarr must write them)."""
    layout = tile_layout(array)
    if layout is None or layout.chunk_rows != 1:
        return None
    per_shard = layout.shard_rows
    whole = start % per_shard == 0 and (stop - start == per_shard or stop == array.shape[0])
    return layout.encoder() if whole else None


def write_tiles(array: zarr.Array[Any], start: int, tiles: np.ndarray) -> int | None:
    """Write ``tiles`` at rows ``start:start+len(tiles)``, which must be one whole shard; returns
    the shard's bytes (None when zarr wrote it).

    Uses the fast writer when the layout allows (locally written to a temporary file, then
    renamed; on object storage one PUT: a crash never leaves a half-written shard), else zarr's.
    """
    encode = shard_encoder(array, start, start + len(tiles))
    if encode is None:
        array[start : start + len(tiles)] = tiles
        return None
    return write_encoded_shard(array, start, [encode(tile) for tile in tiles])


def write_encoded_shard(array: zarr.Array[Any], start: int, parts: list[bytes]) -> int:
    """Write the encoded rows ``parts`` (from :func:`shard_encoder`) as the shard starting at row
    ``start``; returns its bytes."""
    layout = tile_layout(array)
    if layout is None:
        raise ValueError(f"{array.store}/{array.path}: not a shard layout written here; use write_tiles")
    data = encode_shard(parts, layout.chunks_per_shard)
    key = _store_key(array, layout.shard_key(start // layout.shard_rows))
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


def read_tiles(
    array: zarr.Array[Any], start: int, stop: int, out: np.ndarray | None = None, *, threads: int = 1
) -> np.ndarray:
    """Tiles ``[start, stop)``, decoded directly from the shards when the layout allows.

    Same values as ``array[start:stop]`` (tests check it) without zarr's per-chunk overhead: of
    each shard only its index and the byte range of the wanted rows are read (a batch of 32
    from a 1,024-tile shard reads 1/32 of it). Any other layout, or an index that fails its
    checksum, goes through zarr. ``out`` (reused by callers reading many batches) saves
    page-faulting a fresh batch each time. ``threads`` > 1 decodes on that many threads (the
    JPEG and zstd decoders release the GIL): what a GPU worker needs to keep its GPU fed.
    """
    layout = tile_layout(array)
    if layout is None or layout.chunk_rows != 1:
        if out is None:
            return read_array(array, slice(start, stop))
        out[...] = array[start:stop]
        return out
    per_shard = layout.shard_rows
    if out is None:
        out = np.empty((stop - start, *array.shape[1:]), dtype=array.dtype)
    source = ShardBytes(array.store)  # type: ignore[arg-type]
    work: list[tuple[memoryview, np.ndarray]] = []  # (encoded chunk, its row of out)
    for shard in range(start // per_shard, (stop - 1) // per_shard + 1 if stop > start else 0):
        key = _store_key(array, layout.shard_key(shard))
        first, last = max(start, shard * per_shard), min(stop, (shard + 1) * per_shard)
        lo, hi = first - shard * per_shard, last - shard * per_shard
        try:
            index = source.index(key, per_shard)
            if index is None:
                out[first - start : last - start] = layout.fill_value
                continue
            base, end = index.span(lo, hi)
            data = source.read(key, base, end)
        except CorruptShardError:
            out[...] = array[start:stop]  # let zarr report the corrupt shard
            return out
        for row in range(first, last):
            offset, length = index.chunk(row - shard * per_shard)
            if offset == EMPTY:
                out[row - start] = layout.fill_value
            else:
                work.append((data[offset - base : offset + length - base], out[row - start]))
    _decode_all(layout.decoder(), work, threads)
    return out


def _decode_all(decode: ChunkDecoder, work: list[tuple[memoryview, np.ndarray]], threads: int) -> None:
    """Decode every (chunk, row) pair, on ``threads`` threads in contiguous runs of rows."""

    def run(part: list[tuple[memoryview, np.ndarray]]) -> None:
        for data, row in part:
            decode(data, row)

    if threads <= 1 or len(work) < 2:
        return run(work)
    n = min(threads, len(work))
    step = -(-len(work) // n)
    list(decode_pool(n).map(run, [work[i : i + step] for i in range(0, len(work), step)]))
