"""The Zarr v3 ``sharding_indexed`` format as pathopipe reads and writes it directly: its one owner.

A shard holds its chunks' encoded bytes one after another, then the index: per chunk its
(offset, length) as little-endian uint64, (EMPTY, EMPTY) for a chunk left out (it reads as the
fill value), then the CRC32C of the index (the default ``index_codecs``: bytes + crc32c, at the
end). The tile writer and reader (:mod:`pathopipe.store.shards`), the cohort's row reader
(:mod:`pathopipe.loader._rows`) and ``pathopipe verify`` all parse shards here, so ``verify``
never passes a shard that the readers read differently.

Only one layout is read this way (:meth:`ShardLayout.of` says whether an array has it): one
sharding codec, chunks and shards that split the first axis only, the index at the end, "/"
chunk keys, and inner codecs ``pathopipe.jpeg``, ``bytes`` or ``bytes`` + ``zstd``. Anything else
is left to zarr.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

from pathopipe.errors import CorruptShardError
from pathopipe.store.codecs import JpegCodec, encode_jpeg

__all__ = [
    "EMPTY",
    "ChunkDecoder",
    "ShardBytes",
    "ShardIndex",
    "ShardLayout",
    "encode_shard",
    "index_size",
]

EMPTY = 2**64 - 1  # offset and length of a chunk absent from its shard
_ENTRY = 16  # bytes per index entry: offset and length, little-endian uint64
_CHECKSUM = 4  # CRC32C of the index

ChunkDecoder = Callable[[memoryview | bytes, np.ndarray], None]  # (encoded chunk, its output array)


def index_size(chunks: int) -> int:
    """Bytes of the index (with its checksum) at the end of a shard of ``chunks`` chunks."""
    return chunks * _ENTRY + _CHECKSUM


def _checksum(data: bytes) -> bytes:
    return struct.pack("<I", google_crc32c.value(data))


class ShardIndex:
    """The (offset, length) of every chunk of one shard, ``EMPTY`` for chunks left out."""

    def __init__(self, entries: np.ndarray) -> None:
        self.entries = entries  # (chunks, 2) uint64

    @classmethod
    def decode(cls, data: bytes | memoryview, chunks: int, *, where: str) -> ShardIndex:
        """The index at the end of ``data`` (the whole shard, or just its last bytes), checked
        against its checksum; :class:`CorruptShardError` names ``where`` otherwise."""
        size = index_size(chunks)
        if len(data) < size:
            raise CorruptShardError(f"{where}: {len(data)} bytes, shorter than its index")
        tail = bytes(data[len(data) - size :])
        if _checksum(tail[:-_CHECKSUM]) != tail[-_CHECKSUM:]:
            raise CorruptShardError(f"{where}: index checksum mismatch (corrupt or truncated)")
        return cls(np.frombuffer(tail[:-_CHECKSUM], dtype="<u8").reshape(chunks, 2))

    @classmethod
    def of_lengths(cls, lengths: list[int], chunks: int) -> ShardIndex:
        """The index of chunks 0..len(lengths)-1 stored back to back (the rest left out)."""
        entries = np.full((chunks, 2), EMPTY, dtype="<u8")
        offset = 0
        for i, length in enumerate(lengths):
            entries[i] = (offset, length)
            offset += length
        return cls(entries)

    def encode(self) -> bytes:
        raw = np.ascontiguousarray(self.entries, dtype="<u8").tobytes()
        return raw + _checksum(raw)

    def present(self, chunk: int) -> bool:
        return int(self.entries[chunk, 0]) != EMPTY

    def chunk(self, chunk: int) -> tuple[int, int]:
        """(offset, length) of one chunk; ``(EMPTY, EMPTY)`` when it is left out."""
        offset, length = self.entries[chunk]
        return int(offset), int(length)

    def span(self, lo: int, hi: int) -> tuple[int, int]:
        """The bytes [begin, end) holding chunks [lo, hi) ((0, 0) when none is present)."""
        used = self.entries[lo:hi]
        used = used[used[:, 0] != EMPTY]
        if not len(used):
            return 0, 0
        return int(used[:, 0].min()), int((used[:, 0] + used[:, 1]).max())

    def first_outside(self, data_bytes: int) -> int | None:
        """The first present chunk running past ``data_bytes`` bytes of chunk data, if any."""
        present = self.entries[:, 0] != EMPTY
        past = present & (self.entries[:, 0] + self.entries[:, 1] > data_bytes)
        return int(np.argmax(past)) if past.any() else None


def encode_shard(parts: list[bytes], chunks: int) -> bytes:
    """A whole shard of ``chunks`` chunks whose first ``len(parts)`` chunks are ``parts``."""
    index = ShardIndex.of_lengths([len(p) for p in parts], chunks)
    return b"".join([*parts, index.encode()])


def _little_bytes(codec: Any, itemsize: int) -> bool:
    endian = getattr(codec.endian, "value", codec.endian)
    return isinstance(codec, BytesCodec) and (endian == "little" or (endian is None and itemsize == 1))


@dataclass(frozen=True)
class ShardLayout:
    """An array in the one shard layout pathopipe reads and writes itself."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunk_rows: int  # rows (first axis) per chunk
    shard_rows: int  # rows per shard
    codecs: tuple[Any, ...]  # the inner chunk codecs
    fill_value: Any
    metadata: Any  # zarr's ArrayV3Metadata (chunk keys)

    @classmethod
    def of(cls, metadata: Any) -> ShardLayout | None:
        """The layout of an array (its ``metadata``: zarr's ``ArrayV3Metadata``), or None when
        it is not this one (zarr then reads and writes it)."""
        if getattr(metadata, "zarr_format", None) != 3 or len(metadata.codecs) != 1:
            return None
        sharding = metadata.codecs[0]
        if not isinstance(sharding, ShardingCodec) or sharding.index_location.value != "end":
            return None
        index = list(sharding.index_codecs)
        if len(index) != 2 or not _little_bytes(index[0], 8) or not isinstance(index[1], Crc32cCodec):
            return None
        if metadata.chunk_key_encoding.to_dict().get("configuration", {}).get("separator", "/") != "/":
            return None
        shape = tuple(metadata.shape)
        shard_shape = tuple(metadata.chunk_grid.chunk_shape)
        chunk_shape = tuple(sharding.chunk_shape)
        if not shape or chunk_shape[1:] != shape[1:] or shard_shape[1:] != shape[1:]:
            return None  # only the first axis is split
        if shard_shape[0] % chunk_shape[0]:
            return None
        dtype = metadata.data_type.to_native_dtype()
        layout = cls(shape, dtype, chunk_shape[0], shard_shape[0], tuple(sharding.codecs),
                     metadata.fill_value, metadata)  # fmt: skip
        return layout if layout._inner() is not None else None

    def _inner(self) -> str | None:
        codecs = self.codecs
        if len(codecs) == 1 and isinstance(codecs[0], JpegCodec):
            return "jpeg"
        if codecs and _little_bytes(codecs[0], self.dtype.itemsize):
            if len(codecs) == 1:
                return "bytes"
            if len(codecs) == 2 and isinstance(codecs[1], ZstdCodec):
                return "zstd"
        return None

    @property
    def chunks_per_shard(self) -> int:
        return self.shard_rows // self.chunk_rows

    @property
    def shards(self) -> int:
        return math.ceil(self.shape[0] / self.shard_rows)

    def shard_key(self, shard: int) -> str:
        """The key of shard number ``shard``, relative to the array (e.g. ``c/3/0/0/0``)."""
        return str(self.metadata.encode_chunk_key((shard, *([0] * (len(self.shape) - 1)))))

    def encoder(self) -> Callable[[np.ndarray], bytes] | None:
        """Encodes one chunk as zarr would (JPEG, or zstd without checksum), else None."""
        kind, codecs = self._inner(), self.codecs
        if kind == "jpeg":
            jpeg = codecs[0]
            return lambda chunk: encode_jpeg(chunk, quality=jpeg.quality, subsampling=jpeg.subsampling)
        if kind == "zstd" and not codecs[1].checksum:
            import numcodecs

            zstd = numcodecs.Zstd(level=codecs[1].level)
            return lambda chunk: bytes(zstd.encode(np.ascontiguousarray(chunk)))
        return None

    def decoder(self) -> ChunkDecoder:
        """Decodes one encoded chunk into an array shaped like the chunk (a tile, or rows)."""
        kind = self._inner()
        if kind == "jpeg":
            import imagecodecs

            def decode_jpeg(data: memoryview | bytes, out: np.ndarray) -> None:
                if out.shape[-1] == 1:
                    out[..., 0] = imagecodecs.jpeg8_decode(data)  # type: ignore[arg-type]
                else:
                    imagecodecs.jpeg8_decode(data, out=out)  # type: ignore[arg-type]

            return decode_jpeg
        zstd = None
        if kind == "zstd":
            import numcodecs

            zstd = numcodecs.Zstd()

        def decode_raw(data: memoryview | bytes, out: np.ndarray) -> None:
            raw = zstd.decode(data) if zstd is not None else data
            if len(raw) != out.nbytes:
                raise CorruptShardError(f"a chunk holds {len(raw)} bytes, expected {out.nbytes}")
            out[...] = np.frombuffer(raw, dtype=self.dtype.newbyteorder("<")).reshape(out.shape)

        return decode_raw


class ShardBytes:
    """Reads shard indexes and byte ranges where an array's shards are: a local folder, or a
    zarr ``LocalStore`` / ``FsspecStore`` (on object storage: one ranged request each).
    ``key`` is a shard's path relative to that root."""

    def __init__(self, root: str | os.PathLike[str] | LocalStore | FsspecStore) -> None:
        if isinstance(root, LocalStore):
            root = root.root
        self._local = Path(root) if not isinstance(root, FsspecStore) else None
        self._store = root if isinstance(root, FsspecStore) else None

    @staticmethod
    def supports(store: Any) -> bool:
        return isinstance(store, LocalStore | FsspecStore)

    def index(self, key: str, chunks: int) -> ShardIndex | None:
        """The checked index of shard ``key`` (None when the shard is absent). Locally, its
        entries are also checked to lie inside the file."""
        size = index_size(chunks)
        if self._local is not None:
            path = self._local / key
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except FileNotFoundError:
                return None
            try:
                total = os.fstat(fd).st_size
                tail = os.pread(fd, size, max(0, total - size))
            finally:
                os.close(fd)
            index = ShardIndex.decode(tail, chunks, where=str(path))
            if total >= size and index.first_outside(total - size) is not None:
                raise CorruptShardError(f"{path}: a chunk runs past the shard's data")
            return index
        from zarr.abc.store import SuffixByteRequest

        assert self._store is not None
        found = sync(self._store.get(key, default_buffer_prototype(), byte_range=SuffixByteRequest(size)))
        if found is None:
            return None
        return ShardIndex.decode(found.to_bytes(), chunks, where=key)

    def read(self, key: str, start: int, stop: int) -> memoryview:
        """Bytes [start, stop) of shard ``key``; :class:`CorruptShardError` when fewer exist."""
        if stop <= start:
            return memoryview(b"")
        if self._local is not None:
            path = self._local / key
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                data = os.pread(fd, stop - start, start)
            finally:
                os.close(fd)
        else:
            from zarr.abc.store import RangeByteRequest

            assert self._store is not None

            got = sync(
                self._store.get(key, default_buffer_prototype(), byte_range=RangeByteRequest(start, stop))
            )
            data = got.to_bytes() if got is not None else b""
        if len(data) != stop - start:
            raise CorruptShardError(f"{key}: shard ends before byte {stop}")
        return memoryview(data)
