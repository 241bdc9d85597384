"""Fast writer of whole tile shards in the standard Zarr v3 ``sharding_indexed`` format.

zarr-python encodes sharded chunks one by one through its async codec pipeline, which costs
about a millisecond per chunk, more than JPEG-encoding a tile. A tiling task always writes a
whole shard, so it can encode its tiles and lay out the shard itself: the encoded chunks one
after another, then the index (offset, length) per chunk as little-endian uint64, then the
CRC32C of the index (the default ``index_codecs``: bytes + crc32c). The array metadata is
checked first; any other layout falls back to zarr's own write path. ``read_tiles`` reads
such shards back directly too (index, then only the byte range of the wanted rows).
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

from pathopipe._threads import decode_pool
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


def _chunk_decoder(sharding: ShardingCodec) -> Callable[[memoryview, np.ndarray], None] | None:
    """A function decoding one inner chunk into a given (tile-shaped) output array."""
    codecs = list(sharding.codecs)
    if len(codecs) == 1 and isinstance(codecs[0], JpegCodec):
        import imagecodecs

        def decode_jpeg(data: memoryview, out: np.ndarray) -> None:
            if out.shape[-1] == 1:
                out[..., 0] = imagecodecs.jpeg8_decode(data)
            else:
                imagecodecs.jpeg8_decode(data, out=out)

        return decode_jpeg
    if len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and isinstance(codecs[1], ZstdCodec):
        import numcodecs

        zstd = numcodecs.Zstd()

        def decode_zstd(data: memoryview, out: np.ndarray) -> None:
            out[...] = np.frombuffer(zstd.decode(data), dtype=np.uint8).reshape(out.shape)

        return decode_zstd
    return None


def read_tiles(
    array: zarr.Array, start: int, stop: int, out: np.ndarray | None = None, *, threads: int = 1
) -> np.ndarray:
    """Tiles ``[start, stop)``, decoded directly from the shards when the layout allows.

    Same values as ``array[start:stop]`` (tests check it) without zarr's per-chunk overhead: of
    each shard only its index and the byte range of the wanted rows are read (a batch of 32
    from a 1,024-tile shard reads 1/32 of it). Any other layout, or an index that fails its
    checksum, goes through zarr. ``out`` (reused by callers reading many batches) saves
    page-faulting a fresh batch each time. ``threads`` > 1 decodes on that many threads (the
    JPEG and zstd decoders release the GIL): what a GPU worker needs to keep its GPU fed.
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
    work: list[tuple[memoryview, np.ndarray]] = []  # (encoded chunk, its row of out)
    for shard in range(start // per_shard, (stop - 1) // per_shard + 1 if stop > start else 0):
        key = _store_key(array, array.metadata.encode_chunk_key((shard, 0, 0, 0)))  # type: ignore[union-attr]
        first, last = max(start, shard * per_shard), min(stop, (shard + 1) * per_shard)
        try:
            found = _read_shard_rows(array.store, key, per_shard, first - shard * per_shard,
                                     last - shard * per_shard)  # fmt: skip
        except _CorruptShard:
            out[...] = array[start:stop]  # let zarr report the corrupt shard
            return out
        if found is None:
            out[first - start : last - start] = fill
            continue
        index, base, data = found
        for row, (offset, length) in zip(range(first, last), index, strict=True):
            if offset == EMPTY:
                out[row - start] = fill
            else:
                work.append((data[int(offset) - base : int(offset + length) - base], out[row - start]))
    _decode_all(decode, work, threads)
    return out


class _CorruptShard(Exception):
    """A shard whose index fails its checksum or points past the data."""


def _read_shard_rows(
    store: LocalStore | FsspecStore, key: str, per_shard: int, lo: int, hi: int
) -> tuple[np.ndarray, int, memoryview] | None:
    """Index entries of rows [lo, hi) of one shard, and the bytes they point into with the
    offset of their first byte; None when the shard is absent."""
    tail = per_shard * 16 + 4
    if isinstance(store, LocalStore):
        path = Path(store.root) / key
        if not path.exists():
            return None
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < tail:
                raise _CorruptShard(key)
            fh.seek(size - tail)
            index, begin, end = _index_rows(fh.read(tail), per_shard, lo, hi, size - tail, key)
            fh.seek(begin)
            return index, begin, memoryview(fh.read(end - begin))
    from zarr.abc.store import RangeByteRequest, SuffixByteRequest

    prototype = default_buffer_prototype()
    found = sync(store.get(key, prototype, byte_range=SuffixByteRequest(tail)))
    if found is None:
        return None
    raw = found.to_bytes()
    if len(raw) < tail:
        raise _CorruptShard(key)
    index, begin, end = _index_rows(raw, per_shard, lo, hi, None, key)
    if end == begin:
        return index, begin, memoryview(b"")
    data = sync(store.get(key, prototype, byte_range=RangeByteRequest(begin, end)))
    if data is None or len(data) != end - begin:
        raise _CorruptShard(key)
    return index, begin, memoryview(data.to_bytes())


def _index_rows(
    raw: bytes, per_shard: int, lo: int, hi: int, data_size: int | None, key: str
) -> tuple[np.ndarray, int, int]:
    """Rows [lo, hi) of a checked shard index, and the byte range [begin, end) they cover."""
    index_bytes = raw[:-4]
    if struct.pack("<I", google_crc32c.value(index_bytes)) != raw[-4:]:
        raise _CorruptShard(key)
    index = np.frombuffer(index_bytes, dtype="<u8").reshape(per_shard, 2)[lo:hi]
    used = index[index[:, 0] != EMPTY]
    if not len(used):
        return index, 0, 0
    begin, end = int(used[:, 0].min()), int((used[:, 0] + used[:, 1]).max())
    if data_size is not None and end > data_size:
        raise _CorruptShard(key)
    return index, begin, end


def _decode_all(
    decode: Callable[[memoryview, np.ndarray], None], work: list[tuple[memoryview, np.ndarray]], threads: int
) -> None:
    """Decode every (chunk, row) pair, on ``threads`` threads in contiguous runs of rows."""

    def run(part: list[tuple[memoryview, np.ndarray]]) -> None:
        for data, row in part:
            decode(data, row)

    if threads <= 1 or len(work) < 2:
        return run(work)
    n = min(threads, len(work))
    step = -(-len(work) // n)
    list(decode_pool(n).map(run, [work[i : i + step] for i in range(0, len(work), step)]))
